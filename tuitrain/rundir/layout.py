"""What a run directory holds: its file names, which file each record goes to, and the folder's identity.

README, The run directory: config.json, metrics.jsonl (step, epoch, event and confusion records),
index.jsonl (every metrics.jsonl record that is not a step record, with its byte offset there),
histograms.jsonl, system.jsonl, samples.jsonl, status.json (the run's state and pid, rewritten as
it changes), checkpoints/, TensorBoard's event files (events.out.tfevents.*), .lock (flocked by the process
writing the run) and log.txt (progress lines once the terminal is gone, and under --detach).
"""

from __future__ import annotations

import os
from pathlib import Path

METRICS = "metrics.jsonl"
INDEX = "index.jsonl"
HISTOGRAMS = "histograms.jsonl"
SYSTEM = "system.jsonl"
SAMPLES = "samples.jsonl"
CONFIG = "config.json"
STATUS = "status.json"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
LOCK = ".lock"
"""Flocked by the process writing the run (lock.RunLock)."""
LOG = "log.txt"
"""The progress lines of a run whose terminal went away, and the output of a ``--detach`` run."""

RECORD_FILES = (METRICS, HISTOGRAMS, SYSTEM, SAMPLES)
"""The JSONL files records are written to, and read from by every viewer."""
_FILES = {"hist": HISTOGRAMS, "system": SYSTEM, "samples": SAMPLES}
STEP_MARKER = b'"type":"step"'
"""How a step record's line is told from the others without parsing it (records put "type" first)."""


def file_for(record_type: object) -> str:
    """The file a record of this type is written to: its own file, or metrics.jsonl."""
    return _FILES.get(record_type, METRICS) if isinstance(record_type, str) else METRICS


def identity(run_dir: str | Path) -> str:
    """The folder's device and inode ("" when it cannot be read): a copy (``cp -r``) has others, a
    moved or symlinked folder the same. status.json records it as ``run_id``; the control channel
    checks it with every command."""
    try:
        info = os.stat(run_dir)
    except (OSError, ValueError):
        return ""
    return f"{info.st_dev}:{info.st_ino}"


def list_checkpoints(run_dir: str | Path) -> list[str]:
    """``RUN_DIR/checkpoints/*.pt``, newest first."""
    folder = Path(run_dir) / CHECKPOINTS
    found = sorted(folder.glob("*.pt"), key=lambda p: p.stat().st_mtime, reverse=True) if folder.is_dir() else []
    return [str(p) for p in found]
