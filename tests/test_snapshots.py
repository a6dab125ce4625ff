"""SVG snapshots of the dashboard with fixed data (no engine, no psutil/NVML: a fake backend)."""

from __future__ import annotations

from tests.fakes import FakeBackend
from tuitrain.app import TuiTrainApp
from tuitrain.widgets.curves import Curves
from tuitrain.widgets.status import StatusLine


async def _settle(pilot) -> None:
    app = pilot.app
    for _ in range(50):
        await pilot.pause()
        if app.query_one(StatusLine).state == "RUNNING" and len(app.query_one(Curves).train_loss):
            break
    app.query_one(Curves).redraw()
    app.query_one(StatusLine).refresh_text()  # normally on a timer: drawn now so the snapshot is stable
    await pilot.pause()


def test_dashboard_wide(snap_compare):
    assert snap_compare(TuiTrainApp(FakeBackend()), terminal_size=(160, 48), run_before=_settle)


def test_dashboard_80x24(snap_compare):
    assert snap_compare(TuiTrainApp(FakeBackend()), terminal_size=(80, 24), run_before=_settle)


def test_dashboard_80x24_system_view(snap_compare):
    async def settle_then_cycle(pilot) -> None:
        await _settle(pilot)
        await pilot.press("v")

    assert snap_compare(TuiTrainApp(FakeBackend()), terminal_size=(80, 24), run_before=settle_then_cycle)


def test_help_screen(snap_compare):
    async def settle_then_help(pilot) -> None:
        await _settle(pilot)
        await pilot.press("question_mark")

    assert snap_compare(TuiTrainApp(FakeBackend()), terminal_size=(100, 30), run_before=settle_then_help)
