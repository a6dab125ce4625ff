"""Issue 24, items 5 and 6: text that fits at 80x24 and 160x48 (the DONE note, the histograms, the model
panel, the marks, the comparison's legend and table) and the small things (? in the comparison, a
non-image run's gallery, the accuracy axis, 1-based epochs, the footer of a finished run)."""

from __future__ import annotations

import pytest
from rich.style import Style

from tests.fake_classes import confusion_record, samples_record
from tests.fakes import FakeBackend, scripted_run, start_event
from tests.helpers import ready, until
from tests.test_newcomer_ui import _event, _screen_text, _settle
from tuitrain.app import TuiTrainApp
from tuitrain.runstate import LEAVE_HINT, RunState
from tuitrain.widgets.curves import Curves
from tuitrain.widgets.gallery import NOT_IMAGES, Gallery
from tuitrain.widgets.help import ENDED_NOTES, HelpScreen
from tuitrain.widgets.status import first_line, second_line

LONG_DIR = "/home/someone/experiments/fashion/a-long-folder-name/synthetic-cnn-20250101-120000"


def _ended(watch_mode: bool, **end) -> RunState:
    run = RunState(watch_mode)
    run.apply(start_event())
    run.apply(_event("end", status="done", best_val_acc=0.7825, **end))
    return run


# ------------------------------------------------------------------------------- the status line
@pytest.mark.parametrize("width", [78, 158])
@pytest.mark.parametrize("watch_mode", [False, True])
def test_the_done_note_is_whole_at_any_width(width, watch_mode):
    run = _ended(watch_mode)
    line = second_line(run, LONG_DIR, width).plain
    assert line.startswith("best val_acc 78.25%") and LEAVE_HINT in line and len(line) <= width
    assert ("read-only: the run has ended" in line) == watch_mode
    assert "samples/s" not in line and "ETA" not in first_line(run, width).plain  # ended: nothing left to time


def test_a_long_failure_is_cut_but_says_how_to_leave():
    run = RunState()
    run.apply(start_event())
    run.finish("FAILED", "RuntimeError: " + "mat1 and mat2 shapes cannot be multiplied " * 4)
    line = second_line(run, "runs/a", 78).plain
    assert len(line) == 78 and line.endswith(f"…  {LEAVE_HINT}") and line.startswith("RuntimeError: mat1")


def test_a_running_line_shortens_the_run_dir_to_its_name():
    run = RunState()
    run.apply(start_event(device="cuda:0"))
    run.apply({"type": "step", "step": 150, "epoch": 2, "loss": 0.3, "lr": 0.001, "samples_per_s": 8012.0})
    assert second_line(run, LONG_DIR, 158).plain.endswith(f"run {LONG_DIR}")
    line = second_line(run, LONG_DIR, 78).plain
    assert line == "8,012 samples/s  lr 0.001  device cuda:0  run synthetic-cnn-20250101-120000"
    assert len(first_line(run, 78).plain) <= 78


@pytest.mark.parametrize(("start_epoch", "shown"), [(0, "epoch 1/3"), (2, "epoch 3/3"), (3, "epoch 3/3")])
def test_epochs_count_from_one(start_epoch, shown):
    run = RunState()
    run.apply(start_event(start_epoch=start_epoch))
    assert shown in first_line(run, 78).plain


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_watching_a_finished_run_shows_the_whole_note(size):
    records = [*scripted_run(), _event("end", status="done", best_val_acc=0.85)]
    app = TuiTrainApp(FakeBackend(records, controls=False, run_dir=LONG_DIR), watch_mode=True)
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.run_state.finished, "the end record")
        await _settle(pilot, 3)
        status = _screen_text(app).splitlines()[1]
        assert "best val_acc 85.00%  read-only: the run has ended  (q to leave)" in status


# ------------------------------------------------------------------------------- the footer
@pytest.mark.slow
async def test_a_finished_run_offers_no_command_keys_but_answers_them():
    backend = FakeBackend()
    app = TuiTrainApp(backend)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await ready(pilot, app)
        footer = _screen_text(app).splitlines()[-1]
        assert all(label in footer for label in ("p Pause", "s Save", "l Load", "r LR", "d Device"))
        backend.push(_event("end", status="done", best_val_acc=0.85))
        await until(pilot, lambda: app.run_state.finished, "the end record")
        await _settle(pilot, 3)
        footer = _screen_text(app).splitlines()[-1]
        assert not any(label in footer for label in ("Pause", "Save", "Load", "LR", "Device")), footer
        assert all(label in footer for label in ("c Classes", "v View", "q Quit", "? Help"))
        await pilot.press("p")
        await _settle(pilot, 2)
        assert app.notices()[0] == "the run has ended (DONE); nothing to control" and backend.sent == []
        await pilot.press("question_mark")
        await _settle(pilot, 2)
        assert isinstance(app.screen, HelpScreen) and ENDED_NOTES in str(app.screen.query_one("Static").render())
        await pilot.press("l")  # a prompt key while the help is open: nothing (the help keeps the screen)
        await _settle(pilot, 2)
        assert isinstance(app.screen, HelpScreen)
        assert app.notices()[1:] != ["the run has ended (DONE); nothing to control"]  # said once, for p only


async def test_a_read_only_watch_offers_no_command_keys():
    app = TuiTrainApp(FakeBackend(controls=False), watch_mode=True)
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot, app)
        footer = _screen_text(app).splitlines()[-1]
        assert "Pause" not in footer and "q Quit" in footer


# ------------------------------------------------------------------------------- 80x24 panels
async def test_80x24_histograms_have_room_for_their_bars():
    app = TuiTrainApp(FakeBackend())
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        plot = app.dashboard.query_one("#hist-w")
        assert plot.size.height >= 8  # title, frame, x ticks: 4 rows; 4 or more rows of bars (was 2)
        curves = app.dashboard.query_one("#loss")
        assert curves.size.height >= 9  # title, frame, x ticks and 5 or more rows of curve


async def test_80x24_model_panel_shows_every_layer_of_the_cnn():
    summary = {"rows": [["conv1", "Conv2d", 1, [1, 6, 24, 24], 156, "True"],
                        ["conv2", "Conv2d", 1, [1, 12, 8, 8], 1812, "True"],
                        ["fc1", "Linear", 1, [1, 120], 23160, "True"], ["fc2", "Linear", 1, [1, 60], 7260, "True"],
                        ["out", "Linear", 1, [1, 10], 610, "True"]],
               "total_params": 32998, "trainable_params": 32998, "size_mb": 0.132}
    app = TuiTrainApp(FakeBackend([start_event(summary=summary), *scripted_run()[1:]]))
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        await pilot.press("v", "v")
        await _settle(pilot, 3)
        text = _screen_text(app)
        assert "out (Linear)" in text and "total 32,998 params (32,998 trainable), 132 KB, float32, on cpu" in text


async def test_80x24_marks_list_the_newest_that_fit():
    records = scripted_run()
    for i, step in enumerate(range(30, 151, 20)):
        records.append(_event("lr" if i % 2 else "device", step=step, old=0.001, new=0.002 + i / 1000))
    app = TuiTrainApp(FakeBackend(records))
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        curves = app.dashboard.query_one(Curves)
        curves.redraw()
        await _settle(pilot, 3)
        numbers = curves.query_one("#numbers")
        lines = str(numbers.render()).splitlines()
        assert len(lines) <= numbers.content_size.height
        assert any("marks, newest" in line and "of 7" in line for line in lines), lines
        assert lines[-1].endswith("150: →0.008")  # the newest is listed, last
        assert "val (epoch" not in str(numbers.render())


async def test_160x48_marks_are_listed_whole():
    records = [*scripted_run(), _event("device", step=150, new="cuda:1"), _event("lr", step=150, old=0.001, new=0.01)]
    app = TuiTrainApp(FakeBackend(records))
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot, app)
        app.dashboard.query_one(Curves).redraw()
        await _settle(pilot, 3)
        text = str(app.dashboard.query_one("#numbers").render())
        assert "marks\n | 150: →cuda:1\n | 150: lr 0.01" in text


async def test_before_the_first_epoch_val_says_when_it_comes():
    records = [r for r in scripted_run(90) if r["type"] != "epoch"]
    app = TuiTrainApp(FakeBackend(records))
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app, step=90)
        app.dashboard.query_one(Curves).redraw()
        await _settle(pilot, 2)
        text = str(app.dashboard.query_one("#numbers").render())
        assert "after each epoch" in text and "epoch 0" not in text
        assert "epoch 1/3" in _screen_text(app).splitlines()[0]


# ------------------------------------------------------------------------------- the accuracy axis
class _Limits:
    """Stands in for a plotext figure: remembers the y-range set."""

    def __init__(self) -> None:
        self.limits: tuple[float, float] | None = None

    def ylim(self, lo: float, hi: float) -> None:
        self.limits = (lo, hi)

    def yticks(self, *args) -> None:
        pass


@pytest.mark.parametrize(("value", "fraction", "expected"), [(0.1, True, (0.09, 0.11)), (0.0, True, (0.0, 0.5)),
                                                             (1.0, True, (0.9, 1.0)), (2.3, False, (2.07, 2.53)),
                                                             (-1.0, False, (-1.1, -0.9))])
def test_a_flat_curve_keeps_its_axis_on_its_side_of_zero(value, fraction, expected):
    plt = _Limits()
    Curves._yaxis(plt, value, value, False, fraction)
    assert plt.limits == pytest.approx(expected)


async def test_one_accuracy_point_is_not_drawn_on_a_negative_axis():
    records = [start_event(), {"type": "step", "step": 10, "epoch": 1, "loss": 2.3, "acc": 0.1, "lr": 0.001,
                               "samples_per_s": 100.0, "time": 1.0}]
    app = TuiTrainApp(FakeBackend(records))
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot, app, step=10)
        app.dashboard.query_one(Curves).redraw()
        await _settle(pilot, 2)
        plot = app.dashboard.query_one("#acc")
        assert "-" not in "".join(strip.text[:6] for strip in plot.strips())  # no negative tick labels


# ------------------------------------------------------------------------------- the gallery
@pytest.mark.slow
@pytest.mark.parametrize(("records", "note"), [
    ([confusion_record(epoch=1, step=100)], NOT_IMAGES),  # a fit run on tabular data: confusion, no samples
    ([{**confusion_record(epoch=1, step=100), "matrix": [[1000 if i == j else 0 for j in range(10)]
                                                         for i in range(10)]}], "epoch 1: nothing wrong"),
    ([confusion_record(epoch=1, step=100), samples_record(epoch=1, step=100, count=2)],
     "epoch 1: the 2 most confidently wrong"),
])
async def test_the_gallery_says_whether_samples_will_come(records, note):
    backend = FakeBackend([*scripted_run()[:11], *records, _event("save", step=100, auto=True, path="last.pt"),
                           *scripted_run()[11:]])
    app = TuiTrainApp(backend)
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot, app)
        await pilot.press("c")
        await _settle(pilot, 3)
        assert note in str(app.dashboard.query_one(Gallery).query_one("#gallery-note").render())


@pytest.mark.slow
async def test_the_gallery_waits_while_the_samples_may_still_come():
    backend = FakeBackend([*scripted_run(), confusion_record(epoch=1, step=150)])
    app = TuiTrainApp(backend)
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot, app)
        backend.push({"type": "system", "time": 2.0, "cpu_percent": [50.0], "rss_mb": 800.0, "ram_used_mb": 4096.0,
                      "ram_total_mb": 16384.0, "gpus": [], "gpu_note": "no GPU found"})  # another thread's record
        await _settle(pilot, 3)
        assert "no samples yet" in str(app.dashboard.query_one(Gallery).query_one("#gallery-note").render())
        backend.push(samples_record(epoch=1, step=150, count=1))
        await until(pilot, lambda: app.dashboard.query_one(Gallery).samples, "the samples")


def test_swatch_colours_are_colours_rich_knows():
    from tuitrain.widgets.compare_curves import PALETTE, swatch

    for run in range(len(PALETTE)):
        Style.parse(swatch(run).split("]")[0][1:])  # raised for "orange" and "gray" (drawn uncoloured)
