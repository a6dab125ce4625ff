"""Comparing runs: legend labels from the settings that differ, the table in monitored order with the best
marked, the x axis by epoch (switchable), and Enter leaving with the selected run."""

from __future__ import annotations

import pytest

from tests.fakes import start_event
from tests.helpers import COMPARE_SWEEP, compare_loaded, compare_sweep, write_compare_run
from tuitrain.compare_app import CompareApp, RunRow, legend_labels, sorted_rows, varied_params
from tuitrain.keys import COMPARE_KEYS
from tuitrain.widgets.compare_curves import CompareCurves, Legend, RunAxes
from tuitrain.widgets.help import HelpScreen

BASE = {"dataset": "fashion-mnist", "model": "cnn", "epochs": 2, "optimizer": "adam", "seed": 0, "device": "auto",
        "data_dir": "/data", "devices": ["cpu"], "host": "h", "started": 1.0}


def test_legend_labels_name_what_differs():
    configs = [{**BASE, "lr": 0.01, "batch_size": 100, "run_dir": "runs/a", "pid": 1},
               {**BASE, "lr": 0.001, "batch_size": 100, "run_dir": "runs/b", "pid": 2},
               {**BASE, "lr": 0.0001, "batch_size": 1000, "run_dir": "runs/c", "pid": 3}]
    assert varied_params(configs) == ["lr", "batch_size"]
    assert legend_labels(configs, ["a", "b", "c"]) == ["lr=0.01 bs=100", "lr=0.001 bs=100", "lr=0.0001 bs=1000"]  # as the sweep table shows lr


def test_legend_labels_of_identical_settings():
    same = [{**BASE, "lr": 0.01, "run_dir": f"runs/{n}"} for n in ("x-20260101-120000", "x-20260101-130000")]
    assert legend_labels(same, ["x-20260101-120000", "x-20260101-130000"]) == ["x-20260101-120000",
                                                                                 "x-20260101-130000"]
    assert legend_labels([{"lr": 0.1}, {"lr": 0.1}, {"lr": 0.2}], ["r", "r", "s"]) == ["lr=0.1 #1", "lr=0.1 #2",
                                                                                          "lr=0.2"]


def _row(index: int, monitor: str, **best) -> RunRow:
    return RunRow(index, str(index), monitor, best=best)


@pytest.mark.parametrize(("monitor", "order"), [("val_acc", [2, 0, 1, 3]), ("val_loss", [1, 2, 0, 3])])
def test_rows_sorted_by_the_monitored_value(monitor, order):
    rows = [_row(0, monitor, val_acc=0.85, val_loss=0.40), _row(1, monitor, val_acc=0.80, val_loss=0.30),
            _row(2, monitor, val_acc=0.90, val_loss=0.35), _row(3, monitor)]  # 3: no epoch yet, last
    assert [r.index for r in sorted_rows(rows)] == order


def test_run_row_keeps_the_best_of_each_metric():
    row = RunRow(0, "a", "val_loss")
    for epoch, (acc, loss) in enumerate([(0.7, 0.6), (0.8, 0.5), (0.75, float("nan"))], start=1):
        row.add_epoch({"type": "epoch", "epoch": epoch, "val_acc": acc, "val_loss": loss})
    assert row.best == {"val_acc": 0.8, "val_loss": 0.5} and row.epochs == 3


def test_x_positions_on_every_axis():
    axes = RunAxes({"batch_size": 100})
    axes.positions(start_event(steps_per_epoch=50, time=1000.0))
    step = axes.positions({"type": "step", "step": 75, "epoch": 2, "loss": 1.0, "time": 1030.0})
    assert step == {"epoch": 1.5, "step": 75, "samples": 7500, "time": 30.0}
    epoch = axes.positions({"type": "epoch", "epoch": 2, "step": 100, "val_acc": 0.8, "time": 1040.0})
    assert epoch == {"epoch": 2, "step": 100, "samples": 10000, "time": 40.0}
    assert axes.positions({"type": "event", "event": "pause", "step": 3}) is None


@pytest.mark.parametrize(("monitor", "order"), [(None, ["01-b", "02-c", "00-a"]), ("val_loss", ["02-c", "00-a", "01-b"])])
async def test_compare_table_legend_axis_and_enter(tmp_path, monitor, order):
    write_compare_run(tmp_path / "sweep" / "00-a", 0.01, 100, [0.7, 0.8], monitor)
    write_compare_run(tmp_path / "sweep" / "01-b", 0.001, 100, [0.75, 0.9], monitor)
    write_compare_run(tmp_path / "sweep" / "02-c", 0.01, 500, [0.6, 0.85], monitor)
    from tuitrain.rundir import expand_runs

    app = CompareApp(expand_runs([str(tmp_path / "sweep")]))
    async with app.run_test(size=(120, 40)) as pilot:
        await compare_loaded(pilot, app)
        table = app.query_one("DataTable")
        rows = [table.get_row_at(i) for i in range(table.row_count)]
        assert [r[-1] for r in rows] == order  # best val_acc 0.8, 0.9, 0.85; best val_loss (monitor) 0.7, 0.75, 0.6
        assert "★" in rows[0][0] and not any("★" in r[0] for r in rows[1:])
        params = {"00-a": ["0.01", "100"], "01-b": ["0.001", "100"], "02-c": ["0.01", "500"]}
        assert [r[1:3] for r in rows] == [params[name] for name in order]
        assert table.border_title.startswith(f"runs by {monitor or 'val_acc'}")
        curves = app.query_one(CompareCurves)
        legend = curves.query_one("#cmp-legend").render().plain.replace("\u00a0", " ")
        assert "lr=0.01 bs=100" in legend and "lr=0.001 bs=100" in legend and "sweep" not in legend
        assert curves.axis == "epoch" and curves.val_acc[0].xs == [1, 2]
        await pilot.press("x")
        assert curves.axis == "step" and curves.val_acc[2].xs == [2, 4]
        await pilot.press("down", "enter")
    assert app.return_value == str(tmp_path / "sweep" / order[1])


def test_x_positions_survive_garbage():
    axes = RunAxes({"batch_size": "100"})
    axes.positions({"type": "event", "event": "start", "steps_per_epoch": "50", "batch_size": True, "time": "t"})
    assert axes.positions({"type": "step", "step": 10, "time": 5.0}) == {"epoch": None, "step": 10, "samples": None,
                                                                         "time": 0.0}
    assert axes.positions({"type": "epoch", "epoch": "2", "step": "x"}) is None
    assert axes.positions({"type": "epoch", "epoch": "2", "step": 20})["epoch"] is None


async def test_the_x_axis_chosen_is_kept_when_an_opened_run_comes_back(tmp_path):
    write_compare_run(tmp_path / "sweep" / "00-a", 0.01, 100, [0.7, 0.8])
    write_compare_run(tmp_path / "sweep" / "01-b", 0.001, 100, [0.75, 0.9])
    from tuitrain.rundir import expand_runs

    runs = expand_runs([str(tmp_path / "sweep")])
    app = CompareApp(runs)
    async with app.run_test(size=(80, 24)) as pilot:
        await compare_loaded(pilot, app)
        await pilot.press("x")
        assert app.axis == "step"
    again = CompareApp(runs, None, app.axis)  # as run_compare builds it after q in the opened run
    async with again.run_test(size=(80, 24)) as pilot:
        await compare_loaded(pilot, again)
        curves = again.query_one(CompareCurves)
        assert curves.axis == "step" and curves.border_title.startswith("by step")


# The comparison view of a sweep of 8 runs at 80x24 and 160x48: every run in the table, a
# legend that wraps between runs only, the same colour for a run everywhere, and ? for its keys.


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_every_run_of_a_sweep_of_8_is_in_the_table(tmp_path, size):
    app = compare_sweep(tmp_path)
    async with app.run_test(size=size) as pilot:
        await compare_loaded(pilot, app)
        await pilot.pause()
        table = app.query_one("DataTable")
        assert table.row_count == 8
        assert table.scrollable_content_region.height >= 1 + 8  # the header and every row, no scrolling needed
        assert "↑↓ choose" in table.border_subtitle


@pytest.mark.parametrize("width", [20, 78, 158])
def test_the_legend_wraps_between_runs_only(width):
    labels = [f"lr={lr} bs={bs}" for lr, bs in COMPARE_SWEEP]
    lines = [line.plain for line in Legend(labels).lines(width)]
    assert all(len(line) <= width for line in lines)
    for label in labels:
        assert sum(f"━━ {label}" in line for line in lines) == 1, (label, lines)  # whole, on one line
    assert len(lines) == {20: 8, 78: 3, 158: 2}[width]


async def test_the_legend_gives_way_to_the_plots_on_a_short_terminal(tmp_path):
    app = compare_sweep(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await compare_loaded(pilot, app)
        assert not app.query_one(Legend).display  # the table's squares are the legend here
        await pilot.resize_terminal(160, 48)
        await pilot.pause()
        await pilot.pause()
        assert app.query_one(Legend).display


async def test_question_mark_shows_the_comparison_keys(tmp_path):
    app = compare_sweep(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await compare_loaded(pilot, app)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one("Static").render())
        for key in COMPARE_KEYS:
            assert f"{key.shown:<8}{key.does}" in text
        await pilot.press("question_mark")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("down", "enter")
    assert app.return_value is not None  # the keys work again once the help is closed


def test_every_run_of_8_has_its_own_colour_in_the_default_theme():
    from textual._ansi_theme import MONOKAI

    from tuitrain.widgets.compare_curves import PALETTE

    assert len({MONOKAI.ansi_colors[n] for n in PALETTE}) == len(PALETTE)  # red and magenta are one colour there
