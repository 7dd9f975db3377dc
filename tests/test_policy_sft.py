import json

import pytest
import torch

from data import annotation, demonstrations, export, items, jobs, queue, versions
from data.importing import BadImportFile
from policy.config import GenerationConfig, SFTConfig
from policy.generate import run_generation, sample
from policy.models import load_generator
from policy.sft import encode_demonstration, fit, make_batches, run_job, sft_loss
from tests.conftest import add_items

DEMOS = [("why is the sky blue", "the sky is blue."), ("write a short poem", "rain on a blue sky."),
         ("what is rain", "rain is water."), ("explain a hash table", "a table of keys."),
         ("yes or no", "yes."), ("a question", "an answer.")]


def test_prompt_tokens_are_context_not_targets(tiny_generator):
    model, tokenizer = load_generator(tiny_generator)
    ids, n_prompt = encode_demonstration(tokenizer, "why is the sky blue", "the sky is blue.", 128)
    assert tokenizer.decode(ids[:n_prompt]).endswith("<|im_start|>assistant\n")
    assert "the sky is blue." in tokenizer.decode(ids[n_prompt:]) and tokenizer.eos_token_id in ids[n_prompt:]
    [batch] = make_batches([(ids, n_prompt)], 1, tokenizer.pad_token_id, False, 0)
    loss = sft_loss(model, batch)
    prompt_positions = ~batch.response_mask & batch.attention_mask.bool()
    batch.target_ids[prompt_positions] = torch.randint(0, len(tokenizer), (int(prompt_positions.sum()),))
    assert sft_loss(model, batch).item() == loss.item()
    assert int(batch.response_mask.sum()) == len(ids) - n_prompt


def test_a_tiny_model_fits_a_handful_of_demonstrations(tiny_generator):
    model, tokenizer = load_generator(tiny_generator)
    rows = [{"prompt": p, "response": r} for p, r in DEMOS]
    losses = []
    config = SFTConfig(epochs=30, learning_rate=1e-2, batch_size=6, bf16=False, early_stop_patience=30)
    _, metrics = fit(model, tokenizer, rows, rows[:2], config, lambda s, t, m: losses.append(m.get("train/loss")))
    losses = [x for x in losses if x is not None]
    assert losses[-1] < 0.5 * losses[0]
    assert metrics["val/loss"] < metrics["val/loss_before"]


def test_an_edited_completion_becomes_a_demonstration_and_an_implicit_comparison(db):
    [item_id] = add_items(db, 1, k=2)
    item = annotation.get_item(db, item_id)
    me = annotation.annotator_id(db, "alice")
    demonstrations.save_demonstration(db, item.prompt_id, me, "a better answer", source_completion_id=item.completions[1].id)
    pairs = export.export_frame(db, "pairs")
    assert list(zip(pairs.chosen, pairs.rejected)) == [("a better answer", item.completions[1].text)]
    [demo] = demonstrations.demonstrations(db)
    assert demo["source"] == "edited" and demo["annotator"] == "alice"
    assert queue.next_item(db, annotation.annotator_id(db, "bob")).id == item_id  # the implicit item is never queued
    with pytest.raises(ValueError, match="identical"):
        demonstrations.save_demonstration(db, item.prompt_id, me, item.completions[0].text, item.completions[0].id)
    with pytest.raises(ValueError, match="write the answer"):
        demonstrations.save_demonstration(db, item.prompt_id, me, "   ")


def test_the_write_queue_serves_prompts_without_a_demonstration(db):
    items.ensure_prompt_set(db, "s")
    first, _ = items.add_prompt(db, "s", "one")
    second, _ = items.add_prompt(db, "s", "two")
    me = annotation.annotator_id(db, "alice")
    assert demonstrations.next_prompt_without_demonstration(db)["id"] == first
    demonstrations.save_demonstration(db, first, me, "answer")
    assert demonstrations.next_prompt_without_demonstration(db)["id"] == second
    assert demonstrations.next_prompt_without_demonstration(db, exclude=[second]) is None


def test_import_and_export_demonstrations_in_trl_messages_format(db, tmp_path):
    data = (json.dumps({"prompt": "p1", "response": "r1"}) + "\n"
            + json.dumps({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "p2"},
                                       {"role": "assistant", "content": "r2"}]}) + "\n").encode()
    assert demonstrations.import_demonstrations(db, demonstrations.parse_demonstrations(data), "demo") == {"demonstrations": 2, "already_present": 0}
    path = tmp_path / "sft.jsonl"
    path.write_bytes(demonstrations.messages_jsonl(db))
    from datasets import load_dataset

    dataset = load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache"))
    assert dataset.column_names == ["messages"]
    assert dataset[1]["messages"] == [{"role": "system", "content": "s"}, {"role": "user", "content": "p2"},
                                      {"role": "assistant", "content": "r2"}]  # the whole conversation, round trip


def test_a_multi_turn_demonstration_keeps_its_conversation_as_the_prompt(db):
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "a joke?"}]
    data = (json.dumps({"messages": [*turns, {"role": "assistant", "content": "knock knock"}]}) + "\n").encode()
    demonstrations.import_demonstrations(db, demonstrations.parse_demonstrations(data), "demo")
    [row] = demonstrations.demonstrations(db)
    assert json.loads(row["messages"]) == turns and row["response"] == "knock knock"
    assert json.loads(demonstrations.messages_jsonl(db))["messages"] == [*turns, {"role": "assistant", "content": "knock knock"}]


@pytest.mark.parametrize("line, message", [
    ({"prompt": "p"}, "line 2: 'response' is missing"),
    ({"messages": [{"role": "assistant", "content": "a"}]}, "line 2: 'messages' must end with a user message"),
    ({"messages": "nope"}, "line 2: 'messages' must be a list"),
])
def test_bad_demonstration_files_import_nothing(db, line, message):
    data = (json.dumps({"prompt": "fine", "response": "ok"}) + "\n" + json.dumps(line) + "\n").encode()
    with pytest.raises(BadImportFile, match=message):
        demonstrations.parse_demonstrations(data)
    assert items.counts(db)["demonstrations"] == 0


@pytest.mark.slow
def test_sft_job_registers_a_version_that_reloads_identically_and_generates(db, db_path, tiny_generator):
    start = versions.register_version(db, "generator", "tiny", tiny_generator, activate=True)
    demonstrations.import_demonstrations(db, [demonstrations.Demonstration(p, r) for p, r in DEMOS], "s")
    job_id = jobs.create_job(db, "sft", {})
    with jobs.running_job(db_path, job_id) as (job, result):
        result.update(run_job(db, SFTConfig(epochs=2, learning_rate=1e-3, bf16=False, name="tiny-sft", activate=True), job))
    assert jobs.get_job(db, job_id)["status"] == "done"
    # 6 demonstrations, 1 held out: asked to, it is still not made active on one answer's loss (walk, 2026-12-06)
    assert result["activation"].startswith("not made active: too few held-out demonstrations to tell: 1, need at least 5")
    [new] = [v for v in versions.list_versions(db, "generator") if v["name"] == "tiny-sft"]
    assert not new["is_active"] and new["parent_id"] == start and "val/perplexity" in new["metrics"]
    first, tokenizer = load_generator(new["path"])
    second, _ = load_generator(new["path"])
    assert sample(first, tokenizer, ["yes or no"], 2, 1.0, 1.0, 10, seed=3) == sample(second, tokenizer, ["yes or no"], 2, 1.0, 1.0, 10, seed=3)
    generation_job = jobs.create_job(db, "generate", {})
    with jobs.running_job(db_path, generation_job) as (job, result):
        result.update(run_generation(db, GenerationConfig(prompt_set="s", generator_version=new["id"], k=2, max_new_tokens=6), job))
    assert result["items"] == len(DEMOS)


def test_sft_refuses_without_enough_demonstrations(db, db_path, tiny_generator):
    versions.register_version(db, "generator", "tiny", tiny_generator, activate=True)
    job_id = jobs.create_job(db, "sft", {})
    with pytest.raises(ValueError, match="need demonstrations for at least 2 prompts"):
        with jobs.running_job(db_path, job_id) as (job, _):
            run_job(db, SFTConfig(), job)


CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "why is the sky blue"},
        {"role": "assistant", "content": "rain on a blue sky."}, {"role": "user", "content": "write a short poem"}]


def test_a_conversation_prompt_is_all_context_and_only_the_final_reply_is_a_target(tiny_generator):
    model, tokenizer = load_generator(tiny_generator)
    ids, n_prompt = encode_demonstration(tokenizer, CHAT, "the sky is blue.", 256)
    context = tokenizer.decode(ids[:n_prompt])
    assert all(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>" in context for m in CHAT)
    assert context.endswith("<|im_start|>assistant\n")
    assert tokenizer.decode(ids[n_prompt:]).startswith("the sky is blue.<|im_end|>")
    [batch] = make_batches([(ids, n_prompt)], 1, tokenizer.pad_token_id, False, 0)
    assert int(batch.response_mask.sum()) == len(ids) - n_prompt
    earlier_reply = len(tokenizer.apply_chat_template(CHAT[:3], tokenize=True))
    assert not batch.response_mask[0, :earlier_reply].any()  # the earlier assistant turn is context, not a target
    tokenizer.chat_template = None
    ids, n_prompt = encode_demonstration(tokenizer, CHAT, "the sky is blue.", 256)
    assert tokenizer.decode(ids[:n_prompt]).endswith("Human: write a short poem\n\nAssistant:\n")


def test_demonstrations_of_a_conversation_train_on_the_conversation(db, tiny_generator):
    from data.conversation import as_messages

    items.ensure_prompt_set(db, "s")
    chat, _ = items.add_prompt(db, "s", CHAT)
    me = annotation.annotator_id(db, "alice")
    demonstrations.save_demonstration(db, chat, me, "the sky is blue.")
    [row] = demonstrations.demonstrations(db)
    assert as_messages(row["prompt"], row["messages"]) == CHAT
    model, tokenizer = load_generator(tiny_generator)
    config = SFTConfig(epochs=1, batch_size=1, bf16=False)
    _, metrics = fit(model, tokenizer, [row], [row], config)
    assert metrics["val/loss"] > 0


def test_the_write_queue_serves_a_projects_prompts_before_the_demo_sets(app_db):
    """A project that starts with demonstrations has no items yet, so the demo set is not paused: its 40 prompts were
    served first (walk, 2026-12-06)."""
    items.ensure_prompt_set(app_db, "walkset")
    mine, _ = items.add_prompt(app_db, "walkset", "a prompt of my own")
    assert app_db.execute("SELECT status FROM prompt_sets WHERE name = 'builtin'").fetchone()[0] == "active"
    assert demonstrations.next_prompt_without_demonstration(app_db)["id"] == mine
