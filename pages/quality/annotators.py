"""Per annotator: speed, agreement with the others, ties, position and length bias, gold accuracy, training weight."""

import altair as alt
import pandas as pd
import streamlit as st

from data import quality, reliability
from ui.session import screen
from ui.widgets import statistics_caught_up

COLUMN_HELP = {
    "agreement_with_others": "of the pairs they ordered strictly on items others ranked too, the share ordered as the "
                             "consensus of the others; — : no item shared with another annotator yet",
    "self_agreement": "of the pairs they ordered strictly both times on an item served again, the share ordered the same "
                      "way; — : nothing asked again yet (the set's repeat share, Data → Overview)",
    "tie_rate": "the share of their pairs they ranked equal",
    "first_shown_ranked_best": "how often the completion shown first was ranked best (position bias)",
    "first_shown_expected": "what chance gives on the same rankings: the share of the completions they put in first place (1/K with no tie there)",
    "longer_wins": "of their pairs of different lengths, the share where the longer one was ranked higher (50%: no length bias)",
    "gold_accuracy": "the share of gold items ranked as the gold answer says; — : no gold item served yet (Quality → Gold items)",
}
PERCENT_COLUMNS = {"agreement_with_others": "agreement with others", "self_agreement": "self-agreement", "tie_rate": "tie rate",
                   "first_shown_ranked_best": "first shown ranked best", "first_shown_expected": "expected by chance",
                   "longer_wins": "longer completion wins", "gold_accuracy": "gold accuracy"}


def bias_chart(table: pd.DataFrame, columns: list[str], rule: float | None = None):
    long = table.melt(id_vars="annotator", value_vars=columns, var_name="figure", value_name="share").dropna()
    long["figure"] = long["figure"].map(PERCENT_COLUMNS)  # the legend in words, not column names
    bars = alt.Chart(long).mark_bar().encode(
        x=alt.X("share:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")), y="annotator:N",
        color="figure:N", yOffset="figure:N")
    if rule is None:
        return bars
    return bars + alt.Chart(pd.DataFrame({"share": [rule]})).mark_rule(strokeDash=[4, 4]).encode(x="share:Q")


def with_self_agreement(table: pd.DataFrame, repeats: list[dict]) -> pd.DataFrame:
    """The table with each annotator's self-agreement (their repeats) placed beside their agreement with others."""
    own = pd.DataFrame(repeats, columns=["annotator", "repeats", "self_agreement", "self_tau_b"])
    table = table.merge(own, on="annotator", how="left")
    table["repeats"] = table["repeats"].fillna(0).astype(int)  # none asked again yet: 0, not an empty "None" cell
    columns = [c for c in table.columns if c not in own.columns[1:]]
    at = columns.index("agreement_pairs") + 1  # after agreement with others and the pairs it rests on
    return table[columns[:at] + list(own.columns[1:]) + columns[at:]]


with screen("Annotators") as (db, user):
    statistics_caught_up(db)
    table = pd.DataFrame(quality.annotator_table(db))
    if table.empty:
        st.caption("No rankings yet.")
        st.stop()
    shown = with_self_agreement(table, quality.self_agreement(db))
    shown["training_weight"] = shown["annotator"].map(reliability.training_weights(db))
    for column in shown.columns:  # a figure with nothing to go on yet: blank, not "None" (numbers with gaps stay numbers)
        numbers = pd.to_numeric(shown[column], errors="coerce")
        if shown[column].dtype == object and numbers.notna().sum() == shown[column].notna().sum():
            shown[column] = numbers
    for column in [c for c in PERCENT_COLUMNS if c in shown]:  # whole percents alike (20.83% beside 25% read as different precisions)
        shown[column] = pd.to_numeric(shown[column]).round(2)
    st.caption("One row per annotator (scroll sideways for every figure; hover a column's name for what it measures). "
               "— : nothing to go on yet.")
    st.dataframe(shown, hide_index=True, column_config={
        "annotator": st.column_config.TextColumn("annotator", pinned=True),
        "median_seconds": st.column_config.NumberColumn("median seconds", format="%.1f"),
        "agreement_pairs": st.column_config.NumberColumn("pairs compared", help="the pairs agreement with others rests "
                                                         "on: a few make its figure luck"),
        "gold_rankings": st.column_config.NumberColumn("gold ranked", help="the gold items gold accuracy rests on"),
        "repeats": st.column_config.NumberColumn(help="items they ranked again when served a second time, unannounced (skipped repeats left out)"),
        "self_tau_b": st.column_config.NumberColumn("self τ-b", format="%.2f", help="mean Kendall τ-b with their first ranking"),
        "training_weight": st.column_config.NumberColumn(
            "training weight", format="%.2f", help="how much their rankings count when a reward model or DPO trains with "
            "'Weight rankings by reliability': 1 is the team's reliability, 0 no signal (random or contrary to the others); "
            "from agreement, gold and self-agreement, near 1 while they have few of them"),
        **{column: st.column_config.NumberColumn(label, format="percent", help=COLUMN_HELP.get(column))
           for column, label in PERCENT_COLUMNS.items()}}, placeholder="—")
    left, right = st.columns(2)
    left.caption("Position bias: the first-shown completion ranked best, against chance")
    left.altair_chart(bias_chart(table, ["first_shown_ranked_best", "first_shown_expected"]), width="stretch")
    right.caption("Length bias: the longer completion wins (50% is no bias)")
    right.altair_chart(bias_chart(table, ["longer_wins"], rule=0.5), width="stretch")
