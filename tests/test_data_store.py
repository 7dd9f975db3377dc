import json

import pytest

from data import annotation, items, queue, versions
from data.rankings import RankingError
from data.store import open_db
from tests.conftest import add_items


def test_open_db_sets_wal_foreign_keys_and_runs_migrations(db, db_path):
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert {"prompts", "items", "completions", "rankings", "comparisons", "jobs", "model_versions"} <= set(db.table_names())
    from data.migrations import migrations

    applied = db.execute("SELECT COUNT(*) FROM _sqlite_migrations").fetchone()[0]
    open_db(db_path).close()  # a second open finds nothing to migrate
    assert migrations.pending(db) == []
    assert db.execute("SELECT COUNT(*) FROM _sqlite_migrations").fetchone()[0] == applied


def test_submission_stores_ranking_and_its_comparisons_in_one_go(db):
    [item] = add_items(db, 1, k=4)
    me = annotation.annotator_id(db, "ann")
    saved = annotation.submit_ranking(db, item, me, [[3], [2], [0, 1]], [1, 0, 3, 2], seconds=4.2,
                                      flags=["prompt unclear"], comment="fine")
    assert saved.was_new
    pairs = db.execute(
        """SELECT cc.position, rc.position, margin FROM comparisons
           JOIN completions cc ON cc.id = chosen_id JOIN completions rc ON rc.id = rejected_id ORDER BY comparisons.id"""
    ).fetchall()
    assert pairs == [(3, 2, 1), (3, 0, 2), (3, 1, 2), (2, 0, 1), (2, 1, 1)]
    [stored] = annotation.rankings_of_item(db, item)
    assert stored["groups"] == [[3], [2], [0, 1]] and stored["display_order"] == [1, 0, 3, 2]
    assert stored["flags"] == ["prompt unclear"] and stored["comment"] == "fine"
    assert db.execute("SELECT n_rankings FROM items WHERE id = ?", [item]).fetchone()[0] == 1


def test_double_submit_stores_one_ranking(db):
    [item] = add_items(db, 1, k=2)
    me = annotation.annotator_id(db, "ann")
    first = annotation.submit_ranking(db, item, me, [[0], [1]], [0, 1])
    second = annotation.submit_ranking(db, item, me, [[0], [1]], [0, 1])
    assert not second.was_new and second.ranking_id == first.ranking_id
    assert db.execute("SELECT COUNT(*) FROM rankings").fetchone()[0] == 1
    assert db.execute("SELECT COUNT(*) FROM comparisons").fetchone()[0] == 1


def test_a_ranking_with_a_missing_rank_is_refused_and_nothing_is_stored(db):
    [item] = add_items(db, 1, k=3)
    me = annotation.annotator_id(db, "ann")
    with pytest.raises(RankingError, match="C has none"):
        annotation.submit_ranking(db, item, me, [[0], [1]], [0, 1, 2])
    assert db.execute("SELECT COUNT(*) FROM rankings").fetchone()[0] == 0


def test_a_failing_submission_rolls_back_everything(db):
    [item] = add_items(db, 1, k=2)
    me = annotation.annotator_id(db, "ann")
    with pytest.raises(ValueError, match="unknown flags"):
        annotation.submit_ranking(db, item, me, [[0], [1]], [0, 1], flags=["nope"])
    assert db.execute("SELECT COUNT(*) FROM rankings").fetchone()[0] == 0


def test_an_item_needs_two_to_nine_completions(db):
    items.ensure_prompt_set(db, "s")
    prompt_id, _ = items.add_prompt(db, "s", "p")
    with pytest.raises(RankingError, match="need between 2 and 9 completions to rank, got 1"):
        items.add_item(db, prompt_id, [items.NewCompletion("only one")])


def test_queue_serves_fewest_rankings_first_and_never_the_same_item_twice(db):
    first, second, third = add_items(db, 3, k=2)
    items.set_rankings_wanted(db, "test", 2)
    alice, bob = annotation.annotator_id(db, "alice"), annotation.annotator_id(db, "bob")
    assert queue.next_item(db, alice).id == first
    annotation.submit_ranking(db, first, alice, [[0], [1]], [0, 1])
    # bob gets the items nobody ranked before the one alice ranked
    assert queue.next_item(db, bob).id == second
    annotation.skip_item(db, second, bob, [0, 1])
    assert queue.next_item(db, bob).id == third
    annotation.submit_ranking(db, third, bob, [[1], [0]], [0, 1])
    assert queue.next_item(db, bob).id == first
    annotation.submit_ranking(db, first, bob, [[1], [0]], [0, 1])
    # first now has N=2 rankings and leaves every queue; alice still has second and third
    assert queue.progress(db, alice) == queue.Progress(ranked=1, left=2)
    assert queue.progress(db, bob) == queue.Progress(ranked=2, left=0)
    assert queue.next_item(db, bob) is None


def test_items_leave_the_queue_after_n_rankings(db):
    [item] = add_items(db, 1, k=2)
    alice, bob = annotation.annotator_id(db, "alice"), annotation.annotator_id(db, "bob")
    annotation.submit_ranking(db, item, alice, [[0], [1]], [0, 1])
    assert queue.next_item(db, bob) is None  # N defaults to 1


def test_display_order_is_shuffled_per_annotator_and_stable():
    orders = {tuple(annotation.display_order(7, a, 6)) for a in range(20)}
    assert len(orders) > 1
    assert annotation.display_order(7, 3, 6) == annotation.display_order(7, 3, 6)
    assert sorted(annotation.display_order(7, 3, 6)) == list(range(6))


def test_one_active_version_per_kind(db):
    a = versions.register_version(db, "generator", "a", "path/a", activate=True)
    b = versions.register_version(db, "generator", "b", "path/b", parent_id=a)
    assert versions.active_version(db, "generator")["id"] == a
    versions.set_active(db, b)
    assert versions.active_version(db, "generator")["id"] == b
    assert [v["is_active"] for v in versions.list_versions(db, "generator")] == [False, True]
    with pytest.raises(ValueError, match="exists already"):
        versions.register_version(db, "generator", "a", "elsewhere")


def test_init_seeds_builtin_prompts_generator_and_completions_once(db):
    from data import builtin

    builtin.init_db(db)
    first = items.counts(db)
    builtin.init_db(db)
    assert items.counts(db) == first
    assert first["prompts"] == 40
    assert versions.active_version(db, "generator")["path"] == versions.EMBEDDED_GENERATOR_PATH
    assert first["items"] == 40 and first["completions"] == 160
    assert db.execute("SELECT COUNT(*) FROM completions WHERE generator_version_id IS NULL").fetchone()[0] == 0


def test_a_backup_of_the_live_store_holds_every_row(db, tmp_path):
    from data import __main__ as cli

    add_items(db, 3)
    assert cli.main(["--db", str(tmp_path / "test.db"), "backup", str(tmp_path / "copy.db")]) == 0
    copy = open_db(tmp_path / "copy.db")
    assert copy.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 3
    assert not (tmp_path / "copy.db.partial").exists()


def test_metrics_stored_under_their_old_names_are_renamed(db):
    from data import jobs, versions
    from data.migrations import m0016_metric_names

    version = versions.register_version(db, "generator", "old-policy", "/x", metrics={"eval/win_rate": 0.7, "examples": [{"a": 1}]})
    job_id = jobs.create_job(db, "train_rm", {})
    db.execute("INSERT INTO job_metrics (job_id, step, values_json) VALUES (?, 1, ?)", [job_id, '{"loss/train": 0.5, "epoch": 0}'])
    db.execute("INSERT INTO job_metrics (job_id, step, values_json) VALUES (?, 2, 'not json')", [job_id])
    db.execute("UPDATE jobs SET result = ? WHERE id = ?", ['{"kl/ref": 0.1}', job_id])
    m0016_metric_names(db)
    assert versions.get_version(db, version)["metrics"] == {"val/win_rate": 0.7, "examples": [{"a": 1}]}
    renamed = db.execute("SELECT values_json FROM job_metrics WHERE step = 1").fetchone()[0]
    assert json.loads(renamed) == {"train/loss": 0.5, "train/epoch": 0}
    assert db.execute("SELECT values_json FROM job_metrics WHERE step = 2").fetchone()[0] == "not json"
    assert jobs.get_job(db, job_id)["result"] == {"policy/kl": 0.1}
