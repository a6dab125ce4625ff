"""SVG snapshots of the comparison view of a sweep of 8 runs (``tuitrain watch SWEEP``), at 80x24 and
160x48: the legend wraps between labels, never inside one, and the table shows all 8 runs."""

from __future__ import annotations

import pytest

from tests.helpers import compare_loaded, compare_sweep
from tuitrain.widgets.compare_curves import CompareCurves


async def _drawn(pilot) -> None:
    await compare_loaded(pilot, pilot.app)
    pilot.app.query_one(CompareCurves).redraw()  # normally on a timer: drawn now so the snapshot is stable
    await pilot.pause()


def test_compare_8_runs_80x24(snap_compare, tmp_path):
    assert snap_compare(compare_sweep(tmp_path), terminal_size=(80, 24), run_before=_drawn)


@pytest.mark.slow
def test_compare_8_runs_wide(snap_compare, tmp_path):
    assert snap_compare(compare_sweep(tmp_path), terminal_size=(160, 48), run_before=_drawn)


@pytest.mark.slow
def test_compare_help_80x24(snap_compare, tmp_path):
    async def drawn_then_help(pilot) -> None:
        await _drawn(pilot)
        await pilot.press("question_mark")

    assert snap_compare(compare_sweep(tmp_path), terminal_size=(80, 24), run_before=drawn_then_help)
