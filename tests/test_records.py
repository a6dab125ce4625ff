"""The run directory's records: schema per SPEC, and readers that tolerate a torn last line."""

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
from tuitrain.rundir import Follower, RunLog, read_records
from tuitrain.session import Session
from tuitrain.widgets.curves import Curves
from tuitrain.widgets.histograms import Histograms
from tuitrain.widgets.plot import FastPlot
from tuitrain.widgets.status import StatusLine


@pytest.mark.slow
def test_record_schema(small_config):
    cfg = small_config()
    session = Session(cfg)
    session.prepare()
    session.open_run_dir()
    assert session.run().status == "done"
    run = session.log.run_dir
    config = json.loads((run / "config.json").read_text())
    assert config["lr"] == 0.001 and config["versions"]["torch"] and config["data"]["mean"]
    records = read_records(run / "metrics.jsonl")
    kinds = {r["type"] for r in records}
    assert kinds == {"step", "epoch", "event", "confusion"}
    for r in records:
        if r["type"] == "step":
            assert {"step", "epoch", "loss", "lr", "time", "acc", "samples_per_s"} <= r.keys()
        elif r["type"] == "epoch":
            assert {"epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "train_seconds",
                    "time"} <= r.keys()
        elif r["type"] == "event":
            assert {"event", "step", "epoch", "time"} <= r.keys()
    events = [r["event"] for r in records if r["type"] == "event"]
    assert events[0] == "start" and events[-1] == "end"
    steps = [r["step"] for r in records if r["type"] == "step"]
    assert steps == sorted(steps) and steps[-1] == 40
    hist = read_records(run / "histograms.jsonl")
    assert hist and hist[0]["layers"][0]["name"] == "conv1.weight"
    assert sum(hist[0]["layers"][0]["w"]["counts"]) == 150
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "done" and status["epoch"] == 2


@pytest.mark.slow
def test_confusion_samples_and_histograms_at_step_one_and_epoch_ends(small_config):
    session = Session(small_config(hist_every=1000))  # 20 steps an epoch: only step 1 and epoch ends
    session.prepare()
    session.open_run_dir()
    assert session.run().status == "done"
    run = session.log.run_dir
    records = read_records(run / "metrics.jsonl")
    epochs = [r for r in records if r["type"] == "epoch"]
    confusion = [r for r in records if r["type"] == "confusion"]
    assert [c["epoch"] for c in confusion] == [e["epoch"] for e in epochs] == [1, 2]
    for c, e in zip(confusion, epochs, strict=True):
        total = sum(map(sum, c["matrix"]))
        assert total == 200  # the whole validation split (limit 1000 -> 200)
        assert sum(c["matrix"][i][i] for i in range(10)) / total == e["val_acc"]
        assert c["classes"][0] == "class 0" and len(c["matrix"]) == 10
    samples = read_records(run / "samples.jsonl")
    assert [s["epoch"] for s in samples] == [1, 2]
    for item in samples[-1]["items"]:
        assert item["true"] != item["pred"] and 0 < item["confidence"] <= 1 and item["shape"] == [1, 28, 28]
    confidences = [i["confidence"] for i in samples[-1]["items"]]
    assert confidences == sorted(confidences, reverse=True)
    assert [h["step"] for h in read_records(run / "histograms.jsonl")] == [1, 20, 40]


def test_reader_tolerates_partial_last_line(tmp_path):
    log = RunLog(tmp_path)
    log.write({"type": "step", "step": 1})
    log.write({"type": "step", "step": 2})
    log.close()
    path = tmp_path / "metrics.jsonl"
    with open(path, "a") as fh:
        fh.write('{"type": "step", "st')
    assert [r["step"] for r in read_records(path)] == [1, 2]
    follower = Follower(path)
    assert len(follower.poll()) == 2
    with open(path, "a") as fh:
        fh.write('ep": 3}\n{"type": "epoch"}\n')
    assert [r["type"] for r in follower.poll()] == ["step", "epoch"]
    assert follower.poll() == []


@pytest.mark.slow
def test_histogram_counts_stay_exact_past_float32s_whole_numbers():
    # A bin holding 2**24 + 1 values: a float32 count read 2**24 (the counts no longer summed to numel).
    import torch

    from tuitrain.evaluation import histograms

    n = 2**24 + 2
    weights = torch.zeros(n)
    weights[0] = 1.0
    model = torch.nn.Module()
    model.p = torch.nn.Parameter(weights, requires_grad=False)
    entry = histograms(model)[0][0]["w"]
    assert entry["counts"][0] == n - 1 and entry["counts"][-1] == 1 and sum(entry["counts"]) == n
    for values in ([2.0], [0.3] * 7, [1.0, float("nan"), 2.0], [1.0, float("inf"), -float("inf")]):
        model.p = torch.nn.Parameter(torch.tensor(values), requires_grad=False)
        assert sum(histograms(model)[0][0]["w"]["counts"]) == len(values)  # every value in some bin


def test_histograms_are_drawn_a_bounded_slice_at_a_time_and_stop_between_layers():
    """A model of many tiny layers: each histogram step draws at most HIST_PARAMS_PER_STEP of them,
    in turn, and a stop request ends the step between two layers (before: every layer, 27 s a step
    for 10,000 of them, and a stop waited for the whole)."""
    import torch

    from tuitrain.evaluation import HIST_PARAMS_PER_STEP, histograms

    model = torch.nn.Sequential(*[torch.nn.Linear(1, 1) for _ in range(HIST_PARAMS_PER_STEP)])  # 2x the budget
    names = {name for name, _ in model.named_parameters()}
    seen, start = set(), 0
    for _ in range(2):
        layers, start = histograms(model, start)
        assert len(layers) == HIST_PARAMS_PER_STEP
        seen |= {layer["name"] for layer in layers}
    assert seen == names and start == 0  # round the whole model in two steps
    asked = iter(range(100))
    layers, following = histograms(model, 5, stop=lambda: next(asked) >= 3)  # a stop after three layers
    assert len(layers) == 3 and following == 8


# Readers survive well-formed records with missing or mistyped fields: records.valid
# keeps what the panels can draw and `watch` skips (and counts) the rest. Hypothesis mutates real
# records (a field dropped, retyped, nested parts broken) and throws arbitrary JSON at the app.


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
