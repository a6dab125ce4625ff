"""SVG snapshots of the classes view (confusion heatmap, per class, pairs, half-block gallery) and of the
curves with a spike, wide and at 80x24, from fixed records (no engine)."""

from __future__ import annotations

import pytest

from tests.fake_classes import confusion_record, samples_record
from tests.fakes import FakeBackend, scripted_run
from tests.helpers import settle_dashboard
from tuitrain.app import TuiTrainApp
from tuitrain.widgets.classes import ClassesPanel
from tuitrain.widgets.curves import Curves
from tuitrain.widgets.gallery import Gallery, SampleCard


def _app(samples: int = 16) -> TuiTrainApp:
    return TuiTrainApp(FakeBackend(scripted_run() + [confusion_record(), samples_record(count=samples)]))


def _then(*keys: str):
    async def run_before(pilot) -> None:
        await settle_dashboard(pilot)
        for _ in range(50):
            if pilot.app.dashboard.query_one(ClassesPanel).confusion and pilot.app.dashboard.query_one(Gallery).samples:
                break
            await pilot.pause()
        await pilot.press(*keys)
        for _ in range(50):  # the cards are mounted when the view is shown
            await pilot.pause()
            if pilot.app.dashboard.query(SampleCard):
                break
        await pilot.pause()

    return run_before


@pytest.mark.slow
def test_classes_view_wide(snap_compare):
    assert snap_compare(_app(), terminal_size=(160, 48), run_before=_then("c"))


@pytest.mark.slow
def test_classes_view_80x24(snap_compare):
    assert snap_compare(_app(), terminal_size=(80, 24), run_before=_then("v", "v", "v"))


@pytest.mark.slow
def test_classes_view_80x24_gallery(snap_compare):
    assert snap_compare(_app(samples=8), terminal_size=(80, 24), run_before=_then("c", "pagedown"))


@pytest.mark.slow
def test_curves_with_a_spike_80x24(snap_compare):
    records = scripted_run()
    records.insert(8, {"type": "step", "step": 75, "epoch": 1, "batch": 75, "loss": 4078280249534579.0, "acc": 0.1,
                       "lr": 10.0, "samples_per_s": 8000.0, "time": 75.0})

    async def run_before(pilot) -> None:
        await settle_dashboard(pilot)
        pilot.app.dashboard.query_one(Curves).redraw()
        await pilot.pause()

    assert snap_compare(TuiTrainApp(FakeBackend(records)), terminal_size=(80, 24), run_before=run_before)
