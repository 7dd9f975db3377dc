"""Agreement between annotators and the health of the data, from statistics kept in the store."""

import statistics

import altair as alt
import pandas as pd
import streamlit as st

from data import generators, items, judgements, quality, versions
from policy.config import JudgeConfig
from ui.jobs import latest_job, launch, version_picker
from ui.session import screen
from ui.widgets import statistics_caught_up

percent = lambda x, n=None: "–" if x is None else f"{x:.0%}" + (f" (n={n:,})" if n is not None else "")  # noqa: E731
number = lambda x, items=None: "–" if x is None else f"{x:.2f}" + (  # noqa: E731
    f" (n={items:,} item{'s' if items != 1 else ''})" if items is not None else "")

def judge_form(db) -> None:
    remotes = [g.name for g in generators.remote_generators(db)]
    with st.form("judge"):
        left, right = st.columns(2)
        source = left.selectbox("Judge", ["local generator", *remotes], index=1 if remotes else 0,
                                help="a remote generator registered under Data → Generate (any OpenAI-compatible server), "
                                     "or a generator version of this app")
        version = version_picker(right, "Local generator (when judging locally)", versions.list_versions(db, "generator"))
        left, middle, right = st.columns(3)
        prompt_set = left.selectbox("Prompt set", [s["name"] for s in items.prompt_sets(db)], key="judge-set")
        share = middle.number_input("Share of its items", 0.01, 1.0, JudgeConfig.share, 0.05,
                                    help="those people ranked first, so the judge can be measured against them")
        votes = right.number_input("Votes per item", 1, 16, JudgeConfig.votes,
                                   help="independent critiques-and-rankings, each with the letters shuffled; agreement is "
                                        "shown for the first 1, 2, 4 and 8")
        if st.form_submit_button("Start judging", type="primary"):
            remote = "" if source == "local generator" else source
            launch("judge", JudgeConfig(prompt_set=prompt_set, remote=remote, share=float(share), votes=int(votes),
                                        generator_version=None if remote else version["id"]), "AI judge")


def judge_results(db) -> None:
    runs = judgements.latest_runs(db)
    if not runs:
        st.caption("No judge has run yet.")
        return
    people = [r["agreement_with_others"] for r in quality.annotator_table(db) if r["agreement_with_others"] is not None]
    person = statistics.median(people) if people else None
    rows = [{"judge": r["judge"], "set": r["prompt_set"], "votes": a["votes"], "agreement": a["agreement"],
             "low": a["low"], "high": a["high"], "pairs": a["pairs"], "items": a["items"]}
            for r in runs for a in r["agreement"] if a["agreement"] is not None]
    st.dataframe(pd.DataFrame([{"judge": r["judge"], "set": r["prompt_set"], "items judged": r["items"],
                                "votes stored": r["votes"], "readable votes": r["readable_share"], "job": r["job"]}
                               for r in runs]), hide_index=True,
                 column_config={"readable votes": st.column_config.NumberColumn(format="percent")}, placeholder="—")
    if not rows:
        if any(judgements.none_readable(r) for r in runs):
            st.warning("No vote held a readable 'Ranking:' line: the judge model does not follow the instructions. Try a "
                       "larger model, or a remote one with a higher max_tokens.")
        else:
            st.info("No judged item has a ranking by people yet: rank some of the judged items, then judge again to measure it.")
        return
    frame = pd.DataFrame(rows)
    frame["who"] = frame["judge"] + " · " + frame["set"]
    line = alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X("votes:O", title="votes per item"), y=alt.Y("agreement:Q", title="agreement with people", scale=alt.Scale(zero=False)),
        color=alt.Color("who:N", title=None), tooltip=["who", "votes", "agreement", "low", "high", "pairs", "items"])
    band = alt.Chart(frame).mark_errorbar().encode(x="votes:O", y="low:Q", y2="high:Q", color="who:N")
    chart = line + band
    if person is not None:
        chart += alt.Chart(pd.DataFrame({"agreement": [person]})).mark_rule(strokeDash=[4, 4]).encode(y="agreement:Q")
    st.caption("Agreement of the judge's voted ranking with the consensus of each judged item's people (pairs both "
               "ordered), by votes per item, with 95% intervals"
               + (f"; dashed: the median person's agreement with the others ({person:.0%})" if person is not None else ""))
    st.altair_chart(chart, width="stretch")


with screen("Agreement & health") as (db, user):
    statistics_caught_up(db)
    summary, health = quality.agreement_summary(db), quality.data_health(db)
    columns = st.columns(4)
    columns[0].metric("Pairwise agreement", percent(summary["pairwise_agreement"], summary["pairs_both_ordered"]),
                      help=f"{summary['pairs_both_ordered']:,} pairs both annotators ordered; "
                           f"{summary['pairs_one_tied']:,} tied by one only, {summary['pairs_both_tied']:,} by both")
    columns[1].metric("Kendall's τ-b", number(summary["kendall_tau_b"], summary["shared_items"]),
                      help="mean over pairs of annotators on shared items (n: the items ranked by two or more)")
    columns[2].metric("Krippendorff's α (ordinal)", number(summary["krippendorff_alpha"], summary["shared_items"]),
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
            "agreement_with_others": st.column_config.NumberColumn("agreement with others", format="percent")}, placeholder="—")
    per_day = pd.DataFrame(quality.rankings_per_day(db))
    if not per_day.empty:
        st.caption("Rankings per day")
        st.bar_chart(per_day.set_index("day"), height=180)
    st.divider()
    st.subheader("AI judges")
    st.caption("A model ranks a share of a set's items as a virtual annotator, measured against people on the items "
               "both ranked. Its votes are kept apart: never training data, never counted in the figures above.")
    judge_form(db)
    latest_job(db, "judge", {}, "judge")
    judge_results(db)
