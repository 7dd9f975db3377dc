"""Preference optimisation (DPO): train the generator straight from the rankings, no reward model in between."""

import pandas as pd
import streamlit as st

from data import annotation, items, review, versions
from policy.config import DPOConfig
from training import quantization, sharding_problem
from training.diagnostics import verdict
from training.gate import MIN_PAIRS, nothing_to_learn, prompts_that_count, win_pairs_shortfall
from ui.jobs import (activate_checkbox, capitalised, checkpointing_checkbox, latest_job, launch, processes_input, quantize_input,
                     rankings_counted, refused, strategy_input, version_label, version_picker)
from ui.session import screen
from ui.text import inline

LOSSES = {"sigmoid": "DPO (sigmoid)", "ipo": "IPO (squared)"}
DPO_CHARTS = {"Loss": ["train/loss", "val/loss"], "Pair accuracy of the implicit reward": ["train/accuracy", "val/accuracy"],
              "Implicit reward margin": ["train/reward_margin", "val/reward_margin"],
              "KL to start (held-out samples, the budget's checks)": ["val/kl"]}
VERSION_COLUMNS = {"val/accuracy_before": "held-out pair accuracy before", "val/accuracy": "after",
                   "val/logp_margin": "log-prob margin", "val/kl": "KL to start", "val/win_rate": "reward-model win rate",
                   "val/lc_win_rate": "at similar length", "kl_budget/spent": "stopped at the KL budget",
                   "train/pairs": "training pairs"}


def rankings_to_learn_from(db) -> tuple[list[str], list[str], int, str | None]:
    """The prompt sets, annotators and held-out samples, above the form so that the count and the warnings follow them
    (a field inside a form changes nothing until the form is sent); and why a run could not start on them (None: it can)."""
    defaults = DPOConfig()
    left, middle, right = st.columns([2, 2, 1])
    prompt_sets = left.multiselect("Prompt sets (empty: all)", [s["name"] for s in items.prompt_sets(db)], key="dpo-sets")
    annotators = middle.multiselect("Annotators (empty: all)", annotation.annotator_names(db, ranked=True), key="dpo-annotators")
    eval_samples = right.number_input(
        "Samples per held-out prompt", 0, 32, defaults.eval_samples, key="dpo-samples",
        help=f"answers sampled per held-out prompt (a fifth of the ranked prompts, at most {DPOConfig.EVAL_PROMPTS}) for "
             f"the KL checks and the win rate against the start; the gate needs {MIN_PAIRS} pairs or more; 0: no "
             "sampled evaluation")
    counts = review.training_counts(db, prompt_sets, annotators)
    rankings, besides = rankings_counted(counts, review.all_tied(db, prompt_sets, annotators), "Learn from ties")
    st.markdown(f"Learns from the **{rankings}**{besides} of " + (inline(", ".join(prompt_sets)) if prompt_sets else "every set")
                + (f" by {inline(', '.join(annotators))}" if annotators else "") + " directly: every pair a ranking "
                "implies, the reference being the starting generator. The Policy update screen compares any trained "
                "generator with where it started.")
    share, most = defaults.validation_fraction, DPOConfig.EVAL_PROMPTS
    prompts = review.training_prompts(db, prompt_sets, at_most=2, annotators=annotators)
    if problem := nothing_to_learn(counts["rankings"], prompts, prompt_sets, annotators):
        st.warning(capitalised(problem) + ".")
    elif versions.active_version(db, "reward") is not None and (shortfall := win_pairs_shortfall(
            review.training_prompts(db, prompt_sets, at_most=prompts_that_count(share, most), annotators=annotators,
                                    with_pairs=True),
            int(eval_samples), share, most)):  # held out from the prompts with a pair: all-tied rankings give none
        st.warning(capitalised(shortfall) + ".")
    return prompt_sets, annotators, int(eval_samples), problem


def train_form(db, prompt_sets: list[str], annotators: list[str], eval_samples: int, problem: str | None) -> None:
    defaults = DPOConfig()
    lora = st.checkbox("LoRA adapter", defaults.lora, key="dpo-lora",  # outside the form: the learning rate follows it
                       help=f"off: a full fine-tune, the learning rate's default {DPOConfig.LEARNING_RATES[False]:.0e}")
    with st.form("train-dpo"):
        generator = version_picker(st, "Start from generator (also the reference)", versions.list_versions(db, "generator"))
        left, middle, right = st.columns(3)
        loss = left.selectbox("Loss", list(LOSSES), format_func=LOSSES.get)
        beta = middle.number_input("β", 0.001, 10.0, defaults.beta, 0.05, help="how far from the reference a preference may pull")
        epochs = right.number_input("Epochs", 1, 100, defaults.epochs)
        left, middle, right = st.columns(3)
        learning_rate = left.number_input("Learning rate", 1e-8, 1e-2, DPOConfig.LEARNING_RATES[lora], format="%.1e")
        rankings_per_step = middle.number_input("Rankings per step", 1, 512, defaults.rankings_per_step)
        name = right.text_input("Version name", placeholder="dpo-<date>-<time>", help="letters, digits, '.', '_' and '-'")
        left, right = st.columns([1, 2])
        kl_budget = left.number_input(
            "KL budget (0: none)", 0.0, 1000.0, defaults.kl_budget, 0.5,
            help="the most KL to the start the run may spend, in nats per sampled answer on held-out prompts, checked "
                 f"up to {defaults.kl_checks} times (fewer on a run of fewer steps); past it, training stops and keeps "
                 "the last weights within it. The default "
                 "is where answers still made sense in the closed-loop sweep (bench/README.md)")
        right.caption("Defaults from the closed-loop sweep: learning rate 1.5e-4 with LoRA, 3 epochs, β 0.1 reached a "
                      "win rate of 77% (84% at similar length) at a KL of 2 nats per answer; twice the rate won more at "
                      "KL 8 with answers losing sense.")
        left, right = st.columns(2)
        margin_weight = left.checkbox("Weight pairs by rank gap", defaults.margin_weight,
                                       help="D > C > A: D>A counts twice as much as D>C")
        weighted = right.checkbox("Weight rankings by reliability", help="each ranking counts by its annotator's training weight "
                    "(Quality → Annotators: agreement with the others, gold accuracy, self-agreement); off: all count the same")
        ties = left.checkbox("Learn from ties", help="a tie (A = B) counts as a preference of probability 1/2, pulling "
                              "the two answers' log-ratios together; off: ties give no pair")
        spot_check_checkpoints = right.checkbox(
            "People spot-check each KL check", defaults.spot_check_checkpoints,
            help=f"with an active reward model, each of the {defaults.kl_checks} checks also measures the win rate and "
                 "queues its favourite pairs for people, as the final version's are: Policy "
                 "update → Compare then charts people's agreement against √KL per checkpoint (slower: a full "
                 "evaluation each time)")
        spot_check = left.number_input(
            "Pairs people spot-check", 0, 64, defaults.spot_check,
            help="with an active reward model: the held-out pairs it prefers the new answer on most, queued for people "
                 "to rank (per checkpoint); the version is not made active while they disagree with it. 0: none")
        activate = activate_checkbox(st)
        low_memory = checkpointing_checkbox(st)
        left, middle, right = st.columns(3)
        processes, strategy, quantize = processes_input(left), strategy_input(middle), quantize_input(right)
        if st.form_submit_button("Start preference optimisation", type="primary"):
            if refused(problem) or refused(sharding_problem(strategy, lora)) or refused(quantization.problem(quantize, lora, strategy)):
                return
            launch("dpo", DPOConfig(generator_version=generator["id"], prompt_sets=list(prompt_sets),
                                    annotators=list(annotators), loss=loss,
                                    beta=float(beta), epochs=int(epochs), learning_rate=float(learning_rate),
                                    rankings_per_step=int(rankings_per_step), lora=lora, margin_weight=margin_weight,
                                    kl_budget=float(kl_budget), eval_samples=int(eval_samples),
                                    weighting="reliability" if weighted else "none", ties="equal" if ties else "ignore",
                                    spot_check=int(spot_check), spot_check_checkpoints=spot_check_checkpoints,
                                    name=name.strip(), activate=activate,
                                    gradient_checkpointing=low_memory, processes=processes, strategy=strategy,
                                    quantize=quantize),
                   "Preference optimisation")


def trained_versions(db) -> None:
    st.markdown("**Generators trained by preference optimisation**")
    trained = [v for v in versions.list_versions(db, "generator") if "val/accuracy_before" in v["metrics"]]
    if not trained:
        st.caption("None yet.")
        return
    rows = [{"version": version_label(v), **{label: v["metrics"].get(key) for key, label in VERSION_COLUMNS.items()}}
            for v in trained[::-1]]
    st.dataframe(pd.DataFrame(rows), hide_index=True, placeholder="—")
    for good, line in verdict(trained[-1]["metrics"]):
        (st.success if good else st.warning)(f"{trained[-1]['name']}: {line}")
    st.page_link("pages/train/policy.py", icon=":material/compare_arrows:",
                 label="Compare one with where it started, and generate the next round with it: Policy update → Compare")


with screen("Preference optimisation (DPO)") as (db, user):
    if versions.active_version(db, "reward") is None:
        st.info("No reward model is active: a run's win rate against its start cannot be measured, so the gate cannot "
                "make it active on its own. Make it active on Models once you have read what it writes, or train a "
                "reward model first (Train → Reward model).")
    train_form(db, *rankings_to_learn_from(db))
    latest_job(db, "dpo", DPO_CHARTS, "dpo")
    st.divider()
    trained_versions(db)
