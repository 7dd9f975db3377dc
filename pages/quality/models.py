"""Model leaderboard: a tie-aware Bradley-Terry rating per model from every ranking, as Chatbot Arena reports it."""

import altair as alt
import pandas as pd
import streamlit as st

from data import leaderboard
from data.store import db_file
from training.gate import MIN_PAIRS
from ui.session import screen


@st.cache_data(max_entries=4, show_spinner="Rating the models…")
def cached_leaderboard(path: str, watermark: tuple, bootstrap: int):  # noqa: ARG001  the watermark is the cache key
    from data.store import open_db

    own = open_db(path)
    try:
        return leaderboard.leaderboard(own, bootstrap=bootstrap)
    finally:
        own.close()


def ratings_chart(table: pd.DataFrame):
    base = alt.Chart(table).encode(y=alt.Y("model:N", sort=None, title=None))
    interval = base.mark_rule().encode(x=alt.X("low:Q", scale=alt.Scale(zero=False), title="rating (95% interval)"), x2="high:Q")
    return interval + base.mark_point(filled=True, size=80).encode(x="rating:Q", tooltip=["model", "rating", "low", "high", "pairs"])


def win_rate_chart(board) -> alt.Chart:
    order = [r.model for r in board.ratings]
    cells = pd.DataFrame([{"model": a, "opponent": b, "win rate": rate, "pairs": board.pairs[(a, b)]}
                          for (a, b), rate in board.win_rates.items()])
    heat = alt.Chart(cells).encode(x=alt.X("opponent:N", sort=order), y=alt.Y("model:N", sort=order))
    return (heat.mark_rect().encode(color=alt.Color("win rate:Q", scale=alt.Scale(scheme="redblue", domain=[0, 1])),
                                    tooltip=["model", "opponent", alt.Tooltip("win rate:Q", format=".0%"), "pairs"])
            + heat.mark_text().encode(text=alt.Text("win rate:Q", format=".0%")))


with screen("Model leaderboard") as (db, user):
    st.caption("Every pair of completions from two different models in a ranking is a game: won, lost or tied "
               "(D > C > A = B gives up to six). Ratings on the Arena scale (400 points = 10:1 odds, mean 1000), fitted "
               "with ties modelled (Davidson); the interval resamples items, keeping each item's rankings together.")
    bootstrap = st.select_slider("Bootstrap samples", [50, 100, 200, 500], value=200,
                                 help="More samples: steadier intervals, a slower first view.")
    with st.spinner("Reading the new rankings…"):
        leaderboard.refresh(db)  # the rankings since the last look (all of them, once, on an older database)
    board = cached_leaderboard(str(db_file(db)), leaderboard.watermark(db), bootstrap)
    if board is None:
        st.info("No two models have met in a ranking yet. Generate items whose completions come from more than one "
                "model (a head-to-head: Data → Generate, or the next round after a policy update; or a remote "
                "generator in the mix), or import completions with a model per completion, then rank them.")
        st.stop()
    if few := [r for r in board.ratings if r.pairs < MIN_PAIRS]:  # as every other screen says "too few to tell"
        st.warning(f"Too few to tell yet for {', '.join(r.model for r in few)}: "
                   + ", ".join(f"{r.pairs} pair{'s' * (r.pairs != 1)}" for r in few) + f" against other models, where "
                   f"a rating and its interval mean something from about {MIN_PAIRS}. Rank more items where they meet.")
    table = pd.DataFrame([vars(r) for r in board.ratings])
    st.dataframe(table, hide_index=True, column_config={
        "rating": st.column_config.NumberColumn(format="%.0f"), "low": st.column_config.NumberColumn("2.5%", format="%.0f"),
        "high": st.column_config.NumberColumn("97.5%", format="%.0f"),
        "pairs": st.column_config.NumberColumn(help="pairs with a completion of another model"),
        "win_rate": st.column_config.NumberColumn("win rate", format="percent", help="(wins + ties / 2) / pairs")}, placeholder="—")
    left, right = st.columns(2)
    left.caption("Ratings with their 95% intervals")
    left.altair_chart(ratings_chart(table), width="stretch")
    right.caption("Win rate of the row's model against the column's (ties count half)")
    right.altair_chart(win_rate_chart(board), width="stretch")
    if not few:  # a tie rate read from a handful of games is noise
        st.caption(f"Tie strength ν = {board.tie_strength:.2f}: annotators tie two equally good completions "
                   f"{board.tie_strength / (2 + board.tie_strength):.0%} of the time.")
