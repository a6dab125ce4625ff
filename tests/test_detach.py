"""``tuitrain DATASET ... --detach``: the run starts in a session of its own and outlives the
session it was started from; bad usage is refused before anything starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT, wait
from tuitrain.cli import main
from tuitrain.rundir import run_state

RUN = ["synthetic", "--epochs", "2", "--limit", "1000", "--batch-size", "50", "--model", "mlp", "--device", "cpu"]


@pytest.mark.slow
def test_a_detached_run_outlives_the_session_that_started_it(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TUITRAIN_DATA": str(tmp_path / "data")}
    # A login session of its own: a shell that starts the run with --detach and stays, like a user's.
    command = [sys.executable, "-m", "tuitrain", *RUN, "--run-dir", str(run_dir), "--detach"]
    session = subprocess.Popen(["sh", "-c", 'echo "$$" > pid; "$@"; echo "rc=$?"; exec sleep 600', "sh", *command],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        start = time.monotonic()
        lines = [session.stdout.readline() for _ in range(3)]  # the two lines of --detach, then its exit code
        took = time.monotonic() - start
        assert lines[2] == "rc=0\n", lines
        assert lines[0] == f"tuitrain: run dir {run_dir}; watch it live with: tuitrain watch {run_dir}\n"
        assert "training in the background" in lines[1] and f"{run_dir / 'log.txt'}" in lines[1]
        assert took < 30, took  # it loads nothing (a cold start of python on a loaded machine is the cost)
        os.killpg(session.pid, signal.SIGHUP)  # the session ends (a dropped SSH connection)
        session.wait(10)
    finally:
        try:
            os.killpg(session.pid, signal.SIGKILL)
        except OSError:
            pass
    wait(lambda: (run_dir / "status.json").exists() and run_state(run_dir) not in ("running", "paused"),
         "the run to end", 180)
    log = (run_dir / "log.txt").read_text()
    assert run_state(run_dir) == "done", (run_state(run_dir), (run_dir / "status.json").read_text(), log)
    assert "epoch 2: train_loss" in log and "tuitrain: done after 2 epochs" in log, log


@pytest.mark.slow
@pytest.mark.parametrize(("args", "says"), [
    (["--lr", "-1"], "learning rate"),
    (["--resume", "missing.pt"], "checkpoint missing.pt does not exist"),
    (["--model", "missing.py:Net"], "model file missing.py does not exist"),
])
def test_detach_refuses_bad_usage_before_starting_anything(args, says, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*RUN, "--run-dir", "run", *args, "--detach"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tuitrain: error: ") and says in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_detach_refuses_a_run_dir_that_holds_a_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("")
    assert main([*RUN, "--run-dir", "run", "--detach"]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and err.count("\n") == 1, err
    assert not (tmp_path / "run" / "log.txt").exists()
