"""Generate: the K completions per prompt that annotators rank, written by a generator version."""

import streamlit as st

from data import items, versions
from policy.config import GenerationConfig
from ui.jobs import launch, latest_job, version_picker
from ui.session import screen

with screen("Generate") as (db, user):
    generators = versions.list_versions(db, "generator")
    sets = [s["name"] for s in items.prompt_sets(db)]
    if not generators or not sets:
        st.info("Import prompts first (Data → Import).")
        st.stop()
    defaults = GenerationConfig()
    with st.form("generate"):
        prompt_set = st.selectbox("Prompt set", sets)
        version = version_picker(st, "Generator", generators)
        k = st.slider("Completions per prompt (K)", 2, 9, defaults.k)
        left, middle, right = st.columns(3)
        temperature = left.number_input("Temperature", 0.05, 2.0, defaults.temperature, 0.05)
        top_p = middle.number_input("Top-p", 0.05, 1.0, defaults.top_p, 0.05)
        max_new_tokens = right.number_input("Max new tokens", 8, 1024, defaults.max_new_tokens, 8)
        left, middle, right = st.columns(3)
        seed = left.number_input("Seed", 0, 2**31 - 1, defaults.seed)
        limit = middle.number_input("Only the first N prompts (0: all)", 0, 100_000, 0)
        skip_done = right.checkbox("Skip prompts this generator already did", defaults.skip_done)
        if st.form_submit_button("Start generation", type="primary"):
            launch("generate", GenerationConfig(prompt_set=prompt_set, generator_version=version["id"], k=k, temperature=temperature,
                                                top_p=top_p, max_new_tokens=int(max_new_tokens), seed=int(seed),
                                                limit=int(limit) or None, skip_done=skip_done), "Generation")
    latest_job(db, "generate", {}, "generate")
