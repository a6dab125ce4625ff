"""Readers survive well-formed records with missing or mistyped fields (issue 12 #12): records.valid
keeps what the panels can draw and `watch` skips (and counts) the rest. Hypothesis mutates real
records (a field dropped, retyped, nested parts broken) and throws arbitrary JSON at the app."""

from __future__ import annotations

import copy
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from textual_plotext import PlotextPlot

from tests.fakes import FakeBackend, scripted_run, start_event
from tests.helpers import record_run, until
from tuitrain.app import TuiTrainApp
from tuitrain.backends import WatchBackend
from tuitrain.history import Markers, Series
from tuitrain.messages import RecordsArrived
from tuitrain.records import valid
from tuitrain.widgets.curves import Curves
from tuitrain.widgets.histograms import Histograms
from tuitrain.widgets.plot import FastPlot
from tuitrain.widgets.status import StatusLine


def _event(name: str, **details) -> dict:
    return {"type": "event", "event": name, "step": 120, "epoch": 2, "time": 5.0, **details}


TEMPLATES = [
    *scripted_run(steps=100),  # start, steps, an epoch, a histogram, a system sample
    start_event(),
    _event("lr", ok=True, old=0.001, new=0.01, cmd_id=3),
    _event("device", ok=True, old="cpu", new="cuda:0"),
    _event("save", ok=False, reason="bad checkpoint name '[/x].pt'"),
    _event("nonfinite", ok=False, reason="loss became nan", action="paused"),
    _event("end", status="done", best_val_acc=0.9, best=0.9, epochs_done=2),
    {"type": "system", "time": 1.0, "cpu_percent": [10.0, 20.0], "rss_mb": 100.0, "ram_used_mb": 1.0,
     "ram_total_mb": 2.0, "gpus": [{"index": 0, "name": "H100", "util_percent": 50.0, "mem_used_mb": 1.0,
                                    "mem_total_mb": 80.0, "temp_c": 40.0, "power_w": None}], "gpu_note": ""},
    {"type": "confusion", "epoch": 1, "step": 100, "time": 1.0, "classes": ["a", "b"], "matrix": [[3, 1], [0, 4]]},
    {"type": "samples", "epoch": 1, "step": 100, "time": 1.0, "classes": ["a", "b"],
     "items": [{"index": 3, "true": 0, "pred": 1, "confidence": 0.9, "shape": [1, 2, 2], "image": "AAAA"}]},
]
MARKUP = st.sampled_from(["[/]", "[/b]", "a[b]", "[@click=app.quit]x[/]", "[$x]", "[red on]", "\x1b[31m"])
TEXT = st.text(alphabet=st.sampled_from("ab[]/@=$:x \n\x1b\u00e9"), max_size=12) | MARKUP
SCALARS = (st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats() | TEXT | TEXT
           | st.sampled_from([-1e308, 1e308, -1, 0, 2**53 + 1, ""]))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                    max_leaves=8)


@st.composite
def _mutated(draw, value, depth: int = 0):
    """``value`` with one part dropped or replaced, somewhere down its tree."""
    if isinstance(value, dict) and value and depth < 4 and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(value, key=str)))
        action = draw(st.sampled_from(["drop", "replace", "descend"]))
        if action == "drop" and key != "type":
            del value[key]
        elif action == "replace":
            value[key] = draw(JSON)
        else:
            value[key] = draw(_mutated(value[key], depth + 1))
        return value
    if isinstance(value, list) and value and depth < 4 and draw(st.booleans()):
        i = draw(st.integers(0, len(value) - 1))
        value[i] = draw(_mutated(value[i], depth + 1))
        return value
    return draw(JSON)


@st.composite
def records(draw) -> dict:
    """A template record mutated a few times, or (sometimes) arbitrary JSON with a known type."""
    if draw(st.integers(0, 9)) == 0:
        record = draw(st.dictionaries(TEXT, JSON, max_size=5))
        record["type"] = draw(st.sampled_from(["step", "epoch", "event", "hist", "system", "replay", "x"]))
        return record
    record = copy.deepcopy(draw(st.sampled_from(TEMPLATES)))
    for _ in range(draw(st.integers(0, 3))):
        record = draw(_mutated(record, 1))
    return record


def _through_the_file(record: dict) -> dict:
    """What a reader gets back: JSON as runlog writes it (NaN and Infinity allowed)."""
    return json.loads(json.dumps(record, allow_nan=True))


def test_known_malformed_records_are_refused():
    step = {"type": "step", "step": 10, "epoch": 1, "loss": 0.5}
    layer = {"name": "w", "w": {"lo": 0.0, "hi": 1.0, "norm": 1.0, "counts": [1, 2]}, "g": None}
    assert valid(step) and valid({"type": "hist", "step": 1, "layers": [layer]})
    assert not valid({k: v for k, v in step.items() if k != "step"})  # step without step
    assert not valid({**step, "step": -1e308})
    assert not valid({**step, "step": True})
    assert not valid({"type": "hist", "step": 1, "layers": 5})
    assert not valid({"type": "hist", "step": 1, "layers": [{**layer, "w": {"lo": 0.0, "hi": 1.0, "counts": [1]}}]})
    assert not valid({"type": "hist", "step": 1, "layers": [{**layer, "w": {**layer["w"], "counts": []}}]})
    assert not valid({"type": "hist", "step": 1, "layers": [{**layer, "w": {**layer["w"], "hi": math.inf}}]})
    assert not valid({"type": "system", "ram_used_mb": math.nan})
    assert not valid(_event("lr", ok=True, new="fast"))
    assert not valid(_event("start", epochs=3, total_steps=300, device="cpu", summary={"rows": 5}))
    assert valid(_event("lr", ok=False, reason="not a number"))
    assert valid({"type": "somebody-elses", "x": 1})  # unknown types pass: readers skip them


def _fresh_panels(app) -> None:
    curves = app.dashboard.query_one(Curves)
    curves.train_loss, curves.train_acc, curves.val_loss, curves.val_acc = Series(), Series(), Series(), Series()
    curves.markers, curves.best, curves.val_values = Markers(), None, {}
    histograms = app.dashboard.query_one(Histograms)
    histograms.record = None
    histograms.layer_index = 0
    for plot in app.dashboard.query(PlotextPlot):
        plot.plt.clear_data()
    run = app.run_state
    run.epoch = run.epochs = run.step = run.total = run.batch_size = 0
    run.samples_per_s, run.lr, run.device = 0.0, None, ""


@pytest.mark.slow
async def test_any_valid_record_is_routed_without_error():
    """Hypothesis inside one running app: each example's valid records go through the routing,
    then every panel is drawn at once (plots built, text parsed as markup); the app must live on."""
    backend = FakeBackend(records=[])
    app = TuiTrainApp(backend, watch_mode=True)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        seen = {"kept": 0, "skipped": 0}

        @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.lists(records(), min_size=1, max_size=6))
        def feed(batch):
            _fresh_panels(app)  # each example on its own, so a failure replays the same way
            batch = [_through_the_file(r) for r in batch]
            kept = [r for r in batch if valid(r)]
            seen["kept"] += len(kept)
            seen["skipped"] += len(batch) - len(kept)
            app.route_records(RecordsArrived(kept))
            app.dashboard.query_one(Curves).redraw()
            app.dashboard.query_one(Histograms).redraw()
            app.dashboard.query_one(StatusLine).refresh_text()
            for plot in app.dashboard.query(PlotextPlot):
                plot.render()
                if isinstance(plot, FastPlot):
                    plot.strips()  # the dashboard's own drawing path, from plotext's matrix

        feed()
        for _ in range(5):
            await pilot.pause(0.05)  # toasts and tables drawn from the fed records
        assert app.is_running and app.return_code is None
        assert seen["kept"] > 100 and seen["skipped"] > 100  # both kinds were exercised
        backend.quit()  # the fake's run() returns (an end record may have made the app leave it be)


@pytest.mark.slow
async def test_watch_skips_and_counts_records_that_do_not_fit(tmp_path):
    bad = [{"type": "step", "epoch": 1, "loss": 0.3},  # no step
           {"type": "step", "step": -1e308, "epoch": 1, "loss": 0.3},
           {"type": "hist", "step": 100, "layers": 5},
           {"type": "hist", "step": 100, "layers": [{"name": "x", "w": {"lo": 0, "hi": 1, "counts": [1]}}]},
           {"type": "event", "event": "lr", "step": 10, "ok": True, "new": "fast"}]
    records = scripted_run() + bad + [{"type": "event", "event": "end", "step": 150, "time": 2.0, "status": "done"}]
    record_run(tmp_path / "run", records, "done").close()
    backend = WatchBackend(tmp_path / "run")
    app = TuiTrainApp(backend, watch_mode=True)
    async with app.run_test(size=(160, 48)) as pilot:
        status = app.query_one(StatusLine)
        await until(pilot, lambda: status.state == "DONE", "the end state")
        assert backend.skipped == len(bad) - 1  # of histograms.jsonl only the newest line is read
        assert app.query_one(Curves).train_loss.xs[-1] == 150
        assert any("4 records" in n.message for n in app._notifications)
        await pilot.press("q")
    assert app.return_value == 0


def test_watch_devices_from_a_tampered_config(tmp_path):
    record_run(tmp_path / "run", scripted_run(steps=10), "done").close()
    (tmp_path / "run" / "config.json").write_text('{"devices": 5}')
    assert WatchBackend(tmp_path / "run").devices() == ["cpu"]
