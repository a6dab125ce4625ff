"""Finding runs: ``tuitrain runs``, the runs ``watch`` is given, and whether a folder is a run.

Everything here reads files anyone could have edited (status.json, config.json): each field is
checked for its type and range, and a folder that cannot be read is one row marked ``unreadable``,
never an error for the whole listing.
"""

from __future__ import annotations

import math
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from tuitrain.errors import UsageError
from tuitrain.rundir.files import read_json
from tuitrain.rundir.layout import CONFIG, STATUS
from tuitrain.rundir.status import UNREADABLE, run_state


@dataclass(frozen=True)
class RunInfo:
    """One row of ``tuitrain runs``; every field of the type it says, whatever the files held."""

    path: Path
    status: str
    epoch: int
    epochs: int
    best_val_acc: float | None
    updated: float
    device: str
    name: str = ""
    """The run as listed: its folder name, ``SWEEP/RUN`` for a run inside a sweep folder; printable
    characters only (a folder name may hold terminal escapes)."""
    monitor: str = "val_acc"
    """What the run was judged by (status.json's ``monitor``): val_acc, val_loss, val_<metric>."""
    best: float | None = None
    """The best value of ``monitor`` so far (status.json's ``best``; ``best_val_acc`` in older runs)."""


def is_run_dir(path: str | Path) -> bool:
    """A run directory has a config.json written by tuitrain."""
    try:
        return stat.S_ISREG(os.stat(Path(path) / CONFIG).st_mode)
    except (OSError, ValueError):
        return False


def require_run_dir(path: str | Path) -> Path:
    """The path, or UsageError when it is not a run directory."""
    path = Path(path)
    try:
        is_dir = stat.S_ISDIR(os.stat(path).st_mode)
    except (OSError, ValueError):
        is_dir = False
    if not is_dir:
        raise UsageError(f"{_printable(str(path))} does not exist or is not a folder")
    if not is_run_dir(path):
        raise UsageError(f"{_printable(str(path))} is not a tuitrain run directory (no {CONFIG})")
    return path


def list_runs(root: str | Path) -> list[RunInfo]:
    """Every run directory under ``root`` (or ``root`` itself), newest first: its runs, and the runs
    inside its sweep folders (one level down, listed as ``SWEEP/RUN``)."""
    root = Path(root)
    if not _is_dir(root):
        raise UsageError(f"{_printable(str(root))} does not exist or is not a folder")
    if is_run_dir(root):
        found = [(root, root.name)]
    else:
        found = []
        for child in _children(root):
            if is_run_dir(child) or _unenterable(child):
                found.append((child, child.name))
            elif _is_dir(child):
                found += [(run, f"{child.name}/{run.name}") for run in _children(child) if is_run_dir(run)]
    runs = [_read_run(path, name) for path, name in found]
    return sorted(runs, key=lambda r: r.updated, reverse=True)


def expand_runs(paths: list[str]) -> list[Path]:
    """Run directories from ``watch``'s arguments: a run, or a folder of runs (a sweep); UsageError if
    an argument is neither."""
    runs: list[Path] = []
    for text in paths:
        path = Path(text)
        if is_run_dir(path):
            runs.append(path)
        elif found := [p for p in _children(path) if is_run_dir(p)]:
            runs.extend(found)
        else:
            raise UsageError(f"{path} is not a tuitrain run directory nor a folder of runs")
    return runs


def _read_run(path: Path, name: str) -> RunInfo:
    """One row; a field of the wrong type or range is shown as absent, a folder that cannot be
    read as ``unreadable``."""
    if _unenterable(path):
        return RunInfo(path, UNREADABLE, 0, 0, None, 0.0, "", _printable(name))
    status = read_json(path / STATUS) or {}
    config = read_json(path / CONFIG) or {}
    epochs = _count(status.get("epochs")) or _count(config.get("epochs"))
    device = _printable(status.get("device"), 24) or _printable(config.get("device_resolved"), 24)
    best_val_acc = _number(status.get("best_val_acc"))
    monitor = _printable(status.get("monitor"), 60) or _printable(config.get("monitor"), 60)
    best = _number(status.get("best"))
    if not monitor or monitor == "val_acc":  # runs from before status.json held the monitor: val_acc
        monitor, best = "val_acc", best_val_acc if best_val_acc is not None else best
    return RunInfo(path, run_state(path), _count(status.get("epoch")), epochs, best_val_acc,
                   _updated(path), device, _printable(name), monitor, best)


def _children(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except (OSError, ValueError):
        return []


def _updated(path: Path) -> float:
    """The newest modification time of the run's files (0 when none can be read)."""
    newest = 0.0
    for child in _children(path):
        try:
            info = os.stat(child)
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode):
            newest = max(newest, info.st_mtime)
    return newest


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def _unenterable(path: Path) -> bool:
    """A folder we may not look into (it might be a run; we cannot tell)."""
    return _is_dir(path) and not os.access(path, os.R_OK | os.X_OK)


def _count(value) -> int:
    return value if type(value) is int and 0 <= value < 10**9 else 0


def _number(value) -> float | None:
    return float(value) if type(value) in (int, float) and math.isfinite(value) else None


def _printable(text, limit: int = 200) -> str:
    """Text safe to print on a terminal: other types become "", control characters "?"."""
    if not isinstance(text, str):
        return ""
    shown = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return shown + ("..." if len(text) > limit else "")


def format_runs(runs: list[RunInfo]) -> str:
    """A plain text table; the name column is as wide as the longest name, so columns stay aligned."""
    from tuitrain import fmt

    if not runs:
        return "no runs found"
    names = [r.name or _printable(r.path.name) for r in runs]  # SWEEP/RUN for a run in a sweep folder
    width = max(len("run"), *map(len, names))
    states = max(8, *(len(r.status) for r in runs))  # "interrupted", "unreadable"
    # The best value of what each run was judged by, named: val_acc for classifiers, val_loss or
    # val_<metric> for regression, segmentation, VAE and multi-label runs.
    bests = [f"{r.monitor} {fmt.metric(r.monitor, r.best_val_acc if r.best is None and r.monitor == 'val_acc' else r.best)}"
             for r in runs]
    best_width = max(len("best"), *(len(b) for b in bests))
    head = f"{'run':<{width}} {'status':<{states}} {'epochs':>7} {'best':<{best_width}}  {'last update':<19} device"
    lines = [head, "-" * len(head)]
    for r, name, shown in zip(runs, names, bests, strict=True):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.updated))
        lines.append(f"{name:<{width}} {r.status:<{states}} {f'{r.epoch}/{r.epochs}':>7} {shown:<{best_width}}  "
                     f"{when:<19} {r.device}")
    return "\n".join(lines)
