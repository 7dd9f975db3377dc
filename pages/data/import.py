"""Import prompts, completions made elsewhere, rankings exports and HH-RLHF pairs. All or nothing; importing twice adds nothing."""

import streamlit as st

from data import importing
from data.store import StoreBusy
from ui.session import flash, screen


def parse_prompt_input(upload, pasted: str):
    if upload is not None:
        return importing.parse_prompts(upload.getvalue(), importing.format_of(upload.name))
    return importing.parse_prompts(pasted.encode(), "txt")


def run_import(do_import) -> None:
    try:
        counts = do_import()
        flash("success", "Imported: " + ", ".join(f"{n:,} {what.replace('_', ' ')}" for what, n in counts.items()))
    except (importing.BadImportFile, ValueError, StoreBusy) as error:
        flash("error", f"Import failed: {error}")
    st.rerun()


with screen("Import") as (db, user):
    st.markdown("**Prompts** · `.txt` one per line, `.csv` with a `prompt` column (optional `source`, `tags`), "
                "or `.jsonl` with a `prompt` key. All or nothing: a bad line imports nothing.")
    st.caption('A prompt may be a conversation: `{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", '
               '"content": "..."}, {"role": "user", "content": "..."}]}` (an optional system message first, ending with '
               'the user turn to answer), or a `prompt` in HH-RLHF form `"\\n\\nHuman: ...\\n\\nAssistant: ...\\n\\nHuman: ..."`. '
               'Completions and rankings files take `messages` the same way.')
    with st.form("import-prompts"):  # not cleared: the set name stays, so importing the same file again adds nothing
        upload = st.file_uploader("Prompt file", type=["txt", "csv", "jsonl", "json"])
        pasted = st.text_area("…or paste prompts, one per line")
        prompt_set = st.text_input("Prompt set", value="default")
        if st.form_submit_button("Import prompts", type="primary"):
            run_import(lambda: importing.import_prompts(db, parse_prompt_input(upload, pasted), prompt_set.strip()))
    st.markdown("**Completions made elsewhere** · `.jsonl`, one line per prompt: "
                '`{"prompt": "...", "completions": ["...", "..."], "model": "optional name"}`')
    with st.form("import-completions"):
        upload = st.file_uploader("Completions file", type=["jsonl", "json"])
        prompt_set = st.text_input("Prompt set", value="imported")
        if st.form_submit_button("Import completions", type="primary"):
            if upload is None:
                flash("error", "Choose a completions file first.")
                st.rerun()
            run_import(lambda: importing.import_completions(db, importing.parse_completions(upload.getvalue()), prompt_set.strip()))
    st.markdown("**Rankings** · a `rankings` export (`.jsonl`) from this app. Annotator names in it become disabled "
                "accounts (provenance only) until an admin enables them under Team.")
    with st.form("import-rankings", clear_on_submit=True):
        upload = st.file_uploader("Rankings file", type=["jsonl", "json"])
        if st.form_submit_button("Import rankings", type="primary"):
            if upload is None:
                flash("error", "Choose a rankings file first.")
                st.rerun()
            run_import(lambda: importing.import_rankings(db, importing.parse_rankings(upload.getvalue())))
    st.markdown("**HH-RLHF pairs** · `.jsonl` lines of `{\"chosen\": \"<dialogue>\", \"rejected\": \"<dialogue>\"}` "
                "(Anthropic's format). Each pair becomes an item of 2 completions (the two final replies) ranked "
                "chosen over rejected by the annotator named below; pairs with an empty or repeated reply are left out.")
    with st.form("import-hh-pairs"):
        upload = st.file_uploader("HH-RLHF file", type=["jsonl", "json"])
        prompt_set = st.text_input("Prompt set", value="hh-rlhf")
        annotator = st.text_input("Ranked by", value="hh-rlhf", help="a provenance account the rankings are stored under")
        if st.form_submit_button("Import pairs", type="primary"):
            if upload is None:
                flash("error", "Choose an HH-RLHF file first.")
                st.rerun()
            run_import(lambda: importing.import_hh_pairs(db, importing.parse_hh_pairs(upload.getvalue(), annotator.strip()),
                                                         prompt_set.strip()))
