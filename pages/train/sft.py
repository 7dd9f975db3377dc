"""Demonstrations (import, export) and supervised fine-tuning of the generator on them."""

import streamlit as st

from data import demonstrations, importing, items, versions
from data.store import StoreBusy
from policy.config import SFTConfig
from training import quantization, sharding_problem
from training.gate import FINE_TUNE, held_out_shortfall, too_few_demonstrations
from ui.jobs import (activate_checkbox, capitalised, checkpointing_checkbox, latest_job, launch, processes_input, quantize_input,
                     refused, strategy_input, version_picker)
from ui.session import admin_download, flash, screen
from ui.text import inline

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


def demonstrations_to_learn_from(db) -> tuple[list[str], str | None]:
    """The prompt sets, above the form so that the count and the warnings follow them (a field inside a form changes
    nothing until sent); and why a run could not start on them (None: it can)."""
    defaults = SFTConfig()
    prompt_sets = st.multiselect("Prompt sets (empty: all)", [s["name"] for s in items.prompt_sets(db)], key="sft-sets")
    counts = demonstrations.training_counts(db, prompt_sets)
    n, prompts = counts["demonstrations"], counts["prompts"]
    st.markdown(f"Fine-tunes on **{n:,} demonstration{'s' if n != 1 else ''}** of {prompts:,} prompt{'s' if prompts != 1 else ''}"
                + (f" in {inline(', '.join(prompt_sets))}" if prompt_sets else "") + ", a share of "
                f"{defaults.validation_fraction:g} of the prompts held out for the validation loss its gate reads.")
    if problem := too_few_demonstrations(n, prompts, prompt_sets):
        st.warning(capitalised(problem) + ".")
    elif shortfall := held_out_shortfall(n, prompts, defaults.validation_fraction, FINE_TUNE):
        st.warning(capitalised(shortfall) + ".")
    return prompt_sets, problem


def train_form(db, prompt_sets: list[str], problem: str | None) -> None:
    defaults = SFTConfig()
    lora = st.checkbox("LoRA adapter", defaults.lora, key="sft-lora",  # outside the form: the learning rate follows it
                       help=f"on: an adapter, the learning rate's default {SFTConfig.LEARNING_RATES[True]:.0e}")
    with st.form("train-sft"):
        generator = version_picker(st, "Start from generator", versions.list_versions(db, "generator"))
        left, middle, right = st.columns(3)
        epochs = left.number_input("Epochs (at most)", 1, 100, defaults.epochs)
        learning_rate = middle.number_input("Learning rate", 1e-7, 1e-2, SFTConfig.LEARNING_RATES[lora], format="%.1e")
        batch_size = right.number_input("Demonstrations per step", 1, 256, defaults.batch_size)
        name = st.text_input("Version name", placeholder="sft-<date>-<time>", help="letters, digits, '.', '_' and '-'")
        activate = activate_checkbox(st)
        low_memory = checkpointing_checkbox(st)
        left, middle, right = st.columns(3)
        processes, strategy, quantize = processes_input(left), strategy_input(middle), quantize_input(right)
        if st.form_submit_button("Start fine-tuning", type="primary"):
            if refused(problem) or refused(sharding_problem(strategy, lora)) or refused(quantization.problem(quantize, lora, strategy)):
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
    train_form(db, *demonstrations_to_learn_from(db))
    latest_job(db, "sft", SFT_CHARTS, "sft")
