"""Demonstrations (import, export) and supervised fine-tuning of the generator on them."""

import streamlit as st

from data import demonstrations, importing, items, versions
from data.store import StoreBusy
from policy.config import SFTConfig
from training import quantization, sharding_problem
from ui.jobs import (activate_checkbox, checkpointing_checkbox, latest_job, launch, processes_input, quantize_input,
                     refused, strategy_input, version_picker)
from ui.session import admin_download, flash, screen

SFT_CHARTS = {"Loss": ["train/loss", "val/loss"]}


def import_form(db, user) -> None:
    with st.form("import-demonstrations", clear_on_submit=True):
        upload = st.file_uploader("Import demonstrations (.jsonl: prompt + response, or chat messages)", type=["jsonl", "json"])
        prompt_set = st.text_input("Prompt set", value="demonstrations")
        if st.form_submit_button("Import demonstrations") and upload:
            try:
                rows = demonstrations.parse_demonstrations(upload.getvalue())
                flash("success", f"Imported: {demonstrations.import_demonstrations(db, rows, prompt_set.strip(), actor=user)}")
            except (importing.BadImportFile, ValueError, StoreBusy) as error:
                flash("error", f"Import failed: {error}")
            st.rerun()


def train_form(db) -> None:
    defaults = SFTConfig()
    lora = st.checkbox("LoRA adapter", defaults.lora, key="sft-lora",  # outside the form: the learning rate follows it
                       help=f"on: an adapter, the learning rate's default {SFTConfig.LEARNING_RATES[True]:.0e}")
    with st.form("train-sft"):
        generator = version_picker(st, "Start from generator", versions.list_versions(db, "generator"))
        left, middle, right = st.columns(3)
        epochs = left.number_input("Epochs (at most)", 1, 100, defaults.epochs)
        learning_rate = middle.number_input("Learning rate", 1e-7, 1e-2, SFTConfig.LEARNING_RATES[lora], format="%.1e")
        batch_size = right.number_input("Demonstrations per step", 1, 256, defaults.batch_size)
        left, right = st.columns(2)
        prompt_sets = left.multiselect("Prompt sets (empty: all)", [s["name"] for s in items.prompt_sets(db)])
        name = right.text_input("Version name", placeholder="sft-<date>-<time>", help="letters, digits, '.', '_' and '-'")
        activate = activate_checkbox(st)
        low_memory = checkpointing_checkbox(st)
        left, middle, right = st.columns(3)
        processes, strategy, quantize = processes_input(left), strategy_input(middle), quantize_input(right)
        if st.form_submit_button("Start fine-tuning", type="primary"):
            if refused(sharding_problem(strategy, lora)) or refused(quantization.problem(quantize, lora, strategy)):
                return
            launch("sft", SFTConfig(generator_version=generator["id"], epochs=int(epochs), learning_rate=float(learning_rate),
                                    batch_size=int(batch_size), lora=lora, prompt_sets=list(prompt_sets), name=name.strip(),
                                    activate=activate, gradient_checkpointing=low_memory, processes=processes, strategy=strategy,
                                    quantize=quantize),
                   "Fine-tuning")


with screen("Demonstrations & SFT") as (db, user):
    count = items.counts(db)["demonstrations"]
    st.markdown(f"**{count:,} demonstrations** (written, edited from a completion, or imported)")
    left, right = st.columns(2)
    with left:
        import_form(db, user)
    right.download_button("Download for TRL's SFTTrainer (messages .jsonl)", admin_download(db, demonstrations.messages_jsonl, "demonstrations.jsonl"),
                          "demonstrations.jsonl", disabled=not count, on_click="ignore")
    train_form(db)
    latest_job(db, "sft", SFT_CHARTS, "sft")
