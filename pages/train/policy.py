"""Policy update: train the generator against the reward model (or an AI judge), watch it, compare before/after, use it."""

import time

import altair as alt
import pandas as pd
import streamlit as st

from data import generators, items, spot_checks, versions
from policy.config import (JUDGED_K, PolicyConfig, evaluation_pairs_problem, held_out_default, held_out_problem, next_round_of,
                           token_cap_problem)
from training import sharding_problem
from training.diagnostics import reward_model_verdict, verdict
from training.gate import MIN_PAIRS, evaluation_summary, gate_for
from ui.jobs import (activate_checkbox, checkpointing_checkbox, latest_job, launch, processes_input, refused,
                     round_settings, strategy_input, version_label, version_picker, win_rate_text)
from ui.session import screen, show_flash
from ui.text import inline

RANKED_CAP = "ranked-cap"  # (cap, when read) for this session
REWARD_MODEL, LOCAL_JUDGE = "Reward model", "AI judge: a local generator version"
NEXT_ROUND = "next-round"  # where the next round's message shows: beside its button
ALGORITHMS = {"rloo": "RLOO (leave-one-out baseline)", "reinforce": "REINFORCE (moving-average baseline)", "ppo": "PPO (clipped, value head, GAE)",
              "grpo": "GRPO (group-normalised advantages)", "dr_grpo": "Dr. GRPO (group mean, no length bias)"}
TRAINING_CHARTS = {"Reward": ["reward/mean"], "KL to start before each update (a batch's estimate: 0 at step 1, may dip below 0)": ["policy/kl"], "Entropy": ["policy/entropy"], "Length": ["policy/length"],
                   "Reward-length correlation": ["policy/reward_length_corr"], "Ended before the cap": ["policy/ended"]}
EVAL_METRICS = [("Reward before", "val/reward_before", "{:.3f}"), ("Reward after", "val/reward_after", "{:.3f}"),
                ("Win rate vs start", "val/win_rate", "{:.0%}"), ("KL to start", "val/kl", "{:.3f}")]



def examples_frame(examples: list[dict]) -> pd.DataFrame:
    """The evaluation's examples, an answer cut at the token cap marked so (newer evaluations say which were)."""
    frame = pd.DataFrame(examples)
    for side in ("before", "after"):
        if f"{side}_ended" in frame:
            frame[side] = [text if ended else f"{text} … [cut at the token cap]" for text, ended in zip(frame[side], frame[f"{side}_ended"])]
    return frame

def ranked_completions_cap(db) -> int:
    """The longest token cap the ranked completions were sampled with (0: unknown). It reads every ranked item's
    completions, so a session re-reads it at most once a minute, not on every run of this screen."""
    cached = st.session_state.get(RANKED_CAP)
    if cached is None or time.monotonic() - cached[1] > 60:
        cached = (items.ranked_generation_limits(db)["max_new_tokens"] or 0, time.monotonic())
        st.session_state[RANKED_CAP] = cached
    return cached[0]


def reward_sources(db, rewards: list[dict]) -> dict[str, str | None]:
    """What can reward a policy update, by label: the reward model (None), or an AI judge (its remote name; '' a local
    generator version)."""
    remotes = {f"AI judge: {g.name} (remote)": g.name for g in generators.remote_generators(db)}
    return {**({REWARD_MODEL: None} if rewards else {}), **remotes, LOCAL_JUDGE: ""}


def what_it_rewards(reward: dict) -> None:
    """Before a run: the picked reward model's own warnings (the Reward model screen's), when it did not pass its gate
    or may reward length: a policy update learns whatever the reward model rewards."""
    passes, why = gate_for(reward)
    concerns = [line for good, line in reward_model_verdict(reward["metrics"]) if not good]
    if passes and not concerns:
        return
    which = ", the active reward model" + ("" if passes else ", made active below its gate") if reward["is_active"] else \
        ("" if passes else ", below its gate")
    st.warning(inline(" ".join([f"The rewards come from {reward['name']}{which}" + ("." if passes or concerns else f": {why}."),
                                *concerns, "A policy update learns whatever it rewards."])))


def train_form(db) -> None:
    rewards = versions.list_versions(db, "reward")
    defaults = PolicyConfig()
    if not rewards:
        st.info("No reward model yet: train one on your annotators' rankings (Train → Reward model), or let an AI judge "
                "give the reward below (Quality → Agreement measures how often a judge agrees with your annotators).")
    ranked_cap = ranked_completions_cap(db)
    prompts_in = {s["name"]: s["prompts"] for s in items.prompt_sets(db)}
    sources = reward_sources(db, rewards)
    left, right = st.columns(2)  # outside the form: the held-out default and the reward's fields follow these
    prompt_set = left.selectbox("Prompt set", spot_checks.spot_check_sets_last(list(prompts_in)), key="policy-set",
                                help="the prompts the policy update samples answers to; its last prompts are held out")
    source = right.selectbox("Reward", list(sources), key="policy-reward",
                             help="the reward model's score, or an AI judge: it ranks each prompt's K answers together "
                                  "several times (letters shuffled), and an answer's reward is its share of the others "
                                  "it beat. A judge is slower (a critique per vote) and only as good as its agreement "
                                  "with people")
    lora = left.checkbox("LoRA adapter", defaults.lora, key="policy-lora",  # the learning rate's default follows it
                         help=f"off: a full fine-tune, the learning rate's default {PolicyConfig.LEARNING_RATES[False]:.0e}")
    judge_remote = sources[source]
    reward = None
    if judge_remote is None:  # outside the form too: the warning follows the reward model picked
        reward = version_picker(right, "Reward model", rewards, key="policy-reward-version")
        what_it_rewards(reward)
    judged = judge_remote is not None
    if judged:
        st.caption("A judge is only as good as its agreement with your annotators: measure it first (Quality → "
                   "Agreement, *AI judge*). The embedded 135M generator wrote a readable ranking in 5% of its votes and "
                   "agreed with people at chance (bench/README.md); a larger or remote model is needed.")
    with st.form("train-policy"):
        left, right = st.columns(2)
        generator = version_picker(left, "Start from generator", versions.list_versions(db, "generator"))
        judge = None
        if judge_remote == "":
            judge = version_picker(right, "Judge (a generator version)", versions.list_versions(db, "generator"))
        judge_votes = right.number_input("Judge's votes per prompt", 1, 16, defaults.judge_votes, disabled=not judged,
                                         help="rankings of each prompt's K answers, letters shuffled each time, averaged")
        algorithm = left.selectbox("Algorithm", list(ALGORITHMS), format_func=ALGORITHMS.get)
        left, middle, right = st.columns(3)
        steps = left.number_input("Steps", 1, 10_000, defaults.steps)
        k = middle.number_input("Samples per prompt (K)", 2, JUDGED_K if judged else 16, defaults.k,
                                help=f"at most {JUDGED_K} with a judge: it ranks K new and K starting answers together "
                                     "when evaluating" if judged else None)
        prompts_per_step = right.number_input("Prompts per step", 1, 256, defaults.prompts_per_step)
        left, middle, right = st.columns(3)
        learning_rate = left.number_input("Learning rate", 1e-7, 1e-2, PolicyConfig.LEARNING_RATES[lora], format="%.1e")
        kl_coef = middle.number_input("KL coefficient β", 0.0, 10.0, defaults.kl_coef, 0.01)
        max_new_tokens = right.number_input(
            "Max new tokens", 8, 1024, max(defaults.max_new_tokens, min(ranked_cap, 1024)), 8,
            help=f"at least the cap the ranked completions were sampled with ({ranked_cap or 'unknown'}) when a reward "
                 "model rewards the update: a shorter cap cuts answers where the reward model never saw them cut")
        left, right = st.columns(2)
        eval_prompts = left.number_input(
            "Held-out prompts", 0, 1000, held_out_default(prompts_in.get(prompt_set, 0), defaults.eval_prompts),
            help=f"the set's last prompts, kept out of training for the before/after evaluation ({defaults.eval_prompts}, "
                 "or a quarter of a small set); each gives K pairs, and the gate needs 30")
        name = right.text_input("Version name", placeholder="policy-<date>-<time>", help="letters, digits, '.', '_' and '-'")
        left, middle, right = st.columns(3)
        spot_check = left.number_input("Pairs people spot-check", 0, 64, defaults.spot_check,
                                       help="held-out pairs the reward prefers the new answer on most, queued for "
                                            "people to rank (per checkpoint); the version is not made active while "
                                            "they disagree with the reward. 0: none")
        spot_check_every = middle.number_input(
            "…also every N steps", 0, 10_000, defaults.spot_check_every,
            help="0: only the final version's pairs. N: every N steps the policy as it is then is evaluated and its "
                 "pairs queued too, and this screen charts people's agreement against √KL per checkpoint (an "
                 "evaluation each time: slower)")
        left, middle, _ = st.columns(3)
        processes, strategy = processes_input(left), strategy_input(middle)
        activate = activate_checkbox(st)
        low_memory = checkpointing_checkbox(st)
        if st.form_submit_button("Start policy update", type="primary"):
            if (refused(held_out_problem(prompts_in[prompt_set], int(eval_prompts))) or refused(sharding_problem(strategy, lora))
                    or not judged and refused(token_cap_problem(int(max_new_tokens), min(ranked_cap, 1024)))):
                return
            if activate and refused(evaluation_pairs_problem(int(eval_prompts), int(k), True, prompts_in[prompt_set])):
                return
            if int(prompts_per_step) % processes:
                st.error(f"{int(prompts_per_step)} prompts per step cannot be shared equally by {processes} processes: "
                         f"use a multiple of {processes}.")
                return
            launch("train_policy", PolicyConfig(
                algorithm=algorithm, generator_version=generator["id"], reward_version=reward and reward["id"],
                judge_remote=judge_remote or "", judge_version=judge and judge["id"], judge_votes=int(judge_votes), prompt_set=prompt_set,
                steps=int(steps), k=int(k), prompts_per_step=int(prompts_per_step), learning_rate=float(learning_rate),
                kl_coef=float(kl_coef), max_new_tokens=int(max_new_tokens), lora=lora, eval_prompts=int(eval_prompts),
                name=name.strip(), activate=activate, gradient_checkpointing=low_memory, processes=processes,
                strategy=strategy, spot_check=int(spot_check), spot_check_every=int(spot_check_every)), "Policy update",
                note=evaluation_pairs_problem(int(eval_prompts), int(k), prompts=prompts_in[prompt_set]))


def agreement_by_kl(checkpoints: list[dict]) -> None:
    """People's agreement with the reward per checkpoint against sqrt(KL) to the start: over-optimisation (Gao et al.)
    shows as agreement falling while the policy moves away."""
    by = checkpoints[0]["by"]
    table = pd.DataFrame([{"step": c["step"], "√KL": max(c["kl"] or 0.0, 0.0) ** 0.5, "agreement": c["agreement"],
                           "low": c["low"], "high": c["high"], "rankings": c["rankings"], "pairs": c["pairs"]}
                          for c in checkpoints if c["rankings"]])
    waiting = [f"step {c['step']}" for c in checkpoints if not c["rankings"]]
    st.caption(f"People's agreement with {by} on its favourite pairs at each checkpoint, against √KL to the starting "
               "generator, with 95% intervals: agreement that falls as √KL grows means the policy is learning to please "
               f"{by} rather than people. Below the dashed line people prefer the starting answers."
               + (f" No rankings yet at {', '.join(waiting)}." if waiting else ""))
    if table.empty:
        return
    base = alt.Chart(table).encode(x=alt.X("√KL:Q", title="√KL to the start (nats^½)"))
    interval = base.mark_rule().encode(y=alt.Y("low:Q", scale=alt.Scale(domain=[0, 1]), title="people agree"), y2="high:Q")
    points = base.mark_line(point=True).encode(y="agreement:Q", order="step:Q", tooltip=[  # joined in step order
        "step", alt.Tooltip("√KL:Q", format=".2f"), alt.Tooltip("agreement:Q", format=".0%"), "rankings", "pairs"])
    labels = base.mark_text(dx=8, dy=-8, align="left").encode(y="agreement:Q", text=alt.Text("label:N"))
    chance = alt.Chart(pd.DataFrame({"y": [spot_checks.GAMED_BELOW]})).mark_rule(strokeDash=[4, 4]).encode(y="y:Q")
    st.altair_chart(interval + points + labels.transform_calculate(label="'step ' + datum.step") + chance, width="stretch")


def compare_and_use(db) -> None:
    trained = [v for v in versions.list_versions(db, "generator") if v["parent_id"] is not None]
    st.markdown("**Compare** the updated generators with where they started, on held-out prompts")
    if not trained:
        st.caption("No updated generator yet.")
        return
    version = st.selectbox("Updated generator", trained[::-1], format_func=version_label)
    metrics = version["metrics"]
    for column, (label, key, fmt) in zip(st.columns(4), EVAL_METRICS):
        if key == "val/win_rate" and key in metrics:
            column.metric(label, win_rate_text(metrics), help=(
                "n: held-out prompts × samples, each new sample against the starting generator's sample of the same "
                "prompt and seed. " + (evaluation_summary(metrics) or "")))
        elif key in metrics:
            column.metric(label, fmt.format(metrics[key]))
    if "val/lc_win_rate" in metrics:
        lc, length, capped, corr = st.columns(4)
        lc.metric("Win rate at similar length", win_rate_text(metrics, "val/lc_win_rate", "val/lc_pairs"),
                  help=f"n: every new sample against every old one of the same prompt (K × K pairs a prompt, so n can be "
                       f"larger than the win rate's), kept when their lengths differ by at most 10% (or 2 tokens): "
                       f"{metrics.get('val/lc_pairs', 0)} pairs; too few to tell below {MIN_PAIRS}: the lengths barely overlap")
        cap = version["config"].get("max_new_tokens")
        sampled = (f"the evaluation's samples, of at most {cap} new tokens (the run's own cap, set short for speed: "
                   "Data → Generate's rounds have theirs), so a share cut here is not what a round would cut") if cap else ""
        length.metric("Length before → after", f"{metrics['val/length_before']:.0f} → {metrics['val/length_after']:.0f} tokens",
                      help=sampled or None)
        capped.metric(f"Cut at the {f'{cap}-token ' if cap else ''}cap, before → after",
                      f"{metrics['val/capped_before']:.0%} → {metrics['val/capped_after']:.0%}", help=sampled or None)
        corr.metric("Reward-length correlation", f"{metrics['val/reward_length_corr']:+.2f}", help="on the new generator's samples")
    if "val/reward_after" not in metrics and "val/win_rate" not in metrics:
        st.caption("No reward model or judge scored this version's held-out answers (a DPO run without an active "
                   "reward model), so there is no reward or win rate to compare"
                   + ("; its held-out pair accuracy is under Train → Preference optimisation." if "val/accuracy" in metrics else "."))
    for good, line in verdict(metrics):
        (st.success if good else st.warning)(line)
    if check := spot_checks.verdict(db, version["id"]):
        (st.error if check["gamed"] else st.info)(
            f"Spot check by people: {check['sentence']}. The pairs wait in the prompt set {check['set']}, served first.")
    checkpoints = spot_checks.checkpoint_agreement(db, version["id"])
    if len(checkpoints) > 1:
        agreement_by_kl(checkpoints)
    if metrics.get("examples"):
        gains = sum(e["after_reward"] > e["before_reward"] for e in metrics["examples"])  # a few saved examples
        st.caption("The held-out answers the new version gained most reward on, for reading: same prompt, same seed, "
                   "before and after" + ("" if gains == len(metrics["examples"]) else
                                         f" ({gains} of these {len(metrics['examples'])} gained at all)"))
        st.dataframe(examples_frame(metrics["examples"]), hide_index=True,
                     column_order=["prompt", "before", "before_reward", "after", "after_reward"],
                     column_config={"before": st.column_config.TextColumn(width="large"), "after": st.column_config.TextColumn(width="large")}, placeholder="—")
    left, right = st.columns(2)
    sets = spot_checks.spot_check_sets_last([s["name"] for s in items.prompt_sets(db)])
    # the set it was trained on (DPO's first), else a project's own: never by default a spot check's pairs
    trained_on = version["config"].get("prompt_set") or next(iter(version["config"].get("prompt_sets") or []), None)
    prompt_set = left.selectbox("Prompt set for the next round", sets, key=f"next-round-set-{version['id']}",
                                index=sets.index(trained_on) if trained_on in sets else 0)
    parent = version["parent_id"] and versions.get_version(db, version["parent_id"])
    versus = parent and left.checkbox(
        f"Head-to-head with {parent['name']}", True, key=f"next-round-versus-{version['id']}",
        help=f"{parent['name']}, where it started, writes about half of each item's answers (K // 2) beside it, shuffled: people's "
             "rankings then compare the two directly, and the Model leaderboard rates them (without it, each round's "
             "answers come from one version, and the leaderboard never sees two meet)")
    config, previous = next_round_of(db, prompt_set, version["id"], parent["id"] if versus else None)
    left.caption(round_settings(config, previous, parent["name"] if versus else None) + " Other settings: Data → Generate.")
    if right.button("Generate the next round with this version", type="primary"):
        launch("generate", config, f"Generation with {version['name']}", follow="under Data → Generate or Jobs",
               links=(("data/generate", "Data → Generate"), ("operate/jobs", "Jobs")), place=NEXT_ROUND)
    with right:
        show_flash(NEXT_ROUND)


with screen("Policy update") as (db, user):
    train_form(db)
    latest_job(db, "train_policy", TRAINING_CHARTS, "policy")
    st.divider()
    compare_and_use(db)
