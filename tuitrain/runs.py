"""Finding runs and telling their state (running, paused, done, failed, stopped, dead). No torch."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from tuitrain.errors import UsageError
from tuitrain.runlog import CONFIG, STATUS, read_json


@dataclass(frozen=True)
class RunInfo:
    """One row of ``tuitrain runs``."""

    path: Path
    status: str
    epoch: int
    epochs: int
    best_val_acc: float | None
    updated: float
    device: str


def is_run_dir(path: str | Path) -> bool:
    """A run directory has a config.json written by tuitrain."""
    return (Path(path) / CONFIG).is_file()


def require_run_dir(path: str | Path) -> Path:
    """The path, or UsageError when it is not a run directory."""
    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"{path} does not exist or is not a folder")
    if not is_run_dir(path):
        raise UsageError(f"{path} is not a tuitrain run directory (no {CONFIG})")
    return path


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
    """running/paused when its process lives; done/failed/stopped as it ended; dead when it died."""
    status = read_json(Path(path) / STATUS) or {}
    state = status.get("state", "dead")
    if state in ("running", "paused", "starting"):
        same_host = status.get("host") == socket.gethostname()
        if same_host and not pid_alive(int(status.get("pid", -1))):
            return "dead"
    return state


def list_runs(root: str | Path) -> list[RunInfo]:
    """Every run directory directly under ``root`` (or ``root`` itself), newest first."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root} does not exist or is not a folder")
    candidates = [root] if is_run_dir(root) else sorted(p for p in root.iterdir() if is_run_dir(p))
    runs = []
    for path in candidates:
        status = read_json(path / STATUS) or {}
        config = read_json(path / CONFIG) or {}
        updated = max((f.stat().st_mtime for f in path.iterdir() if f.is_file()), default=0.0)
        runs.append(RunInfo(path, run_state(path), int(status.get("epoch", 0)),
                            int(status.get("epochs", config.get("epochs", 0))), status.get("best_val_acc"),
                            updated, status.get("device", config.get("device_resolved", ""))))
    return sorted(runs, key=lambda r: r.updated, reverse=True)


def format_runs(runs: list[RunInfo]) -> str:
    """A plain text table; the name column is as wide as the longest name, so columns stay aligned."""
    from tuitrain import fmt

    if not runs:
        return "no runs found"
    width = max(len("run"), *(len(r.path.name) for r in runs))
    head = f"{'run':<{width}} {'status':<8} {'epochs':>7} {'best val_acc':>12}  {'last update':<19} device"
    lines = [head, "-" * len(head)]
    for r in runs:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.updated))
        lines.append(f"{r.path.name:<{width}} {r.status:<8} {f'{r.epoch}/{r.epochs}':>7} {fmt.acc(r.best_val_acc):>12}  "
                     f"{when:<19} {r.device}")
    return "\n".join(lines)
