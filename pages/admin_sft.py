"""Admin tab: demonstrations (import, export) and supervised fine-tuning of the generator on them."""

from dataclasses import asdict

import streamlit as st

from data import demonstrations, importing, items, jobs, versions
from pages.common import db_path, flash
from pages.jobs_view import latest_job
from policy.config import SFTConfig

SFT_CHARTS = {"Loss": ["loss/train", "loss/val"]}


def sft_section(db) -> None:
    rows = demonstrations.demonstrations(db)
    st.markdown(f"**{len(rows):,} demonstrations** (written, edited from a completion, or imported)")
    left, right = st.columns(2)
    with left.form("import-demonstrations", clear_on_submit=True):
        upload = st.file_uploader("Import demonstrations (.jsonl: prompt + response, or chat messages)", type=["jsonl", "json"])
        prompt_set = st.text_input("Prompt set", value="demonstrations")
        if st.form_submit_button("Import demonstrations") and upload:
            try:
                flash("success", f"Imported: {demonstrations.import_demonstrations(db, demonstrations.parse_demonstrations(upload.getvalue()), prompt_set.strip())}")
            except (importing.BadImportFile, ValueError) as error:
                flash("error", f"Import failed: {error}")
            st.rerun()
    right.download_button("Download for TRL's SFTTrainer (messages .jsonl)", demonstrations.messages_jsonl(db),
                          "demonstrations.jsonl", disabled=not rows)
    train_form(db)
    latest_job(db, "sft", SFT_CHARTS, "sft")


def train_form(db) -> None:
    generators = versions.list_versions(db, "generator")
    defaults = SFTConfig()
    with st.form("train-sft"):
        generator = st.selectbox("Start from generator", generators, format_func=lambda v: v["name"] + (" (active)" if v["is_active"] else ""),
                                 index=next((i for i, v in enumerate(generators) if v["is_active"]), 0))
        left, middle, right = st.columns(3)
        epochs = left.number_input("Epochs (at most)", 1, 100, defaults.epochs)
        learning_rate = middle.number_input("Learning rate", 1e-7, 1e-2, defaults.learning_rate, format="%.1e")
        batch_size = right.number_input("Demonstrations per step", 1, 256, defaults.batch_size)
        left, middle, right = st.columns(3)
        lora = left.checkbox("LoRA adapter", defaults.lora)
        prompt_sets = middle.multiselect("Prompt sets (empty: all)", [s["name"] for s in items.prompt_sets(db)])
        name = right.text_input("Version name", placeholder="sft-<date>-<time>")
        if st.form_submit_button("Start fine-tuning", type="primary"):
            config = SFTConfig(generator_version=generator["id"], epochs=int(epochs), learning_rate=float(learning_rate),
                               batch_size=int(batch_size), lora=lora, prompt_sets=",".join(prompt_sets), name=name.strip())
            job_id = jobs.start_job(db_path(), "sft", asdict(config))
            flash("success", f"Fine-tuning started as job {job_id}.")
            st.rerun()
