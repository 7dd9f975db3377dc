"""A test page (tests/test_browser.py): each input of the JSON file $UNTRUSTED_INPUTS shown the two ways the app shows
untrusted text, as a block (ui.widgets.untrusted) and inside our own Markdown (ui.text.inline)."""

import json
import os

import streamlit as st

from ui.text import inline
from ui.widgets import UNTRUSTED_STYLE, untrusted

st.html(UNTRUSTED_STYLE)
with open(os.environ["UNTRUSTED_INPUTS"], encoding="utf-8") as inputs:
    for text in json.load(inputs):
        untrusted(text)
        st.caption(inline(text))
st.markdown("End of the inputs.")
