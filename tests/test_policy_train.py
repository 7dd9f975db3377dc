import json

import pytest
import torch

from data import jobs, versions
from policy.config import PolicyConfig
from policy.models import load_generator
from policy.rollout import completion_logprobs, sample_rollout
from policy.train import PolicyTrainer, fit, gae, group_advantages, rloo_advantages, run_job, sequence_logprob
from tests.conftest import ShorterIsBetter

PROMPTS = ["why is the sky blue", "write a short poem", "explain a hash table", "yes or no", "what is rain", "a question"]


def config(**overrides) -> PolicyConfig:
    base = dict(k=4, prompts_per_step=2, steps=2, max_new_tokens=16, temperature=1.0, lora=False, learning_rate=1e-3,
                kl_coef=0.05, eval_prompts=2, bf16=False)
    return PolicyConfig(**{**base, **overrides})


def test_rloo_advantages_of_each_prompt_sum_to_zero():
    rewards = torch.randn(5 * 4)
    advantages = rloo_advantages(rewards, 4).view(5, 4)
    torch.testing.assert_close(advantages.sum(1), torch.zeros(5), atol=1e-5, rtol=0)
    # each sample is compared with the mean of the other three
    R = rewards.view(5, 4)
    assert advantages[0, 0].item() == pytest.approx((R[0, 0] - R[0, 1:].mean()).item(), abs=1e-5)


def test_group_advantages_are_centred_per_prompt_and_grpo_is_blind_to_the_rewards_scale():
    rewards = torch.randn(5 * 4, generator=torch.Generator().manual_seed(0))
    grpo, dr_grpo = group_advantages(rewards, 4, scale=True), group_advantages(rewards, 4, scale=False)
    for A in (grpo, dr_grpo):
        torch.testing.assert_close(A.view(5, 4).mean(1), torch.zeros(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(grpo.view(5, 4).std(1), torch.ones(5), atol=1e-3, rtol=0)  # std 1 in every group
    torch.testing.assert_close(group_advantages(3 * rewards + 7, 4, scale=True), grpo, atol=1e-3, rtol=0)
    torch.testing.assert_close(group_advantages(3 * rewards + 7, 4, scale=False), 3 * dr_grpo, atol=1e-5, rtol=0)
    # a prompt whose samples all score alike teaches nothing (0, not NaN) under both
    tied = group_advantages(torch.tensor([2.0, 2.0, 2.0, 2.0, 0.0, 1.0, 2.0, 3.0]), 4, scale=True)
    assert tied[:4].tolist() == [0.0] * 4 and torch.isfinite(tied).all()
    # with K = 2 Dr. GRPO's advantage is half of RLOO's: the same direction, another scale
    torch.testing.assert_close(group_advantages(rewards, 2, scale=False), rloo_advantages(rewards, 2) / 2)


@pytest.mark.parametrize("algorithm, per_token", [("rloo", lambda length: 1.0), ("grpo", lambda length: 1 / length),
                                                  ("dr_grpo", lambda length: 1 / 16)])
def test_how_each_algorithm_weighs_a_token_by_its_answers_length(algorithm, per_token):
    """The gradient a token of a 2-token and of a 10-token answer gets for the same advantage: GRPO divides by the
    answer's length (its length bias), Dr. GRPO by a constant (max_new_tokens), RLOO not at all."""
    mask = torch.zeros(2, 12)
    mask[0, :2], mask[1, :10] = 1, 1
    logprobs = torch.randn(2, 12).requires_grad_()
    sequence_logprob(logprobs, mask, config(algorithm=algorithm, max_new_tokens=16)).sum().backward()
    for row, length in ((0, 2), (1, 10)):
        torch.testing.assert_close(logprobs.grad[row, :length], torch.full((length,), per_token(length)))
        assert not logprobs.grad[row, length:].any()  # padding after the answer gets nothing


def test_group_algorithms_need_two_samples_per_prompt():
    for algorithm in ("rloo", "grpo", "dr_grpo"):
        with pytest.raises(ValueError, match="k >= 2"):
            config(algorithm=algorithm, k=1)
    with pytest.raises(ValueError, match="grpo, dr_grpo"):
        config(algorithm="dapo")


def test_gae_with_lambda_one_is_reward_to_go_minus_value():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.2, 0.1, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    advantages, returns = gae(rewards, values, mask, lam=1.0)
    torch.testing.assert_close(advantages, torch.tensor([[0.5, 0.8, 0.9, 0.0]]))
    torch.testing.assert_close(returns[:, :3], torch.tensor([[1.0, 1.0, 1.0]]))


@pytest.mark.slow
def test_tokens_after_the_first_eos_are_masked_and_do_not_change_log_probs(tiny_small_vocab_generator):
    model, tokenizer = load_generator(tiny_small_vocab_generator)
    torch.manual_seed(0)
    rollout = sample_rollout(model, tokenizer, PROMPTS[:3], 4, 20, 1.0)
    assert rollout.ended.any(), "the tiny model should end some completions early"
    row = int(rollout.ended.nonzero()[0])
    mask = rollout.completion_mask[row]
    first_eos = int(mask.sum()) - 1  # the EOS itself is the last scored token
    assert rollout.sequences[row, rollout.prompt_length + first_eos] == tokenizer.eos_token_id
    assert not mask[first_eos + 1:].any() and mask[: first_eos + 1].all()
    logprobs, _, _ = completion_logprobs(model, rollout, 1.0)
    changed = rollout.sequences.clone()
    changed[row, rollout.prompt_length + first_eos + 1:] = 7  # anything after the EOS
    rollout.sequences = changed
    again, _, _ = completion_logprobs(model, rollout, 1.0)
    scored = rollout.completion_mask.bool()
    torch.testing.assert_close(again[scored], logprobs[scored])


@pytest.mark.parametrize("algorithm, lora", [("rloo", False), ("rloo", True), ("reinforce", False), ("ppo", False), ("ppo", True),
                                             ("grpo", False), ("dr_grpo", True)])
@pytest.mark.slow
def test_first_step_invariants_and_a_finite_update(tiny_small_vocab_generator, algorithm, lora):
    model, tokenizer = load_generator(tiny_small_vocab_generator)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = PolicyTrainer(model, tokenizer, ShorterIsBetter(), config(algorithm=algorithm, lora=lora))
    metrics = trainer.step(PROMPTS[:2], seed=1)
    assert abs(metrics["policy/kl"]) < 1e-4  # the policy starts as its reference
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    if algorithm == "ppo":
        assert metrics["ppo/ratio_first_epoch"] == pytest.approx(1.0, abs=1e-5)
        assert "ppo/clipfrac" in metrics and "ppo/explained_variance" in metrics
    changed = [n for n, p in trainer.policy.named_parameters() if p.requires_grad]
    assert changed
    if not lora:
        assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())
    second = trainer.step(PROMPTS[2:4], seed=2)
    assert second["policy/kl"] != 0.0


@pytest.mark.parametrize("algorithm, learning_rate", [("rloo", 3e-3), ("grpo", 3e-3), ("dr_grpo", 3e-2)])
@pytest.mark.slow
def test_against_a_scripted_preference_completions_get_shorter(tiny_small_vocab_generator, algorithm, learning_rate):
    """Dr. GRPO's loss is divided by max_new_tokens (16) where RLOO's is not, hence its larger learning rate."""
    model, tokenizer = load_generator(tiny_small_vocab_generator)
    trainer, metrics = fit(model, tokenizer, ShorterIsBetter(), PROMPTS[:4], PROMPTS[4:],
                           config(algorithm=algorithm, steps=25, prompts_per_step=2, learning_rate=learning_rate, kl_coef=0.01))
    assert metrics["val/length_after"] < metrics["val/length_before"]
    assert metrics["val/win_rate"] >= 0.6


def saved_reward_model(tiny_encoder: str, folder) -> str:
    """A tiny reward model trained for one epoch on 'good answer' > 'bad answer', saved; its folder."""
    from rm.config import RewardConfig
    from rm.model import save_reward_model
    from rm.train import fit as fit_reward_model
    from training.rankings import RankingExample

    examples = [RankingExample(i, "q", ["good answer", "bad answer"], [[0], [1]]) for i in range(6)]
    rm_config = RewardConfig(backbone=tiny_encoder, epochs=1, bf16=False)
    reward_model, rm_tokenizer, _ = fit_reward_model(examples[:4], examples[4:], rm_config)
    save_reward_model(reward_model, rm_tokenizer, rm_config, {}, folder)
    return str(folder)


@pytest.mark.slow
def test_policy_job_registers_a_version_that_reloads_and_generates(db, db_path, tiny_small_vocab_generator, tiny_encoder):
    from data import items
    from policy.generate import sample

    items.ensure_prompt_set(db, "s")
    for p in PROMPTS:
        items.add_prompt(db, "s", p)
    start = versions.register_version(db, "generator", "tiny", tiny_small_vocab_generator, activate=True)
    versions.register_version(db, "reward", "rm", saved_reward_model(tiny_encoder, db_path.parent / "rm"), activate=True)
    from data import annotation  # one ranked item sampled with a cap of 20 tokens, one of its answers cut there

    items.ensure_prompt_set(db, "ranked")
    ranked = items.add_item(db, items.add_prompt(db, "ranked", "a ranked prompt")[0], [
        items.NewCompletion("cut", params={"max_new_tokens": 20}, finish_reason="length"),
        items.NewCompletion("whole", params={"max_new_tokens": 20}, finish_reason="stop")])
    me = annotation.annotator_id(db, "alice")
    annotation.submit_ranking(db, ranked, me, [[1], [0]], annotation.display_order(ranked, me, 2))

    job_id = jobs.create_job(db, "train_policy", {})
    policy_config = config(prompt_set="s", lora=True, name="tiny-lora", steps=2)  # a cap of 16 tokens asked
    with jobs.running_job(db_path, job_id) as (job, result):
        result.update(run_job(db, policy_config, job))
    done = jobs.get_job(db, job_id)
    assert done["status"] == "done", done["error"]
    new = versions.get_version(db, done["result"]["version"])
    assert new["name"] == "tiny-lora" and new["parent_id"] == start
    assert versions.active_version(db, "generator")["id"] == start  # not asked to activate: the start stays active
    assert {"val/reward_before", "val/reward_after", "val/kl", "val/win_rate"} <= set(new["metrics"])
    assert len(jobs.job_metrics(db, job_id)) == 2
    facts = json.loads(db.execute("SELECT facts FROM jobs WHERE id = ?", [job_id]).fetchone()[0])
    assert facts["max new tokens"].startswith("20, raised from 16") and new["config"]["max_new_tokens"] == 20
    assert facts["penalty for cut answers"].startswith("off (was ")
    first, _ = load_generator(new["path"])
    second, tokenizer = load_generator(new["path"])
    a = sample(first, tokenizer, ["why is the sky blue"], 2, 1.0, 1.0, 12, seed=5)
    b = sample(second, tokenizer, ["why is the sky blue"], 2, 1.0, 1.0, 12, seed=5)
    assert a == b


@pytest.mark.slow
def test_a_conversation_rollout_feeds_the_policy_every_turn_and_the_scorer_the_transcript(tiny_small_vocab_generator):
    from data.conversation import transcript

    chat = [{"role": "user", "content": "why is the sky blue"}, {"role": "assistant", "content": "rain"},
            {"role": "user", "content": "what is rain"}]
    model, tokenizer = load_generator(tiny_small_vocab_generator)
    torch.manual_seed(0)
    rollout = sample_rollout(model, tokenizer, [chat, "yes or no"], 2, 4, 1.0)
    assert rollout.prompts == [transcript(chat)] * 2 + ["yes or no"] * 2
    context = tokenizer.decode(rollout.sequences[0, :rollout.prompt_length])
    assert all(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>" in context for m in chat)
    trainer = PolicyTrainer(model, tokenizer, ShorterIsBetter(), config(k=2))
    assert torch.isfinite(torch.tensor(trainer.step([chat, "yes or no"], seed=1)["train/loss"]))


@pytest.mark.parametrize("algorithm", ["rloo", "reinforce", "ppo", "grpo", "dr_grpo"])
@pytest.mark.slow
def test_micro_batches_give_the_same_update_as_one_batch(tiny_small_vocab_generator, algorithm):
    """The step's gradient is the sum of its micro-batches' shares: one prompt at a time updates the weights as one
    batch of all prompts does, while only one prompt's activations are held for the backward pass."""
    updated = []
    for micro in (1, 3):
        model, tokenizer = load_generator(tiny_small_vocab_generator)
        trainer = PolicyTrainer(model, tokenizer, ShorterIsBetter(), config(algorithm=algorithm, prompts_per_step=3, micro_batch_prompts=micro,
                                                                            ppo_epochs=2))
        trainer.step(PROMPTS[:3], seed=5)
        updated.append([p.detach().clone() for p in trainer.policy.parameters()])
    for one_at_a_time, together in zip(*updated):
        torch.testing.assert_close(one_at_a_time, together, atol=2e-6, rtol=1e-4)


def test_automatic_micro_batches_are_one_prompt_on_a_cpu_and_all_prompts_on_a_gpu_with_room(tiny_small_vocab_generator, monkeypatch):
    model, tokenizer = load_generator(tiny_small_vocab_generator)
    trainer = PolicyTrainer(model, tokenizer, ShorterIsBetter(), config(prompts_per_step=3))
    assert trainer.config.micro_batch_prompts == 0  # automatic is the default
    rollout = trainer.rollout(PROMPTS[:3], seed=0)
    assert trainer.micro_batches(rollout) == [(0, 4), (4, 8), (8, 12)]  # k=4: one prompt a pass
    trainer.device = torch.device("cuda")  # what the trainer would see on a GPU: only the free memory is asked
    for free, passes in ((80e9, [(0, 12)]), (1e3, [(0, 4), (4, 8), (8, 12)])):
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device, free=free: (free, 80e9))
        assert trainer.micro_batches(rollout) == passes


def test_a_long_prompt_loses_its_beginning_and_keeps_the_assistant_cue(tiny_generator):
    from policy.generate import chat_inputs

    _, tokenizer = load_generator(tiny_generator)
    long = "old words " * 300 + "the question at the end"
    inputs = chat_inputs(tokenizer, [long, "short"], max_tokens=24)
    assert inputs["input_ids"].shape[1] == 24 and inputs["attention_mask"][0].all()
    text = tokenizer.decode(inputs["input_ids"][0])
    assert "the question at the end" in text and text.endswith("<|im_start|>assistant\n")
    assert chat_inputs(tokenizer, ["short"], max_tokens=24)["input_ids"].shape[1] < 24  # short prompts untouched


def test_a_micro_batch_drops_only_the_padding_all_its_rows_share(tiny_small_vocab_generator):
    model, tokenizer = load_generator(tiny_small_vocab_generator)
    torch.manual_seed(0)
    rollout = sample_rollout(model, tokenizer, ["hi", "a much longer prompt with many more words in it"], 2, 6, 1.0)
    whole, _, _ = completion_logprobs(model, rollout, 1.0)
    short = rollout.rows(0, 2)  # the short prompt's two samples
    assert short.prompt_length < rollout.prompt_length and short.attention_mask[:, 0].any()
    part, _, _ = completion_logprobs(model, short, 1.0)
    scored = rollout.completion_mask[:2].bool()
    torch.testing.assert_close(part[scored], whole[:2][scored], atol=1e-5, rtol=1e-4)


def plain_completion_logprobs(model, rollout, temperature):
    """The textbook computation: every row's whole sequence through the model, log-softmax at each completion token."""
    position_ids = (rollout.attention_mask.cumsum(1) - 1).clamp(min=0)
    logits = model(input_ids=rollout.sequences, attention_mask=rollout.attention_mask, position_ids=position_ids).logits
    P = rollout.prompt_length
    logp = (logits[:, P - 1:-1].float() / temperature).log_softmax(-1)
    return logp.gather(-1, rollout.sequences[:, P:].unsqueeze(-1)).squeeze(-1)


@pytest.mark.slow
def test_running_each_prompt_once_gives_the_log_probs_and_gradients_of_running_every_sample(tiny_small_vocab_generator):
    """completion_logprobs runs the B distinct prompts once and repeats their keys and values for the K samples."""
    model, tokenizer = load_generator(tiny_small_vocab_generator)
    torch.manual_seed(3)
    rollout = sample_rollout(model, tokenizer, ["hi", "a much longer prompt with many more words in it"], 3, 8, 0.7)
    shared, _, _ = completion_logprobs(model, rollout, 0.7)
    plain = plain_completion_logprobs(model, rollout, 0.7)
    scored = rollout.completion_mask.bool()
    torch.testing.assert_close(shared[scored], plain[scored], atol=1e-5, rtol=1e-4)
    grads = []
    for logprobs in (lambda: completion_logprobs(model, rollout, 0.7)[0], lambda: plain_completion_logprobs(model, rollout, 0.7)):
        model.zero_grad()
        (logprobs() * rollout.completion_mask).sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-3)


@pytest.mark.slow
def test_a_micro_batch_of_short_completions_drops_the_columns_after_them(tiny_small_vocab_generator):
    model, tokenizer = load_generator(tiny_small_vocab_generator)
    torch.manual_seed(0)
    rollout = sample_rollout(model, tokenizer, PROMPTS[:4], 2, 20, 1.0)
    lengths = rollout.completion_mask.sum(1).view(4, 2).max(1).values
    shortest = int(lengths.argmin())
    part = rollout.rows(2 * shortest, 2 * shortest + 2)
    assert part.completion_mask.shape[1] == int(lengths[shortest]) <= rollout.completion_mask.shape[1]
    trainer = PolicyTrainer(model, tokenizer, ShorterIsBetter(), config(k=2))
    padded, _, _ = trainer.micro_logprobs(model, rollout, 2 * shortest, 2 * shortest + 2)
    whole = plain_completion_logprobs(model, rollout, 1.0)[2 * shortest:2 * shortest + 2]
    scored = rollout.completion_mask[2 * shortest:2 * shortest + 2].bool()
    assert padded.shape == whole.shape
    torch.testing.assert_close(padded[scored], whole[scored], atol=1e-5, rtol=1e-4)


def test_with_lora_in_bf16_the_model_sampled_from_is_the_policy_with_its_adapter_merged(tiny_small_vocab_generator):
    import copy

    model, tokenizer = load_generator(tiny_small_vocab_generator)
    trainer = PolicyTrainer(model, tokenizer, ShorterIsBetter(), config(lora=True, bf16="true", learning_rate=1e-2))
    for seed in (1, 2):  # the adapter moves away from zero, the sampling copy follows it in place
        trainer.step(PROMPTS[:2], seed=seed)
        sampler = trainer.sampling_model()
        merged = copy.deepcopy(trainer.policy).merge_and_unload()
        for (name, expected), actual in zip(merged.state_dict().items(), sampler.state_dict().values()):
            torch.testing.assert_close(actual, expected, atol=1e-2, rtol=1e-2, msg=name)
    assert sampler is trainer.sampling_model()  # one copy, refreshed, never a new one per step
    lora_b = next(p for n, p in trainer.policy.named_parameters() if "lora_B" in n)
    assert lora_b.abs().sum() > 0


def test_the_lora_adapter_covers_the_attention_and_mlp_projections_of_every_layer(tiny_generator):
    """peft's `all-linear` on a Llama (the embedded SmolLM2's architecture) is exactly the projections the policy update
    once named: q/k/v/o and gate/up/down, in every layer, and not the output head."""
    from peft.tuners.lora import LoraLayer

    from policy.models import with_lora_adapter

    model, _ = load_generator(tiny_generator)
    adapted = with_lora_adapter(model, 2, bf16_base=False)
    names = [name for name, layer in adapted.named_modules() if isinstance(layer, LoraLayer)]
    projections = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert {name.split(".")[-1] for name in names} == projections
    assert len(names) == len(projections) * model.config.num_hidden_layers


class TenTimesShorterIsBetter(ShorterIsBetter):
    def score(self, prompts, completions):
        return 10 * super().score(prompts, completions) + 3


def test_standardised_rewards_make_the_update_the_same_whatever_the_reward_models_scale(tiny_small_vocab_generator):
    updated = []
    for scorer in (ShorterIsBetter(), TenTimesShorterIsBetter()):
        model, tokenizer = load_generator(tiny_small_vocab_generator)
        trainer = PolicyTrainer(model, tokenizer, scorer, config(no_eos_penalty=0.5))
        trainer.step(PROMPTS[:2], seed=4)
        updated.append([p.detach().clone() for p in trainer.policy.parameters()])
    for a, b in zip(*updated):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_the_length_cap_and_no_eos_penalty_follow_what_was_ranked():
    from policy.train import shaped_to_the_rankings

    logged = []
    base = config(max_new_tokens=64, no_eos_penalty=1.0)
    shaped = shaped_to_the_rankings(base, {"max_new_tokens": 128, "truncated_share": 0.2}, logged.append)
    assert shaped.max_new_tokens == 128 and shaped.no_eos_penalty == 0.0
    assert "raised from 64 to 128" in logged[0] and "20% of the ranked completions were cut" in logged[1]
    assert shaped_to_the_rankings(base, {"max_new_tokens": 32, "truncated_share": 0.0}, logged.append) == base
    assert shaped_to_the_rankings(base, {"max_new_tokens": None, "truncated_share": 0.0}, logged.append) == base


def test_the_store_says_how_the_ranked_completions_were_generated(db):
    from data import annotation, items
    from data.items import NewCompletion

    items.ensure_prompt_set(db, "s")
    made = []
    for i, (cap, cut) in enumerate(((128, True), (256, False))):
        prompt_id, _ = items.add_prompt(db, "s", f"prompt {i}")
        made.append(items.add_item(db, prompt_id, [NewCompletion("a", params={"max_new_tokens": cap}, finish_reason="length" if cut else "eos"),
                                                   NewCompletion("b", params={"max_tokens": cap}, finish_reason="eos")]))
    assert items.ranked_generation_limits(db) == {"max_new_tokens": None, "truncated_share": 0.0, "ranked_completions": 0}
    me = annotation.annotator_id(db, "ann")
    annotation.submit_ranking(db, made[0], me, [[0], [1]], [0, 1])
    assert items.ranked_generation_limits(db) == {"max_new_tokens": 128, "truncated_share": 0.5, "ranked_completions": 2}


def test_the_evaluation_says_whether_the_gain_is_length(tiny_small_vocab_generator):
    from training.diagnostics import verdict

    model, tokenizer = load_generator(tiny_small_vocab_generator)
    trainer, metrics = fit(model, tokenizer, ShorterIsBetter(), PROMPTS[:4], PROMPTS[4:],
                           config(steps=25, prompts_per_step=2, learning_rate=3e-3, kl_coef=0.01))
    assert metrics["val/length_after"] < metrics["val/length_before"] and metrics["val/win_rate"] >= 0.6
    # the scripted reward is length itself (in characters): the screen must say the score follows length
    assert metrics["val/reward_length_corr"] < -0.9
    # a length-controlled win rate only on 8 pairs of similar length or more (diagnostics.length_controlled_win_rate)
    assert (metrics["val/lc_win_rate"] is None) == (metrics["val/lc_pairs"] < 8)
    assert metrics["val/lc_win_rate"] is None or 0 <= metrics["val/lc_win_rate"] <= 1
    assert 0 <= metrics["val/capped_after"] <= metrics["val/capped_before"] <= 1
    warnings = [line for good, line in verdict({**metrics, "val/win_pairs": 30}) if not good]  # as if on enough pairs
    assert any(line.startswith("The reward model's score follows length closely") for line in warnings)
    gains = [round(e["after_reward"] - e["before_reward"], 6) for e in metrics["examples"]]
    assert gains == sorted(gains, reverse=True)  # the biggest reward gains first
    for e in metrics["examples"]:  # each answer's length and end go with it (a spot check marks a cut answer)
        assert all(e[f"{side}_tokens"] >= 1 and isinstance(e[f"{side}_ended"], bool) for side in ("before", "after"))
        assert e["after_ended"] or e["after_tokens"] == config().max_new_tokens


def test_a_gain_that_length_explains_or_that_cannot_be_told_apart_from_length_is_called_so():
    from training.diagnostics import verdict

    base = {"val/win_rate": 0.8, "val/length_before": 60, "val/length_after": 20, "val/reward_length_corr": -0.2,
            "val/capped_before": 0.1, "val/capped_after": 0.1}
    [(good, line)] = verdict({**base, "val/lc_win_rate": 0.5, "val/lc_pairs": 30})
    assert not good and line.startswith("The gain is explained by length: the new generator wins 80% of pairs, but only 50%")
    [(good, line)] = verdict({**base, "val/lc_win_rate": None, "val/lc_pairs": 3})
    assert not good and "lengths barely overlap the old ones' (3 pairs of similar length" in line


def test_a_win_rate_on_a_few_held_out_pairs_is_called_too_few_to_judge_not_length():
    """The Chromium walk: 4 pairs read "the gain cannot be told apart from length" beside "win rate: too few (n=2)"."""
    from training.diagnostics import verdict

    lines = verdict({"val/win_rate": 0.75, "val/win_pairs": 4, "val/lc_win_rate": None, "val/lc_pairs": 4,
                     "val/length_before": 48, "val/length_after": 48, "val/capped_before": 1.0, "val/capped_after": 0.5,
                     "val/reward_length_corr": 0.9})  # nor a length warning read from the same 4 samples
    assert lines == [(False, "Too few held-out pairs to judge: 4 (at least 30 needed); a win rate of 75%, length figures "
                             "or a correlation on so few say nothing yet. Hold out more prompts or samples, then read the "
                             "examples.")]


def test_a_gain_at_equal_length_is_called_good_news():
    from training.diagnostics import verdict

    lines = verdict({"val/win_rate": 0.7, "val/lc_win_rate": 0.68, "val/lc_pairs": 40, "val/length_before": 40, "val/length_after": 41,
                     "val/reward_length_corr": 0.1, "val/capped_before": 0.1, "val/capped_after": 0.1})
    assert lines == [(True, "The new generator wins 68% of pairs of similar length: the gain is not length alone.")]
