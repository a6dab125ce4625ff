"""The record contract: every line of the run directory's JSONL files, typed, in one place.

The engine builds records with the constructors here; the run log writes them; the dashboard,
``watch``, ``runs``, the sweep table and TensorBoard read them. Records stay plain dicts on the wire
(one JSON object a line), typed here as TypedDicts with ``Literal`` names, so a type checker sees
every producer and consumer. No torch, no textual.

The meaning of ``epoch`` (fixed in format 2; readers accept format-1 runs, where events carried the
number of *completed* epochs): in every record, ``epoch`` is the 1-based epoch the record belongs
to. Step, histogram and event records: the epoch in progress when they were written (events between
two epochs belong to the epoch that just ended). Epoch, confusion and samples records: the epoch they
summarise. ``epochs_done`` (end events, status.json) counts completed epochs.
"""

from __future__ import annotations

import time
from typing import Any, Literal, TypedDict

FORMAT = 2
"""Version of the record format, written in config.json as ``record_format``."""

RecordType = Literal["step", "epoch", "event", "confusion", "hist", "system", "samples", "replay"]
EventName = Literal["start", "pause", "resume", "save", "load", "lr", "device", "nonfinite", "early_stop",
                    "stop", "end", "error", "signal", "write"]
RunStatus = Literal["starting", "running", "paused", "done", "failed", "stopped", "interrupted", "dead"]
"""One vocabulary for a run's state: status.json, ``tuitrain runs``, the dashboard and Result."""

LIVE_STATES: tuple[RunStatus, ...] = ("starting", "running", "paused")
END_STATES: tuple[RunStatus, ...] = ("done", "failed", "stopped", "interrupted", "dead")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_SIGNALS = {"interrupt": 130, "sigterm": 143, "sighup": 129}
"""The README's exit codes of a run stopped by a signal (after last.pt was saved)."""


def exit_code(status: str, stop_reason: str = "") -> int:
    """The process exit code (README, Exit codes) of a run that ended with ``status`` (and why it stopped)."""
    if status == "failed":
        return EXIT_FAILED
    if status == "interrupted":
        return EXIT_SIGNALS.get(stop_reason, 130)
    return EXIT_OK


class StepRecord(TypedDict, total=False):
    """Training progress over one logging interval (means over the interval's samples)."""

    type: Literal["step"]
    step: int
    epoch: int
    batch: int
    loss: float
    acc: float  # classification only
    lr: float
    grad_norm: float
    samples_per_s: float
    time: float


class EpochRecord(TypedDict, total=False):
    """One finished epoch: training means, validation results (``val_<metric>`` too), timing."""

    type: Literal["epoch"]
    epoch: int
    step: int
    train_loss: float
    train_acc: float  # classification only
    val_loss: float
    val_acc: float  # classification only
    lr: float
    train_seconds: float  # time training, paused time excluded
    paused_seconds: float
    best: bool  # the monitored value improved
    monitor: str
    time: float


class EventRecord(TypedDict, total=False):
    """Something that happened: a command answered (``ok``, ``reason``), a save, the start, the end."""

    type: Literal["event"]
    event: EventName
    step: int
    epoch: int
    time: float
    ok: bool
    reason: str
    cmd_id: int


class ConfusionRecord(TypedDict):
    """Classification: counts over the whole validation split, rows true class, columns predicted."""

    type: Literal["confusion"]
    epoch: int
    step: int
    time: float
    classes: list[str]
    matrix: list[list[int]]


class SampleItem(TypedDict):
    """One misclassified validation image, scaled 0..255 for display (base64 of C*H*W bytes)."""

    index: int
    true: int
    pred: int
    confidence: float
    shape: list[int]
    image: str


class SamplesRecord(TypedDict):
    """The most confidently wrong validation images of an epoch (samples.jsonl)."""

    type: Literal["samples"]
    epoch: int
    step: int
    time: float
    classes: list[str]
    items: list[SampleItem]


class HistRecord(TypedDict):
    """Per-parameter weight (``w``) and gradient (``g``) histograms (histograms.jsonl)."""

    type: Literal["hist"]
    step: int
    epoch: int
    time: float
    layers: list[dict[str, Any]]


Record = StepRecord | EpochRecord | EventRecord | ConfusionRecord | SamplesRecord | HistRecord | dict


def step_record(**fields: Any) -> StepRecord:
    """A step record (``time`` filled in)."""
    return {"type": "step", "time": time.time(), **fields}  # type: ignore[typeddict-item]


def epoch_record(**fields: Any) -> EpochRecord:
    """An epoch record (``time`` filled in)."""
    return {"type": "epoch", "time": time.time(), **fields}  # type: ignore[typeddict-item]


def event_record(event: EventName, step: int, epoch: int, **details: Any) -> EventRecord:
    """An event record."""
    return {"type": "event", "event": event, "step": step, "epoch": epoch, "time": time.time(),
            **details}  # type: ignore[typeddict-item]


# What a reader needs of each type: field -> accepted Python types. Records that lack a required
# field, or carry one of the wrong type, are skipped (and counted) instead of crashing a viewer.
_NUM = (int, float)
REQUIRED: dict[str, dict[str, tuple[type, ...]]] = {
    "step": {"step": (int,), "loss": _NUM},
    "epoch": {"epoch": (int,), "step": (int,)},
    "event": {"event": (str,)},
    "confusion": {"epoch": (int,), "classes": (list,), "matrix": (list,)},
    "samples": {"epoch": (int,), "classes": (list,), "items": (list,)},
    "hist": {"step": (int,), "layers": (list,)},
    "system": {},
    "replay": {"begin": (bool,)},
}
OPTIONAL_NUMBERS = ("acc", "lr", "grad_norm", "samples_per_s", "time", "train_loss", "train_acc", "val_loss",
                    "val_acc", "train_seconds", "paused_seconds", "epoch", "batch")


def valid(record: Any) -> bool:
    """Whether a parsed line is a record a reader can use without checking further.

    Unknown types pass (readers skip types they do not know, as the README says); known types must carry their
    required fields with the right types, optional numeric fields must be numbers, and integer
    counters must be non-negative and sane.
    """
    if not isinstance(record, dict):
        return False
    kind = record.get("type")
    if not isinstance(kind, str):
        return False
    needs = REQUIRED.get(kind)
    if needs is None:
        return True
    for name, types in needs.items():
        value = record.get(name)
        if not isinstance(value, types) or isinstance(value, bool) and bool not in types:
            return False
    for name in OPTIONAL_NUMBERS:
        if name in record:
            value = record[name]
            if isinstance(value, bool) or not isinstance(value, _NUM):
                return False
    for name in ("step", "epoch", "batch"):
        value = record.get(name)
        if isinstance(value, int) and not 0 <= value < 1 << 53:
            return False
    if kind == "hist":
        return all(isinstance(layer, dict) and isinstance(layer.get("name"), str) for layer in record["layers"])
    if kind == "confusion":
        n = len(record["classes"])
        matrix = record["matrix"]
        return len(matrix) == n and all(
            isinstance(row, list) and len(row) == n and all(isinstance(c, int) and c >= 0 for c in row)
            for row in matrix)
    return True


def epoch_of_event(record: dict, format_version: int) -> int:
    """An event's 1-based epoch, also for format-1 runs (which wrote completed epochs)."""
    epoch = int(record.get("epoch", 0) or 0)
    return epoch + 1 if format_version < 2 and record.get("event") != "end" else epoch
