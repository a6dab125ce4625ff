"""status.json: the run's state as the process writing it says it, and as a reader must take it.

The run rewrites it as its state changes (:func:`status_json` builds it; RunLog.write_status writes it).
Readers (``runs``, ``watch``, ``ctl``) ask :func:`run_state`: the state written, unless its process
is gone or the folder is a copy of a live run (``dead``), or the file is garbage (``unreadable``).
One vocabulary, records.RunStatus, everywhere a state is shown.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any, get_args

from tuitrain.records import LIVE_STATES, RunStatus
from tuitrain.rundir.files import read_json
from tuitrain.rundir.layout import STATUS, identity

STATES: tuple[str, ...] = get_args(RunStatus)
"""The run states (one vocabulary, records.RunStatus)."""
UNREADABLE = "unreadable"
"""The state shown for a run whose status.json is not a JSON object with a known state, or whose
folder cannot be read."""
MAX_PID = 2**31 - 1  # pid_t is a 32-bit int; anything else in status.json is garbage


def status_json(run_dir: str | Path, state: RunStatus, **progress: Any) -> dict:
    """status.json's contents: ``state``, what tells its process apart (pid, host, the time), the
    run's ``progress`` (epoch, step, best values, device, control socket...) and the folder's
    identity (``run_id``: a copied folder is told apart from the live one)."""
    return {"state": state, "pid": os.getpid(), "host": socket.gethostname(), "time": time.time(), **progress,
            "run_id": identity(run_dir) or None}


def read_status(run_dir: str | Path) -> dict | None:
    """status.json's object, or None when it is missing or garbage (check every field you use)."""
    return read_json(Path(run_dir) / STATUS)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_state(path: str | Path) -> str:
    """running/paused when its process lives; done/failed/stopped/interrupted as it ended; dead when it
    died (or status.json names no usable pid); ``unreadable`` when status.json is garbage."""
    file = Path(path) / STATUS
    found = read_json(file)
    if found is None:
        return UNREADABLE if _exists(file) else "dead"
    state = found.get("state")
    if not isinstance(state, str) or state not in STATES:
        return UNREADABLE
    if state in LIVE_STATES:
        pid = found.get("pid")
        # 0 and -1 would ask os.kill about a whole process group, "alive" forever.
        if type(pid) is not int or not 0 < pid <= MAX_PID:
            return "dead"
        if found.get("host") == socket.gethostname() and not pid_alive(pid):
            return "dead"
        run_id = found.get("run_id")
        if isinstance(run_id, str) and run_id != identity(path):
            return "dead"  # a copy (cp -r) of a live run: that process writes the original, not this folder
    return state


def _exists(path: Path) -> bool:
    try:
        os.stat(path)
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True
    return True
