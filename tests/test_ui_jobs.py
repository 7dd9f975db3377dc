"""The job card's figures: a line where a figure moves, a number where a chart would show nothing."""

from streamlit.testing.v1 import AppTest


def charts_of(history: list[dict]) -> AppTest:
    def script(history):
        from ui.jobs import metric_charts

        metric_charts(history, {"KL to start": ["train/kl"], "loss": ["train/loss"]})

    return AppTest.from_function(script, args=(history,), default_timeout=30).run()


def test_a_moving_figure_is_a_line_and_a_flat_one_a_number():
    at = charts_of([{"step": s, "train/kl": 0.0, "train/loss": 1.0 / s} for s in (1, 2, 3)])
    assert not at.exception
    assert [(m.label, m.value) for m in at.metric] == [("KL to start", "0")]  # flat: one y tick "0.000000" said nothing
    assert "the same at every step logged (1 to 3)" in at.metric[0].help
    assert [c.value for c in at.caption] == ["loss"]  # the moving one keeps its chart


def test_a_figure_logged_once_is_a_number():
    at = charts_of([{"step": 1, "train/kl": 0.25}, {"step": 2, "train/loss": 0.5}, {"step": 3, "train/loss": 0.4}])
    assert [(m.label, m.value) for m in at.metric] == [("KL to start", "0.25")]


def test_two_figures_logged_once_are_named_by_their_split():
    """A reward model's card said "Pairwise accuracy 0.409 · 0.261" with nothing to tell which was held out (walk)."""
    def script():
        from ui.jobs import metric_charts

        metric_charts([{"step": 1, "train/accuracy": 0.409, "val/accuracy": 0.2612}],
                      {"Pairwise accuracy": ["train/accuracy", "val/accuracy"]})

    at = AppTest.from_function(script, default_timeout=30).run()
    assert [(m.label, m.value) for m in at.metric] == [("Pairwise accuracy", "training 0.409 · held-out 0.261")]


def test_more_than_three_charts_take_a_second_row():
    """Five charts side by side cut their titles and figures (a DPO card, walk 2026-12-06)."""
    def script():
        from ui.jobs import metric_charts

        metric_charts([{"step": 1, **{f"m/{i}": 0.5 for i in range(5)}}], {f"chart {i}": [f"m/{i}"] for i in range(5)})

    at = AppTest.from_function(script, default_timeout=30).run()
    assert len(at.columns) == 6 and len(at.metric) == 5  # two rows of three
