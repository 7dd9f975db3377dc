"""Agreement between annotators and the health of the data, from statistics kept in the store."""

import pandas as pd
import streamlit as st

from data import quality
from ui.session import screen
from ui.widgets import statistics_caught_up

percent = lambda x, n=None: "–" if x is None else f"{x:.0%}" + (f" (n={n:,})" if n is not None else "")  # noqa: E731
number = lambda x: "–" if x is None else f"{x:.2f}"  # noqa: E731

with screen("Agreement & health") as (db, user):
    statistics_caught_up(db)
    summary, health = quality.agreement_summary(db), quality.data_health(db)
    columns = st.columns(4)
    columns[0].metric("Pairwise agreement", percent(summary["pairwise_agreement"], summary["pairs_both_ordered"]),
                      help=f"{summary['pairs_both_ordered']:,} pairs both annotators ordered; "
                           f"{summary['pairs_one_tied']:,} tied by one only, {summary['pairs_both_tied']:,} by both")
    columns[1].metric("Kendall's τ-b", number(summary["kendall_tau_b"]), help="mean over pairs of annotators on shared items")
    columns[2].metric("Krippendorff's α (ordinal)", number(summary["krippendorff_alpha"]),
                      help=f"over the {summary['shared_items']:,} items ranked by two or more annotators")
    columns[3].metric("Coverage", percent(health["coverage"], health["items"]), help=f"{health['covered_items']:,} of the {health['items']:,} items of active prompt sets have the rankings their set wants")
    if not summary["shared_items"]:
        st.info("Agreement needs overlap: no item has been ranked by two annotators yet. Give a prompt set an overlap "
                "share (a fixed share of its items that want 2 or more rankings) or raise its N on the Overview.")
        st.page_link("pages/data/overview.py", label="Set the overlap on Data → Overview", icon=":material/dashboard:")
    columns = st.columns(4)
    columns[0].metric("Tie rate", percent(health["tie_rate"]))
    columns[1].metric("Flagged items", f"{health['flagged_items']:,}")
    by_version = pd.DataFrame(quality.agreement_by_guideline(db),
                              columns=["prompt_set", "guideline_version", "rankings", "agreement_with_others"])
    if by_version["guideline_version"].notna().any():  # shown once some set has guidelines
        st.caption("Agreement with the consensus of the others, by the guideline version each ranking was made under")
        st.dataframe(by_version, hide_index=True, column_config={
            "prompt_set": "prompt set", "guideline_version": st.column_config.NumberColumn("guideline version", help="empty: no guidelines yet"),
            "agreement_with_others": st.column_config.NumberColumn("agreement with others", format="percent")})
    per_day = pd.DataFrame(quality.rankings_per_day(db))
    if not per_day.empty:
        st.caption("Rankings per day")
        st.bar_chart(per_day.set_index("day"), height=180)
