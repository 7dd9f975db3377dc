"""Import prompts, and preference data in the formats people hold it (TRL pairs, scored completions, Chatbot Arena,
OpenAssistant, HH-RLHF, this app's own exports): the format is recognised and shown, every refused line listed, before
anything is stored. All or nothing for the rows it takes; importing twice adds nothing."""

import streamlit as st

from data import formats, importing, leaderboard, quality
from data.store import StoreBusy
from ui.session import flash, guarded, screen

FORMAT_HELP = {
    "trl": "TRL preference pairs: prompt, chosen, rejected (text or messages; no prompt: their shared beginning)",
    "scored": "completions with a score each (UltraFeedback's overall_score or an aspect's Rating; or prompt, completions, scores)",
    "arena": "Chatbot Arena battles: model_a, model_b, winner, and the two conversations (or prompt, response_a, response_b)",
    "oasst": "OpenAssistant messages (message_id, parent_id, role, text, rank) or its trees export",
    "hh": "Anthropic HH-RLHF: chosen and rejected dialogues",
    "rankings": "this app's rankings export",
    "completions": "completions made elsewhere: prompt, completions, model (no ranking: items to rank)",
}


LEAVE_OUT = "Leave out the refused lines"


def parse_prompt_input(upload, pasted: str):
    if upload is not None:
        return importing.parse_prompts(upload.getvalue(), importing.format_of(upload.name))
    return importing.parse_pasted_prompts(pasted)


def run_import(do_import, how_to_skip: str | None = None, then: str = "") -> None:
    """`how_to_skip`: this form's way to import the valid rows of a file with refused lines (None: the form has none);
    `then`: what the imported data is for next, said after the counts."""
    try:
        counts = do_import()
        flash("success", "Imported: " + ", ".join(f"{n:,} {what.replace('_', ' ')}" for what, n in counts.items()) + then)
    except importing.RefusedLines as refused:
        flash("error", f"Import failed: {refused.message(how_to_skip)}" + ("" if how_to_skip else " Fix or remove those lines and import again."))
    except (importing.BadImportFile, ValueError, StoreBusy) as error:
        flash("error", f"Import failed: {error}")
    st.rerun()


def read_upload(upload, fmt: str, annotator: str, score_key: str) -> formats.Read:
    """The upload read with every line checked (refused lines kept apart), once per file and settings."""
    key = (upload.file_id, fmt, annotator, score_key)
    cached = st.session_state.get("pref-read")
    if cached is None or cached[0] != key:
        cached = (key, formats.read(upload.getvalue(), upload.name, fmt, annotator or None, score_key or None, skip_invalid=True))
        st.session_state["pref-read"] = cached
    return cached[1]


@guarded("admin")
def import_preferences(db, user, result: formats.Read) -> None:
    prompt_set, leave_out = st.session_state.get("pref-set", ""), st.session_state.get("pref-leave-out", False)
    try:
        if result.rows.refused and not leave_out:
            raise importing.RefusedLines(result.rows.refused, len(result.rows))
        counts = formats.import_read(db, result, prompt_set, actor=user)
        quality.refresh(db)  # the statistics and the leaderboard's counts catch up here, not on the next screen opened
        leaderboard.refresh(db)
        st.session_state.pop("pref-read", None)
        flash("success", "Imported: " + ", ".join(f"{n:,} {what.replace('_', ' ')}" if isinstance(n, int) else f"{what} {n}"
                                                  for what, n in counts.items()))
    except importing.RefusedLines as refused:
        flash("error", f"Import failed: {refused.message(f'tick “{LEAVE_OUT}” to import them alone')}")
    except (importing.BadImportFile, ValueError, StoreBusy) as error:
        flash("error", f"Import failed: {error}")


def refused_table(result: formats.Read) -> None:
    refused = result.rows.refused
    st.error(f"{len(refused):,} lines are refused (the first {min(len(refused), importing.MAX_LISTED)} below). Fix them and "
             "upload again, or leave them out.")
    st.code("\n".join(f"line {r.line}: {r.problem}" for r in refused[:importing.MAX_LISTED]), language=None, wrap_lines=True)
    st.download_button("Download the refused lines (JSONL, with why)", key="pref-rejects", mime="application/jsonl",
                       file_name="rejects.jsonl", data=importing.rejects_jsonl(refused))


def preference_section(db) -> None:
    st.markdown("**Preference data** · `.jsonl`, `.json`, `.csv` (flat formats) or `.parquet`, in any of these formats; "
                "the format is recognised from the columns and shown before anything is stored.")
    st.caption(" · ".join(f"`{name}`: {text}" for name, text in FORMAT_HELP.items()))
    upload = st.file_uploader("Preference file", type=["jsonl", "json", "csv", "parquet"], key="pref-file")
    if upload is None:
        return
    left, middle, right = st.columns(3)
    fmt = left.selectbox("Format", ["auto", *formats.FORMATS], key="pref-format")
    annotator = middle.text_input("Ranked by (when the file names nobody)", key="pref-annotator",
                                  placeholder="the format's name", help="a provenance account the rankings are stored under")
    score_key = right.text_input("Score to rank by (scored)", key="pref-score-key", placeholder="overall_score",
                                 help="or an aspect of UltraFeedback: helpfulness, honesty, instruction_following, truthfulness")
    try:
        result = read_upload(upload, fmt, annotator.strip(), score_key.strip())
    except importing.RefusedLines as refused:  # nothing valid at all
        st.error(f"Nothing in this file can be imported: {refused}")
        return
    except importing.BadImportFile as error:
        st.error(str(error))
        return
    what = "items" if result.fmt == "completions" else "rankings"
    st.success(f"Format: **{result.fmt}** · {len(result.rows):,} {what} read"
               + (f", {len(result.skipped):,} pairs with the same answer twice left out" if result.skipped else "")
               + (f", {importing.empty_answers(result.rows):,} empty answers (kept)" if importing.empty_answers(result.rows) else ""))
    if result.rows.refused:
        refused_table(result)
    left, right = st.columns(2)
    left.text_input("Prompt set", value="imported", key="pref-set")
    leave_out = right.checkbox(LEAVE_OUT, key="pref-leave-out", disabled=not result.rows.refused)
    st.button(f"Import {len(result.rows):,} {what}" + (" (the refused lines left out)" if leave_out else ""), type="primary",
              on_click=import_preferences, args=(result,), key="pref-import")


with screen("Import") as (db, user):
    st.markdown("**Prompts** · `.txt` one per line, `.csv` with a `prompt` column (optional `source`, `tags`), "
                "or `.jsonl` with a `prompt` key. All or nothing: a bad line imports nothing.")
    st.caption('A prompt may be a conversation: `{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", '
               '"content": "..."}, {"role": "user", "content": "..."}]}` (an optional system message first, ending with '
               'the user turn to answer), or a `prompt` in HH-RLHF form `"\\n\\nHuman: ...\\n\\nAssistant: ...\\n\\nHuman: ..."`. '
               'Completions and rankings files take `messages` the same way.')
    with st.form("import-prompts"):  # not cleared: the set name stays, so importing the same file again adds nothing
        upload = st.file_uploader("Prompt file", type=["txt", "csv", "jsonl", "json"])
        pasted = st.text_area("…or paste prompts, one per line", help="plain text, one prompt a line; or JSON lines, "
                              "one object a line with a `prompt` or `messages` key, as in a .jsonl file")
        prompt_set = st.text_input("Prompt set", value="default")
        if st.form_submit_button("Import prompts", type="primary"):
            run_import(lambda: importing.import_prompts(db, parse_prompt_input(upload, pasted), prompt_set.strip(), actor=user),
                       then=f" (set {prompt_set.strip()}). Next: Data → Generate writes the completions people rank "
                            "(Overview steers who the set is served to).")
    preference_section(db)
