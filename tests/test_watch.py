"""`tuitrain watch` via Pilot: a recorded run shown as it ended, a growing one followed live."""

from __future__ import annotations

import json

import pytest

from tests.fakes import scripted_run
from tests.helpers import record_run, until
from tuitrain.app import TuiTrainApp
from tuitrain.backends import WatchBackend
from tuitrain.widgets.curves import Curves
from tuitrain.widgets.histograms import Histograms
from tuitrain.widgets.status import StatusLine
from tuitrain.widgets.summary import SummaryPanel


@pytest.mark.slow
async def test_watch_recorded_run_is_read_only(tmp_path):
    records = scripted_run() + [{"type": "event", "event": "pause", "step": 150, "time": 1.0, "ok": True},
                                {"type": "event", "event": "end", "step": 150, "time": 2.0, "status": "done",
                                 "best_val_acc": 0.85}]
    record_run(tmp_path / "run", records, "done").close()
    backend = WatchBackend(tmp_path / "run")
    assert backend.controls is False
    app = TuiTrainApp(backend, watch_mode=True)
    async with app.run_test(size=(160, 48)) as pilot:
        status = app.query_one(StatusLine)
        await until(pilot, lambda: status.state == "DONE", "the end state")
        assert "read-only" in status.note and "85.00%" in status.note
        assert app.query_one(Curves).train_loss.xs[-1] == 150
        assert app.query_one(Histograms).record is not None
        assert app.query_one(SummaryPanel).query_one("DataTable").row_count == 3
        assert not app.notices()  # replayed history raises no notifications
        await pilot.press("p")
        assert any("nothing to control" in n for n in app.notices())
        await pilot.press("q")
    assert app.return_value == 0


@pytest.mark.slow
async def test_watch_follows_a_growing_run(tmp_path):
    records = scripted_run(steps=50)
    log = record_run(tmp_path / "run", records, "running")
    backend = WatchBackend(tmp_path / "run")
    assert backend.controls is True
    app = TuiTrainApp(backend, watch_mode=True)
    async with app.run_test(size=(120, 40)) as pilot:
        curves = app.query_one(Curves)
        await until(pilot, lambda: len(curves.train_loss) == 5, "the history")
        for step in range(60, 110, 10):
            log.write({"type": "step", "step": step, "epoch": 1, "loss": 0.5, "acc": 0.8, "lr": 0.001,
                       "samples_per_s": 9000.0, "time": float(step)})
        log.write({"type": "event", "event": "lr", "step": 100, "time": 3.0, "ok": True, "old": 0.001, "new": 0.01})
        await until(pilot, lambda: curves.train_loss.xs[-1] == 100, "the new steps")
        await until(pilot, lambda: app.query_one(StatusLine).lr == 0.01, "the lr event")
        assert any("learning rate" in n for n in app.notices())
        await pilot.press("q")  # leaves the viewer; the run is not touched
    assert app.return_value == 0
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == "running"


@pytest.mark.slow
async def test_watch_marks_a_dead_run(tmp_path, monkeypatch):
    log = record_run(tmp_path / "run", scripted_run(steps=30), "running")
    log.close()
    backend = WatchBackend(tmp_path / "run")
    monkeypatch.setattr(WatchBackend, "ALIVE_CHECK_S", 0.1)
    monkeypatch.setattr("tuitrain.rundir.status.pid_alive", lambda pid: False)
    app = TuiTrainApp(backend, watch_mode=True)
    async with app.run_test() as pilot:
        await until(pilot, lambda: app.query_one(StatusLine).state == "DEAD", "the dead state")
        assert "process is gone" in app.query_one(StatusLine).note
