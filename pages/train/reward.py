"""Reward model: train one on the rankings, watch it train, pick the active one, inspect its scores."""

import pandas as pd
import streamlit as st

from data import annotation, items, review, uncertainty, versions
from rm.config import EMBEDDED_ENCODER, RewardConfig
from training.diagnostics import reward_model_verdict
from training.gate import (MAX_HELD_OUT_SHARE, MIN_HELD_OUT_RANKINGS, could_fall_short, held_out_shortfall,
                           nothing_to_learn, span, too_few_held_out_rankings)
from ui.jobs import (activate_checkbox, activation_confirmed, capitalised, checkpointing_checkbox, gate_override, latest_job,
                     launch, processes_input, rankings_counted, refused, strategy_input, version_picker)
from ui.models import reward_scorer
from ui.session import flash, require, screen
from ui.text import inline

BACKBONES = {
    EMBEDDED_ENCODER: "all-MiniLM-L6-v2 (encoder, embedded, fast)",
    "embedded:SmolLM2-135M-Instruct": "SmolLM2-135M-Instruct (decoder, the generator's family)",
    "other": "another Hugging Face id or local folder…",
}
TRAINING_CHARTS = {"Loss": ["train/loss", "val/loss"], "Pairwise accuracy": ["train/accuracy", "val/accuracy"]}


def train_form(db) -> None:
    defaults = RewardConfig()
    # above the form, so that the count and the warnings follow them (a field inside a form changes nothing until sent)
    left, middle, right = st.columns([2, 2, 1])
    prompt_sets = left.multiselect("Prompt sets (empty: all)", [s["name"] for s in items.prompt_sets(db)], key="rm-sets")
    annotators = middle.multiselect("Annotators (empty: all)", annotation.annotator_names(db, ranked=True), key="rm-annotators")
    validation_fraction = right.number_input("Held-out share of prompts", 0.05, MAX_HELD_OUT_SHARE, defaults.validation_fraction,
                                             0.05, key="rm-held-out", help="the prompts whose rankings evaluate the model "
                                             "(the gate reads their accuracy); a prompt's rankings are held out together")
    counts = review.training_counts(db, prompt_sets, annotators)
    rankings, besides = rankings_counted(counts, review.all_tied(db, prompt_sets, annotators), "Learn from ties (Davidson)")
    of = (f" of {inline(', '.join(prompt_sets))}" if prompt_sets else "") + (f" by {inline(', '.join(annotators))}" if annotators else "")
    if not of:  # the comparisons are counted for all rankings only: one bracket with what is said beside them
        of, besides = "", f" ({counts['comparisons']:,} comparisons" + (f"; {besides[2:]}" if besides else ")")
    st.markdown(f"**Train** on {rankings}{of}{besides}. Defaults work; the split is by prompt.")
    problem = nothing_to_learn(counts["rankings"], review.training_prompts(db, prompt_sets, at_most=2, annotators=annotators),
                               prompt_sets, annotators)
    if problem:
        st.warning(capitalised(problem) + ".")
    elif could_fall_short(counts["rankings"], validation_fraction) and (shortfall := held_out_shortfall(
            counts["rankings"], review.training_prompts(db, prompt_sets, annotators=annotators), validation_fraction)):
        st.warning(capitalised(shortfall) + ".")
    with st.form("train-rm"):
        choice = st.selectbox("Backbone", list(BACKBONES), format_func=BACKBONES.get)
        other = st.text_input("Hugging Face id or folder (for 'another')", placeholder="e.g. /models/deberta-v3-base")
        left, middle, right = st.columns(3)
        epochs = left.number_input("Epochs", 1, 50, defaults.epochs)
        learning_rate = middle.number_input("Learning rate", 1e-7, 1e-2, defaults.learning_rate, format="%.1e")
        batch_size = right.number_input("Completions per step", 2, 256, defaults.batch_size)
        left, middle, _ = st.columns(3)
        max_length = left.number_input("Max tokens", 16, 4096, defaults.max_length, 16)
        seed = middle.number_input("Seed", 0, 2**31 - 1, defaults.seed)
        name = st.text_input("Version name (empty: rm-<date>-<time>)", help="letters, digits, '.', '_' and '-'")
        weighted = st.checkbox("Weight rankings by reliability", help="each ranking counts by its annotator's training weight "
                    "(Quality → Annotators: agreement with the others, gold accuracy, self-agreement); off: all count the same")
        ties = st.checkbox("Learn from ties (Davidson)", help="a tie (A = B) pulls the two rewards together and the model "
                           "learns how often people tie; off: ties give no pair (Bradley-Terry, as TRL)")
        curve = st.checkbox("Learning curve", help="also trains on a quarter and a half of the training prompts (about 75% "
                                                   "more time), to show whether accuracy still rises with more rankings")
        activate = activate_checkbox(st)
        low_memory = checkpointing_checkbox(st)
        left, right, _ = st.columns(3)
        processes, strategy = processes_input(left), strategy_input(right)
        if st.form_submit_button("Start training", type="primary"):
            if refused(problem):
                return
            backbone = other.strip() if choice == "other" else choice
            if not backbone:
                flash("error", "Type a Hugging Face id or a folder for the backbone.")
                st.rerun()
            launch("train_rm", RewardConfig(backbone=backbone, epochs=int(epochs), learning_rate=float(learning_rate),
                                            batch_size=int(batch_size), max_length=int(max_length),
                                            validation_fraction=float(validation_fraction), seed=int(seed),
                                            prompt_sets=list(prompt_sets), annotators=list(annotators), name=name.strip(),
                                            weighting="reliability" if weighted else "none",
                                            ties="davidson" if ties else "ignore", learning_curve=curve,
                                            activate=activate, gradient_checkpointing=low_memory, processes=processes, strategy=strategy),
                   "Reward-model training")


def models_list(db) -> None:
    models = versions.list_versions(db, "reward")
    st.markdown("**Reward models**")
    if not models:
        st.caption("None yet: train one above.")
        return
    percent = lambda share: None if share is None else 100 * share  # noqa: E731  "59", as every other screen's 59%
    st.dataframe(pd.DataFrame([{
        "id": v["id"], "name": v["name"], "active": v["is_active"], "backbone": v["config"].get("backbone"),
        "validation accuracy %": percent(v["metrics"].get("val/accuracy")),
        "length-only rule %": percent(v["metrics"].get("val/length_rule_accuracy")), "validation loss": v["metrics"].get("val/loss"),
        "train pairs": v["metrics"].get("train/pairs"), "held-out pairs": v["metrics"].get("val/pairs"),
        "ties": v["config"].get("ties", "ignore"), "held-out tie share %": percent(v["metrics"].get("val/tie_share")),
        "predicted tie share %": percent(v["metrics"].get("val/tie_predicted")),
        "created": v["created_at"][:19]} for v in models]), hide_index=True, placeholder="—",
        column_config={column: st.column_config.NumberColumn(format="%.0f") for column in
                       ("validation accuracy %", "length-only rule %", "held-out tie share %", "predicted tie share %")})
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    chosen = version_picker(left, "Active reward model", models)
    if right.button("Make active", disabled=not activation_confirmed(chosen)):
        versions.set_active(db, chosen["id"], actor=require(db, "admin"), override=gate_override(chosen))
        message = f"{chosen['name']} is now the active reward model."
        if job_id := uncertainty.score_in_background(db):  # the least-certain-first queues follow the active model
            message += f" Job {job_id} scores the least-certain-first queues with it: follow it under Jobs."
        flash("success", message)
        st.rerun()
    active = versions.active_version(db, "reward")
    if active and "val/accuracy_ci" in active["metrics"]:
        m = active["metrics"]
        left, middle, right = st.columns(3)
        left.metric("Held-out accuracy", f"{m['val/accuracy']:.0%} (n={m.get('val/pairs', '?')})",
                    help=f"pairs of held-out prompts the reward model orders as people did: {m.get('val/pairs', '?')} pairs "
                         f"from {m.get('val/rankings', '?')} rankings")
        middle.metric("95% interval", "too few to tell" if too_few_held_out_rankings(m) else span(*m["val/accuracy_ci"]),
                      help=f"resampling whole held-out rankings (from {MIN_HELD_OUT_RANKINGS} of them)")
        right.metric(f"\"The {m['val/length_rule']} answer wins\"", f"{m['val/length_rule_accuracy']:.0%}",
                     help="a length-only rule on the same pairs: how much of the reward model could be length")
        for good, line in reward_model_verdict(m):
            (st.success if good else st.warning)(line)
        if m.get("val/learning_curve"):
            st.caption("Learning curve: held-out accuracy against the rankings trained on (the same held-out prompts)")
            st.line_chart(pd.DataFrame(m["val/learning_curve"]).set_index("rankings")["accuracy"], height=220)
    if active and active["metrics"].get("calibration"):
        left, right = st.columns(2)
        left.caption("Calibration on held-out pairs: predicted P(better) against how often humans agreed, each pair in "
                     "both orders (A over B and B over A), so the buckets cover 0 to 1")
        left.dataframe(pd.DataFrame(active["metrics"]["calibration"]).rename(columns={"pairs": "pairs x 2 orders"}).round(3),
                       hide_index=True, placeholder="—")
        right.caption("Reward distribution on held-out completions (deciles)")
        quantiles = pd.DataFrame({"percentile": range(0, 101, 10), "reward": active["metrics"]["reward/quantiles"]})
        right.bar_chart(quantiles, x="percentile", y="reward", height=220)  # a numeric axis: 0, 10, ..., 100


def inspect(db) -> None:
    active = versions.active_version(db, "reward")
    st.markdown("**Inspect the active reward model**")
    if active is None:
        st.caption("No active reward model yet.")
        return
    ranked = items.ranked_items(db, limit=200)
    if not ranked:
        st.caption("No ranked items yet.")
        return
    item = st.selectbox("Ranked item", ranked, format_func=lambda r: f"#{r['id']} · {r['prompt'][:80]}")
    if not st.toggle("Score it with the reward model", help="loads the model (a few seconds the first time)"):
        return
    from rm.score import held_out_agreement, item_rewards  # torch: imported only when a model is asked for

    scorer = reward_scorer(active["path"])
    st.dataframe(pd.DataFrame(item_rewards(db, scorer, item["id"])), hide_index=True, placeholder="—")
    if st.button("Measure agreement with human rankings on held-out prompts"):
        result = held_out_agreement(db, scorer)
        if result["pairs"]:
            st.metric("Held-out pairwise agreement", f"{result['accuracy']:.1%} (n={result['pairs']})",
                      help=f"{result['pairs']} pairs from {result['rankings']} rankings")
        else:
            st.info("No rankings of held-out prompts yet.")


with screen("Reward model") as (db, user):
    train_form(db)
    latest_job(db, "train_rm", TRAINING_CHARTS, "reward")
    st.divider()
    models_list(db)
    st.divider()
    inspect(db)
