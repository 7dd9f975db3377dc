"""Per annotator: speed, agreement with the others, ties, position and length bias, gold accuracy."""

import altair as alt
import pandas as pd
import streamlit as st

from data import quality
from ui.session import screen
from ui.widgets import statistics_caught_up

PERCENT_COLUMNS = {"agreement_with_others": "agreement with others", "tie_rate": "tie rate",
                   "first_shown_ranked_best": "first shown ranked best", "first_shown_expected": "expected by chance",
                   "longer_wins": "longer completion wins", "gold_accuracy": "gold accuracy"}


def bias_chart(table: pd.DataFrame, columns: list[str], rule: float | None = None):
    long = table.melt(id_vars="annotator", value_vars=columns, var_name="figure", value_name="share").dropna()
    bars = alt.Chart(long).mark_bar().encode(
        x=alt.X("share:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")), y="annotator:N",
        color="figure:N", yOffset="figure:N")
    if rule is None:
        return bars
    return bars + alt.Chart(pd.DataFrame({"share": [rule]})).mark_rule(strokeDash=[4, 4]).encode(x="share:Q")


with screen("Annotators") as (db, user):
    statistics_caught_up(db)
    table = pd.DataFrame(quality.annotator_table(db))
    if table.empty:
        st.caption("No rankings yet.")
        st.stop()
    st.dataframe(table, hide_index=True, column_config={
        "median_seconds": st.column_config.NumberColumn("median seconds", format="%.1f"),
        **{column: st.column_config.NumberColumn(label, format="percent") for column, label in PERCENT_COLUMNS.items()}})
    left, right = st.columns(2)
    left.caption("Position bias: the first-shown completion ranked best, against chance")
    left.altair_chart(bias_chart(table, ["first_shown_ranked_best", "first_shown_expected"]), width="stretch")
    right.caption("Length bias: the longer completion wins (50% is no bias)")
    right.altair_chart(bias_chart(table, ["longer_wins"], rule=0.5), width="stretch")
