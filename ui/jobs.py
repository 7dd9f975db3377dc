"""Jobs on the admin screens: start one from a config form, follow it live, cancel it; pick a model version."""

from dataclasses import asdict

import pandas as pd
import streamlit as st

from data import jobs
from ui.session import db_path, flash, require
from ui.text import safe_markdown

STATUS_ICONS = {"queued": ":material/schedule:", "running": ":material/play_circle:", "done": ":material/check_circle:",
                "failed": ":material/error:", "cancelled": ":material/stop_circle:"}


def launch(kind: str, config, what: str) -> None:
    """Start a background job from a trainer's config dataclass, say so on the next run, and rerun."""
    try:
        job_id = jobs.start_job(db_path(), kind, asdict(config))
        flash("success", f"{what} started as job {job_id}: follow it below or under Jobs.")
    except (ValueError, LookupError) as error:
        flash("error", str(error))
    st.rerun()


def version_label(version: dict) -> str:
    return f"{version['name']}{' (active)' if version['is_active'] else ''}"


def version_picker(column, label: str, versions_: list[dict], key: str | None = None) -> dict:
    """A select box of model versions, the active one preselected."""
    return column.selectbox(label, versions_, format_func=version_label, key=key,
                            index=next((i for i, v in enumerate(versions_) if v["is_active"]), 0))


def cancel(db, job_id: int) -> None:
    require(db, "admin")
    jobs.request_cancel(db, job_id)


def job_card(db, job: dict, charts: dict[str, list[str]] | None = None, place: str = "jobs") -> None:
    """One job: status, progress with ETA, cancel, optional live metric charts, result, error, log."""
    with st.container(border=True):
        left, right = st.columns([5, 1], vertical_alignment="center")
        left.markdown(f"{STATUS_ICONS[job['status']]} **Job {job['id']}** · {job['kind']} · {job['status']} · "
                      f"created {job['created_at'][:19].replace('T', ' ')} UTC")
        if job["status"] in ("queued", "running"):
            left.progress(job["progress"], text=job["message"] or "starting…")
            if right.button("Cancel", key=f"{place}-cancel-{job['id']}"):
                cancel(db, job["id"])
        if charts:
            metric_charts(jobs.job_metrics(db, job["id"]), charts)
        if job["result"]:
            st.caption(safe_markdown(f"Result: {job['result']}"))
        if job["status"] == "cancelled":
            st.info("Cancelled by an admin.")
        elif job["error"]:
            st.error("The job stopped with this error:")
            st.code(job["error"][-1500:], language=None)
        if job["log"]:
            with st.expander("Log"):
                st.code(job["log"][-3000:], language=None)


def metric_charts(history: list[dict], charts: dict[str, list[str]]) -> None:
    """One line chart per title, each with the named metrics against the step."""
    if not history:
        return
    frame = pd.DataFrame(history).set_index("step")
    columns = st.columns(len(charts))
    for column, (title, names) in zip(columns, charts.items()):
        present = [n for n in names if n in frame.columns]
        if present:
            column.caption(title)
            column.line_chart(frame[present].dropna(how="all"), height=200)


@st.fragment(run_every=2)
def latest_job(db, kind: str, charts: dict[str, list[str]], place: str) -> None:
    """The newest job of a kind, refreshed every 2 s: progress, live curves, cancel. Re-checks the admin each time."""
    require(db, "admin")
    recent = jobs.list_jobs(db, limit=1, kind=kind)
    if recent:
        job_card(db, recent[0], charts=charts, place=place)


@st.fragment(run_every=2)
def recent_jobs(db, limit: int = 15) -> None:
    require(db, "admin")
    listed = jobs.list_jobs(db, limit=limit)
    if not listed:
        st.caption("No jobs yet.")
    for job in listed:
        job_card(db, job)
