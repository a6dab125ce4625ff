"""The run directory's records: schema per SPEC, and readers that tolerate a torn last line."""

from __future__ import annotations

import json

import pytest

from tuitrain.rundir import Follower, RunLog, read_records
from tuitrain.session import Session


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
