"""Tick labels, log scale and the spike-proof y-range of the curves (pure functions and the widget)."""

from __future__ import annotations

import math
import re

from hypothesis import assume, given
from hypothesis import strategies as st
from textual.app import App
from textual_plotext import PlotextPlot

from tuitrain.plotscale import compact, labels, log_ticks, nice_ticks, robust_range, spike_cut, without
from tuitrain.widgets.curves import Curves


def test_compact_labels():
    cases = {4078280249534579.0: "4.1e15", 12000: "12k", 4078: "4.08k", 1234567: "1.23M", 0.523: "0.523",
             2.345: "2.35", 999.7: "1k", 912: "912", 150: "150", 0: "0", 0.0003: "3e-4", -12000: "-12k", 2e9: "2e9"}
    assert {v: compact(v) for v in cases} == cases
    assert compact(912, 2) == "910" and compact(0.523, 2) == "0.52"


@given(st.floats(-1e300, 1e300))
def test_compact_is_short_and_never_a_long_float(value):
    text = compact(value)
    assert len(text) <= 9 and "e+" not in text  # the longest: -5.4e-106
    if value:
        assert math.isclose(float(text.replace("k", "e3").replace("M", "e6")), value, rel_tol=0.051)  # 2 significant digits: at most 5% off


def test_labels_tell_ticks_apart():
    assert labels([1000, 1005, 1010]) == ["1k", "1.005k", "1.01k"]
    assert labels(nice_ticks(0.1, 2.3)) == ["0.5", "1", "1.5", "2"]


@given(st.floats(-1e12, 1e12), st.floats(1e-6, 1e12))
def test_nice_ticks_are_round_and_inside(lo, span):
    assume(span > abs(lo) * 1e-6)  # a plot's range is never below float precision of its values
    ticks = nice_ticks(lo, lo + span)
    assert 2 <= len(ticks) <= 11
    assert all(lo - span * 1e-6 <= t <= lo + span * (1 + 1e-6) for t in ticks)
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:], strict=False)}
    mantissa = f"{(ticks[1] - ticks[0]):.3e}".split("e")[0]
    assert mantissa in ("1.000", "2.000", "5.000") and len(steps) >= 1


def test_log_ticks_label_the_values_not_their_logs():
    positions, names = log_ticks(-2, 15.6)
    assert positions[0] == -2 and "0.01" in names and "1e13" in names and len(names) <= 7
    positions, names = log_ticks(math.log10(0.3), math.log10(2))
    assert names == ["0.5", "1", "1.5", "2"] and math.isclose(positions[1], 0.0)


def test_one_spike_is_left_off_the_range():
    ys = [2.3 / (1 + i / 30) for i in range(300)]
    ys[150] = 4078280249534579.0
    lo, hi, spikes = robust_range(ys)
    assert spikes == [150] and hi == 2.3 and lo == ys[-1]
    assert without(ys, spikes)[150] == ys[149]


def test_smooth_curves_and_real_jumps_have_no_spike():
    assert spike_cut([2.3 / (1 + i / 30) for i in range(300)]) == math.inf
    assert spike_cut([0.5] * 3 + [2.0] * 300) == math.inf  # a level change is the curve, not a spike
    lo, hi, bad = robust_range([1, 2, float("nan"), 3, float("inf")])
    assert (lo, hi, bad) == (1, 3, [2, 4])


class CurvesApp(App):
    def compose(self):
        yield Curves()


def _plot_text(curves: Curves) -> str:
    return curves.query_one("#loss", PlotextPlot).render().plain


async def test_curves_mark_a_spike_and_switch_to_log():
    app = CurvesApp()
    async with app.run_test(size=(120, 24)) as pilot:
        curves = app.query_one(Curves)
        for step in range(20, 12001, 20):
            loss = 4078280249534579.0 if step == 6000 else 2.3 / (1 + step / 3000)
            curves.add_step({"step": step, "loss": loss, "acc": 0.5, "lr": 0.01})
        curves.redraw()
        await pilot.pause()
        linear = _plot_text(curves)
        assert curves.spikes == [(6000, 4078280249534579.0)]
        assert "^" in linear and "12k" in linear and "1.5" in linear  # steps and losses in compact ticks
        assert "4078280249534579" not in linear and "e+" not in linear
        assert "4.1e15 at step 6k" in str(curves.query_one("#numbers").render())
        assert curves.toggle_log() is True
        await pilot.pause()
        log = _plot_text(curves)
        assert "loss (log)" in log and re.search(r"1e1\d", log) and curves.spikes == []  # on a log axis it fits
        assert curves.toggle_log() is False
