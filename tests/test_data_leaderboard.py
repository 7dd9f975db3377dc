"""The model leaderboard: pair counts from K-wise rankings with ties, the Davidson fit, bootstrap intervals."""

import math
import random

import numpy as np
import pytest

from data import annotation, items, leaderboard
from data.store import write_transaction


def ranked_item(db, prompt: str, models: list[str], groups: list[list[int]], annotator: str = "ann", skip=False) -> int:
    items.ensure_prompt_set(db, "s")
    prompt_id, _ = items.add_prompt(db, "s", prompt)
    with write_transaction(db):
        item = items.add_item(db, prompt_id, [items.NewCompletion(f"{prompt}-{i}", model_name=m) for i, m in enumerate(models)])
    who = annotation.annotator_id(db, annotator)
    if skip:
        annotation.skip_item(db, item, who, list(range(len(models))))
    else:
        annotation.submit_ranking(db, item, who, groups, list(range(len(models))))
    return item


def totals(counts) -> dict:
    t = counts.totals()
    return {(counts.models[a], counts.models[b]): (w_a, w_b, ties) for a, b, w_a, w_b, ties in zip(t.a, t.b, t.wins_a, t.wins_b, t.ties)}


def test_a_ranking_with_ties_gives_every_cross_model_pair_once(db):
    # D > C > A = B with A, B by "m1" and C, D by "m2": C and D beat A and B (4 pairs); the m1-m1 and m2-m2 pairs say nothing.
    ranked_item(db, "p", ["m1", "m1", "m2", "m2"], [[3], [2], [0, 1]])
    # A = C > B = D: m1-m2 pairs A-C tie, B-D tie, A beats D, C beats B.
    ranked_item(db, "q", ["m1", "m1", "m2", "m2"], [[0, 2], [1, 3]], annotator="bob")
    assert totals(leaderboard.pair_counts(db)) == {("m1", "m2"): (1.0, 5.0, 2.0)}


def test_skips_second_rankings_and_single_model_items(db):
    item = ranked_item(db, "p", ["m1", "m2"], [[0], [1]])
    annotation.submit_ranking(db, item, annotation.annotator_id(db, "bob"), [[1], [0]], [0, 1])  # a second annotator
    ranked_item(db, "q", ["m1", "m2"], None, annotator="carl", skip=True)
    ranked_item(db, "r", ["m1", "m1"], [[0], [1]])
    assert totals(leaderboard.pair_counts(db)) == {("m1", "m2"): (1.0, 1.0, 0.0)}


def test_generator_versions_name_their_completions(db):
    from data import versions

    version = versions.register_version(db, "generator", "v2", "/nowhere")
    items.ensure_prompt_set(db, "s")
    prompt_id, _ = items.add_prompt(db, "s", "p")
    with write_transaction(db):
        item = items.add_item(db, prompt_id, [items.NewCompletion("a", generator_version_id=version),
                                              items.NewCompletion("b", model_name="remote-model")])
    annotation.submit_ranking(db, item, annotation.annotator_id(db, "ann"), [[0], [1]], [0, 1])
    assert totals(leaderboard.pair_counts(db)) == {("remote-model", "v2"): (0.0, 1.0, 0.0)}


def test_two_models_fit_the_closed_form_of_the_davidson_model():
    # With two models the fit is saturated: pi_a / pi_b = w_a / w_b and nu = t / sqrt(w_a w_b).
    counts = leaderboard.PairCounts(["a", "b"], np.array([0]), np.array([0]), np.array([1]),
                                    np.array([60.0]), np.array([30.0]), np.array([10.0]))
    theta, nu = leaderboard.fit_davidson(counts)
    assert theta[0] - theta[1] == pytest.approx(math.log(2), abs=1e-3)
    assert nu == pytest.approx(10 / math.sqrt(60 * 30), rel=1e-3)


def test_known_strengths_are_recovered_in_order_with_intervals_that_cover_them(db):
    strength = {"big": 1.5, "mid": 0.5, "small": 0.0}
    rng = random.Random(1)
    for p in range(240):
        models = rng.sample(list(strength), 2) * 2
        scores = [strength[m] + rng.gauss(0, 1) for m in models]
        order = sorted(range(4), key=lambda i: -scores[i])
        ranked_item(db, f"p{p}", models, [[i] for i in order])
    board = leaderboard.leaderboard(db, bootstrap=100)
    assert [r.model for r in board.ratings] == ["big", "mid", "small"]
    by_model = {r.model: r for r in board.ratings}
    for r in board.ratings:
        assert r.low < r.rating < r.high and r.pairs > 0
    assert sum(r.rating for r in board.ratings) / 3 == pytest.approx(leaderboard.BASE_RATING)
    assert board.win_rates[("big", "small")] > 0.5 > board.win_rates[("small", "big")]
    assert board.win_rates[("big", "small")] + board.win_rates[("small", "big")] == pytest.approx(1)
    assert board.tie_strength < 0.01  # nobody tied
    assert by_model["big"].win_rate > by_model["mid"].win_rate > by_model["small"].win_rate


def test_no_leaderboard_until_two_models_meet(db):
    ranked_item(db, "p", ["m1", "m1"], [[0], [1]])
    assert leaderboard.leaderboard(db) is None


def test_the_leaderboard_screen_shows_ratings_and_the_win_rate_matrix(app_db):
    from tests.test_pages import start

    for p in range(12):
        ranked_item(app_db, f"arena {p}", ["big", "small", "big", "small"], [[0], [2], [1, 3]] if p % 3 else [[1], [0, 2], [3]])
    at = start("pages/quality/models.py")
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table["model"]) == ["big", "small"] and (table["low"] < table["rating"]).all()
    assert any("Tie strength" in c.value for c in at.main.caption)


def test_the_leaderboard_screen_says_too_few_to_tell_on_a_handful_of_pairs(app_db):
    """It showed 1537 against 463 and a 79% tie rate from 4 pairs in 2 items (walk, 2026-12-07)."""
    from tests.test_pages import start

    for p in range(2):
        ranked_item(app_db, f"arena {p}", ["new", "start", "new"], [[0], [1, 2]])
    at = start("pages/quality/models.py")
    assert not at.exception and at.warning[0].value.startswith("Too few to tell yet for ")
    assert "4 pairs against other models" in at.warning[0].value
    assert not any("Tie strength" in c.value for c in at.main.caption)


def test_the_leaderboard_screen_says_what_to_do_before_two_models_meet(app_db):
    from tests.test_pages import start

    at = start("pages/quality/models.py")
    assert not at.exception and "No two models have met" in at.info[0].value


# The counts, kept incrementally, against the same counts computed from every comparison in one go.
_MODEL_OF = """(SELECT c.id, c.item_id, COALESCE(v.name, c.model_name, 'unknown') AS model
               FROM completions c LEFT JOIN model_versions v ON v.id = c.generator_version_id)"""
REFERENCE_WINS = f"""SELECT r.item_id, w.model, l.model, COUNT(*)
    FROM comparisons x JOIN rankings r ON r.id = x.ranking_id JOIN items i ON i.id = r.item_id
    JOIN {_MODEL_OF} w ON w.id = x.chosen_id JOIN {_MODEL_OF} l ON l.id = x.rejected_id
    WHERE i.origin = 'sampled' AND r.review != 'rejected' AND w.model != l.model GROUP BY r.item_id, w.model, l.model"""
REFERENCE_PAIRS = f"""WITH per_model AS (SELECT item_id, model, COUNT(*) AS n FROM {_MODEL_OF} GROUP BY item_id, model),
         ranked AS (SELECT item_id, COUNT(*) AS n FROM rankings WHERE skipped = 0 AND review != 'rejected' GROUP BY item_id)
    SELECT a.item_id, a.model, b.model, ranked.n * a.n * b.n FROM ranked JOIN items i ON i.id = ranked.item_id
    JOIN per_model a ON a.item_id = ranked.item_id JOIN per_model b ON b.item_id = ranked.item_id AND a.model < b.model
    WHERE i.origin = 'sampled'"""


def reference_counts(db) -> dict:
    wins = {(item, w, l): n for item, w, l, n in db.execute(REFERENCE_WINS)}
    out = {}
    for item, a, b, pairs in db.execute(REFERENCE_PAIRS):
        a_wins, b_wins = wins.get((item, a, b), 0), wins.get((item, b, a), 0)
        out[(item, a, b)] = (a_wins, b_wins, pairs - a_wins - b_wins)
    return out


def stored_counts(db) -> dict:
    leaderboard.refresh(db)
    return {(item, a, b): (wa, wb, t) for item, a, b, wa, wb, t in db.execute("SELECT * FROM model_pair_counts")}


def random_groups(rng, k: int) -> list[list[int]]:
    positions = list(range(k))
    rng.shuffle(positions)
    groups, i = [], 0
    while i < k:  # tie groups of random sizes
        size = rng.choice([1, 1, 2, 3])
        groups.append(sorted(positions[i:i + size]))
        i += size
    return groups


def random_rankings(db, rng, n_items, start=0):
    """Items of 2-6 completions by four models, each ranked (or skipped) by one to three annotators, with ties."""
    items.ensure_prompt_set(db, "s")
    for p in range(start, start + n_items):
        k = rng.randint(2, 6)
        prompt_id, _ = items.add_prompt(db, "s", f"r{p}")
        with write_transaction(db):
            item = items.add_item(db, prompt_id, [items.NewCompletion(f"r{p}-{i}", model_name=rng.choice(["m1", "m2", "m3", "m4"]))
                                                  for i in range(k)])
        for who in rng.sample(["ann", "bob", "cat"], rng.randint(1, 3)):
            annotator = annotation.annotator_id(db, who)
            if rng.random() < 0.1:
                annotation.skip_item(db, item, annotator, list(range(k)))
            else:
                annotation.submit_ranking(db, item, annotator, random_groups(rng, k), list(range(k)))


def test_the_counts_kept_incrementally_equal_a_count_of_every_comparison(db):
    rng = random.Random(3)
    random_rankings(db, rng, 60)
    assert stored_counts(db) == reference_counts(db) and reference_counts(db)
    random_rankings(db, rng, 40, start=60)  # more rankings: only they are read
    assert stored_counts(db) == reference_counts(db)


def test_two_refreshes_at_once_count_each_ranking_once(db, db_path):
    from data.store import open_db

    random_rankings(db, random.Random(5), 20)
    other = open_db(db_path)
    leaderboard.refresh(other)
    leaderboard.refresh(db)  # a second admin's screen, a moment later: nothing new
    assert stored_counts(db) == reference_counts(db)


def test_an_unreadable_ranking_is_left_out_and_the_rest_still_counts(db):
    item = ranked_item(db, "p", ["m1", "m2"], [[0], [1]])
    ranked_item(db, "q", ["m1", "m2"], [[1], [0]])
    db.execute("UPDATE rankings SET groups = '[[0], [1' WHERE item_id = ?", [item])
    db.conn.commit()
    assert totals(leaderboard.pair_counts(db)) == {("m1", "m2"): (0.0, 1.0, 0.0)}
