"""What an import, a double click or an older version's rows can do to the store, and what it must not."""

import json

import pytest

from data import accounts, annotation, demonstrations, export, importing, items, migrations, quality
from data.store import write_transaction
from tests.conftest import add_items, rank_by


# Finding 3: names from imports and scripts are provenance, not log-ins.

def account(db, name: str) -> tuple:
    return db.execute("SELECT disabled, origin, password_hash FROM annotators WHERE name = ?", [name]).fetchone()


def test_a_new_name_becomes_a_disabled_password_less_import_account(db):
    me = annotation.annotator_id(db, "  stranger ")
    assert account(db, "stranger") == (1, "import", None)
    assert accounts.active_user(db, "stranger") is None
    with pytest.raises(accounts.AuthError):
        accounts.authenticate(db, "stranger", "")
    assert annotation.annotator_id(db, "stranger") == me


def test_an_existing_account_is_returned_unchanged(db):
    user = accounts.create_user(db, "erin", "password-123")
    before = account(db, "erin")
    assert annotation.annotator_id(db, "erin") == user.id
    assert account(db, "erin") == before and before[:2] == (0, "account")


def test_imported_and_scripted_annotators_rank_without_an_enabled_account(db):
    [item] = add_items(db, 1, k=2)
    rank_by(db, [item], len)
    importing.import_rankings(db, importing.parse_rankings(json.dumps(
        {"prompt": "p", "completions": ["a", "b"], "ranking": [[1], [0]], "annotator": "from a file"}).encode()))
    assert items.counts(db)["rankings"] == 2
    assert account(db, "scripted")[:2] == account(db, "from a file")[:2] == (1, "import")


# Finding 2: saving the same demonstration twice stores it once.

def test_saving_the_same_written_demonstration_twice_stores_one(db):
    items.ensure_prompt_set(db, "s")
    prompt_id, _ = items.add_prompt(db, "s", "p")
    me = annotation.annotator_id(db, "alice")
    first = demonstrations.save_demonstration(db, prompt_id, me, "my answer")
    assert demonstrations.save_demonstration(db, prompt_id, me, " my answer ") == first
    assert items.counts(db)["demonstrations"] == 1


def test_saving_the_same_edit_twice_stores_one_demonstration_and_one_implicit_ranking(db):
    [item_id] = add_items(db, 1, k=2)
    item = annotation.get_item(db, item_id)
    me = annotation.annotator_id(db, "alice")
    first = demonstrations.save_demonstration(db, item.prompt_id, me, "a better answer", item.completions[1].id, 3.0)
    again = demonstrations.save_demonstration(db, item.prompt_id, me, "a better answer", item.completions[1].id, 4.0)
    assert again == first
    counts = items.counts(db)
    assert (counts["demonstrations"], counts["items"], counts["rankings"], counts["comparisons"]) == (1, 2, 1, 1)


# Finding 7: rows written by older versions are repaired at start-up so that no screen crashes on them.

def corrupt(db, ranking_id: int, **columns) -> None:
    db.execute(f"UPDATE rankings SET {', '.join(f'{c} = ?' for c in columns)} WHERE id = ?", [*columns.values(), ranking_id])


def ranking_ids(db, item_ids: list[int], annotator: str) -> list[int]:
    rank_by(db, item_ids, len, annotator)
    me = annotation.annotator_id(db, annotator)
    return [db.execute("SELECT id FROM rankings WHERE item_id = ? AND annotator_id = ?", [i, me]).fetchone()[0] for i in item_ids]


def test_the_repair_migration_makes_old_bad_rows_readable(db):
    item_ids = add_items(db, 4, k=3)
    items.set_rankings_wanted(db, "test", 2)
    floats, missing, garbage, sound = ranking_ids(db, item_ids, "alice")
    skip = annotation.skip_item(db, item_ids[0], annotation.annotator_id(db, "bob"), [0, 1, 2]).ranking_id
    with write_transaction(db):
        corrupt(db, floats, groups="[[2.0], [1.0], [0.0]]", seconds="slow", display_order="not json", flags='["nope"]',
                created_at="yesterday")
        corrupt(db, missing, groups="[[2], [1]]", seconds=-1, display_order="[0, 0, 1]", flags='"all are bad"')
        corrupt(db, garbage, groups="{", display_order="[0.0, 1.0, 2.0]", flags="[1]")
        corrupt(db, skip, groups="[[0], [1], [2]]")
    before = {r[0]: r[1:] for r in db.execute("SELECT id, groups, display_order, seconds, flags FROM rankings")}

    with write_transaction(db):
        migrations.m0009_import_repair_rankings(db)

    rows = {r["id"]: r for r in db.query("SELECT * FROM rankings")}
    assert (rows[floats]["groups"], rows[floats]["skipped"], rows[floats]["seconds"]) == ("[[2], [1], [0]]", 0, None)
    assert (rows[floats]["display_order"], rows[floats]["flags"]) == ("[0, 1, 2]", "[]")
    assert rows[floats]["created_at"] == db.execute("SELECT created_at FROM items WHERE id = ?", [item_ids[0]]).fetchone()[0]
    for made_skip in (missing, garbage):
        assert (rows[made_skip]["skipped"], rows[made_skip]["groups"], rows[made_skip]["display_order"],
                rows[made_skip]["flags"]) == (1, None, "[0, 1, 2]", "[]")
    assert rows[missing]["seconds"] is None and rows[skip]["groups"] is None
    assert (rows[sound]["groups"], rows[sound]["display_order"], rows[sound]["seconds"], rows[sound]["flags"]) == before[sound]
    comparisons = dict(db.execute("SELECT ranking_id, COUNT(*) FROM comparisons GROUP BY ranking_id"))
    assert comparisons == {floats: 3, sound: 3}
    assert [n for (n,) in db.execute("SELECT n_rankings FROM items ORDER BY id")] == [1, 0, 0, 1]
    assert_screens_read(db, item_ids)

    with write_transaction(db):
        migrations.m0009_import_repair_rankings(db)  # a second run finds nothing to do
    assert {r["id"]: r for r in db.query("SELECT * FROM rankings")} == rows


def assert_screens_read(db, item_ids: list[int]) -> None:
    """What the admin, quality and export screens compute from rankings: the two readable ones (the repaired floats and
    the sound one, both alice's), no shared item (bob's only answer is a skip)."""
    assert quality.agreement_summary(db)["shared_items"] == 0
    assert [(row["annotator"], row["rankings"]) for row in quality.annotator_table(db)] == [("alice", 2)]
    assert export.export_bytes(db, "rankings", "jsonl").count(b"\n") == 2
    assert export.export_bytes(db, "pairs", "csv").count(b"\r\n") == 1 + 3 + 3  # the header, then K=3 pairs from each
    for item_id in item_ids:
        annotation.rankings_of_item(db, item_id)
