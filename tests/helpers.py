"""What many tests share: the repository root and the ways to wait for something to happen.

Waiting always polls a condition with a deadline (never a bare sleep), so a slow machine makes a
test slower, not flaky.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from tuitrain.rundir import RunLog

ROOT = Path(__file__).resolve().parent.parent
"""The repository root (the working folder of the CLI subprocesses)."""


def wait(condition: Callable[[], object], what: str, timeout: float = 60) -> None:
    """Poll ``condition`` every 0.1 s until it is true; fail the test naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def until(pilot, condition: Callable[[], object], what: str, tries: int = 300) -> None:
    """In a Pilot test: let the app run until ``condition`` is true (at most ``tries`` x 50 ms)."""
    for _ in range(tries):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def ready(pilot, app, step: int = 150) -> None:
    """Until the fake backend's scripted records are in (tests/fakes.py: RUNNING at step 150)."""
    await until(pilot, lambda: app.run_state.state == "RUNNING" and app.run_state.step == step,
                "the scripted records", tries=100)
    await pilot.pause()  # and one frame drawn with them


def record_run(run_dir: Path | str, records: list[dict], state: str) -> RunLog:
    """A run directory written by hand: config.json, ``records``, and status.json in ``state``
    (alive: this process's pid). Returns the open RunLog, to write more as a live run would."""
    log = RunLog(run_dir)
    log.write_config({"dataset": "synthetic", "devices": ["cpu"]})
    for record in records:
        log.write(record)
    log.write_status({"state": state, "pid": os.getpid(), "host": socket.gethostname()})
    return log


PANE_WRAPPER = """
# Runs a command in a tmux pane and writes its exit code (tests/helpers.py, Pane).
import os, signal, subprocess, sys
rc_file, own_session, cmd = sys.argv[1], sys.argv[2] == "1", sys.argv[3:]
child = subprocess.Popen(cmd, start_new_session=own_session)
# As a login shell does when its terminal hangs up: SIGHUP passed on to the job, then (here) wait
# for it to write its exit code. A handler, not SIG_IGN: the child got SIGHUP's default at exec.
signal.signal(signal.SIGHUP, (lambda *a: None) if own_session else (lambda *a: child.send_signal(signal.SIGHUP)))
rc = child.wait()
with open(rc_file + ".tmp", "w") as fh:
    fh.write(str(rc))
os.replace(rc_file + ".tmp", rc_file)
"""


class Pane:
    """``tuitrain ARGS`` in a detached tmux session of its own (unique name) at 120x40, through
    PANE_WRAPPER, which writes the exit code to ``rc_file`` (``own_session``: the command in a
    session of its own, so tmux's SIGHUP to the pane's process group misses it)."""

    def __init__(self, tmp_path: Path, args: list[str], own_session: bool = False):
        self.name = f"tuitrain-test-{uuid.uuid4().hex[:8]}"
        self.rc_file = tmp_path / "rc"
        wrapper = tmp_path / "wrapper.py"
        wrapper.write_text(PANE_WRAPPER)
        # The tmux server runs commands in its own environment: this test's settings go explicitly.
        env = [f"PYTHONPATH={ROOT}", f"TUITRAIN_DATA={tmp_path / 'data'}"]
        cmd = ["env", *env, sys.executable, str(wrapper), str(self.rc_file), "1" if own_session else "0",
               sys.executable, "-m", "tuitrain", *args]
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", "120", "-y", "40", "-c", str(ROOT),
                        shlex.join(cmd)], check=True)

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True,
                              text=True).stdout

    def kill(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)

    def exit_code(self, timeout: float) -> int:
        """The command's exit code, once it has exited (fails the test after ``timeout``)."""
        wait(self.rc_file.exists, "the run's process to exit", timeout)
        return int(self.rc_file.read_text())


SLOW_MLP = """
import time
import torch.nn as nn

class SlowMLP(nn.Module):
    '''An MLP whose training steps take at least 0.1 s each: a run that lasts however fast the machine.'''

    def __init__(self, num_classes=10, in_channels=1, image_size=28):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size * image_size, num_classes))

    def forward(self, x):
        if self.training:
            time.sleep(0.1)
        return self.net(x)
"""


def slow_model(folder: Path) -> str:
    """``--model`` of a model whose training steps take at least 0.1 s (SLOW_MLP), written to ``folder``:
    a test that acts on a run while it trains needs the run not to end first on an idle machine."""
    path = folder / "slow_mlp.py"
    path.write_text(SLOW_MLP)
    return f"{path}:SlowMLP"
