"""Small pieces that several screens show."""

import streamlit as st

from data import quality


def statistics_caught_up(db) -> None:
    """Bring the stored statistics up to date (work in proportion to the new rankings) and say what they leave out."""
    with st.spinner("Reading the new rankings…"):
        quality.refresh(db)
    unreadable = quality.unreadable_rankings(db)
    if unreadable:
        st.warning(f"{len(unreadable):,} stored rankings cannot be read and are left out of these figures "
                   f"(ids {', '.join(map(str, unreadable[:10]))}{' …' if len(unreadable) > 10 else ''}).")
