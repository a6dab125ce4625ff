"""The run directory's records: schema per SPEC, and readers that tolerate a torn last line."""

from __future__ import annotations

import json

from tuitrain.runlog import Follower, RunLog, read_records
from tuitrain.session import Session


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
    assert kinds == {"step", "epoch", "event"}
    for r in records:
        if r["type"] == "step":
            assert {"step", "epoch", "loss", "lr", "time", "acc", "samples_per_s"} <= r.keys()
        elif r["type"] == "epoch":
            assert {"epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "train_seconds",
                    "time"} <= r.keys()
        else:
            assert {"event", "step", "time"} <= r.keys()
    events = [r["event"] for r in records if r["type"] == "event"]
    assert events[0] == "start" and events[-1] == "end"
    steps = [r["step"] for r in records if r["type"] == "step"]
    assert steps == sorted(steps) and steps[-1] == 40
    hist = read_records(run / "histograms.jsonl")
    assert hist and hist[0]["layers"][0]["name"] == "conv1.weight"
    assert sum(hist[0]["layers"][0]["w"]["counts"]) == 150
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "done" and status["epoch"] == 2


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
