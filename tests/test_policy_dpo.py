import json
import math

import pytest
import torch
import torch.nn.functional as F

from data import annotation, items, jobs, versions
from data.rankings import Pair, ranking_to_pairs
from policy.config import DPOConfig
from policy.dpo import (PreferenceTrainer, encode_ranking, fit, held_out_prompts, preference_loss, run_job,
                        sequence_logprobs)
from policy.models import load_generator
from policy.sft import encode_demonstration
from training.rankings import RankingExample


def config(**overrides) -> DPOConfig:
    return DPOConfig(**{**dict(beta=0.5, learning_rate=5e-3, rankings_per_step=2, bf16=False, lora=False, eval_samples=0,
                               max_length=64), **overrides})


def test_the_loss_and_its_gradient_match_a_hand_computed_pair():
    policy = torch.tensor([-1.0, -3.0], requires_grad=True)
    reference = torch.tensor([-2.0, -2.0])
    loss, h = preference_loss(policy, reference, [Pair(0, 1, 1)], beta=0.5)
    assert h.item() == pytest.approx(2.0)  # (-1 - -2) - (-3 - -2)
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-1.0))))
    loss.backward()
    slope = -0.5 / (1 + math.exp(1.0))  # d/dh -log sigma(beta h) = -beta sigma(-beta h)
    torch.testing.assert_close(policy.grad, torch.tensor([slope, -slope]))
    ipo, _ = preference_loss(torch.tensor([-1.0, -3.0]), reference, [Pair(0, 1, 1)], beta=0.5, loss="ipo")
    assert ipo.item() == pytest.approx((2.0 - 1 / (2 * 0.5)) ** 2)


def test_a_k_wise_ranking_with_a_tie_gives_every_strict_pair_and_weights_them_by_rank_gap():
    pairs = ranking_to_pairs([[3], [2], [0, 1]])  # D > C > A = B
    assert [(p.chosen, p.rejected) for p in pairs] == [(3, 2), (3, 0), (3, 1), (2, 0), (2, 1)]
    policy, reference = torch.tensor([-4.0, -4.0, -2.0, -1.0]), torch.zeros(4)
    _, h = preference_loss(policy, reference, pairs, beta=1.0)
    assert h.tolist() == [1.0, 3.0, 3.0, 2.0, 2.0]
    plain, _ = preference_loss(policy, reference, pairs, beta=1.0)
    weighted, _ = preference_loss(policy, reference, pairs, beta=1.0, margin_weight=True)
    losses = -F.logsigmoid(h)
    assert plain.item() == pytest.approx(losses.mean().item())
    assert weighted.item() == pytest.approx(((torch.tensor([1.0, 2, 2, 1, 1]) * losses).sum() / 7).item())
    assert ranking_to_pairs([[0, 1]]) == []  # a tie alone teaches nothing


def test_a_rankings_completions_share_one_pass_over_their_prompt(tiny_generator):
    model, tokenizer = load_generator(tiny_generator)
    example = RankingExample(1, "why is the sky blue", ["because of air", "no", "light scatters in the air a lot"], [[2], [0], [1]])
    ranking = encode_ranking(tokenizer, example, 64)
    assert ranking.sequences.sequences.shape[0] == 3 and len(ranking.pairs) == 3
    together = sequence_logprobs(model, ranking)
    for k, completion in enumerate(example.completions):  # each completion alone, the textbook way
        ids, n_prompt = encode_demonstration(tokenizer, example.prompt, completion, 64)
        logp = model(input_ids=torch.tensor([ids])).logits[0, :-1].float().log_softmax(-1)
        alone = logp[n_prompt - 1:].gather(1, torch.tensor(ids[n_prompt:]).unsqueeze(1)).sum()
        assert together[k].item() == pytest.approx(alone.item(), abs=1e-4)


@pytest.mark.parametrize("lora", [False, True])
def test_the_reference_stays_the_starting_model_while_the_policy_learns(tiny_generator, lora):
    model, tokenizer = load_generator(tiny_generator)
    start, _ = load_generator(tiny_generator)
    rankings = [encode_ranking(tokenizer, RankingExample(i, f"question {i}", ["yes yes", "no no"], [[0], [1]]), 64) for i in range(4)]
    trainer = PreferenceTrainer(model, tokenizer, config(lora=lora, learning_rate=2e-2), total_steps=10)
    first = trainer.step(rankings[:2])
    assert first["train/loss"] == pytest.approx(math.log(2), abs=1e-5)  # step 0: the policy is its reference, h = 0
    for _ in range(8):
        trainer.step(rankings)
    for ranking in rankings:
        expected = sequence_logprobs(start, ranking)
        torch.testing.assert_close(trainer.reference_logprobs(ranking), expected, atol=1e-4, rtol=1e-4)
    assert trainer.evaluate(rankings)["val/accuracy"] == 1.0
    if lora:
        assert trainer.reference is None  # the adapter switched off, not a copy


def test_dpo_learns_a_preference_that_holds_on_held_out_prompts(tiny_generator):
    model, tokenizer = load_generator(tiny_generator)
    examples = [RankingExample(i, f"question number {i}", ["a long and very fine answer", "no", "bad"], [[0], [1, 2]])
                for i in range(12)]
    trainer, metrics = fit(model, tokenizer, examples[:9], examples[9:], config(epochs=3))
    assert metrics["val/accuracy_before"] <= 0.75 and metrics["val/accuracy"] == 1.0
    assert metrics["val/loss"] < metrics["val/loss_before"] and metrics["val/reward_margin"] > 0
    assert metrics["train/pairs"] == 9 * 2 and metrics["val/pairs"] == 3 * 2


def test_a_dpo_job_learns_from_the_store_and_registers_a_child_version(db, db_path, tiny_generator):
    items.ensure_prompt_set(db, "s")
    start = versions.register_version(db, "generator", "tiny", tiny_generator, activate=True)
    alice = annotation.annotator_id(db, "alice")
    for i in range(10):
        prompt_id, _ = items.add_prompt(db, "s", f"prompt number {i}")
        item = items.add_item(db, prompt_id, [items.NewCompletion(t) for t in ("short", "a much longer answer", "mid one")])
        annotation.submit_ranking(db, item, alice, [[1], [2], [0]], [0, 1, 2])
        if i == 0:
            tie = items.add_item(db, prompt_id, [items.NewCompletion("x"), items.NewCompletion("y")])
            annotation.submit_ranking(db, tie, alice, [[0, 1]], [0, 1])  # a tie alone: no pair, left out
        annotation.submit_ranking(db, item, annotation.annotator_id(db, "bob"), [[0], [2], [1]], [0, 1, 2])  # not picked
    job_id = jobs.create_job(db, "dpo", {})
    with jobs.running_job(db_path, job_id) as (job, result):
        result.update(run_job(db, config(name="tiny-dpo", epochs=2, eval_samples=2, max_new_tokens=6,
                                          annotators="alice"), job))
    done = jobs.get_job(db, job_id)
    assert done["status"] == "done", done["error"]
    version = versions.get_version(db, done["result"]["version"])
    assert version["name"] == "tiny-dpo" and version["parent_id"] == start and not version["is_active"]  # not asked for
    assert done["result"]["activation"].startswith("not made active (not asked for")
    assert version["metrics"]["train/rankings"] + version["metrics"]["val/rankings"] == 10
    assert version["metrics"]["val/accuracy"] >= version["metrics"]["val/accuracy_before"]
    assert "val/kl" in version["metrics"]
    curves = jobs.job_metrics(db, job_id)
    assert any("train/loss" in m for m in curves) and any("val/accuracy" in m for m in curves)
    assert "held-out pair accuracy" in done["log"]
    reloaded, _ = load_generator(version["path"])  # the saved generator loads, and is the trained one, not its start
    started, _ = load_generator(tiny_generator)
    assert any(not torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), started.state_dict().values()))


@pytest.mark.slow
def test_with_a_reward_model_each_kl_check_is_a_checkpoint_people_spot_check(db, db_path, tiny_generator, tiny_encoder):
    """Issue 25, item 5 for DPO: every KL check evaluates against the reward model and queues its favourites, marked
    with its step and KL; the final weights' evaluation is the last checkpoint; no budget needed."""
    from data import spot_checks
    from tests.test_policy_train import saved_reward_model

    items.ensure_prompt_set(db, "s")
    versions.register_version(db, "generator", "tiny", tiny_generator, activate=True)
    versions.register_version(db, "reward", "rm", saved_reward_model(tiny_encoder, db_path.parent / "rm"), activate=True)
    alice = annotation.annotator_id(db, "alice")
    for i in range(10):
        prompt_id, _ = items.add_prompt(db, "s", f"prompt number {i}")
        item = items.add_item(db, prompt_id, [items.NewCompletion(t) for t in ("short", "a much longer answer")])
        annotation.submit_ranking(db, item, alice, [[1], [0]], [0, 1])
    job_id = jobs.create_job(db, "dpo", {})
    with jobs.running_job(db_path, job_id) as (job, result):
        result.update(run_job(db, config(name="checked", epochs=2, eval_samples=2, max_new_tokens=6, kl_budget=0,
                                         kl_checks=2, spot_check_checkpoints=True), job))
    done = jobs.get_job(db, job_id)
    assert done["status"] == "done", done["error"]
    version = versions.get_version(db, done["result"]["version"])
    steps = version["metrics"]["steps"]
    checkpoints = version["metrics"]["checkpoints"]
    assert [c["step"] for c in checkpoints] == [steps // 2, steps] and all("examples" not in c for c in checkpoints)
    assert checkpoints[-1]["val/kl"] == version["metrics"]["val/kl"]
    assert f"checkpoint at step {steps // 2}: KL" in done["log"]
    rows = spot_checks.checkpoint_agreement(db, version["id"])
    assert {row["step"] for row in rows} <= {steps // 2, steps}  # every queued pair marked with its checkpoint
    said = json.loads(done["facts"])["spot check"]  # on the job's card, not only in its log (walk, 2026-12-07)
    assert ("pairs queued for people to rank" in said) == bool(rows) and f"spot check: {said}" in done["log"]


def test_dpo_refuses_a_store_without_strict_preferences(db, db_path, tiny_generator):
    versions.register_version(db, "generator", "tiny", tiny_generator, activate=True)
    job_id = jobs.create_job(db, "dpo", {})
    with pytest.raises(ValueError, match="need rankings with a strict preference for at least 2 prompts"):
        with jobs.running_job(db_path, job_id) as (job, _):
            run_job(db, config(), job)
    assert "need rankings with a strict preference" in jobs.get_job(db, job_id)["error"]


def test_a_conversation_ranking_keeps_every_turn_as_its_prompt(db, tiny_generator):
    from training.rankings import load_rankings

    chat = [{"role": "user", "content": "why is the sky blue"}, {"role": "assistant", "content": "rain"},
            {"role": "user", "content": "what is rain"}]
    items.ensure_prompt_set(db, "s")
    prompt_id, _ = items.add_prompt(db, "s", chat)
    item = items.add_item(db, prompt_id, [items.NewCompletion("water"), items.NewCompletion("no")])
    annotation.submit_ranking(db, item, annotation.annotator_id(db, "alice"), [[0], [1]], [0, 1])
    [example] = load_rankings(db)
    assert example.messages == chat
    _, tokenizer = load_generator(tiny_generator)
    ranking = encode_ranking(tokenizer, example, 128)
    context = tokenizer.decode(ranking.sequences.sequences[0, :ranking.sequences.prompt_length])
    assert all(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>" in context for m in chat)


def test_a_ranking_of_weight_zero_changes_nothing_and_weights_average_the_step(tiny_generator):
    """--weighting reliability: a step over rankings averages their losses by weight, so a ranking of an annotator
    with no signal (weight 0) leaves the update as if it were not there."""
    examples = [RankingExample(1, "why is the sky blue", ["light scatters in the air", "no"], [[0], [1]]),
                RankingExample(2, "write a short poem", ["no", "rain on the hill, a bird"], [[0], [1]], weight=0.0)]
    updated = []
    for rankings in (examples, examples[:1]):
        model, tokenizer = load_generator(tiny_generator)
        trainer = PreferenceTrainer(model, tokenizer, config(), total_steps=10)
        trainer.step([encode_ranking(tokenizer, e, 64) for e in rankings])
        updated.append([p.detach().clone() for p in trainer.policy.parameters()])
    for with_zero, alone in zip(*updated):
        torch.testing.assert_close(with_zero, alone)
    assert any(not torch.equal(a, b) for a, b in zip(updated[0], load_generator(tiny_generator)[0].parameters()))


@pytest.mark.parametrize("loss", ["sigmoid", "ipo"])
def test_a_tied_pair_pulls_the_two_log_ratios_together(loss):
    policy = torch.tensor([-1.0, -3.0], requires_grad=True)  # h = 2 against a flat reference
    tie, _ = preference_loss(policy, torch.tensor([-2.0, -2.0]), [], beta=0.5, loss=loss, ties=[(0, 1)])
    tie.backward()
    assert policy.grad[0] > 0 > policy.grad[1]  # descent lowers the higher one and raises the lower one
    at_equal, _ = preference_loss(torch.tensor([-2.0, -2.0]), torch.tensor([-2.0, -2.0]), [], beta=0.5, loss=loss, ties=[(0, 1)])
    assert at_equal.item() < tie.item()  # least where the log-ratios are equal


def test_fit_keeps_each_rankings_weight_and_learns_from_ties_only_when_asked(tiny_generator):
    strict = RankingExample(1, "why is the sky blue", ["light scatters in the air", "no"], [[0], [1]])
    ignored = RankingExample(2, "write a short poem", ["no", "rain on the hill, a bird"], [[0], [1]], weight=0.0)
    held = [RankingExample(3, "what is rain", ["water from clouds", "no"], [[0], [1]])]
    updated = []
    for train in ([strict, ignored], [strict]):
        model, tokenizer = load_generator(tiny_generator)
        trainer, _ = fit(model, tokenizer, train, held, config(epochs=1))
        updated.append([p.detach().clone() for p in trainer.policy.parameters()])
    for with_zero, alone in zip(*updated):
        torch.testing.assert_close(with_zero, alone)  # the weight survived encoding in fit
    only_ties = [RankingExample(4, "yes or no", ["yes", "no"], [[0, 1]])]
    model, tokenizer = load_generator(tiny_generator)
    with pytest.raises(ValueError, match="strict preference"):
        fit(model, tokenizer, only_ties, held, config(epochs=1))
    trainer, metrics = fit(model, tokenizer, only_ties, held, config(epochs=1, ties="equal"))
    assert metrics["steps"] == 1


def test_the_kl_budget_stops_a_run_and_keeps_the_last_checkpoint_within_it(tiny_generator):
    examples = [RankingExample(i, f"question number {i}", ["a long and very fine answer", "no", "bad"], [[0], [1, 2]])
                for i in range(12)]
    fast = dict(epochs=4, learning_rate=5e-2, eval_samples=2, max_new_tokens=8, kl_checks=4)
    model, tokenizer = load_generator(tiny_generator)
    heard = []  # what the job's card says between steps (a walk's card said nothing for 2 minutes, 2026-12-07)
    _, free = fit(model, tokenizer, examples[:8], examples[8:], config(**fast, kl_budget=1e9),
                  on_phase=lambda name: heard.append(name), on_progress=lambda done, total, text: heard.append((done, total, text)))
    assert heard[:2] == ["held-out pair accuracy before training (4 rankings)", "training on 8 rankings"]
    assert heard[2:4] == [(0.5, 16, "step 1/16: ranking 1 of 2"), (1.0, 16, "step 1/16: ranking 2 of 2")]
    assert (4, 16, "step 4/16 · KL check: sampling 2 answers to each of 4 held-out prompts") in heard
    curve = free["kl_budget/curve"]
    assert [step for step, _ in curve] == [4, 8, 12, 16] and free["steps"] == 16 and not free["kl_budget/spent"]
    assert curve[-1][1] > curve[0][1]  # the policy moves away from its reference as it trains
    budget = (curve[0][1] + curve[-1][1]) / 2  # crossed somewhere after the first check
    model, tokenizer = load_generator(tiny_generator)
    trainer, held = fit(model, tokenizer, examples[:8], examples[8:], config(**fast, kl_budget=budget))
    assert held["kl_budget/spent"] and held["steps"] < 16
    kept = held["kl_budget/kept_step"]
    assert kept < held["steps"] and all(kl <= budget for step, kl in held["kl_budget/curve"] if step <= kept)
    assert held["kl_budget/curve"][-1][1] > budget  # the check that stopped it
    # the restored weights are those of the kept step: the same KL as its check, below the budget
    again = trainer.evaluator().kl_to_reference(held_out_prompts(examples[8:]), 0)
    assert again == pytest.approx(dict(held["kl_budget/curve"])[kept], rel=1e-4, abs=1e-6) if kept else again < 1e-6
    model, tokenizer = load_generator(tiny_generator)
    _, off = fit(model, tokenizer, examples[:8], examples[8:], config(**fast, kl_budget=0))
    assert "kl_budget/curve" not in off and off["steps"] == 16
