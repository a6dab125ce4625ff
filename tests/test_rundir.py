"""The run directory as its readers meet it: the one follow loop and what is built on it."""

from __future__ import annotations

import io
import threading

from tests.fakes import scripted_run
from tests.helpers import record_run, wait
from tuitrain import progress

# Records a tampered or foreign file may hold: each lacks a field, or carries one of the wrong type.
MISFITS = [
    {"type": "step", "step": "70", "epoch": 1, "loss": 0.5},
    {"type": "epoch", "step": 60},
    {"type": "event", "event": "start", "step": 0},
    {"type": "event", "event": "lr", "step": 60, "ok": True, "new": "fast"},
]


def _step(step: int, when: float) -> dict:
    return {"type": "step", "step": step, "epoch": 1 + step // 100, "loss": 0.5, "acc": 0.8, "lr": 0.001,
            "samples_per_s": 1000.0, "time": when}


def test_watch_into_a_file_skips_records_that_do_not_fit_in_the_history(tmp_path, capsys):
    """`tuitrain watch RUN > file` (progress.watch_plain) crashed with a traceback on a record of the
    wrong type that the dashboard skips."""
    records = scripted_run()[:3] + MISFITS + scripted_run()[3:]
    record_run(tmp_path / "run", records, "done").close()
    assert progress.watch_plain(str(tmp_path / "run")) == 0
    out = capsys.readouterr().out
    assert out == f"tuitrain: {tmp_path / 'run'}: done, epoch 1/3, step 150/300, best val_acc 85.00%\n"


def test_watch_into_a_file_skips_records_that_do_not_fit_while_following(tmp_path, monkeypatch):
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)
    run = tmp_path / "run"
    log = record_run(run, scripted_run(steps=50), "running")
    out = io.StringIO()
    finished = threading.Event()

    def write_more() -> None:
        wait(lambda: "\n" in out.getvalue() or finished.is_set(), "the status line")
        for record in MISFITS:
            log.write(record)
        log.write(_step(60, 160.0))
        log.write({"type": "event", "event": "end", "step": 60, "time": 172.0, "status": "stopped",
                   "best_val_acc": None})

    writer = threading.Thread(target=write_more)
    writer.start()
    try:
        assert progress.watch_plain(str(run), out, 0.02) == 0
    finally:
        finished.set()
        writer.join(10)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"tuitrain: {run}: running, epoch 0/3, step 50/300"), lines
    assert "step 60/300" in lines[1] and len(lines) == 3, lines
    assert lines[2] == f"tuitrain: {run}: stopped at step 60; best val_acc -"
