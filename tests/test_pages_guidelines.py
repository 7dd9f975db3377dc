"""AppTest of the guidelines screen and of the self-consistency and guideline-version figures on the Quality screens."""

from data import accounts, annotation, guidelines
from tests.test_pages import start, unescaped, untrusted_shown


def test_admin_writes_guidelines_with_a_preview_and_each_change_is_a_version(app_db):
    at = start("pages/data/guidelines.py")
    assert at.selectbox[0].value == "builtin" and "no guidelines yet" in at.caption[0].value
    at.text_area[0].input("Prefer **correct** answers.\n\n![](http://host/beacon.gif)").run()
    assert any("<strong>correct</strong>" in body and "<code>http://host/beacon.gif</code>" in body and "<img" not in body
               for body in untrusted_shown(at))
    for expected in ("version 1 saved", "unchanged, still version 1"):
        next(b for b in at.button if b.label == "Save as a new version").click().run()
        assert not at.exception and expected in unescaped(at.success[0])
    at.text_area[0].input("Prefer correct, then short answers.").run()
    next(b for b in at.button if b.label == "Save as a new version").click().run()
    assert guidelines.current_guidelines(app_db, "builtin").version == 2
    versions = next(d.value for d in at.dataframe if "version" in d.value.columns)
    assert list(versions["version"]) == [2, 1] and list(versions["author"]) == ["admin", "admin"]
    assert [e.label for e in at.expander] == ["Version 1"]


def test_admin_sets_the_repeat_share_and_gap_within_their_ranges(app_db):
    at = start("pages/data/guidelines.py")
    share, gap = at.number_input
    assert share.value == 5.0 and gap.value == 20 and share.max == 50.0
    share.set_value(12.5)
    gap.set_value(40)
    at.button(key="save-repeats").click().run()
    assert not at.exception and "12.5%" in unescaped(at.success[0])
    assert annotation.repeat_settings(app_db, "builtin") == {"repeat_share": 0.125, "repeat_gap": 40}


def test_the_guidelines_screen_renders_nothing_for_annotators(app_db):
    accounts.create_user(app_db, "ann", "ann-password")
    at = start(user="ann")
    try:
        at.switch_page("pages/data/guidelines.py").run()
    except Exception:  # noqa: BLE001  not a page of this session's navigation at all
        pass
    assert "Guidelines (Markdown)" not in [t.label for t in at.text_area] and not at.number_input
    assert "Save as a new version" not in [b.label for b in at.button]


def rank_twice(db) -> None:
    """alice and bob rank two items, one under guidelines version 1; alice ranks one of hers again."""
    admin = accounts.active_user(db, "admin")
    first, second = [row[0] for row in db.execute("SELECT id FROM items ORDER BY id LIMIT 2")]
    guidelines.save_guidelines(db, "builtin", "Prefer correct answers.", admin)
    for name, groups in (("alice", [[0], [1], [2, 3]]), ("bob", [[0], [2], [1], [3]])):
        me = annotation.annotator_id(db, name)
        annotation.submit_ranking(db, first, me, groups, [0, 1, 2, 3], seconds=4.0, guideline_version=1)
        annotation.submit_ranking(db, second, me, groups, [0, 1, 2, 3], seconds=4.0)
    alice = annotation.annotator_id(db, "alice")
    ranking = db.execute("SELECT id FROM rankings WHERE item_id = ? AND annotator_id = ?", [first, alice]).fetchone()[0]
    annotation.submit_ranking(db, first, alice, [[1], [0], [2], [3]], [3, 2, 1, 0], repeat_of=ranking)


def test_the_quality_screens_show_self_agreement_and_agreement_by_guideline_version(app_db):
    rank_twice(app_db)
    at = start("pages/quality/annotators.py")
    table = next(d.value for d in at.dataframe if "annotator" in d.value.columns)
    columns = list(table.columns)
    # each figure beside what it rests on (a walk read 50% and 0% off 5 rankings and 1 gold item, with no n)
    assert columns[columns.index("agreement_with_others") + 1:][:4] == ["agreement_pairs", "repeats", "self_agreement", "self_tau_b"]
    assert columns[columns.index("gold_accuracy") + 1] == "gold_rankings"
    alice, bob = table.set_index("annotator").loc["alice"], table.set_index("annotator").loc["bob"]
    assert alice["repeats"] == 1 and alice["self_agreement"] == 4 / 5 and round(alice["self_tau_b"], 4) == 0.5477
    assert bob["repeats"] == 0 and bob.isna()["self_agreement"]  # none asked again: 0 repeats, no self-agreement
    at = start("pages/quality/agreement.py")
    by_version = next(d.value for d in at.dataframe if "guideline_version" in d.value.columns)
    assert by_version[["guideline_version", "rankings"]].fillna(0).values.tolist() == [[0, 2], [1, 2]]
    assert list(by_version["agreement_with_others"]) == [0.8, 0.8]
