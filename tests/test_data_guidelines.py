"""Guidelines per prompt set: versioned, written by admins only."""

import random

import pytest

from data import accounts, annotation, gold, guidelines, quality
from data.annotation import Guideline
from tests.conftest import add_items


@pytest.fixture
def admin(db):
    add_items(db, 1, k=2)
    return accounts.create_user(db, "admin", "admin-password", role="admin")


def test_each_new_text_is_a_new_version_and_the_same_text_is_not(db, admin):
    assert guidelines.current_guidelines(db, "test") is None and guidelines.guideline_history(db, "test") == []
    assert guidelines.save_guidelines(db, "test", "Prefer *correct* answers.", admin) == Guideline(1, "Prefer *correct* answers.")
    assert guidelines.save_guidelines(db, "test", "Prefer *correct* answers.", admin).version == 1
    guidelines.save_guidelines(db, "test", "Prefer correct, then short answers.", admin)
    assert guidelines.current_guidelines(db, "test") == Guideline(2, "Prefer correct, then short answers.")
    history = guidelines.guideline_history(db, "test")
    assert [(h["version"], h["author"]) for h in history] == [(2, "admin"), (1, "admin")]
    assert history[1]["text"] == "Prefer *correct* answers."  # nothing is overwritten


def test_guidelines_belong_to_their_set(db, admin):
    add_items(db, 1, k=2, prompt_set="other")
    guidelines.save_guidelines(db, "test", "For test.", admin)
    assert guidelines.current_guidelines(db, "other") is None
    assert guidelines.save_guidelines(db, "other", "For other.", admin).version == 1


@pytest.mark.parametrize("change", ["annotator", "disabled", "demoted", "password reset"])
def test_only_an_admin_session_still_current_can_write_guidelines(db, admin, change):
    actor = accounts.create_user(db, "ann", "ann-password") if change == "annotator" else admin
    if change != "annotator":
        accounts.create_user(db, "boss", "boss-password", role="admin")
        boss = accounts.active_user(db, "boss")
        if change == "disabled":
            accounts.set_disabled(db, boss, "admin", True)
        elif change == "demoted":
            accounts.set_role(db, boss, "admin", "annotator")
        else:  # still an enabled admin, but this session is older than the new password
            accounts.reset_password(db, boss, "admin", "new-admin-password")
    with pytest.raises(accounts.AuthError, match="session has ended or you are no longer an admin"):
        guidelines.save_guidelines(db, "test", "Anything.", actor)
    assert guidelines.current_guidelines(db, "test") is None


@pytest.mark.parametrize("prompt_set, text, message", [("test", "  \n", "cannot be blank"), ("missing", "Text.", "no prompt set")])
def test_blank_guidelines_and_unknown_sets_are_refused(db, admin, prompt_set, text, message):
    with pytest.raises(ValueError, match=message):
        guidelines.save_guidelines(db, prompt_set, text, admin)


def by_guideline_read_everything(db) -> list[dict]:
    """The definition: every ranking's agreement with the others (ranking_stats) grouped by its set and guideline version."""
    rows = db.execute("""SELECT p.prompt_set, r.guideline_version, COUNT(*), TOTAL(rs.agree), TOTAL(rs.disagree)
                         FROM ranking_stats rs JOIN rankings r ON r.id = rs.ranking_id JOIN items i ON i.id = rs.item_id
                         JOIN prompts p ON p.id = i.prompt_id GROUP BY 1, 2 ORDER BY 1, COALESCE(r.guideline_version, 0)""")
    return [{"prompt_set": s, "guideline_version": v, "rankings": n, "agreement_with_others": a / (a + d) if a + d else None}
            for s, v, n, a, d in rows]


def test_agreement_by_guideline_version_is_kept_incrementally(db, admin):
    rng = random.Random(0)
    ids = add_items(db, 12, k=3) + add_items(db, 6, k=3, prompt_set="other")
    names = [annotation.annotator_id(db, name) for name in ("alice", "bob", "carol")]
    for batch in (ids[:9], ids[9:]):
        guidelines.save_guidelines(db, "test", f"Version for items {batch[0]} on.", admin)
        for item in batch:
            for me in names:
                groups = [[p] for p in rng.sample(range(3), 3)]
                annotation.submit_ranking(db, item, me, groups, [0, 1, 2], guideline_version=rng.choice([None, 1, 2]))
        assert quality.agreement_by_guideline(db) == by_guideline_read_everything(db)
    gold.set_gold(db, ids[0], [[0], [1]])  # its rankings are recomputed: taken away and added again
    assert quality.agreement_by_guideline(db) == by_guideline_read_everything(db)
    assert {row["guideline_version"] for row in quality.agreement_by_guideline(db)} == {None, 1, 2}
