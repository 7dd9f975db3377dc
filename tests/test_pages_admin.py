"""AppTest of every admin screen: each computes only itself, and a failure stays on its screen."""

import json
import os
import shutil

import pytest

from ui.navigation import ADMIN_SCREENS
from data import annotation, jobs, prompt_sets, quality, queue, spot_checks, uncertainty, versions
from data.items import BUILTIN_SET, NewCompletion, add_item, add_prompt, ensure_prompt_set
from data.store import open_db
from policy.config import DPOConfig, PolicyConfig, SFTConfig
from tests.conftest import add_items, rank_by, write_demonstrations
from tests.test_pages import start, unescaped

SCREENS = [file for screens in ADMIN_SCREENS.values() for file, _, _ in screens]


def rank_two(db):
    item = queue.next_item(db, annotation.annotator_id(db, "x")).id
    for name, groups in (("alice", [[0], [1], [2, 3]]), ("bob", [[0], [2], [1], [3]])):
        me = annotation.annotator_id(db, name)
        annotation.submit_ranking(db, item, me, groups, annotation.display_order(item, me, 4), seconds=4.0)
    return item


@pytest.mark.parametrize("screen", SCREENS)
def test_every_admin_screen_opens_without_an_exception(app_db, screen):
    rank_two(app_db)
    at = start(f"pages/{screen}.py")
    assert not at.exception and not at.error
    assert at.title[0].value == next(title for s in ADMIN_SCREENS.values() for f, title, _ in s if f == screen)


def test_the_overview_shows_counts(app_db):
    metrics = {m.label: m.value for m in start("pages/data/overview.py").metric}
    assert metrics["Prompts"] == "40" and metrics["Completions"] == "160"


def test_admin_puts_a_set_in_the_uncertain_order_and_its_items_get_scored(app_db, monkeypatch):
    started = []
    create_only(monkeypatch, started)
    at = start("pages/data/overview.py")
    at.selectbox(key="order-builtin").set_value("uncertain").run()
    at.number_input(key="share-builtin").set_value(0.3)
    at.button(key="save-builtin").click().run()
    assert not at.exception and uncertainty.queue_settings(app_db, "builtin") == {"queue_order": "uncertain", "random_share": 0.3}
    assert started == [] and "No active reward model" in at.warning[0].value  # nothing to score with yet
    version = versions.register_version(app_db, "reward", "rm-x", "/nowhere", activate=True)
    at.button(key="save-builtin").click().run()
    assert started == [("score_queue", {"prompt_sets": "builtin"})]
    assert "Job 1 scores its open items with the active reward model" in unescaped(at.success[0])
    assert any("0 of 40 open items scored by rm-x" in unescaped(c) for c in at.caption)
    uncertainty.store_uncertainty(app_db, version, [(1, 0.5)])
    assert any("1 of 40 open items" in unescaped(c) for c in start("pages/data/overview.py").caption)


def test_making_a_reward_model_active_rescores_the_uncertain_queues(app_db, monkeypatch):
    started = []
    create_only(monkeypatch, started)
    for name in ("rm-a", "rm-b"):
        versions.register_version(app_db, "reward", name, "/nowhere", activate=True)
    at = start("pages/train/reward.py")
    at.button(key=next(b.key for b in at.button if b.label == "Make active")).click().run()
    assert started == []  # no set in the 'uncertain' order: nothing to rescore
    uncertainty.set_queue_order(app_db, "builtin", "uncertain")
    at.button(key=next(b.key for b in at.button if b.label == "Make active")).click().run()
    assert started == [("score_queue", {"prompt_sets": "builtin"})]
    assert "Job 1 scores the least-certain-first queues" in unescaped(at.success[0])


def test_admin_imports_pasted_prompts_once(app_db):
    at = start("pages/data/import.py")
    for expected in ("Imported: 2 added, 0 already present", "Imported: 0 added, 2 already present"):
        at.text_area[0].input("First new prompt\nSecond new prompt")
        at.button(key="FormSubmitter:import-prompts-Import prompts").click().run()
        assert not at.exception and expected in unescaped(at.success[0])
    assert app_db.execute("SELECT COUNT(*) FROM prompts WHERE prompt_set = 'default'").fetchone()[0] == 2
    assert "(set default). Next: Data → Generate writes the completions" in unescaped(at.success[0])
    at.text_area[0].input('{"prompt": "A third prompt"}\n{"messages": [{"role": "user", "content": "A fourth"}]}')
    at.button(key="FormSubmitter:import-prompts-Import prompts").click().run()  # JSON lines, read as such
    assert not at.exception and "Imported: 2 added" in unescaped(at.success[0])
    texts = [row[0] for row in app_db.execute("SELECT text FROM prompts WHERE prompt_set = 'default' ORDER BY id")]
    assert texts[2:] == ["A third prompt", "A fourth"]
    at.text_area[0].input('A plain fifth\n{"prompt": "A JSON sixth"}')  # a mix: neither way is safe to guess
    at.button(key="FormSubmitter:import-prompts-Import prompts").click().run()
    assert "1 of the 2 pasted lines are JSON objects and the others plain text" in unescaped(at.error[0])
    assert app_db.execute("SELECT COUNT(*) FROM prompts WHERE prompt_set = 'default'").fetchone()[0] == 4


def create_only(monkeypatch, started: list):
    def create(db_path, kind, args, actor=None):  # the real spawn is covered in test_data_jobs
        started.append((kind, args))
        return jobs.create_job(open_db(db_path), kind, args, actor=actor)

    monkeypatch.setattr(jobs, "start_job", create)


def test_admin_starts_a_generation_job_and_a_second_is_refused(app_db, monkeypatch):
    started = []
    create_only(monkeypatch, started)
    at = start("pages/data/generate.py")
    at.slider[0].set_value(3)
    at.button(key="FormSubmitter:generate-Start generation").click().run()
    assert not at.exception and "queued as job 1: starting now" in unescaped(at.success[0])
    [(kind, args)] = started
    assert kind == "generate" and args["k"] == 3 and args["prompt_set"] == "builtin"
    assert any("Job 1" in m.value and "queued" in m.value for m in at.markdown)
    at.button(key="FormSubmitter:generate-Start generation").click().run()
    assert "job 1" in unescaped(at.error[0]).lower() and len(jobs.list_jobs(app_db)) == 1


def test_the_generate_form_starts_from_the_sets_last_round_with_a_seed_it_did_not_use(app_db, monkeypatch):
    """A round after a one-step policy update, with the last round's seed, wrote 9 of 15 answers word for word again
    (a walk, 2026-12-07); the form also came back with the defaults instead of the set's K and token cap."""
    started = []
    create_only(monkeypatch, started)
    last = jobs.create_job(app_db, "generate", {"prompt_set": "builtin", "k": 3, "max_new_tokens": 64, "seed": 0})
    app_db.execute("UPDATE jobs SET status = 'done', result = '{\"items\": 40}' WHERE id = ?", [last])
    ensure_prompt_set(app_db, "fresh")
    app_db.conn.commit()
    at = start("pages/data/generate.py")
    at.selectbox(key="generate-set").set_value(BUILTIN_SET).run()
    assert any(unescaped(c).startswith(f"Sampled as this set's last round (job {last}): K=3") for c in at.caption)
    assert at.slider[0].value == 3
    fields = {n.label: n.value for n in at.number_input}
    assert (fields["Max new tokens"], fields["Seed"]) == (64, 5)  # 40 prompts, 8 a batch: seeds 0-4 used
    start_version = versions.active_version(app_db, "generator")
    other = versions.register_version(app_db, "generator", "policy-1", "/nowhere", parent_id=start_version["id"])
    at.run()
    next(s for s in at.selectbox if s.label.startswith("Head-to-head")).set_value(versions.get_version(app_db, other))
    at.button(key="FormSubmitter:generate-Start generation").click().run()
    assert not at.exception and [(args["k"], args["max_new_tokens"], args["seed"]) for _, args in started] == [(3, 64, 5)]
    assert (started[0][1]["generator_version"], started[0][1]["versus_version"], started[0][1]["versus_k"]) == (
        start_version["id"], other, 1)  # 3 // 2 of the answers
    at.selectbox(key="generate-set").set_value("fresh").run()  # never generated: the defaults
    assert any(unescaped(c).startswith("This set was never generated: the defaults, K=4") for c in at.caption)
    assert at.slider[0].value == 4 and {n.label: n.value for n in at.number_input}["Seed"] == 0


def test_the_generate_screen_lists_a_sets_rounds_with_who_wrote_them_and_their_progress(app_db):
    """Which version wrote which items was said on job cards only (walk, 2026-12-07)."""
    start_id = versions.active_version(app_db, "generator")["id"]
    policy = versions.register_version(app_db, "generator", "policy-1", "/nowhere", parent_id=start_id)
    ensure_prompt_set(app_db, "mine")
    prompts = [add_prompt(app_db, "mine", f"question {i}")[0] for i in range(3)]
    first, second = (jobs.create_job(app_db, "generate", {"prompt_set": "mine", "generator_version": version})
                     for version in (start_id, policy))
    ranked = [add_item(app_db, p, [NewCompletion("a", start_id), NewCompletion("b", start_id)], job_id=first) for p in prompts]
    add_item(app_db, prompts[0], [NewCompletion("c", policy), NewCompletion("d", model_name="llama")], job_id=second)
    rank_by(app_db, ranked[:2], lambda text: text == "a")
    app_db.conn.commit()
    at = start("pages/data/generate.py")
    at.selectbox(key="generate-set").set_value("mine").run()
    table = at.dataframe[0].value
    start_name = versions.get_version(app_db, start_id)["name"]
    assert table[["round", "written by", "items", "rankings", "complete items"]].values.tolist() == [
        [f"job {first}", start_name, 3, "2 of 3", 2], [f"job {second}", "llama, policy-1", 1, "0 of 1", 0]]


def test_after_a_head_to_head_round_the_generate_form_offers_the_same_head_to_head(app_db):
    start_id = versions.active_version(app_db, "generator")["id"]
    policy = versions.register_version(app_db, "generator", "policy-1", "/nowhere", parent_id=start_id)
    last = jobs.create_job(app_db, "generate", {"prompt_set": BUILTIN_SET, "generator_version": policy, "k": 3,
                                                "versus_version": start_id, "versus_k": 1})
    app_db.execute("UPDATE jobs SET status = 'done', result = '{\"items\": 8}' WHERE id = ?", [last])
    app_db.conn.commit()
    at = start("pages/data/generate.py")
    at.selectbox(key="generate-set").set_value(BUILTIN_SET).run()
    start_name = versions.get_version(app_db, start_id)["name"]
    assert any(f"K=3 (1 by {start_name})" in unescaped(c) for c in at.caption)
    assert next(s for s in at.selectbox if s.label.startswith("Head-to-head")).value["id"] == start_id
    assert {n.label: n.value for n in at.number_input}["Answers it writes"] == 1


def test_admin_cancels_a_running_job(app_db):
    job_id = jobs.create_job(app_db, "generate", {})
    app_db.execute("UPDATE jobs SET status = 'running', pid = ?, heartbeat_at = created_at, message = '3/40 prompts' WHERE id = ?",
                   [os.getpid(), job_id])
    app_db.conn.commit()
    at = start("pages/operate/jobs.py")
    assert "3/40 prompts" in at.get("progress")[0].proto.text
    at.button(key=f"jobs-cancel-{job_id}").click().run()
    assert app_db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", [job_id]).fetchone()[0] == 1


def test_admin_previews_an_export_and_writes_it_as_a_background_job(app_db, monkeypatch):
    rank_two(app_db)
    started = []
    create_only(monkeypatch, started)
    at = start("pages/operate/export.py")
    assert any("11 rows" in c.value for c in at.caption) and len(at.dataframe[0].value) == 11  # 5 + 6 pairs
    assert at.get("download_button")
    next(b for b in at.button if b.label.startswith("Write to a file")).click().run()
    [(kind, args)] = started
    assert kind == "export" and args["kind"] == "pairs"
    assert args["out"].startswith(os.path.join(os.path.dirname(os.environ["RLHF_DB"]), "exports"))


def test_admin_writes_a_dataset_folder_that_the_export_screen_then_lists(app_db, monkeypatch):
    from data import export

    rank_two(app_db)
    started = []
    create_only(monkeypatch, started)
    at = start("pages/operate/export.py")
    next(r for r in at.radio if r.label == "Format").set_value("dataset").run()
    next(b for b in at.button if b.label.startswith("Write to a file")).click().run()
    [(_, args)] = started
    assert args["format"] == "dataset" and not args["out"].endswith(".dataset")
    export.write_export(app_db, args["kind"], args["format"], args["out"])  # what the job does
    at.run()
    assert not at.exception and any("dataset folder" in c.value for c in at.caption)
    assert at.get("download_button")  # small: downloadable


def test_a_written_export_too_large_to_download_says_where_it_is_instead(app_db, monkeypatch):
    """Trust pass 3, finding 5: a download is served from the server's memory, so a large file is not offered."""
    from data import export

    rank_two(app_db)
    out = os.path.join(os.path.dirname(os.environ["RLHF_DB"]), "exports", "pairs-big.jsonl")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    export.write_export(app_db, "pairs", "jsonl", out)
    monkeypatch.setattr(export, "DOWNLOAD_LIMIT_BYTES", os.path.getsize(out) - 1)
    at = start("pages/operate/export.py")
    assert not at.exception
    assert any("too large to download through the app" in c.value and "pairs-big.jsonl" in c.value for c in at.caption)
    assert not any(b.proto.label == "Download" for b in at.get("download_button"))
    monkeypatch.setattr(export, "DOWNLOAD_LIMIT_BYTES", 0)  # the direct download too: estimated from the preview
    at.run()
    assert all(b.proto.disabled for b in at.get("download_button"))


def test_admin_starts_fine_tuning(app_db, monkeypatch):
    write_demonstrations(app_db, 30)
    started = []
    create_only(monkeypatch, started)
    at = start("pages/train/sft.py")
    next(n for n in at.number_input if n.label == "Epochs (at most)").set_value(2)
    at.button(key="FormSubmitter:train-sft-Start fine-tuning").click().run()
    assert not at.exception and "Fine-tuning queued as job" in unescaped(at.success[0])
    [(kind, args)] = started
    assert kind == "sft" and args["epochs"] == 2 and args["processes"] == 1  # no GPU here: one process, said so
    assert next(n for n in at.number_input if n.label == "Processes (GPUs)").disabled


def test_on_a_machine_with_gpus_a_training_takes_several_processes_and_shards_only_full_weights(app_db, monkeypatch):
    monkeypatch.setenv("RLHF_GPUS", "4")
    write_demonstrations(app_db, 30)
    started = []
    create_only(monkeypatch, started)
    at = start("pages/train/sft.py")
    next(n for n in at.number_input if n.label == "Processes (GPUs)").set_value(2)
    next(s for s in at.selectbox if s.label == "With several processes").set_value("shard")
    next(c for c in at.checkbox if c.label == "LoRA adapter").check()
    at.button(key="FormSubmitter:train-sft-Start fine-tuning").click().run()
    assert started == [] and "Sharding is for full weights" in unescaped(at.error[0])
    next(c for c in at.checkbox if c.label == "LoRA adapter").uncheck()
    at.button(key="FormSubmitter:train-sft-Start fine-tuning").click().run()
    [(kind, args)] = started
    assert args["processes"] == 2 and args["strategy"] == "shard" and not args["lora"]
    assert args["learning_rate"] == SFTConfig.LEARNING_RATES[False]  # the checkbox took the rate back with it
    assert jobs.list_jobs(app_db)[0]["num_gpus"] == 2  # the queue holds two GPUs for it


@pytest.mark.parametrize("page, submit, kind", [("policy", "train-policy-Start policy update", "train_policy"),
                                                ("dpo", "train-dpo-Start preference optimisation", "dpo")])
def test_a_policy_update_or_dpo_on_several_gpus_shards_only_full_weights(app_db, monkeypatch, tmp_path, page, submit, kind):
    monkeypatch.setenv("RLHF_GPUS", "4")
    versions.register_version(app_db, "reward", "rm", str(tmp_path), activate=True)
    rank_by(app_db, add_items(app_db, 2), lambda text: "word" not in text)  # DPO refuses a store with no rankings first
    started = []
    create_only(monkeypatch, started)
    at = start(f"pages/train/{page}.py")
    next(n for n in at.number_input if n.label == "Processes (GPUs)").set_value(2)
    next(s for s in at.selectbox if s.label == "With several processes").set_value("shard")
    at.button(key=f"FormSubmitter:{submit}").click().run()  # LoRA is on by default
    assert not at.exception and started == [] and "Sharding is for full weights" in unescaped(at.error[0])
    next(c for c in at.checkbox if c.label == "LoRA adapter").uncheck()
    at.button(key=f"FormSubmitter:{submit}").click().run()
    [(started_kind, args)] = started
    assert started_kind == kind and args["processes"] == 2 and args["strategy"] == "shard" and not args["lora"]
    # a full fine-tune at LoRA's rate wrecked a model in a walk: unticking LoRA takes the full-weight rate
    config = {"policy": PolicyConfig, "dpo": DPOConfig}[page]
    assert args["learning_rate"] == config.LEARNING_RATES[False] < config.LEARNING_RATES[True] / 10


def test_the_policy_screen_refuses_a_token_cap_below_the_ranked_completions_before_the_job_would_raise_it(app_db, monkeypatch,
                                                                                                        tmp_path):
    """A walk typed 32 max new tokens and learnt only from the job's card that it ran with 96: the form says so first."""
    versions.register_version(app_db, "reward", "rm", str(tmp_path), activate=True)
    sampled = [NewCompletion(text, params={"max_new_tokens": 96}) for text in ("good", "bad")]
    rank_by(app_db, [add_item(app_db, add_prompt(app_db, BUILTIN_SET, "capped question")[0], sampled)],
            lambda text: text == "good")
    started = []
    create_only(monkeypatch, started)
    at = start("pages/train/policy.py")
    cap = next(n for n in at.number_input if n.label == "Max new tokens")
    assert cap.value >= 96  # the form starts at the ranked completions' cap
    cap.set_value(32)
    at.button(key="FormSubmitter:train-policy-Start policy update").click().run()
    assert not at.exception and started == []
    assert unescaped(at.error[0]) == ("Max new tokens 32 is below the 96 the ranked completions were sampled with: a shorter "
                                      "cap cuts answers where the reward model never saw them cut, so the job would raise "
                                      "it to 96; use at least 96.")
    next(n for n in at.number_input if n.label == "Max new tokens").set_value(96)
    at.button(key="FormSubmitter:train-policy-Start policy update").click().run()
    [(kind, args)] = started
    assert kind == "train_policy" and args["max_new_tokens"] == 96


def test_the_policy_screen_says_before_a_run_when_its_evaluation_cannot_reach_the_gate(app_db, monkeypatch, tmp_path):
    """1 held-out prompt x K=2 gave 2 pairs, and only the Models screen said afterwards that 30 were needed (walk,
    2026-12-07): ticked 'Make it active', the form refuses; unticked, the queued message says so."""
    versions.register_version(app_db, "reward", "rm", str(tmp_path), activate=True)
    started = []
    create_only(monkeypatch, started)
    at = start("pages/train/policy.py")
    for label, value in (("Held-out prompts", 1), ("Samples per prompt (K)", 2)):
        next(n for n in at.number_input if n.label == label).set_value(value)
    next(c for c in at.checkbox if c.label == "Make it active if it passes the gate").check()
    at.button(key="FormSubmitter:train-policy-Start policy update").click().run()
    assert not at.exception and started == []
    assert unescaped(at.error[0]) == ("Its held-out evaluation gives 1 prompt x K=2 = 2 pairs, below the 30 its gate reads "
                                      "a win rate from, so 'Make it active' cannot make it active: hold out at least 15 "
                                      "prompts (or raise K), or make it active by hand on the Models screen after reading "
                                      "what it writes.")
    next(c for c in at.checkbox if c.label == "Make it active if it passes the gate").uncheck()
    at.button(key="FormSubmitter:train-policy-Start policy update").click().run()
    assert [(args["eval_prompts"], args["k"], args["activate"]) for _, args in started] == [(1, 2, False)]
    assert "Note: its held-out evaluation gives 1 prompt x K=2 = 2 pairs" in unescaped(at.success[0])
    assert "so it cannot be made active by itself" in unescaped(at.success[0])


def test_the_reward_screen_warns_before_training_when_too_few_rankings_would_be_held_out_for_the_gate(app_db):
    ensure_prompt_set(app_db, "small")
    ids = [add_item(app_db, add_prompt(app_db, "small", f"question {i}")[0], [NewCompletion("good"), NewCompletion("bad")])
           for i in range(8)]
    rank_by(app_db, ids, lambda text: text == "good")
    at = start("pages/train/reward.py")
    assert "About 2 of the 8 rankings would be held out (2 of the 8 prompts" in unescaped(at.warning[0])
    assert unescaped(at.warning[0]).endswith("could not be made active: rank about 15 more on 15 new prompts (import more prompts if the set has too few).")


def test_the_reward_screen_counts_the_sets_picked_and_refuses_a_run_with_nothing_to_learn(app_db, monkeypatch):
    """Picking a set with no rankings left "Train on 15 rankings" on the screen and queued a job that failed in 7 s
    (walk, 2026-12-07)."""
    ensure_prompt_set(app_db, "small")
    ids = [add_item(app_db, add_prompt(app_db, "small", f"question {i}")[0], [NewCompletion("good"), NewCompletion("bad")])
           for i in range(30)]
    rank_by(app_db, ids, lambda text: text == "good")
    annotation.skip_item(app_db, ids[0], annotation.annotator_id(app_db, "skipper"), [0, 1], 1.0)  # no ranking
    ensure_prompt_set(app_db, "other")
    elsewhere = add_item(app_db, add_prompt(app_db, "other", "a question")[0], [NewCompletion("good"), NewCompletion("bad")])
    rank_by(app_db, [elsewhere], len, annotator="idle")  # idle has ranked, but nothing of "small"
    app_db.conn.commit()
    at = start("pages/train/reward.py")
    assert at.markdown[0].value.startswith("**Train** on 31 rankings (31 comparisons). Defaults work")
    at.multiselect(key="rm-sets").select(BUILTIN_SET).run()
    assert at.markdown[0].value.startswith(f"**Train** on 0 rankings of {BUILTIN_SET}.")
    assert unescaped(at.warning[0]) == (f"The prompt set {BUILTIN_SET} has no rankings to learn from: rank some of its "
                                        "items first, or pick another set.")
    started = []
    create_only(monkeypatch, started)
    at.button(key="FormSubmitter:train-rm-Start training").click().run()
    assert not started and unescaped(at.error[0]).startswith(f"The prompt set {BUILTIN_SET} has no rankings")
    at.multiselect(key="rm-sets").unselect(BUILTIN_SET).select("small").run()
    assert not at.warning and at.markdown[0].value.startswith("**Train** on 30 rankings of small.")
    assert "skipper" not in at.multiselect(key="rm-annotators").options  # nothing to learn from to pick
    at.multiselect(key="rm-annotators").select("idle").run()  # the count and the warning follow the annotators too
    assert at.markdown[0].value.startswith("**Train** on 0 rankings of small by idle.")
    assert unescaped(at.warning[0]) == ("Idle has no rankings in small to learn from: pick other annotators, or leave "
                                        "the field empty for all.")
    at.button(key="FormSubmitter:train-rm-Start training").click().run()
    assert not started and unescaped(at.error[0]).startswith("Idle has no rankings in small")
    at.multiselect(key="rm-annotators").select("scripted").run()
    assert not at.warning and unescaped(at.markdown[0]).startswith("**Train** on 30 rankings of small by idle, scripted.")
    at.button(key="FormSubmitter:train-rm-Start training").click().run()
    assert [(kind, args["prompt_sets"], args["annotators"]) for kind, args in started] == [
        ("train_rm", ["small"], ["idle", "scripted"])]


def test_the_held_out_warning_counts_prompts_and_follows_the_share_field(app_db, monkeypatch):
    """Two annotators ranked every prompt: the advice the screen gave (a share of 0.4) held out 4 rankings, not 5, and
    the warning kept saying 0.2 after the field was changed (walk, 2026-12-06)."""
    ensure_prompt_set(app_db, "small")
    ids = [add_item(app_db, add_prompt(app_db, "small", f"question {i}")[0], [NewCompletion("good"), NewCompletion("bad")])
           for i in range(6)]
    for who in ("ann", "ben"):
        rank_by(app_db, ids, lambda text: text == "good", annotator=who)
    at = start("pages/train/reward.py")
    assert unescaped(at.warning[0]).startswith("About 2 of the 12 rankings would be held out (1 of the 6 prompts, a share of 0.2")
    assert "hold out a share of 0.45 or more" in unescaped(at.warning[0])
    at.number_input(key="rm-held-out").set_value(0.4).run()
    assert unescaped(at.warning[0]).startswith("About 4 of the 12 rankings would be held out (2 of the 6 prompts, a share of 0.4")
    at.number_input(key="rm-held-out").set_value(0.45).run()
    assert not at.warning  # 3 of the 6 prompts: 6 rankings, enough for the gate
    started = []
    create_only(monkeypatch, started)
    at.button(key="FormSubmitter:train-rm-Start training").click().run()
    assert [(kind, args["validation_fraction"]) for kind, args in started] == [("train_rm", 0.45)]


def test_the_dpo_screen_counts_the_sets_picked_and_warns_when_its_win_rate_would_rest_on_too_few_pairs(app_db, monkeypatch):
    """A project of 10 ranked prompts: 2 held out x 2 samples = 4 win-rate pairs, so the run could never make itself
    active, and the count on the screen was of every set whatever set the form picked (walk, 2026-12-06)."""
    ensure_prompt_set(app_db, "small")
    ids = [add_item(app_db, add_prompt(app_db, "small", f"question {i}")[0], [NewCompletion("good"), NewCompletion("bad")])
           for i in range(10)]
    rank_by(app_db, ids, lambda text: text == "good")
    tied = [add_item(app_db, add_prompt(app_db, "small", f"tied {i}")[0], [NewCompletion("good"), NewCompletion("bad")])
            for i in range(5)]
    rank_by(app_db, tied, lambda text: 0)  # all tied: no pair, so none of their prompts is held out for the win rate
    at = start("pages/train/dpo.py")
    assert not at.warning  # no active reward model: the screen says the gate cannot judge at all (an info), nothing more
    versions.register_version(app_db, "reward", "rm", "/nowhere", activate=True)
    app_db.conn.commit()
    at.run()
    assert unescaped(at.warning[0]) == ("A run could not make itself active: its win rate would rest on 4 pairs (2 "
                                        "held-out prompts, 2 samples each), fewer than the 30 the gate needs; draw 15 "
                                        "samples per held-out prompt, or rank about 63 more prompts (import more if the set has too few).")
    at.multiselect(key="dpo-sets").select("small").run()
    assert unescaped(at.markdown[0]).startswith("Learns from the **15 rankings** (5 of the 15 tie every answer: no pair "
                                                "unless 'Learn from ties' is on) of small directly")
    at.multiselect(key="dpo-sets").unselect("small").select(BUILTIN_SET).run()
    assert "Learns from the **0 rankings** of" in at.markdown[0].value
    assert unescaped(at.warning[0]).startswith(f"The prompt set {BUILTIN_SET} has no rankings to learn from")
    started = []
    create_only(monkeypatch, started)
    at.button(key="FormSubmitter:train-dpo-Start preference optimisation").click().run()
    assert not started and unescaped(at.error[0]).startswith(f"The prompt set {BUILTIN_SET} has no rankings")  # refused, no job
    at.multiselect(key="dpo-sets").unselect(BUILTIN_SET).select("small").run()
    at.number_input(key="dpo-samples").set_value(15).run()
    assert not at.warning
    at.multiselect(key="dpo-annotators").select("scripted").run()  # the count and warnings follow the people too
    assert unescaped(at.markdown[0]).startswith("Learns from the **15 rankings** (5 of the 15 tie every answer: no pair "
                                                "unless 'Learn from ties' is on) of small by scripted directly")
    at.button(key="FormSubmitter:train-dpo-Start preference optimisation").click().run()
    assert [(kind, args["prompt_sets"], args["annotators"], args["eval_samples"]) for kind, args in started] == [
        ("dpo", ["small"], ["scripted"], 15)]


def test_the_sft_screen_counts_the_sets_picked_refuses_too_few_and_warns_when_too_few_would_be_held_out(app_db, monkeypatch):
    """An SFT run made itself active on 1 held-out demonstration, and the screen counted every set's demonstrations
    whatever the form picked (walks, 2026-12-06 and 07)."""
    write_demonstrations(app_db, 4)
    write_demonstrations(app_db, 1, prompt_set="one")
    at = start("pages/train/sft.py")
    assert at.markdown[1].value.startswith("Fine-tunes on **5 demonstrations** of 5 prompts, a share of 0.2")
    assert unescaped(at.warning[0]).startswith("About 1 of the 5 demonstrations would be held out (1 of the 5 prompts")
    assert unescaped(at.warning[0]).endswith("judge a fine-tune, so it could not be made active: write about 18 more on 18 new prompts (import more prompts if the set has too few).")
    at.multiselect(key="sft-sets").select("one").run()
    assert at.markdown[1].value.startswith("Fine-tunes on **1 demonstration** of 1 prompt in one")
    started = []
    create_only(monkeypatch, started)
    at.button(key="FormSubmitter:train-sft-Start fine-tuning").click().run()
    assert not started and unescaped(at.error[0]).startswith("A fine-tune needs demonstrations of 2 prompts or more")
    at.multiselect(key="sft-sets").unselect("one").select("demos").run()
    at.button(key="FormSubmitter:train-sft-Start fine-tuning").click().run()  # 4: a warning, not a refusal
    assert [(kind, args["prompt_sets"]) for kind, args in started] == [("sft", ["demos"])]


def test_a_version_name_that_is_a_path_is_refused_before_the_job_starts(app_db):
    write_demonstrations(app_db, 30)
    at = start("pages/train/sft.py")
    next(t for t in at.text_input if t.label == "Version name").input("../../escaped")
    at.button(key="FormSubmitter:train-sft-Start fine-tuning").click().run()
    assert not at.exception and "name" in unescaped(at.error[0]) and jobs.list_jobs(app_db) == []


def test_the_quality_screens_show_agreement_and_biases(app_db):
    rank_two(app_db)
    at = start("pages/quality/agreement.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Pairwise agreement"].startswith("80% (n=") and metrics["Krippendorff's α (ordinal)"].endswith("(n=1 item)")
    assert metrics["Kendall's τ-b"].endswith("(n=1 item)")  # what a figure rests on, beside it (walk, 2026-12-06)
    at = start("pages/quality/annotators.py")
    assert len(at.get("vega_lite_chart")) >= 2  # position bias, length bias
    table = next(d.value for d in at.dataframe if "annotator" in d.value.columns)
    assert set(table["annotator"]) == {"alice", "bob"}
    # no gold, no repeats yet: those cells are blank numbers, not the text "None"
    assert not [c for c in table.columns if table[c].dtype == object and table[c].isna().any()]
    assert table["repeats"].tolist() == [0, 0] and str(table["repeats"].dtype) == "int64"


def test_item_consensus_is_computed_for_the_item_asked_for(app_db):
    item = rank_two(app_db)
    at = start("pages/quality/items.py")
    assert list(at.dataframe[0].value["completion"])[0] == "A"  # the newest ranked item: the one ranked here
    at.number_input[0].set_value(item).run()
    assert list(at.dataframe[0].value["completion"])[0] == "A"
    at.number_input[0].set_value(99_999).run()
    assert "no rankings" in at.info[0].value


def test_admin_marks_a_gold_item_and_sets_its_rate(app_db):
    at = start("pages/quality/gold.py")
    at.number_input(key="gold-every").set_value(5)
    next(b for b in at.button if b.label == "Save rate").click().run()
    at.text_input(key="gold-expected").input("B > A")
    at.button(key="FormSubmitter:gold-Mark as gold").click().run()
    assert not at.exception and "is gold now" in unescaped(at.success[0])
    assert app_db.execute("SELECT expected FROM gold").fetchone()[0] == "[[1], [0]]"
    assert app_db.execute("SELECT gold_every FROM prompt_sets WHERE name = 'builtin'").fetchone()[0] == 5
    # the set's gold items are listed, with the expected order and how its rankings fared (walk, 2026-12-06)
    [listed] = at.dataframe[0].value.to_dict("records")
    assert (listed["expected"], listed["rankings"], listed["passed"]) == ("B > A", 0, 0)


def test_a_corrupted_ranking_is_left_out_with_a_warning_and_breaks_no_screen(app_db):
    rank_two(app_db)
    app_db.execute("UPDATE rankings SET groups = '[[0.5], \"x\"]' WHERE id = 1")  # written by hand, after the repair migration
    app_db.conn.commit()
    at = start("pages/quality/agreement.py")
    assert not at.exception and "cannot be read" in unescaped(at.warning[0])
    for screen in ("quality/annotators", "data/overview", "operate/export"):
        assert not start(f"pages/{screen}.py").exception
    assert quality.unreadable_rankings(app_db) == [1]


def test_a_screen_that_fails_says_so_on_that_screen_only(app_db, tiny_encoder):
    folder = shutil.copytree(tiny_encoder, os.path.join(os.path.dirname(os.environ["RLHF_DB"]), "rm"))
    versions.register_version(app_db, "reward", "gone", folder, activate=True)
    rank_two(app_db)
    shutil.rmtree(folder)  # the active reward model's folder was deleted by hand
    at = start("pages/train/reward.py")
    at.toggle[0].set_value(True).run()
    assert "This screen failed: FileNotFoundError: the reward model's folder" in unescaped(at.error[0])
    assert len(at.exception) == 1  # the details, in an expander under the message
    assert not start("pages/train/policy.py").exception


def test_the_policy_screen_says_when_a_gain_is_length_alone(app_db):
    start_id = versions.active_version(app_db, "generator")["id"]
    metrics = {"val/reward_before": -1.0, "val/reward_after": 0.2, "val/win_rate": 0.8, "val/kl": 2.0, "val/lc_win_rate": 0.48, "val/lc_pairs": 40,
               "val/reward_length_corr": -0.93, "val/length_before": 60, "val/length_after": 21, "val/capped_before": 0.7,
               "val/capped_after": 0.1, "examples": [{"prompt": "p", "before": "long", "before_reward": -1.0, "after": "s", "after_reward": 0.2,
                                                      "before_tokens": 64, "before_ended": False, "after_tokens": 3, "after_ended": True}]}
    versions.register_version(app_db, "generator", "policy-short", "/nowhere", parent_id=start_id, metrics=metrics,
                              config={"max_new_tokens": 64})
    at = start("pages/train/policy.py")
    assert not at.exception
    shown = {m.label: m.value for m in at.metric}
    assert shown["Win rate at similar length"].startswith("48% (") and shown["Win rate at similar length"].endswith("n=40)") and shown["Length before → after"] == "60 → 21 tokens"
    assert shown["Cut at the 64-token cap, before → after"] == "70% → 10%"  # the evaluation's cap, not a round's (walk)
    assert "of at most 64 new tokens" in next(m.help for m in at.metric if m.label.startswith("Cut at"))
    warnings = [unescaped(w) for w in at.warning]
    assert any(w.startswith("The gain is explained by length") for w in warnings)
    assert any("stopped hitting the length cap" in w for w in warnings)
    examples = at.dataframe[-1].value  # the cut answer is marked, the lengths and ends are not columns of their own
    assert examples["before"].tolist() == ["long … [cut at the token cap]"] and examples["after"].tolist() == ["s"]


@pytest.mark.parametrize("trained_on", [{"prompt_sets": ["mine"]}, {"prompt_sets": []}, {"prompt_set": "mine"}])
def test_the_next_round_after_a_run_defaults_to_the_set_it_trained_on_not_a_spot_checks(app_db, trained_on):
    ensure_prompt_set(app_db, "mine")
    prompt_sets.configure(app_db, "mine", priority=5)
    ensure_prompt_set(app_db, "spot-check-dpo-1")  # the run's favourite pairs: served first, so listed first
    prompt_sets.configure(app_db, "spot-check-dpo-1", priority=6)
    start_id = versions.active_version(app_db, "generator")["id"]
    versions.register_version(app_db, "generator", "dpo-1", "/nowhere", parent_id=start_id, config=trained_on)
    at = start("pages/train/policy.py")
    assert next(s for s in at.selectbox if s.label == "Prompt set for the next round").value == "mine"


def test_the_policy_screen_charts_peoples_agreement_against_sqrt_kl_per_checkpoint(app_db):
    start_version = versions.active_version(app_db, "generator")
    metrics = {"val/reward_before": 0.0, "val/reward_after": 1.0, "val/win_rate": 0.9, "val/kl": 0.81,
               "checkpoints": [{"step": 5, "val/kl": 0.04, "val/win_rate": 0.7}, {"step": 10, "val/kl": 0.81, "val/win_rate": 0.9}]}
    new = versions.register_version(app_db, "generator", "policy-steps", "/nowhere", parent_id=start_version["id"], metrics=metrics)
    pairs = [spot_checks.at_checkpoint({"prompt": f"q{i}", "before": f"old {i}", "after": f"new {i}"}, step, kl)
             for step, kl in ((5, 0.04), (10, 0.81)) for i in range(2)]
    spot_checks.queue_pairs(app_db, versions.get_version(app_db, new), start_version, pairs)
    me = annotation.annotator_id(app_db, "alice")
    step_5 = app_db.execute("SELECT item_id FROM completions WHERE generator_version_id = ? AND params LIKE '%\"step\": 5%'",
                            [new]).fetchall()
    for (item_id,) in step_5:  # alice agrees with the reward at step 5 (the new answer is at position 0); step 10's wait
        annotation.submit_ranking(app_db, item_id, me, [[0], [1]], annotation.display_order(item_id, me, 2))
    app_db.conn.commit()
    at = start("pages/train/policy.py")
    assert not at.exception
    caption = next(text for text in map(unescaped, at.caption) if text.startswith("People's agreement with"))
    assert "the reward model" in caption and "No rankings yet at step 10." in caption
    assert len(step_5) == 2 and len(at.get("vega_lite_chart")) >= 1
    assert at.selectbox(key="policy-set").value == "builtin"  # not the newest set, the spot check's few prompts


def test_the_job_card_shows_the_phase_elapsed_time_what_it_chose_and_the_queue(app_db, monkeypatch):
    monkeypatch.setenv("RLHF_GPUS", "0")
    running = jobs.create_job(app_db, "train_rm", {})
    app_db.execute("""UPDATE jobs SET status = 'running', pid = ?, heartbeat_at = created_at, claimed_at = created_at,
                      started_at = '2026-01-01T00:00:00+00:00', phase = 'training on 96 rankings',
                      phase_started_at = '2026-01-01T00:00:00+00:00', reported_at = '2026-01-01T00:00:00+00:00',
                      message = 'step 3/40 · loss 0.6 · ETA 80 s', facts = '{"precision": "fp32 (no native bf16)"}'
                      WHERE id = ?""", [os.getpid(), running])
    app_db.conn.commit()
    waiting = jobs.create_job(app_db, "dpo", {})
    at = start("pages/operate/jobs.py")
    texts = [p.proto.text for p in at.get("progress")]
    assert texts[0] == f"1st in line, waiting for job {running} (reward-model training)"  # newest first
    assert texts[1].startswith("training on 96 rankings · ") and "step 3/40" in texts[1] and "in all" in texts[1]
    assert "last progress report" in texts[1] and "its process is alive, still training on 96 rankings" in texts[1]
    assert any(unescaped(c) == "Precision: fp32 (no native bf16)" for c in at.caption)
    assert not [b for b in at.button if b.key == f"jobs-up-{waiting}"]  # first in line: nothing to move up past
    behind = jobs.create_job(app_db, "sft", {})
    at.run()
    at.button(key=f"jobs-up-{behind}").click().run()
    assert not at.exception and jobs.queue_places(app_db)[behind]["place"] == 1


def test_a_finished_job_card_names_its_set_and_versions_in_words_and_says_what_is_active_now(app_db):
    start_id = versions.active_version(app_db, "generator")["id"]
    made = versions.register_version(app_db, "generator", "dpo-new", "/nowhere", parent_id=start_id)
    job_id = jobs.create_job(app_db, "dpo", {"prompt_sets": ["builtin"], "generator_version": start_id})
    result = {"version": made, "name": "dpo-new", "val/kl": 1.23456, "val/win_rate": 0.6, "val/win_pairs": 16,
              "kl_budget/curve": [[1, 0.11714166402816772], [2, 0.126]], "activation":
              "not made active (not asked for): win rate 0.60 on 16 pairs, too few held-out pairs to tell"}
    app_db.execute("""UPDATE jobs SET status = 'done', started_at = created_at, claimed_at = created_at, finished_at = created_at,
                      result = ? WHERE id = ?""", [json.dumps(result), job_id])
    app_db.execute("INSERT INTO job_metrics (job_id, step, values_json) VALUES (?, 1, ?)", [job_id, json.dumps({"train/loss": 0.69})])
    app_db.conn.commit()
    at = start("pages/train/dpo.py")
    starting = versions.get_version(app_db, start_id)["name"]
    assert any(unescaped(c) == f"prompt sets builtin · generator {starting}" for c in at.caption)
    table = at.dataframe[-1].value
    shown = dict(zip(table[""], table["value"]))
    assert shown["KL to start"] == "1.23" and shown["KL to start at each check"] == "step 1: 0.117 · step 2: 0.126"
    assert shown["win rate vs start"] == "too few to tell (n=16)"  # as Compare says it, not a bare 0.6
    assert [m.value for m in at.metric if m.label == "Loss"] == ["0.69"]  # one step: a number, not a chart of one point
    assert not any("is the active generator now" in unescaped(c) for c in at.caption)
    versions.set_active(app_db, made)
    at.run()
    assert any(unescaped(c) == "dpo-new was made active later and is the active generator now." for c in at.caption)


def test_the_generate_screen_counts_cut_answers_and_withdraws_the_unanswered_ones(app_db):
    from data import items

    items.ensure_prompt_set(app_db, "long")
    prompt_id, _ = items.add_prompt(app_db, "long", "Tell a long story.")
    items.add_item(app_db, prompt_id, [NewCompletion("Once upon", finish_reason="length"), NewCompletion("The end.", finish_reason="eos")])
    app_db.conn.commit()
    at = start("pages/data/generate.py")
    at.selectbox(key="cut-set").set_value("long").run()
    assert any("1 of 2 completions (50%) were cut" in unescaped(c) for c in at.caption)
    next(b for b in at.button if b.label == "Withdraw those 1 items").click().run()
    assert not at.exception and "1 unanswered items with cut answers withdrawn" in unescaped(at.success[0])
    assert prompt_sets.cut_answers(app_db, "long") == {"completions": 0, "cut": 0, "withdrawable": 0}


def test_a_failed_job_says_its_error_in_a_sentence_and_keeps_the_traceback_folded(app_db):
    """The advice at the end of a traceback ran past the card's edge in a code block (walk, 2026-12-06)."""
    failed = jobs.create_job(app_db, "train_rm", {})
    app_db.execute("UPDATE jobs SET status = 'failed', error = ? WHERE id = ?",
                   ['Traceback (most recent call last):\n  File "rm/train.py", line 9, in fit\nrm.train.NotEnoughData: need '
                    'comparisons on at least 2 prompts: rank more items, or lower the validation fraction\n', failed])
    app_db.conn.commit()
    at = start("pages/operate/jobs.py")
    assert unescaped(at.error[0]) == ("The job stopped: NotEnoughData: need comparisons on at least 2 prompts: rank more "
                                      "items, or lower the validation fraction")
    assert [e.label for e in at.expander if e.label == "Traceback"] == ["Traceback"]


def test_the_policy_screen_says_before_a_run_what_is_wrong_with_the_active_reward_model(app_db):
    """The walk (2026-12-07): a reward model made active below its gate, 73% for "the longer answer wins", and the
    Policy update screen showed a bare form; the warnings were on the Reward model screen only."""
    metrics = {"val/accuracy": 0.55, "val/accuracy_ci": [0.3, 0.8], "val/rankings": 2, "val/pairs": 11,
               "val/length_rule": "longer", "val/length_rule_accuracy": 0.73}
    versions.register_version(app_db, "reward", "rm-weak", "/nowhere", metrics=metrics, activate=True)
    at = start("pages/train/policy.py")
    warning = unescaped(at.warning[0])
    assert warning.startswith("The rewards come from rm-weak, the active reward model, made active below its gate. Too "
                              "few rankings to tell: 55% held-out accuracy is measured on 2 held-out rankings")
    assert "the longer answer wins" in warning and warning.endswith("A policy update learns whatever it rewards.")
    shaky = {**metrics, "val/rankings": 40, "val/accuracy": 0.7, "val/accuracy_ci": [0.58, 0.8],  # its gate's only: why
             "val/length_rule_accuracy": 0.6}
    versions.register_version(app_db, "reward", "rm-shaky", "/nowhere", metrics=shaky, activate=True)
    at.run()
    assert unescaped(at.warning[0]).startswith("The rewards come from rm-shaky, the active reward model, made active below "
                                               "its gate: held-out accuracy 70% (95% interval 58–80%): its lower bound does not beat the length-only rule (60%). "
                                               "A policy update learns whatever it rewards.")
    good = {**metrics, "val/accuracy": 0.8, "val/accuracy_ci": [0.7, 0.88], "val/rankings": 40, "val/length_rule_accuracy": 0.5}
    versions.register_version(app_db, "reward", "rm-good", "/nowhere", metrics=good, activate=True)
    at.run()
    assert not at.warning
    picker = at.selectbox(key="policy-reward-version")  # above the form: the warning follows the version picked
    picker.select_index(next(i for i, o in enumerate(picker.options) if o.startswith("rm-weak"))).run()
    assert unescaped(at.warning[0]).startswith("The rewards come from rm-weak, below its gate. Too few rankings to tell")
