import json
import random

import pytest
import torch
from transformers import AutoTokenizer

from data import items, jobs, versions
from data.items import NewCompletion
from rm.config import RewardConfig
from rm.data import encode, make_batches
from training.rankings import RankingExample, load_rankings, split_by_prompt
from rm.loss import kwise_loss
from rm.model import load_reward_model, new_reward_model, save_reward_model
from rm.score import RewardScorer
from rm.train import NotEnoughData, fit, run_job, train_reward_model
from tests.conftest import rank_by


def test_kwise_loss_on_hand_written_rewards():
    # D > C > A = B: pairs D>C, D>A, D>B, C>A, C>B
    rewards = torch.tensor([0.0, 1.0, 2.0, 3.0])  # A, B, C, D
    better = torch.tensor([3, 3, 3, 2, 2])
    worse = torch.tensor([2, 0, 1, 0, 1])
    expected = -torch.nn.functional.logsigmoid(torch.tensor([1.0, 3.0, 2.0, 2.0, 1.0])).mean()
    assert kwise_loss(rewards, better, worse, torch.zeros(5, dtype=torch.long)).item() == pytest.approx(expected.item())


def test_kwise_loss_weighs_each_ranking_equally():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])
    # ranking 0 has one pair (diff 1), ranking 1 has two pairs (diff 0)
    loss = kwise_loss(rewards, torch.tensor([0, 2, 2]), torch.tensor([1, 3, 4]), torch.tensor([0, 1, 1]))
    expected = (-torch.nn.functional.logsigmoid(torch.tensor(1.0)) + torch.log(torch.tensor(2.0))) / 2
    assert loss.item() == pytest.approx(expected.item())


def test_a_batch_keeps_each_rankings_pairs_together(tiny_encoder):
    model, tokenizer = new_reward_model(RewardConfig(backbone=tiny_encoder))
    examples = [RankingExample(i, f"prompt {i}", ["good", "bad", "fine", "poor"][: 2 + i % 3], [[0], [1]] if i % 3 == 0 else [[0], [1, 2]] + ([[3]] if i % 3 == 2 else []))
                for i in range(9)]
    batches = make_batches(examples, tokenizer, model.kind, 32, batch_size=8, shuffle=True)
    assert sum(b.input_ids.shape[0] for b in batches) == sum(len(e.completions) for e in examples)
    for batch in batches:
        assert batch.input_ids.shape[0] <= 8
        assert (batch.better < batch.input_ids.shape[0]).all() and (batch.worse < batch.input_ids.shape[0]).all()


def test_split_is_by_prompt():
    examples = [RankingExample(i % 10, "p", ["a", "b"], [[0], [1]]) for i in range(50)]
    train, validation = split_by_prompt(examples, 0.3, seed=0)
    assert {e.prompt_id for e in train}.isdisjoint({e.prompt_id for e in validation})
    assert len({e.prompt_id for e in validation}) == 3


def separable_examples(n_prompts=40, k=4, seed=0):
    """A trivially separable preference: completions saying 'good' beat those saying 'bad'."""
    rng = random.Random(seed)
    examples = []
    for i in range(n_prompts):
        texts = [rng.choice(["good", "great", "fine"]) + " answer", rng.choice(["bad", "awful", "poor"]) + " answer"]
        texts += [rng.choice(["good answer", "bad answer"]) for _ in range(k - 2)]
        goodness = [int(t.split()[0] in ("good", "great", "fine")) for t in texts]
        groups = [[p for p in range(k) if goodness[p] == 1], [p for p in range(k) if goodness[p] == 0]]
        examples.append(RankingExample(i, f"question number {i}", texts, groups))
    return examples


def test_a_tiny_backbone_learns_a_separable_preference(tiny_encoder):
    config = RewardConfig(backbone=tiny_encoder, epochs=4, learning_rate=3e-3, batch_size=16, bf16=False, warmup_ratio=0.0)
    steps = []
    _, _, metrics, prompt_ids = train_reward_model(separable_examples(), config, lambda s, t, m: steps.append(m))
    assert metrics["val/accuracy"] > 0.9
    assert steps[-1]["train/loss"] < steps[0]["train/loss"]
    assert len(prompt_ids["validation"]) == 8 and not set(prompt_ids["train"]) & set(prompt_ids["validation"])
    assert all(torch.isfinite(torch.tensor(m["train/loss"])) for m in steps)
    assert sum(row["pairs"] for row in metrics["calibration"]) == 2 * metrics["val/pairs"]


@pytest.mark.parametrize("backbone", ["tiny_encoder", "tiny_generator"])
def test_scores_do_not_depend_on_padding_amount_nor_a_decoders_padding_side(backbone, request):
    model, tokenizer = new_reward_model(RewardConfig(backbone=request.getfixturevalue(backbone)))
    model.eval()
    encoded = encode(tokenizer, model.kind, ["why is the sky blue", "a"], ["good answer", "a much longer answer with more words"], 64)
    scores = []
    sides = ("right", "left") if model.kind == "decoder" else ("right",)  # BERT's pooler reads position 0: [CLS] when padded right
    for side, extra in [(side, extra) for side in sides for extra in (0, 7)]:
        tokenizer.padding_side = side
        batch = tokenizer.pad(encoded, padding="max_length", max_length=max(len(i) for i in encoded["input_ids"]) + extra, return_tensors="pt")
        with torch.no_grad():
            scores.append(model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")))
    for other in scores[1:]:
        torch.testing.assert_close(other, scores[0], atol=1e-5, rtol=1e-4)


def test_too_few_comparisons_are_refused_with_a_clear_message(tiny_encoder):
    with pytest.raises(NotEnoughData, match="need comparisons on at least 2 prompts"):
        train_reward_model(separable_examples(n_prompts=1), RewardConfig(backbone=tiny_encoder))


def scripted_db(db, n_prompts=30):
    items.ensure_prompt_set(db, "s")
    ids = []
    for i in range(n_prompts):
        prompt_id, _ = items.add_prompt(db, "s", f"question number {i}")
        ids.append(items.add_item(db, prompt_id, [NewCompletion(t) for t in ("good answer", "bad answer", "great answer", "poor answer")]))
    db.conn.commit()
    rank_by(db, ids, lambda text: text.split()[0] in ("good", "great"))
    return ids


def test_a_davidson_tie_pulls_the_two_rewards_together_and_nu_learns_the_tie_rate():
    from rm.loss import davidson_loss

    rewards = torch.tensor([1.0, -1.0], requires_grad=True)
    none = torch.zeros(0, dtype=torch.long)
    log_nu = torch.tensor(0.0, requires_grad=True)
    davidson_loss(rewards, none, none, none, torch.tensor([0]), torch.tensor([1]), torch.tensor([0]), log_nu).backward()
    assert rewards.grad[0] > 0 > rewards.grad[1]  # descent lowers the higher reward and raises the lower one
    assert log_nu.grad < 0  # a tie at this gap is likelier with a larger nu
    strict_nu = torch.tensor(0.0, requires_grad=True)
    davidson_loss(torch.tensor([3.0, -3.0]), torch.tensor([0]), torch.tensor([1]), torch.tensor([0]), none, none, none,
                  strict_nu).backward()
    assert strict_nu.grad > 0  # a clear preference is likelier with fewer ties


@pytest.mark.slow
def test_with_davidson_ties_the_reward_model_learns_the_order_and_which_pairs_tie(tiny_encoder):
    """Good and great answers tie, as do bad and poor ones (a third of the pairs): the order is learnt as without
    ties, and the learnt tie probability is higher on the tied held-out pairs than on the strict ones, its mean near
    the share of ties."""
    examples = [RankingExample(i, f"question number {i}", ["good answer", "bad answer", "great answer", "poor answer"],
                               [[0, 2], [1, 3]]) for i in range(40)]
    train, validation = split_by_prompt(examples, 0.25, seed=0)
    config = RewardConfig(backbone=tiny_encoder, epochs=6, learning_rate=3e-3, bf16=False, ties="davidson")
    _, _, metrics = fit(train, validation, config)
    assert metrics["val/accuracy"] > 0.9
    assert metrics["val/tie_share"] == pytest.approx(1 / 3)
    assert metrics["val/tie_probability_on_ties"] > metrics["val/tie_probability_on_strict"] + 0.3
    assert abs(metrics["val/tie_predicted"] - 1 / 3) < 0.15
    assert metrics["tie_nu"] > 1.5  # learnt up from nu = 1, where equal rewards tie a third of the time


def test_weighted_by_reliability_a_contrary_annotators_rankings_count_for_nothing(db, db_path, tiny_encoder):
    """Three annotators prefer good and great answers, a fourth ranks every item the other way round: with
    --weighting reliability the fourth's rankings weigh 0 in the batches' loss, and the job says so."""
    from training.rankings import weighted_by_reliability

    ids = scripted_db(db, n_prompts=12)
    good = lambda text: text.split()[0] in ("good", "great")  # noqa: E731
    for name in ("second", "third"):
        rank_by(db, ids, good, name)
    rank_by(db, ids, lambda text: not good(text), "contrary")
    examples = weighted_by_reliability(db, load_rankings(db))
    assert {e.annotator for e in examples if e.weight == 0} == {"contrary"}
    mixed = [e for e in examples if e.annotator == "scripted"][:4] + [e for e in examples if e.annotator == "contrary"][:4]
    [batch] = make_batches(mixed, AutoTokenizer.from_pretrained(tiny_encoder), "encoder", 32, 64, shuffle=False)
    assert sorted(batch.ranking_weight.tolist()) == pytest.approx([0.0] * 4 + [mixed[0].weight] * 4) and mixed[0].weight > 1
    job_id = jobs.create_job(db, "train_rm", {})
    config = RewardConfig(backbone=tiny_encoder, epochs=1, bf16=False, weighting="reliability", name="rm-weighted")
    with jobs.running_job(db_path, job_id) as (job, result):
        result.update(run_job(db, config, job))
    done = jobs.get_job(db, job_id)
    assert done["status"] == "done", done["error"]
    assert "counting for less than half: contrary 0.00" in done["log"]
    assert versions.list_versions(db, "reward")[0]["config"]["weighting"] == "reliability"


def test_training_job_saves_registers_and_reloads_with_identical_scores(db, db_path, tiny_encoder):
    scripted_db(db)
    job_id = jobs.create_job(db, "train_rm", {})
    config = RewardConfig(backbone=tiny_encoder, epochs=3, learning_rate=3e-3, bf16=False, name="rm-test", activate=True)
    with jobs.running_job(db_path, job_id) as (job, result):
        result.update(run_job(db, config, job))
    assert jobs.get_job(db, job_id)["status"] == "done"
    assert len(jobs.job_metrics(db, job_id)) > 3
    version = versions.active_version(db, "reward")
    assert version["name"] == "rm-test" and version["metrics"]["val/accuracy"] > 0.9
    assert jobs.get_job(db, job_id)["result"]["activation"].startswith("made active: held-out accuracy")
    folder = version["path"]
    assert not [p for p in (db_path.parent / "models" / "reward").iterdir() if p.name.startswith(".")]  # no staging left
    scorer = RewardScorer(folder, "cpu")
    again = RewardScorer(folder, "cpu")
    prompts, completions = ["question number 1"] * 2, ["good answer", "bad answer"]
    first = scorer.score(prompts, completions)
    assert torch.equal(first, again.score(prompts, completions))
    assert first[0] > first[1]
    model, _, loaded_config = load_reward_model(folder)
    assert loaded_config == config


def test_rankings_load_from_the_store(db):
    scripted_db(db, n_prompts=3)
    examples = load_rankings(db)
    assert len(examples) == 3 and examples[0].groups == [[0, 2], [1, 3]]
    assert load_rankings(db, prompt_sets=["nope"]) == []


def stock_scores(folder, prompts, completions) -> torch.Tensor:
    """Scores as somebody else computes them: stock transformers, the tokenizer's own formatting, right padding."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "right"
    if tokenizer.chat_template:
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}, {"role": "assistant", "content": c}], tokenize=False)
                 for p, c in zip(prompts, completions)]
        batch = tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    else:
        batch = tokenizer(prompts, completions, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits.squeeze(-1)


@pytest.mark.parametrize("backbone", ["tiny_encoder", "tiny_generator"])
def test_a_trained_folder_loads_in_stock_transformers_with_our_scores(backbone, request, tmp_path):
    from transformers import AutoConfig

    config = RewardConfig(backbone=request.getfixturevalue(backbone), epochs=1, learning_rate=3e-3, bf16=False)
    examples = separable_examples(n_prompts=10)
    model, tokenizer, metrics = fit(examples[:8], examples[8:], config)
    save_reward_model(model, tokenizer, config, metrics, tmp_path / "rm")
    saved = AutoConfig.from_pretrained(tmp_path / "rm")
    assert saved.num_labels == 1 and saved.architectures[0].endswith("ForSequenceClassification")
    assert saved.pad_token_id == tokenizer.pad_token_id
    if backbone == "tiny_generator":
        assert tokenizer.pad_token_id == tokenizer.eos_token_id  # the case where the stock class could read another token
    prompts = ["why is the sky blue", "a", "write a short poem about rain"]
    completions = ["good answer", "a much longer answer with more words than the others", "bad"]
    ours = RewardScorer(tmp_path / "rm", "cpu").score(prompts, completions)
    torch.testing.assert_close(stock_scores(tmp_path / "rm", prompts, completions), ours, atol=1e-4, rtol=0)
    assert ours.std() > 0
    in_memory = RewardScorer.from_model(model, tokenizer, config).score(prompts, completions)  # before saving, same scores
    torch.testing.assert_close(in_memory, ours, atol=1e-4, rtol=0)


def test_a_decoder_transcript_never_ends_in_the_pad_token(tiny_generator):
    _, tokenizer = new_reward_model(RewardConfig(backbone=tiny_generator))
    tokenizer.chat_template = None  # the plain "prompt\ncompletion<eos>" format, whose EOS is the pad token
    encoded = encode(tokenizer, "decoder", ["why", "a question"], ["good", "a longer answer"], 64)
    assert [ids[-1] for ids in encoded["input_ids"]] != [tokenizer.pad_token_id] * 2
    assert all(ids[-1] != tokenizer.pad_token_id for ids in encoded["input_ids"])
    assert [len(ids) for ids in encoded["input_ids"]] == [len(m) for m in encoded["attention_mask"]]


def save_in_the_old_format(backbone: str, folder) -> tuple[torch.nn.Module, torch.nn.Linear]:
    """A folder as rm/model.py wrote it before stock classifiers: backbone config, tokenizer, backbone.* and head.* weights."""
    from safetensors.torch import save_file
    from transformers import AutoModel, AutoTokenizer

    backbone_model = AutoModel.from_pretrained(backbone).eval()
    torch.manual_seed(1)
    head = torch.nn.Linear(backbone_model.config.hidden_size, 1)
    weights = {f"backbone.{k}": v for k, v in backbone_model.state_dict().items()}
    weights.update({f"head.{k}": v for k, v in head.state_dict().items()})
    folder.mkdir()
    backbone_model.config.save_pretrained(folder)
    AutoTokenizer.from_pretrained(backbone).save_pretrained(folder)
    save_file({k: v.contiguous() for k, v in weights.items()}, str(folder / "model.safetensors"))
    (folder / "reward_config.json").write_text(json.dumps(RewardConfig(backbone=backbone, bf16=False).__dict__))
    return backbone_model, head


def test_a_folder_in_the_old_format_still_scores_by_mean_pooling(tiny_encoder, tmp_path):
    backbone_model, head = save_in_the_old_format(tiny_encoder, tmp_path / "old")
    prompts, completions = ["why is the sky blue", "a"], ["good answer", "a much longer answer with more words"]
    scores = RewardScorer(tmp_path / "old", "cpu").score(prompts, completions)
    for prompt, completion, score in zip(prompts, completions, scores):
        batch = AutoTokenizer.from_pretrained(tiny_encoder)(prompt, completion, return_tensors="pt")
        with torch.no_grad():
            expected = head(backbone_model(**batch).last_hidden_state.mean(1)).squeeze()  # one sequence: no padding
        assert score.item() == pytest.approx(expected.item(), abs=1e-5)


def test_the_held_out_accuracy_comes_with_an_interval_and_a_length_only_rule_beside_it():
    from rm.train import ranking_bootstrap_interval
    from training.diagnostics import length_rule_accuracy, reward_model_verdict

    low, high = ranking_bootstrap_interval(torch.tensor([1.0] * 30 + [0.0] * 10), torch.arange(40) // 2)
    assert low < 0.75 < high and high - low < 0.4
    assert ranking_bootstrap_interval(torch.ones(8), torch.arange(8)) == [1.0, 1.0]
    few = reward_model_verdict({"val/accuracy": 0.62, "val/accuracy_ci": [0.45, 0.78], "val/length_rule": "shorter",
                                "val/length_rule_accuracy": 0.6})
    assert [good for good, _ in few] == [False, False]
    assert few[0][1].startswith("Probably too few rankings for a policy update")
    assert 'The rule "the shorter answer wins" scores 60%' in few[1][1]
    good = reward_model_verdict({"val/accuracy": 0.8, "val/accuracy_ci": [0.72, 0.87], "val/length_rule": "longer",
                                 "val/length_rule_accuracy": 0.55})
    assert good == [(True, 'Held-out accuracy 80% (95% interval 72–87%), +25% over the rule "the longer answer wins".')]
    steep = reward_model_verdict({"val/accuracy": 0.8, "val/accuracy_ci": [0.72, 0.87], "val/length_rule": "longer",
                                  "val/length_rule_accuracy": 0.55,
                                  "val/learning_curve": [{"rankings": 40, "accuracy": 0.7}, {"rankings": 80, "accuracy": 0.8}]})
    assert steep[0] == (False, "Probably too few rankings for a policy update: held-out accuracy is still rising steeply with "
                               "more rankings (70% at 40 rankings, 80% at 80). Rank more items, then retrain.")
    shorter = [RankingExample(i, "q", ["a", "a b c"], [[0], [1]]) for i in range(3)]
    assert length_rule_accuracy(shorter, shorter)["val/length_rule"] == "shorter"
    # one held-out ranking (a new project's first model): no interval, too few to tell, and a rule at chance blames nothing
    assert ranking_bootstrap_interval(torch.tensor([1.0, 0.0, 0.0]), torch.zeros(3, dtype=torch.long)) == [0.0, 1.0]
    one = reward_model_verdict({"val/accuracy": 1 / 3, "val/accuracy_ci": [0.0, 1.0], "val/length_rule": "shorter",
                                "val/length_rule_accuracy": 1 / 3, "val/rankings": 1, "val/pairs": 3})
    assert one == [(False, "Too few rankings to tell: 33% held-out accuracy is measured on 1 held-out ranking (3 pairs), "
                           "and a figure means something from about 5 held-out rankings. Rank more items, then retrain.")]
    two = reward_model_verdict({"val/accuracy": 1.0, "val/accuracy_ci": [1.0, 1.0], "val/length_rule": "longer",
                                "val/length_rule_accuracy": 2 / 3, "val/rankings": 2, "val/pairs": 6})
    assert [good for good, _ in two] == [False] and two[0][1].startswith("Too few rankings to tell: 100%")  # no "100% (100-100%)"
