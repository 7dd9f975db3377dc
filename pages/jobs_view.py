"""Rendering of jobs, shared by the admin tabs: status line, progress, cancel, curves, log."""

import pandas as pd
import streamlit as st

from data import jobs

STATUS_ICONS = {"queued": "⏳", "running": "▶️", "done": "✅", "failed": "❌", "cancelled": "⏹️"}


def job_card(db, job: dict, charts: dict[str, list[str]] | None = None, place: str = "jobs") -> None:
    """One job: status, progress with ETA, cancel, optional live metric charts, result, error, log.

    `place` keeps widget keys unique when the same job shows in two tabs.
    """
    with st.container(border=True):
        left, right = st.columns([5, 1], vertical_alignment="center")
        left.markdown(f"{STATUS_ICONS[job['status']]} **Job {job['id']}** · {job['kind']} · {job['status']} · "
                      f"created {job['created_at'][:19].replace('T', ' ')} UTC")
        if job["status"] in ("queued", "running"):
            left.progress(job["progress"], text=job["message"] or "starting…")
            if right.button("Cancel", key=f"{place}-cancel-{job['id']}"):
                jobs.request_cancel(db, job["id"])
        if charts:
            metric_charts(jobs.job_metrics(db, job["id"]), charts)
        if job["result"]:
            st.caption(f"Result: {job['result']}")
        if job["error"]:
            st.error(job["error"][-1500:])
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
    """The newest job of a kind, refreshed every 2 s: progress, live curves, cancel."""
    recent = jobs.list_jobs(db, limit=1, kind=kind)
    if recent:
        job_card(db, recent[0], charts=charts, place=place)
