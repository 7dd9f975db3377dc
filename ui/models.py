"""The one place the app keeps a model in memory."""

from pathlib import Path

import streamlit as st


@st.cache_resource(max_entries=2, show_spinner="Loading the reward model…")
def reward_scorer(folder: str):
    """A reward model, keyed by its folder."""
    from rm.score import RewardScorer

    if not Path(folder).is_dir():
        raise FileNotFoundError(f"the reward model's folder {folder} is missing: make another version active, or train one")
    return RewardScorer(folder)
