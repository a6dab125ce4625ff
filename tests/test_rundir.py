"""The run directory as its readers meet it: the one follow loop and what is built on it."""

from __future__ import annotations

import errno
import io
import json
import os
import threading
from pathlib import Path

import pytest

from tests.fakes import scripted_run, start_event
from tests.helpers import record_run, wait
from tuitrain import progress, records
from tuitrain.errors import first_line
from tuitrain.records import valid
from tuitrain.rundir import HISTOGRAMS, METRICS, Follow, Position, RunInfo, format_runs, write_atomic
from tuitrain.rundir import follow as follow_module
from tuitrain.runstate import RunState

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


# ------------------------------------------------------------------------------- the follow loop
def _run(tmp_path, records: list[dict], state: str = "running"):
    return record_run(tmp_path / "run", records, state)


def test_a_position_resumes_exactly_after_the_last_record_seen(tmp_path):
    """What the remote stream needs after a dropped connection: no record lost, none twice."""
    log = _run(tmp_path, scripted_run(steps=50))
    follow = Follow(tmp_path / "run")
    assert [r["type"] for r in follow.history()][:2] == ["event", "step"]
    position = follow.position  # where the history ends: its records carry no position of their own
    for step in range(60, 130, 10):
        log.write(_step(step, float(step)))
    log.write({**scripted_run()[-2], "step": 120})  # a histogram: histograms.jsonl
    first = follow.poll()
    seen = first[:3]  # the consumer handled three records, then lost its connection
    for read in seen:
        position = position.after(read)
    wire = json.loads(json.dumps(position.to_dict()))
    with (tmp_path / "run" / METRICS).open("ab") as fh:
        fh.write(b'{"type":"step","step":130,')  # the run is writing its next line
    again = Follow(tmp_path / "run", Position.from_dict(wire))
    rest = again.poll()
    assert [r.record for r in seen + rest] == [r.record for r in first]
    with (tmp_path / "run" / METRICS).open("ab") as fh:
        fh.write(b'"epoch":2,"loss":0.5,"time":130.0}\n')
    assert [r.record["step"] for r in again.poll()] == [130]
    assert again.poll() == [] and Follow(tmp_path / "run", again.position).poll() == []


def test_a_position_from_outside_is_checked():
    assert Position.from_dict({METRICS: 10, HISTOGRAMS: 0}).to_dict() == {METRICS: 10, HISTOGRAMS: 0}
    for garbage in ([], {"../x": 1}, {METRICS: -1}, {METRICS: "1"}, {METRICS: True}, {METRICS: 1.5}, {METRICS: 2**70}):
        with pytest.raises(ValueError):
            Position.from_dict(garbage)


def test_following_skips_and_counts_what_does_not_fit_and_keeps_the_newest_histogram(tmp_path):
    log = _run(tmp_path, scripted_run(steps=50))
    follow = Follow(tmp_path / "run")
    follow.history()
    hist = scripted_run()[-2]
    for record in [*MISFITS, {**hist, "step": 60}, {**hist, "step": 70}, {**hist, "step": 80, "layers": 5}]:
        log.write(record)
    batch = follow.poll()
    assert [(r.file, r.record["step"]) for r in batch] == [(HISTOGRAMS, 70)]
    assert follow.skipped == len(MISFITS) + 1
    assert follow.position.to_dict()[HISTOGRAMS] == (tmp_path / "run" / HISTOGRAMS).stat().st_size  # past all


def test_iteration_ends_with_the_end_event_and_a_resumed_run_goes_on(tmp_path):
    end = {"type": "event", "event": "end", "step": 50, "time": 60.0, "status": "done"}
    log = _run(tmp_path, [*scripted_run(steps=50), end])
    follow = Follow(tmp_path / "run", poll_s=0.01)
    follow.history()
    assert follow.ended == "end" and list(follow) == []
    log.write(start_event(step=50, start_epoch=1))  # continued in its own folder with --resume
    log.write(_step(60, 70.0))
    log.write({**end, "step": 60})
    again = Follow(tmp_path / "run", poll_s=0.01)
    again.history()
    assert again.ended == "end" and again.end_record["step"] == 60
    follow = Follow(tmp_path / "run", Position({METRICS: 0}), files=(METRICS,), poll_s=0.01)
    batches = list(follow)
    assert batches[-1][-1].record["step"] == 60 and follow.ended == "end"


def test_stop_ends_the_iteration_at_once_from_another_thread(tmp_path):
    _run(tmp_path, scripted_run(steps=50))
    follow = Follow(tmp_path / "run", poll_s=600, alive_check_s=600)  # a sleep would hang this test
    follow.history()
    done = threading.Event()
    thread = threading.Thread(target=lambda: (list(follow), done.set()))
    thread.start()
    follow.stop()
    thread.join(10)
    assert done.is_set() and follow.ended == ""


def test_a_follower_far_behind_catches_up_in_bounded_reads_without_waiting(tmp_path, monkeypatch):
    monkeypatch.setattr(follow_module, "READ_LIMIT", 100)
    log = _run(tmp_path, scripted_run(steps=50))
    for step in range(60, 560, 10):
        log.write(_step(step, float(step)))
    follow = Follow(tmp_path / "run", Position(), files=(METRICS,), poll_s=600)
    steps = []
    for batch in follow:  # poll_s=600: more than one batch only if reads go on at once while behind
        steps += [r.record["step"] for r in batch if r.record["type"] == "step"]
        if steps and steps[-1] == 550:
            break
    assert steps == list(range(10, 560, 10))


def test_a_dead_run_ends_with_a_made_up_dead_end(tmp_path, monkeypatch):
    _run(tmp_path, scripted_run(steps=50)).close()
    monkeypatch.setattr("tuitrain.rundir.status.pid_alive", lambda pid: False)
    follow = Follow(tmp_path / "run", poll_s=0.01, alive_check_s=0.01)
    follow.history()
    batches = list(follow)
    assert follow.ended == "dead" and batches[-1][0].file == ""
    assert batches[-1][0].record == follow.end_record and follow.end_record["status"] == "dead"
    assert valid(follow.end_record)


def test_a_history_is_only_for_a_fresh_follower(tmp_path):
    _run(tmp_path, scripted_run(steps=50))
    with pytest.raises(RuntimeError):
        Follow(tmp_path / "run", Position()).history()
    follow = Follow(tmp_path / "run")
    follow.poll()
    with pytest.raises(RuntimeError):
        follow.history()


def test_watch_into_a_file_says_when_the_process_is_gone(tmp_path, monkeypatch):
    _run(tmp_path, scripted_run(steps=50)).close()
    monkeypatch.setattr(progress, "ALIVE_CHECK_S", 0.01)
    monkeypatch.setattr("tuitrain.rundir.status.pid_alive", lambda pid: not pid_gone.is_set())
    pid_gone = threading.Event()
    out = io.StringIO()
    thread = threading.Thread(target=progress.watch_plain, args=(str(tmp_path / "run"), out, 0.01))
    thread.start()
    wait(lambda: "\n" in out.getvalue(), "the status line")
    pid_gone.set()
    thread.join(10)
    assert out.getvalue().splitlines()[1] == (f"tuitrain: {tmp_path / 'run'}: the run's process is gone without "
                                              f"ending the run")


# ------------------------------------------------------------------------------- one state vocabulary
def test_the_dashboard_shows_the_word_runs_and_status_json_use():
    for status in ("done", "failed", "stopped", "interrupted", "dead"):
        run = RunState()
        run.apply(start_event())
        run.apply({"type": "event", "event": "end", "step": 150, "time": 2.0, "status": status})
        assert run.status == status and run.state == status.upper() == run.finished
        assert run.exit_code == records.exit_code(status)


def test_a_resumed_run_is_running_again_after_its_old_end_in_the_history():
    run = RunState(watch_mode=True)
    for record in [start_event(), {"type": "event", "event": "end", "step": 150, "time": 2.0, "status": "done"},
                   start_event(step=150, start_epoch=1)]:
        run.apply(record)
    assert run.status == "running" and not run.finished and run.note == ""


def test_the_runs_table_fits_every_state():
    rows = [RunInfo(Path("runs") / name, state, 1, 3, None, 1_700_000_000.0, "cpu")
            for name, state in (("a", "done"), ("b", "interrupted"), ("c", "unreadable"))]
    lines = format_runs(rows).splitlines()
    assert len({line.index("1/3") for line in lines[2:]}) == 1 and "interrupted" in lines[3]


# ------------------------------------------------------------------------------- files and errors
def test_the_atomic_writer_fsyncs_and_leaves_nothing_behind_when_it_fails(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    write_atomic(tmp_path / "status.json", '{"state": "running"}')
    assert (tmp_path / "status.json").read_text() == '{"state": "running"}' and len(synced) == 2  # file, folder

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError):
        write_atomic(tmp_path / "status.json", '{"state": "done"}')
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]
    assert (tmp_path / "status.json").read_text() == '{"state": "running"}'


def test_first_line_of_an_exception():
    assert first_line(RuntimeError("\n  shape mismatch  \nat layer 3")) == "shape mismatch"
    assert first_line(KeyError()) == "KeyError" and first_line(ValueError("x" * 300)) == "x" * 160
    assert first_line(ValueError(" \n"), named=True) == "ValueError"
    assert first_line(ValueError("bad\nworse"), limit=None, named=True) == "ValueError: bad"


# ------------------------------------------------------------------------------- what a run was judged by
def test_runs_and_watch_into_a_file_name_the_monitored_value_of_a_multilabel_run(tmp_path, capsys):
    """A multi-label run (BCEWithLogits over 4 labels, judged by a Hamming distance) has no val_acc:
    `tuitrain runs` and `watch RUN > file` showed "best val_acc -" though status.json holds
    ``best`` and ``monitor``."""
    import torch
    from torch import nn

    import tuitrain
    from tuitrain import fmt
    from tuitrain.cli import main

    torch.manual_seed(0)
    x = torch.randn(160, 12)
    y = (x[:, :4] > 0).float()
    model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 4))
    result = tuitrain.fit(model, (x, y), loss_fn=nn.BCEWithLogitsLoss(), monitor="val_hamming", epochs=2,
                          metrics={"hamming": lambda out, t: ((out > 0).float() != t).float().mean()},
                          batch_size=32, headless=True, device="cpu", run_dir=str(tmp_path / "runs" / "multi"))
    shown = f"best val_hamming {fmt.loss(result.best)}"
    assert result.monitor == "val_hamming" and result.best is not None and result.best_val_acc is None
    capsys.readouterr()
    assert main(["runs", str(tmp_path / "runs")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["run", "status", "epochs", "best"]
    assert f"val_hamming {fmt.loss(result.best)}" in table[2] and "val_acc" not in table[2]
    assert main(["watch", str(tmp_path / "runs" / "multi")]) == 0
    assert capsys.readouterr().out.strip().endswith(f"step {result.step}/{result.step}, {shown}")


def test_the_runs_table_names_each_runs_monitor_and_keeps_its_columns():
    rows = [RunInfo(Path("runs") / "cls", "done", 3, 3, 0.9123, 1_700_000_000.0, "cpu"),
            RunInfo(Path("runs") / "seg", "done", 3, 3, None, 1_700_000_000.0, "cpu", "seg", "val_dice_loss", 0.0812),
            RunInfo(Path("runs") / "vae", "running", 1, 3, None, 1_700_000_000.0, "cpu", "vae", "val_loss", None)]
    lines = format_runs(rows).splitlines()
    assert "val_acc 91.23%" in lines[2] and "val_dice_loss 0.0812" in lines[3] and "val_loss -" in lines[4]
    assert len({line.index("2023-") for line in lines[2:]}) == 1
