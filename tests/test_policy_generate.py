import pytest
import torch

from data import builtin, versions
from policy.generate import chat_inputs, completion_lengths, sample
from policy.models import load_generator
from training import EMBEDDED_GENERATOR

EOS = 2


def test_completion_lengths_cut_at_the_first_eos_by_position():
    generated = torch.tensor([
        [5, 7, EOS, EOS, EOS],  # ended, then padded with the same token
        [5, 7, 8, 9, 4],  # never ended
        [EOS, EOS, EOS, EOS, EOS],  # empty completion
    ])
    lengths, ended = completion_lengths(generated, [EOS])
    assert lengths.tolist() == [2, 5, 0]
    assert ended.tolist() == [True, False, True]


def test_prompts_are_left_padded_with_the_chat_template(tiny_generator):
    _, tokenizer = load_generator(tiny_generator)
    inputs = chat_inputs(tokenizer, ["hi", "a much longer prompt than the first one"])
    mask = inputs["attention_mask"]
    assert mask[0, 0] == 0 and mask[0, -1] == 1 and mask[1].all()
    assert "<|im_start|>assistant" in tokenizer.decode(inputs["input_ids"][0])


def test_sampling_gives_k_seeded_completions_per_prompt(tiny_generator):
    model, tokenizer = load_generator(tiny_generator)
    first = sample(model, tokenizer, ["hello", "why is the sky blue"], k=3, temperature=1.0, top_p=1.0, max_new_tokens=10, seed=1)
    again = sample(model, tokenizer, ["hello", "why is the sky blue"], k=3, temperature=1.0, top_p=1.0, max_new_tokens=10, seed=1)
    assert [len(samples) for samples in first] == [3, 3]
    assert first == again
    for s in (s for samples in first for s in samples):
        assert 0 <= s.n_tokens <= 10 and s.finish_reason in ("eos", "length")
        assert s.finish_reason == "eos" or s.n_tokens == 10


@pytest.mark.slow
def test_the_embedded_generator_writes_a_real_completion():
    model, tokenizer = load_generator(EMBEDDED_GENERATOR)
    assert tokenizer.pad_token == tokenizer.eos_token == "<|im_end|>"
    [[s1, s2]] = sample(model, tokenizer, ["What is the capital of France?"], k=2, temperature=0.7, top_p=0.9,
                        max_new_tokens=12, seed=0)
    assert s1.n_tokens > 0 and len(s1.text) > 5
    assert "<|im_end|>" not in s1.text + s2.text


def test_init_registers_the_embedded_generator(db):
    builtin.init_db(db)
    assert versions.active_version(db, "generator")["path"] == EMBEDDED_GENERATOR


CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "why is the sky blue"},
        {"role": "assistant", "content": "rain."}, {"role": "user", "content": "write a short poem"}]


def test_a_conversation_goes_through_the_chat_template_with_every_turn(tiny_generator):
    _, tokenizer = load_generator(tiny_generator)
    inputs = chat_inputs(tokenizer, [CHAT, "hi"])
    text = tokenizer.decode(inputs["input_ids"][0])
    positions = [text.index(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>") for m in CHAT]
    assert positions == sorted(positions) and text.endswith("<|im_start|>assistant\n")
    same = chat_inputs(tokenizer, [[{"role": "user", "content": "hi"}]])["input_ids"][0]
    assert inputs["input_ids"][1][-len(same):].tolist() == same.tolist()  # a plain prompt is one user turn


def test_without_a_chat_template_a_conversation_is_its_transcript_cueing_the_assistant(tiny_generator):
    _, tokenizer = load_generator(tiny_generator)
    tokenizer.chat_template = None
    inputs = chat_inputs(tokenizer, [CHAT, "hi"])
    assert tokenizer.decode(inputs["input_ids"][0], skip_special_tokens=True) == (
        "System: Be brief.\n\nHuman: why is the sky blue\n\nAssistant: rain.\n\nHuman: write a short poem\n\nAssistant:")
    assert tokenizer.decode(inputs["input_ids"][1], skip_special_tokens=True) == "hi"


def test_a_generation_job_continues_each_conversation(db, db_path, tiny_generator, monkeypatch):
    from data import annotation, items, jobs
    from policy import generate
    from policy.config import GenerationConfig

    versions.register_version(db, "generator", "tiny", tiny_generator, activate=True)
    items.ensure_prompt_set(db, "s")
    items.add_prompt(db, "s", CHAT)
    items.add_prompt(db, "s", "hello")
    db.conn.commit()
    seen = []
    real = generate.chat_inputs
    monkeypatch.setattr(generate, "chat_inputs", lambda tokenizer, prompts: seen.extend(prompts) or real(tokenizer, prompts))
    job_id = jobs.create_job(db, "generate", {})
    with jobs.running_job(db_path, job_id) as (job, result):
        result.update(generate.run_generation(db, GenerationConfig(prompt_set="s", k=2, max_new_tokens=4), job))
    assert result["items"] == 2 and seen == [CHAT, [{"role": "user", "content": "hello"}]]
    assert annotation.get_item(db, 1).messages == CHAT
    again = jobs.create_job(db, "generate", {})  # the same again: nothing to do, and the result says why
    with jobs.running_job(db_path, again) as (job, result):
        result.update(generate.run_generation(db, GenerationConfig(prompt_set="s", k=2, max_new_tokens=4), job))
    assert result["items"] == 0 and result["nothing_to_do"].startswith("every prompt of 's' already has an item")


def test_sampling_at_a_tiny_temperature_is_greedy_decoding_as_transformers_does_it(tiny_generator):
    """The decode loop runs each prompt once and repeats its KV cache K times; it must continue exactly as
    `generate` does, left padding and all."""
    from policy.sampling import sample_tokens

    model, tokenizer = load_generator(tiny_generator)
    inputs = chat_inputs(tokenizer, ["hello", "why is the sky blue today my friend"]).to(model.device)
    greedy = model.generate(**inputs, do_sample=False, max_new_tokens=12, min_new_tokens=12, pad_token_id=tokenizer.pad_token_id)
    ours = sample_tokens(model, inputs["input_ids"], inputs["attention_mask"], 3, 12, 1e-4, [], tokenizer.pad_token_id)
    expected = greedy[:, inputs["input_ids"].shape[1]:].repeat_interleave(3, 0)
    assert torch.equal(ours, expected)
    nucleus = sample_tokens(model, inputs["input_ids"], inputs["attention_mask"], 3, 12, 1.0, [], tokenizer.pad_token_id, top_p=1e-6)
    assert torch.equal(nucleus, expected)  # a nucleus this small is the most likely token alone


def test_after_the_first_eos_a_sample_is_padding(tiny_small_vocab_generator):
    from policy.generate import eos_token_ids
    from policy.sampling import sample_tokens

    model, tokenizer = load_generator(tiny_small_vocab_generator)
    inputs = chat_inputs(tokenizer, ["hello", "why"])
    torch.manual_seed(0)
    tokens = sample_tokens(model, inputs["input_ids"], inputs["attention_mask"], 4, 30, 1.0, eos_token_ids(model, tokenizer), 0)
    ended = [row.tolist().index(tokenizer.eos_token_id) for row in tokens if tokenizer.eos_token_id in row.tolist()]
    assert ended, "the tiny model should end some samples"
    for row in tokens:
        row = row.tolist()
        if tokenizer.eos_token_id in row:
            assert all(t == 0 for t in row[row.index(tokenizer.eos_token_id) + 1:])


def test_the_static_cache_path_of_the_gpu_samples_as_the_loop_does(tiny_small_vocab_generator):
    """The GPU's compiled path (generate on a static cache, prompts padded to PAD_TO) is checked here eagerly: the same
    greedy continuations as the loop, K per prompt together, padding after the first EOS."""
    from policy.generate import eos_token_ids
    from policy.sampling import sample_tokens, sample_tokens_static

    model, tokenizer = load_generator(tiny_small_vocab_generator)
    inputs = chat_inputs(tokenizer, ["hello", "why is the sky blue today my friend"])
    eos = eos_token_ids(model, tokenizer)
    loop = sample_tokens(model, inputs["input_ids"], inputs["attention_mask"], 3, 20, 1e-4, eos, tokenizer.pad_token_id)
    static = sample_tokens_static(model, inputs["input_ids"], inputs["attention_mask"], 3, 20, 1e-4, eos,
                                  tokenizer.pad_token_id, compile_step=False)
    assert static.shape == loop.shape == (6, 20) and torch.equal(static, loop)
    torch.manual_seed(0)
    sampled = sample_tokens_static(model, inputs["input_ids"], inputs["attention_mask"], 4, 30, 1.0, eos,
                                   tokenizer.pad_token_id, compile_step=False)
    assert sampled.shape == (8, 30) and len({tuple(r) for r in sampled.tolist()}) > 1
    for row in sampled.tolist():
        if tokenizer.eos_token_id in row:
            assert all(t == tokenizer.pad_token_id for t in row[row.index(tokenizer.eos_token_id) + 1:])


def test_the_compiled_path_is_for_cuda_only_and_can_be_turned_off(monkeypatch):
    from policy.sampling import compiled_decode

    monkeypatch.delenv("RLHF_COMPILED_DECODE", raising=False)
    assert not compiled_decode(torch.device("cuda"))  # opt-in until a GPU run has measured it
    monkeypatch.setenv("RLHF_COMPILED_DECODE", "1")
    assert compiled_decode(torch.device("cuda")) and not compiled_decode(torch.device("cpu"))


def test_new_items_of_a_set_in_the_uncertain_order_are_scored_by_the_active_reward_model(db, db_path, tiny_generator,
                                                                                         tiny_encoder, tmp_path, monkeypatch):
    from data import items, jobs, uncertainty
    from policy.config import GenerationConfig
    from policy.generate import run_generation
    from rm.config import RewardConfig, UncertaintyConfig
    from rm.model import new_reward_model, save_reward_model
    from rm.uncertainty import run_uncertainty

    config = RewardConfig(backbone=tiny_encoder)
    save_reward_model(*new_reward_model(config), config, {}, tmp_path / "rm")
    reward = versions.register_version(db, "reward", "rm-untrained", str(tmp_path / "rm"), activate=True)
    versions.register_version(db, "generator", "tiny", tiny_generator, activate=True)
    for name, order in (("plain", "oldest"), ("doubtful", "uncertain")):
        items.ensure_prompt_set(db, name)
        items.add_prompt(db, name, f"a prompt of {name}")
        uncertainty.set_queue_order(db, name, order, random_share=0.0)
    db.conn.commit()
    started = []
    monkeypatch.setattr(jobs, "start_job", lambda path, kind, args, actor=None: started.append((kind, args)) or jobs.create_job(db, kind, args))
    for name in ("plain", "doubtful"):
        job_id = jobs.create_job(db, "generate", {})
        with jobs.running_job(db_path, job_id) as (job, result):
            result.update(run_generation(db, GenerationConfig(prompt_set=name, k=3, max_new_tokens=4), job))
    assert started == [("score_queue", {"prompt_sets": "doubtful"})]  # its own job: the generation is done
    [scoring] = jobs.list_jobs(db, kind="score_queue")
    with jobs.running_job(db_path, scoring["id"]) as (job, result):  # run that job here
        result.update(run_uncertainty(db, UncertaintyConfig(prompt_sets="doubtful"), job))
    scored = db.execute("""SELECT p.prompt_set, i.uncertainty_version, i.uncertainty, i.priority FROM items i
                           JOIN prompts p ON p.id = i.prompt_id ORDER BY i.id""").fetchall()
    assert scored[0] == ("plain", None, None, 0)
    assert scored[1][:2] == ("doubtful", reward) and 0 < scored[1][2] <= 1 and scored[1][3] == scored[1][2]


def test_a_batch_reports_progress_as_its_tokens_are_written(tiny_small_vocab_generator):
    """A set smaller than one batch used to sit at 0% until it was done: the job's progress now moves per token."""
    from policy.generate import within_batch

    class Reports:
        def __init__(self):
            self.seen = []

        def progress(self, done, total, message=""):
            self.seen.append((done, total, message))

        def eta(self, done, total):
            return f"ETA of {done}/{total}"

    model, tokenizer = load_generator(tiny_small_vocab_generator)
    tokens = []
    sample(model, tokenizer, [[{"role": "user", "content": "hi"}]], 2, 1.0, 1.0, 12, 0, on_token=tokens.append)
    assert tokens == list(range(1, len(tokens) + 1)) and len(tokens) <= 11
    job = Reports()
    report = within_batch(job, done=8, batch=3, total=11, max_new_tokens=12, every_s=0.0)
    for t in (3, 6, 12):
        report(t)
    assert [(d, n) for d, n, _ in job.seen] == [(8.75, 11), (9.5, 11), (11.0, 11)]
    assert job.seen[0][2] == "8/11 prompts, the next 3 at token 3 of at most 12 · ETA of 8.75/11 (at most: answers often end sooner)"
    quiet = Reports()
    report = within_batch(quiet, 0, 3, 3, 12, every_s=3600)
    report(5)
    assert quiet.seen == []  # at most once every every_s: the store is not written per token
    two = Reports()  # a head-to-head's batch, 2 answers of 3 by its version, then 1 by the other: never going back
    for part in ((0.0, 2 / 3), (2 / 3, 1 / 3)):
        report = within_batch(two, 0, 3, 3, 12, every_s=0.0, part=part)
        for t in (6, 12):
            report(t)
    assert [round(d, 6) for d, _, _ in two.seen] == [1.0, 2.0, 2.5, 3.0]


def test_a_head_to_head_round_mixes_two_versions_in_each_item_and_the_leaderboard_meets_them(db, db_path, tiny_generator):
    """Each round came from one version only, so the Model leaderboard never met two (walk, 2026-12-07): a round can
    have another version write some of each item's answers, with seeds of its own (a version a step from its start
    would otherwise write the very same answers)."""
    from data import annotation, items, jobs, leaderboard
    from policy import generate
    from policy.config import GenerationConfig

    start = versions.register_version(db, "generator", "start", tiny_generator, activate=True)
    new = versions.register_version(db, "generator", "new", tiny_generator, parent_id=start)  # the same weights
    items.ensure_prompt_set(db, "s")
    for text in ("hello", "how are you?"):
        items.add_prompt(db, "s", text)
    db.conn.commit()
    config = GenerationConfig(prompt_set="s", generator_version=new, k=4, max_new_tokens=4, versus_version=start, versus_k=2)
    job_id = jobs.create_job(db, "generate", vars(config))
    with jobs.running_job(db_path, job_id) as (job, result):
        result.update(generate.run_generation(db, config, job))
    assert result["items"] == 2 and result["versus"] == {"start": 2}
    rows = db.execute("SELECT item_id, generator_version_id, seed FROM completions ORDER BY item_id, position").fetchall()
    for item in {row[0] for row in rows}:
        seeds = {version: {s for i, v, s in rows if i == item and v == version} for version in (start, new)}
        assert [len([r for r in rows if r[0] == item and r[1] == v]) for v in (new, start)] == [2, 2]
        assert seeds[new] == {0} and seeds[start] == {generate.VERSUS_SEED_OFFSET}  # batch 0: never the same draws
    again = jobs.create_job(db, "generate", vars(config))  # skip done: an item from the same two versions exists
    with jobs.running_job(db_path, again) as (job, result):
        result.update(generate.run_generation(db, config, job))
    assert result["items"] == 0 and "from new, start" in result["nothing_to_do"]
    ann = annotation.annotator_id(db, "ann")
    annotation.submit_ranking(db, 1, ann, [[0], [1], [2], [3]], [0, 1, 2, 3])
    leaderboard.refresh(db)
    counts = leaderboard.pair_counts(db)
    assert sorted(counts.models) == ["new", "start"] and len(counts.item) == 1  # the ranked item's cross-version pairs


@pytest.mark.parametrize("settings, message", [({"versus_k": 1}, "needs the other version"),
                                               ({"versus_version": 2, "versus_k": 2, "k": 2}, "leave at least one"),
                                               ({"versus_version": 2, "versus_k": 1, "generator_version": 2}, "two different")])
def test_a_head_to_head_that_cannot_be_sampled_is_refused_before_the_job_starts(settings, message):
    from policy.config import GenerationConfig

    with pytest.raises(ValueError, match=message):
        GenerationConfig(**settings)
