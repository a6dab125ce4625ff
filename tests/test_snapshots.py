"""SVG snapshots of the dashboard with fixed data (no engine, no psutil/NVML: a fake backend)."""

from __future__ import annotations

import pytest

from tests.fakes import FakeBackend
from tests.helpers import settle_dashboard
from tuitrain.app import TuiTrainApp
from tuitrain.widgets.curves import Curves


@pytest.mark.slow
def test_dashboard_wide(snap_compare):
    assert snap_compare(TuiTrainApp(FakeBackend()), terminal_size=(160, 48), run_before=settle_dashboard)


@pytest.mark.slow
def test_dashboard_80x24(snap_compare):
    assert snap_compare(TuiTrainApp(FakeBackend()), terminal_size=(80, 24), run_before=settle_dashboard)


@pytest.mark.slow
def test_dashboard_80x24_system_view(snap_compare):
    async def settle_then_cycle(pilot) -> None:
        await settle_dashboard(pilot)
        await pilot.press("v")

    assert snap_compare(TuiTrainApp(FakeBackend()), terminal_size=(80, 24), run_before=settle_then_cycle)


@pytest.mark.slow
def test_help_screen(snap_compare):
    async def settle_then_help(pilot) -> None:
        await settle_dashboard(pilot)
        await pilot.press("question_mark")

    assert snap_compare(TuiTrainApp(FakeBackend()), terminal_size=(100, 30), run_before=settle_then_help)


def _ended_app(watch_mode: bool, run_dir: str = "runs/fake") -> TuiTrainApp:
    from tests.fakes import scripted_run

    end = {"type": "event", "event": "end", "step": 150, "epoch": 1, "time": 0.0, "status": "done",
           "best_val_acc": 0.85}
    return TuiTrainApp(FakeBackend([*scripted_run(), end], controls=not watch_mode, run_dir=run_dir),
                       watch_mode=watch_mode)


async def _settle_ended(pilot) -> None:
    app = pilot.app
    for _ in range(50):
        await pilot.pause()
        if app.run_state.finished and len(app.query_one(Curves).train_loss):
            break
    app.query_one(Curves).redraw()
    await pilot.pause()


@pytest.mark.slow
def test_dashboard_done_80x24(snap_compare):
    """The DONE note whole with (q to leave); no p/s/l/r/d in the footer of a finished run."""
    assert snap_compare(_ended_app(False), terminal_size=(80, 24), run_before=_settle_ended)


@pytest.mark.slow
def test_watch_done_wide(snap_compare):
    """Watch of a finished run with a long run dir: the note is whole, never cut at "(q to"."""
    app = _ended_app(True, "/home/someone/experiments/fashion/a-long-folder-name/synthetic-cnn-20250101-120000")
    assert snap_compare(app, terminal_size=(160, 48), run_before=_settle_ended)


@pytest.mark.slow
def test_dashboard_80x24_model_view(snap_compare):
    """At 80x24 the model panel shows all 5 of the cnn's layers, `out` included."""
    async def settle_then_model(pilot) -> None:
        await settle_dashboard(pilot)
        await pilot.press("v", "v")

    assert snap_compare(TuiTrainApp(FakeBackend()), terminal_size=(80, 24), run_before=settle_then_model)
