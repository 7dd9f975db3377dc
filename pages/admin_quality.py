"""Admin tab: the annotation team's progress, agreement and biases, and the health of the data."""

import altair as alt
import pandas as pd
import streamlit as st

from data import annotation, gold, items, quality
from data.rankings import RankingError, parse_ranking_text
from pages.common import flash


def quality_section(db) -> None:
    summary, health = quality.agreement_summary(db), quality.data_health(db)
    percent = lambda x: "–" if x is None else f"{x:.0%}"  # noqa: E731
    number = lambda x: "–" if x is None else f"{x:.2f}"  # noqa: E731
    columns = st.columns(4)
    columns[0].metric("Pairwise agreement", percent(summary["pairwise_agreement"]),
                      help=f"{summary['pairs_both_ordered']} pairs both annotators ordered; "
                           f"{summary['pairs_one_tied']} tied by one only, {summary['pairs_both_tied']} by both")
    columns[1].metric("Kendall's τ-b", number(summary["kendall_tau_b"]), help="mean over pairs of annotators on shared items")
    columns[2].metric("Krippendorff's α (ordinal)", number(summary["krippendorff_alpha"]),
                      help=f"over the {summary['shared_items']} items ranked by two or more annotators")
    columns[3].metric("Coverage", percent(health["coverage"]), help=f"{health['covered_items']} of {health['items']} items have N rankings")
    columns = st.columns(4)
    columns[0].metric("Tie rate", percent(health["tie_rate"]))
    columns[1].metric("Flagged items", health["flagged_items"])
    per_day = pd.DataFrame(quality.rankings_per_day(db))
    if not per_day.empty:
        st.caption("Rankings per day")
        st.bar_chart(per_day.set_index("day"), height=180)
    annotators_section(db)
    gold_section(db)
    ranked = items.ranked_items(db, limit=200)
    if ranked:
        item = st.selectbox("Consensus of one item", ranked, format_func=lambda r: f"#{r['id']} · {r['n_rankings']} rankings · {r['prompt'][:70]}")
        st.dataframe(pd.DataFrame(quality.item_consensus(db, item["id"])).round(3), hide_index=True)


def annotators_section(db) -> None:
    table = pd.DataFrame(quality.annotator_table(db))
    if table.empty:
        st.caption("No rankings yet.")
        return
    st.caption("Per annotator")
    st.dataframe(table, hide_index=True, column_config={
        "agreement_with_others": st.column_config.NumberColumn("agreement with others", format="percent"),
        "tie_rate": st.column_config.NumberColumn("tie rate", format="percent"),
        "first_shown_ranked_best": st.column_config.NumberColumn("first shown ranked best", format="percent"),
        "first_shown_expected": st.column_config.NumberColumn("expected by chance", format="percent"),
        "longer_wins": st.column_config.NumberColumn("longer completion wins", format="percent"),
        "gold_accuracy": st.column_config.NumberColumn("gold accuracy", format="percent"),
    })
    left, right = st.columns(2)
    left.caption("Position bias: the first-shown completion ranked best, against chance")
    left.altair_chart(bias_chart(table, ["first_shown_ranked_best", "first_shown_expected"]), use_container_width=True)
    right.caption("Length bias: the longer completion wins (50% is no bias)")
    right.altair_chart(bias_chart(table, ["longer_wins"], rule=0.5), use_container_width=True)


def bias_chart(table: pd.DataFrame, columns: list[str], rule: float | None = None):
    long = table.melt(id_vars="annotator", value_vars=columns, var_name="figure", value_name="share").dropna()
    bars = alt.Chart(long).mark_bar().encode(
        x=alt.X("share:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")), y="annotator:N",
        color="figure:N", yOffset="figure:N")
    if rule is None:
        return bars
    return bars + alt.Chart(pd.DataFrame({"share": [rule]})).mark_rule(strokeDash=[4, 4]).encode(x="share:Q")


def save_gold(db, item_id: int, k: int) -> None:
    try:
        gold.set_gold(db, item_id, parse_ranking_text(st.session_state.get("gold-expected", ""), list(range(k))))
        flash("success", f"Item {item_id} is gold now.")
    except (RankingError, ValueError) as error:
        flash("error", str(error))


def gold_section(db) -> None:
    st.markdown("**Gold items** · an expected order, graded silently; each annotator gets one every N items")
    results = pd.DataFrame(gold.gold_results(db))
    if not results.empty:
        st.caption(f"{len(results)} gold rankings, {results['passed'].mean():.0%} passed")
    sets = items.prompt_sets(db)
    left, middle, right = st.columns([2, 1, 1], vertical_alignment="bottom")
    chosen = left.selectbox("Prompt set", sets, format_func=lambda s: s["name"], key="gold-set")
    every = middle.number_input("Gold every N items (0: none)", 0, 1000, int(chosen.get("gold_every", 0)), key="gold-every")
    if right.button("Save rate"):
        gold.set_gold_every(db, chosen["name"], int(every))
        st.toast(f"{chosen['name']}: gold every {int(every)} items" if every else f"{chosen['name']}: no gold")
    candidates = items.items_of_set(db, chosen["name"], limit=500)
    if candidates:
        item = st.selectbox("Item", candidates, format_func=lambda r: f"#{r['id']} · {r['prompt'][:70]}", key="gold-item")
        for c in annotation.completions_of(db, item["id"]):
            st.caption(f"**{'ABCDEFGHI'[c.position]}** · {c.text[:200]}")
        with st.form("gold"):
            st.text_input("Expected order (letters as listed above), e.g. B > A = C, or just B > A", key="gold-expected")
            st.form_submit_button("Mark as gold", on_click=save_gold, args=(db, item["id"], len(annotation.completions_of(db, item["id"]))))
