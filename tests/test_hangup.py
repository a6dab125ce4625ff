"""A terminal that goes away never takes the run with it, and never leaves a stuck process.

The dashboard (or a headless run on a terminal) in tmux, then ``tmux kill-session``: tmux sends
SIGHUP to the pane's process group and closes the terminal (writes fail with EIO from then on).
Each run is paused through its control channel before the hang-up, so the hang-up lands
mid-run however slow the machine; it is resumed (through the channel, or a key in ``watch``)
after. The pane runs a small wrapper that passes the SIGHUP on to the run as a login shell does, and
writes the run's exit code.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, Pane, slow_model, wait
from tuitrain.control import send_command
from tuitrain.rundir import read_status, run_state

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")]

RUN = ["synthetic", "--epochs", "2", "--limit", "1000", "--batch-size", "50", "--device", "cpu", "--log-every", "5"]
"""40 steps of at least 0.1 s each (with --model slow_model(...)): the pause lands mid-run."""


@pytest.fixture
def panes():
    started: list[Pane] = []
    yield started
    for pane in started:
        pane.kill()
        if not pane.rc_file.exists():  # never leave a training process behind a failed test
            pid = (read_status(pane.rc_file.parent / "run") or {}).get("pid")
            if isinstance(pid, int):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass


def _paused_mid_run(run_dir: Path) -> None:
    """Wait until the run trains (a step record), then pause it through its control channel."""
    wait(lambda: (run_dir / "metrics.jsonl").exists() and '"type":"step"' in (run_dir / "metrics.jsonl").read_text()
         and run_state(run_dir) == "running", "the run to train", 120)
    answer = send_command(run_dir, "pause")
    assert answer["ok"], answer
    wait(lambda: run_state(run_dir) == "paused", "the run to pause")


def _log(run_dir: Path) -> str:
    path = run_dir / "log.txt"
    return path.read_text() if path.exists() else ""


def test_the_dashboard_goes_away_with_its_terminal_and_the_run_trains_on(tmp_path, panes):
    run_dir = tmp_path / "run"
    pane = Pane(tmp_path, [*RUN, "--model", slow_model(tmp_path), "--run-dir", str(run_dir)])
    panes.append(pane)
    _paused_mid_run(run_dir)
    pid = read_status(run_dir)["pid"]
    pane.kill()
    wait(lambda: "the terminal went away" in _log(run_dir), "the hang-up note in log.txt", 30)
    assert run_state(run_dir) == "paused" and read_status(run_dir)["pid"] == pid  # alive, still in control
    # Reattach: `tuitrain watch` in a new terminal, and a key (p) resumes the run.
    (tmp_path / "watch").mkdir()
    viewer = Pane(tmp_path / "watch", ["watch", str(run_dir)])
    panes.append(viewer)
    wait(lambda: "PAUSED" in viewer.screen(), "watch to show the paused run", 60)
    subprocess.run(["tmux", "send-keys", "-t", viewer.name, "p"], check=True)
    assert pane.exit_code(180) == 0
    assert run_state(run_dir) == "done"
    log = _log(run_dir)
    assert "epoch 2: train_loss" in log and "tuitrain: done after 2 epochs" in log, log
    assert "\x1b" not in log  # plain lines: no escape sequence of the dashboard leaked into the log
    subprocess.run(["tmux", "send-keys", "-t", viewer.name, "q"], check=True)
    assert viewer.exit_code(30) == 0


def test_on_hangup_stop_saves_last_pt_and_exits_129_within_seconds(tmp_path, panes):
    run_dir = tmp_path / "run"
    pane = Pane(tmp_path, [*RUN, "--model", slow_model(tmp_path), "--run-dir", str(run_dir), "--on-hangup", "stop"])
    panes.append(pane)
    _paused_mid_run(run_dir)
    pane.kill()
    assert pane.exit_code(10) == 129
    assert run_state(run_dir) == "interrupted"
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert "tuitrain: interrupted after" in _log(run_dir)


def test_a_dashboard_that_gets_no_sighup_leaves_at_the_first_refused_write(tmp_path, panes):
    """In a session of its own (tmux's SIGHUP to the pane's process group misses it), the terminal
    only refuses writes (EIO): taken as the hang-up it is, the run goes on headless."""
    run_dir = tmp_path / "run"
    pane = Pane(tmp_path, [*RUN, "--model", slow_model(tmp_path), "--run-dir", str(run_dir)], own_session=True)
    panes.append(pane)
    _paused_mid_run(run_dir)
    pane.kill()
    answer = send_command(run_dir, "resume")  # the dashboard redraws: a write to the dead terminal
    assert answer["ok"], answer
    wait(lambda: "the terminal went away" in _log(run_dir), "the hang-up note in log.txt", 30)
    assert pane.exit_code(180) == 0
    assert run_state(run_dir) == "done" and "tuitrain: done after 2 epochs" in _log(run_dir)


def test_a_headless_run_on_a_terminal_that_goes_away_trains_on_into_log_txt(tmp_path, panes):
    run_dir = tmp_path / "run"
    pane = Pane(tmp_path, [*RUN, "--model", slow_model(tmp_path), "--run-dir", str(run_dir), "--headless"])
    panes.append(pane)
    _paused_mid_run(run_dir)
    pane.kill()
    wait(lambda: "the terminal went away" in _log(run_dir), "the hang-up note in log.txt", 30)
    answer = send_command(run_dir, "resume")
    assert answer["ok"], answer
    assert pane.exit_code(180) == 0
    assert run_state(run_dir) == "done"
    log = _log(run_dir)
    assert "epoch 2: train_loss" in log and "tuitrain: done after 2 epochs" in log, log


def test_a_headless_run_started_with_sighup_ignored_keeps_it_ignored(tmp_path):
    """nohup: SIGHUP ignored at the start stays ignored (tuitrain installs no handler over it)."""
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TUITRAIN_DATA": str(tmp_path / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "tuitrain", *RUN, "--model", slow_model(tmp_path), "--run-dir",
                             str(run_dir), "--headless"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    try:
        _paused_mid_run(run_dir)
        proc.send_signal(signal.SIGHUP)
        answer = send_command(run_dir, "resume")
        assert answer["ok"], answer
        out, _ = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert run_state(run_dir) == "done"
    assert "the terminal went away" not in out + _log(run_dir)
    assert "tuitrain: done after 2 epochs" in out  # still on its own stderr
