"""Model versions an admin controls: activate and roll back with a record, delete only what nothing uses, the gate
that decides whether training may activate its own version (issue 21)."""

import json
import os
import subprocess
import sys

import pytest

from data import accounts, jobs, versions
from tests.test_pages import start, unescaped
from training import gate


def three_generators(db, tmp_path):
    base = versions.active_version(db, "generator")
    folder = versions.models_dir(db) / "generator" / "policy-1"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"0" * 10)
    first = versions.register_version(db, "generator", "policy-1", str(folder), parent_id=base["id"],
                                      config={"algorithm": "rloo"}, metrics={"val/win_rate": 1.0, "val/win_pairs": 4})
    second = versions.register_version(db, "generator", "policy-2", str(tmp_path / "elsewhere"), parent_id=first)
    return base["id"], first, second


def test_rolling_back_records_who_and_when(app_db, tmp_path):
    base, first, second = three_generators(app_db, tmp_path)
    admin = accounts.authenticate(app_db, "admin", "admin-password")
    versions.set_active(app_db, second, actor=admin)
    versions.set_active(app_db, base, by="command line")  # roll back
    assert versions.active_version(app_db, "generator")["id"] == base
    events = versions.version_events(app_db)
    assert [(e["name"], e["action"], e["by"]) for e in events] == [
        ("SmolLM2-135M-Instruct (embedded)", "activated", "command line"), ("policy-2", "activated", "admin"),
        ("SmolLM2-135M-Instruct (embedded)", "activated", "set-up (data init)")]


def test_a_disabled_admin_cannot_activate(app_db, tmp_path):
    _, _, second = three_generators(app_db, tmp_path)
    admin = accounts.authenticate(app_db, "admin", "admin-password")
    accounts.create_user(app_db, "boss", "boss-password-1", role="admin")
    accounts.set_disabled(app_db, None, "admin", True)
    with pytest.raises(accounts.AuthError):
        versions.set_active(app_db, second, actor=admin)


def test_deleting_an_active_or_used_version_is_refused_and_says_why(app_db, tmp_path):
    base, first, second = three_generators(app_db, tmp_path)
    with pytest.raises(ValueError, match="it is the active one; .*160 completions"):
        versions.delete_version(app_db, base)
    with pytest.raises(ValueError, match="'policy-2' was trained from it"):
        versions.delete_version(app_db, first)
    job_id = jobs.create_job(app_db, "generate", {"generator_version": second})
    with pytest.raises(ValueError, match=f"job {job_id} \\(queued\\) will use it"):
        versions.delete_version(app_db, second)
    jobs.request_cancel(app_db, job_id)
    versions.delete_version(app_db, second)
    versions.delete_version(app_db, first)  # nothing uses it now: its folder under models/ goes too
    assert [v["name"] for v in versions.list_versions(app_db, "generator")] == ["SmolLM2-135M-Instruct (embedded)"]
    assert not (versions.models_dir(app_db) / "generator" / "policy-1").exists()
    assert [e["action"] for e in versions.version_events(app_db)][:2] == ["deleted", "deleted"]


def test_a_folder_outside_models_is_never_deleted(app_db, tmp_path):
    outside = tmp_path / "mine"
    outside.mkdir()
    version = versions.register_version(app_db, "reward", "mine", str(outside))
    versions.delete_version(app_db, version)
    assert outside.exists()


def test_the_gate_refuses_a_policy_version_evaluated_on_4_pairs_and_says_why():
    passes, why = gate.generator_gate({"val/win_rate": 1.0, "val/win_pairs": 4, "val/lc_win_rate": 1.0})
    assert not passes and why.startswith("too few held-out pairs to tell: 4, need at least 30")
    activate, line = gate.decide(True, (passes, why))
    assert not activate and line.startswith("not made active: too few")


@pytest.mark.parametrize("metrics, verdict", [
    ({"val/win_rate": 0.55, "val/win_pairs": 40, "val/lc_win_rate": 0.6}, "not shown better"),
    ({"val/win_rate": 0.9, "val/win_pairs": 40, "val/lc_win_rate": 0.4}, "looks like length"),
    ({"val/win_rate": 0.9, "val/win_pairs": 40, "val/lc_win_rate": None}, "too few answers of similar length"),
    ({"val/win_rate": 0.9, "val/win_pairs": 40, "val/lc_win_rate": 0.8}, "win rate 90% on 40 pairs"),
])
def test_the_generator_gate(metrics, verdict):
    passes, why = gate.generator_gate(metrics)
    assert verdict in why and passes == why.startswith("win rate 90% on 40")


def test_training_activates_only_when_asked(db):
    assert gate.decide(False, (True, "fine"))[0] is False
    assert gate.decide(True, (True, "fine")) == (True, "made active: fine")


def test_the_models_screen_activates_and_cannot_delete_what_is_used(app_db, tmp_path):
    base, first, second = three_generators(app_db, tmp_path)
    at = start("pages/train/versions.py")
    assert not at.exception
    frame = at.dataframe[0].value
    assert list(frame["name"]) == ["policy-2", "policy-1", "SmolLM2-135M-Instruct (embedded)"]
    assert frame.set_index("name").loc["policy-1", "evaluation"] == "win rate: too few to tell (n=4)"
    assert "'policy-2' was trained from it" in frame.set_index("name").loc["policy-1", "used by"]
    at.selectbox(key=f"pick-generator-{base}").set_value(first).run()
    assert any("too few held-out pairs" in unescaped(w) for w in at.warning)
    assert at.button(key="delete-generator").disabled and at.button(key="activate-generator").disabled
    at.checkbox(key=f"override-generator-{first}").check().run()  # below the gate: the admin says they read why
    at.button(key="activate-generator").click().run()
    assert versions.active_version(app_db, "generator")["id"] == first
    assert "policy-1 is now the active generator" in unescaped(at.success[0])
    picker = at.selectbox(key=f"pick-generator-{first}")  # a new widget, labelled afresh: the active one changed
    assert picker.value == first and "policy-1 (active)" in picker.options  # the choice stays, its label is new
    history = at.dataframe[-1].value
    assert list(history["by"])[0] == "admin" and list(history["name"])[0] == "policy-1"
    assert list(history["note"])[0] == "below its gate: too few held-out pairs to tell: 4, need at least 30 (hold out more prompts, or draw more samples per prompt (K))"


@pytest.mark.slow
def test_the_command_line_lists_activates_and_deletes(app_db, db_path, tmp_path):
    base, first, second = three_generators(app_db, tmp_path)
    run = lambda *args: subprocess.run([sys.executable, "-m", "data", "--db", str(db_path), "versions", *args],  # noqa: E731
                                       capture_output=True, text=True, cwd=jobs.PROJECT_ROOT, env={**os.environ})
    listed = json.loads(run("--kind", "generator").stdout)
    assert [(v["name"], v["parent"]) for v in listed][1:] == [("policy-1", "SmolLM2-135M-Instruct (embedded)"), ("policy-2", "policy-1")]
    assert json.loads(run("activate", str(second)).stdout)["active"] == "policy-2"
    refused = run("delete", str(second))
    assert refused.returncode == 2 and "it is the active one" in refused.stderr
    run("activate", str(base))
    assert json.loads(run("delete", str(second)).stdout) == {"deleted": "policy-2"}


def test_the_models_table_shows_one_set_and_several_alike(app_db, tmp_path):
    """A DPO version's sets (a list) beside a policy's set (a text) broke the table's conversion (walk, 2026-12-06)."""
    versions.register_version(app_db, "generator", "dpo-1", str(tmp_path / "a"), config={"prompt_sets": ["walkset", "more"]})
    versions.register_version(app_db, "generator", "policy-1", str(tmp_path / "b"), config={"prompt_set": "walkset"})
    at = start("pages/train/versions.py")
    assert not at.exception
    trained_on = at.dataframe[0].value.set_index("name")["trained on"]
    assert (trained_on["dpo-1"], trained_on["policy-1"]) == ("walkset, more", "walkset")


def test_the_models_table_says_how_many_rankings_were_held_out_beside_those_learnt_from(app_db, tmp_path):
    """"learnt from: 8 rankings" of a set of 10 read as 2 lost (walk, 2026-12-07)."""
    versions.register_version(app_db, "reward", "rm-1", str(tmp_path / "a"), metrics={"train/rankings": 8, "val/rankings": 2})
    versions.register_version(app_db, "reward", "rm-old", str(tmp_path / "b"), metrics={"train/rankings": 5})
    at = start("pages/train/versions.py")
    learnt = next(d.value for d in at.dataframe if "rm-1" in set(d.value.get("name", []))).set_index("name")["learnt from"]
    assert (learnt["rm-1"], learnt["rm-old"]) == ("8 rankings (2 more held out to test it)", "5 rankings")
