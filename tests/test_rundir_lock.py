"""Two runs started on one new run dir: one trains, the other exits 2 with one line and writes
nothing. The run holds an flock on RUN_DIR/.lock for its life."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tuitrain.errors import UsageError
from tuitrain.rundir import read_records

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_a_second_session_is_refused_while_the_first_holds_the_dir(small_config):
    from tuitrain.session import Session

    config = small_config(epochs=1, limit=200)
    first = Session(config)
    first.prepare()
    first.open_run_dir()
    with pytest.raises(UsageError, match="in use by another tuitrain run"):
        Session(config).open_run_dir()  # refused before it writes anything
    assert first.run().status == "done"
    with pytest.raises(UsageError, match="already holds a run"):  # the lock is gone, the records stay
        Session(config).open_run_dir()
    starts = [r for r in read_records(Path(config.run_dir) / "metrics.jsonl") if r.get("event") == "start"]
    assert len(starts) == 1


@pytest.mark.slow
def test_two_processes_started_together_on_one_run_dir(tmp_path):
    """Two races at once, each of two CLI runs on one new directory."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = []
    for race in range(2):
        run_dir = tmp_path / f"race{race}" / "run"
        cmd = [sys.executable, "-m", "tuitrain", "synthetic", "--headless", "--epochs", "1", "--limit", "100",
               "--model", "mlp", "--device", "cpu", "--run-dir", str(run_dir)]
        procs.append((run_dir, [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                                 stderr=subprocess.PIPE, text=True) for _ in range(2)]))
    for run_dir, pair in procs:
        results = [(p.wait(timeout=180), *p.communicate()) for p in pair]
        codes = sorted(code for code, _, _ in results)
        assert codes == [0, 2], results
        loser = next(err for code, _, err in results if code == 2)
        errors = [line for line in loser.splitlines() if line.startswith("tuitrain: error:")]
        assert len(errors) == 1 and "Traceback" not in loser, loser
        records = read_records(run_dir / "metrics.jsonl")
        assert len([r for r in records if r.get("event") == "start"]) == 1
        assert [r["epoch"] for r in records if r["type"] == "epoch"] == [1]


def test_taking_the_lock_removes_temp_files_of_dead_writers(tmp_path):
    """A kill mid-write leaves .status.json.PID.tmp and .config.json.PID.tmp; before, they survived
    every later start. Those of a live process (another writer's, say a viewer's own files) stay."""
    from tuitrain.rundir.lock import RunLock

    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "30"])
    try:
        run_dir = tmp_path / "run"
        (run_dir / "checkpoints").mkdir(parents=True)
        stale = [run_dir / f".status.json.{dead.pid}.tmp", run_dir / f".config.json.{dead.pid}.tmp",
                 run_dir / "checkpoints" / f".last.pt.{dead.pid}.tmp"]
        kept = [run_dir / f".status.json.{live.pid}.tmp", run_dir / "notes.tmp", run_dir / ".x.notapid.tmp"]
        for path in stale + kept:
            path.write_text("partial")
        lock = RunLock(run_dir)
        lock.acquire()
        lock.release()
        assert not any(path.exists() for path in stale)
        assert all(path.exists() for path in kept)
    finally:
        live.kill()
        live.wait()
