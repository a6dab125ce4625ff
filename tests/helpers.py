"""What many tests share: the repository root and the ways to wait for something to happen.

Waiting always polls a condition with a deadline (never a bare sleep), so a slow machine makes a
test slower, not flaky.
"""

from __future__ import annotations

import os
import socket
import time
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
