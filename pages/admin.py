"""Admin: import prompts and completions, generate, watch jobs, export."""

import datetime
from dataclasses import asdict

import streamlit as st

from data import annotation, export, importing, items, jobs, versions
from policy.config import GenerationConfig
from pages.common import db_path, flash, require_admin, session_db, show_flash
from pages.jobs_view import job_card
from pages.admin_policy import policy_section
from pages.admin_quality import quality_section
from pages.admin_reward import reward_section
from pages.admin_sft import sft_section
from pages.admin_team import team_section

def overview(db) -> None:
    counts = items.counts(db)
    columns = st.columns(4)
    for column, name in zip(columns * 2, ("prompts", "completions", "rankings", "comparisons", "items", "skips", "annotators", "demonstrations")):
        column.metric(name.capitalize(), f"{counts[name]:,}")
    st.markdown("**Prompt sets** · N is how many rankings each item gets before it leaves every queue.")
    for prompt_set in items.prompt_sets(db):
        left, middle, right = st.columns([3, 2, 1], vertical_alignment="bottom")
        left.markdown(f"`{prompt_set['name']}` · {prompt_set['prompts']} prompts")
        n = middle.number_input("N", 1, 20, prompt_set["rankings_wanted"], key=f"n-{prompt_set['name']}")
        if right.button("Save", key=f"save-n-{prompt_set['name']}"):
            items.set_rankings_wanted(db, prompt_set["name"], int(n))
            st.toast(f"{prompt_set['name']}: {int(n)} rankings per item")


def import_section(db) -> None:
    st.markdown("**Prompts** · `.txt` one per line, `.csv` with a `prompt` column (optional `source`, `tags`), "
                "or `.jsonl` with a `prompt` key. All or nothing: a bad line imports nothing.")
    with st.form("import-prompts", clear_on_submit=True):
        upload = st.file_uploader("Prompt file", type=["txt", "csv", "jsonl", "json"])
        pasted = st.text_area("…or paste prompts, one per line")
        prompt_set = st.text_input("Prompt set", value="default")
        if st.form_submit_button("Import prompts", type="primary"):
            run_import(lambda: importing.import_prompts(db, parse_prompt_input(upload, pasted), prompt_set.strip()))
    st.markdown("**Completions made elsewhere** · `.jsonl`, one line per prompt: "
                '`{"prompt": "...", "completions": ["...", "..."], "model": "optional name"}`')
    with st.form("import-completions", clear_on_submit=True):
        upload = st.file_uploader("Completions file", type=["jsonl", "json"])
        prompt_set = st.text_input("Prompt set", value="imported")
        if st.form_submit_button("Import completions", type="primary") and upload:
            run_import(lambda: importing.import_completions(db, importing.parse_completions(upload.getvalue()), prompt_set.strip()))
    st.markdown("**Rankings** · a `rankings` export (`.jsonl`) from this app.")
    with st.form("import-rankings", clear_on_submit=True):
        upload = st.file_uploader("Rankings file", type=["jsonl", "json"])
        if st.form_submit_button("Import rankings", type="primary") and upload:
            run_import(lambda: importing.import_rankings(db, importing.parse_rankings(upload.getvalue())))


def parse_prompt_input(upload, pasted: str):
    if upload is not None:
        return importing.parse_prompts(upload.getvalue(), importing.format_of(upload.name))
    return importing.parse_prompts(pasted.encode(), "txt")


def run_import(do_import) -> None:
    try:
        flash("success", f"Imported: {do_import()}")
    except (importing.BadImportFile, ValueError) as error:
        flash("error", f"Import failed: {error}")
    st.rerun()


def generate_section(db) -> None:
    generators = versions.list_versions(db, "generator")
    sets = [s["name"] for s in items.prompt_sets(db)]
    if not generators or not sets:
        st.info("Import prompts first.")
        return
    defaults = GenerationConfig()
    with st.form("generate"):
        prompt_set = st.selectbox("Prompt set", sets)
        version = st.selectbox("Generator", generators, format_func=lambda v: f"{v['name']}{' (active)' if v['is_active'] else ''}",
                               index=next((i for i, v in enumerate(generators) if v["is_active"]), 0))
        k = st.slider("Completions per prompt (K)", 2, 9, defaults.k)
        left, middle, right = st.columns(3)
        temperature = left.number_input("Temperature", 0.05, 2.0, defaults.temperature, 0.05)
        top_p = middle.number_input("Top-p", 0.05, 1.0, defaults.top_p, 0.05)
        max_new_tokens = right.number_input("Max new tokens", 8, 1024, defaults.max_new_tokens, 8)
        left, middle, right = st.columns(3)
        seed = left.number_input("Seed", 0, 2**31 - 1, defaults.seed)
        limit = middle.number_input("Only the first N prompts (0: all)", 0, 100_000, 0)
        skip_done = right.checkbox("Skip prompts this generator already did", defaults.skip_done)
        if st.form_submit_button("Start generation", type="primary"):
            config = GenerationConfig(prompt_set=prompt_set, generator_version=version["id"], k=k, temperature=temperature,
                                      top_p=top_p, max_new_tokens=int(max_new_tokens), seed=int(seed),
                                      limit=int(limit) or None, skip_done=skip_done)
            job_id = jobs.start_job(db_path(), "generate", asdict(config))
            flash("success", f"Generation started as job {job_id}: follow it under Jobs.")
            st.rerun()


@st.fragment(run_every=2)
def jobs_section(db) -> None:
    recent = jobs.list_jobs(db, limit=15)
    if not recent:
        st.caption("No jobs yet.")
    for job in recent:
        job_card(db, job)


def export_section(db) -> None:
    left, right = st.columns(2)
    kind = left.radio("Kind", export.KINDS, captions=["prompt / chosen / rejected (TRL)", "full rankings with ties"])
    fmt = right.radio("Format", export.FORMATS, horizontal=True)
    dates = st.date_input("Created between", value=(), help="Leave empty for all dates")
    chosen_annotators = st.multiselect("Annotators (empty: all)", annotation.annotator_names(db))
    chosen_sets = st.multiselect("Prompt sets (empty: all)", [s["name"] for s in items.prompt_sets(db)])
    with st.expander("Quality filters"):
        excluded = st.multiselect("Exclude annotators", annotation.annotator_names(db))
        left, right = st.columns(2)
        min_agreement = left.slider("Minimum agreement with the other annotators", 0.0, 1.0, 0.0, 0.05)
        min_gold = right.slider("Minimum gold accuracy", 0.0, 1.0, 0.0, 0.05)
        complete_only = st.checkbox("Only items with all N rankings")
    since, until = (dates[0], dates[-1]) if len(dates) else (None, None)
    where = export.ExportFilter(str(since) if since else None, str(until) if until else None,
                                chosen_annotators or None, chosen_sets or None, excluded or None, complete_only,
                                min_agreement or None, min_gold or None)
    frame = export.export_frame(db, kind, where)
    st.caption(f"{len(frame):,} rows")
    st.dataframe(frame.head(50), hide_index=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M")
    st.download_button(f"Download {kind}.{fmt}", export.frame_to_bytes(frame, fmt), f"{kind}-{stamp}.{fmt}",
                       type="primary", disabled=frame.empty)


db = session_db()
require_admin(db)
st.title("Admin")
show_flash()
tab_overview, tab_quality, tab_team, tab_import, tab_generate, tab_sft, tab_reward, tab_policy, tab_jobs, tab_export = st.tabs(
    ["Overview", "Quality", "Team", "Import", "Generate", "Demonstrations & SFT", "Reward model", "Policy update", "Jobs", "Export"])
with tab_overview:
    overview(db)
with tab_quality:
    quality_section(db)
with tab_team:
    team_section(db)
with tab_import:
    import_section(db)
with tab_generate:
    generate_section(db)
with tab_sft:
    sft_section(db)
with tab_reward:
    reward_section(db)
with tab_policy:
    policy_section(db)
with tab_jobs:
    jobs_section(db)
with tab_export:
    export_section(db)
