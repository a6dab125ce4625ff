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

import math
import time
from typing import Any, Literal, TypedDict

FORMAT = 2
"""Version of the record format, written in config.json as ``record_format``."""

RecordType = Literal["step", "epoch", "event", "confusion", "hist", "system", "samples", "replay"]
EventName = Literal["start", "pause", "resume", "save", "load", "lr", "device", "nonfinite", "early_stop",
                    "stop", "end", "error", "signal", "write", "warning", "notice", "slow"]
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
    val_top5: float  # classification over more than confusion.MATRIX_MAX_CLASSES classes
    confused: list[list]  # the same: the most confused [true class, predicted class, count], most first
    val_ppl: float  # cross-entropy on a language model: exp(val_loss)
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


def hist_record(step: int, epoch: int, layers: list[dict[str, Any]]) -> HistRecord:
    """A histogram record: ``epoch`` is the one in progress."""
    return {"type": "hist", "step": step, "epoch": epoch, "time": time.time(), "layers": layers}


def confusion_record(epoch: int, step: int, classes: list[str], matrix: list[list[int]]) -> ConfusionRecord:
    """A confusion record: ``epoch`` is the one it summarises."""
    return {"type": "confusion", "epoch": epoch, "step": step, "time": time.time(), "classes": classes,
            "matrix": matrix}


def samples_record(epoch: int, step: int, classes: list[str], items: list[SampleItem]) -> SamplesRecord:
    """A samples record: the most confidently wrong images of the epoch it summarises."""
    return {"type": "samples", "epoch": epoch, "step": step, "time": time.time(), "classes": classes,
            "items": items}


# What a reader needs of each record: field -> accepted Python types (bool is never a number).
# Records that lack a required field, or carry one of the wrong type, are skipped (and counted) by
# readers instead of crashing a viewer.
_INT: tuple[type, ...] = (int,)
_NUM: tuple[type, ...] = (int, float)
_OPT_NUM: tuple[type, ...] = (int, float, type(None))
_STR: tuple[type, ...] = (str,)
COUNTS = ("step", "epoch", "batch", "epochs", "total_steps", "batch_size", "start_epoch", "start_batch", "epochs_done")
"""Whole numbers from 0 to 2**53 wherever they appear."""
REQUIRED: dict[str, dict[str, tuple[type, ...]]] = {
    "step": {"step": _INT, "epoch": _INT, "loss": _NUM},
    "epoch": {"epoch": _INT, "step": _INT},
    "event": {"event": _STR, "step": _INT},
    "confusion": {"epoch": _INT, "classes": (list,), "matrix": (list,)},
    "samples": {"epoch": _INT, "classes": (list,), "items": (list,)},
    "hist": {"step": _INT, "layers": (list,)},
    "system": {},
    "replay": {"begin": (bool,)},
}
OPTIONAL: dict[str, tuple[type, ...]] = {
    **dict.fromkeys(("acc", "lr", "grad_norm", "samples_per_s", "time", "train_loss", "train_acc", "val_loss",
                     "val_acc", "train_seconds", "paused_seconds"), _NUM),
    **dict.fromkeys(COUNTS, _INT),
    "best_val_acc": _OPT_NUM, "ok": (bool,), "summary": (dict, type(None)),
}
"""Fields any record may carry, checked where present (``lr`` of a start event...)."""
KIND_OPTIONAL: dict[str, dict[str, tuple[type, ...]]] = {"epoch": {"best": (bool,)},
                                                          "event": {"best": _OPT_NUM, "status": _STR}}
"""``best``: whether an epoch improved the monitor; in an end event, the best value."""
EVENT_REQUIRED: dict[str, dict[str, tuple[type, ...]]] = {
    "start": {"epochs": _INT, "total_steps": _INT, "device": _STR},
    "warning": {"message": _STR},
}
EVENT_OK_REQUIRED: dict[str, dict[str, tuple[type, ...]]] = {"lr": {"new": _NUM}, "device": {"new": _STR}}
"""What a command's answer carries when it succeeded."""
SYSTEM_NUMBERS = ("rss_mb", "ram_used_mb", "ram_total_mb")
GPU_FIELDS = {"index": _INT, "name": _STR, "util_percent": _NUM, "mem_used_mb": _NUM, "mem_total_mb": _NUM,
              "temp_c": _OPT_NUM, "power_w": _OPT_NUM}
SUMMARY_FIELDS = {"rows": (list,), "total_params": _INT, "trainable_params": _INT, "size_mb": _NUM}
SAMPLE_FIELDS = {"index": _INT, "true": _INT, "pred": _INT, "confidence": _NUM, "shape": (list,), "image": _STR}
MAX_COUNT = 1 << 53
MAX_BINS = 4096
BIN_LIMIT = 1e100
"""Histogram bounds beyond this cannot be drawn (the plot's axis arithmetic overflows)."""


def _is(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


def _has(record: Any, fields: dict[str, tuple[type, ...]]) -> bool:
    return isinstance(record, dict) and all(_is(record.get(name), types) for name, types in fields.items())


def _finite(*values: Any) -> bool:
    return all(_is(v, _NUM) and math.isfinite(v) for v in values)


def valid(record: Any) -> bool:
    """Whether a parsed line is a record a reader can use without checking further.

    Unknown types pass (readers skip types they do not know, as the README says); known types must carry their
    required fields with the right types, optional fields must have theirs, counters must be
    whole numbers from 0 to 2**53, and nested parts (histogram bins, system samples, the model
    summary, confusion matrices, samples) must have the shape the panels draw.
    """
    if not isinstance(record, dict):
        return False
    kind = record.get("type")
    if not isinstance(kind, str):
        return False
    needs = REQUIRED.get(kind)
    if needs is None:
        return True
    if not _has(record, needs):
        return False
    optional = {**OPTIONAL, **KIND_OPTIONAL.get(kind, {})}
    if not all(_is(record[name], types) for name, types in optional.items() if name in record):
        return False
    if not all(0 <= record[name] <= MAX_COUNT for name in COUNTS if name in record):  # ints by now
        return False
    check = _KIND_CHECKS.get(kind)
    return check(record) if check else True


def _event_ok(record: dict) -> bool:
    name = record["event"]
    if not _has(record, EVENT_REQUIRED.get(name, {})):
        return False
    if record.get("ok", True) and not _has(record, EVENT_OK_REQUIRED.get(name, {})):
        return False
    summary = record.get("summary")
    return summary is None or _summary_ok(summary)


def _summary_ok(summary: dict) -> bool:
    return _has(summary, SUMMARY_FIELDS) and all(
        isinstance(row, list) and len(row) == 6 and _is(row[0], _STR) and _is(row[1], _STR)
        and _is(row[2], _INT) and isinstance(row[3], list) and all(_is(d, _INT) for d in row[3])
        and _is(row[4], _INT) and _is(row[5], _STR) for row in summary["rows"])


def _bins_ok(h: Any) -> bool:
    """One histogram (``w`` or ``g`` of a layer): absent, or finite bounds and norm, and 1..MAX_BINS counts."""
    if h is None:
        return True
    if not isinstance(h, dict) or not _finite(h.get("lo"), h.get("hi"), h.get("norm")):
        return False
    counts = h.get("counts")
    return (-BIN_LIMIT < h["lo"] <= h["hi"] < BIN_LIMIT and isinstance(counts, list)
            and 0 < len(counts) <= MAX_BINS and _finite(*counts) and all(0 <= c <= MAX_COUNT for c in counts)
            and all(_finite(h[k]) for k in ("sum", "sumsq") if k in h))


def _hist_ok(record: dict) -> bool:
    return all(isinstance(layer, dict) and _is(layer.get("name"), _STR)
               and _bins_ok(layer.get("w")) and _bins_ok(layer.get("g")) for layer in record["layers"])


def _system_ok(record: dict) -> bool:
    cpus = record.get("cpu_percent", [])
    gpus = record.get("gpus", [])
    return (isinstance(cpus, list) and _finite(*cpus) and _finite(*(record[k] for k in SYSTEM_NUMBERS if k in record))
            and _is(record.get("gpu_note", ""), (str, type(None))) and isinstance(gpus, list)
            and all(_has(g, GPU_FIELDS) and _finite(g["util_percent"], g["mem_used_mb"], g["mem_total_mb"],
                                                    *(g[k] for k in ("temp_c", "power_w") if g.get(k) is not None))
                    for g in gpus))


def _confusion_ok(record: dict) -> bool:
    n = len(record["classes"])
    matrix = record["matrix"]
    return all(_is(c, _STR) for c in record["classes"]) and len(matrix) == n and all(
        isinstance(row, list) and len(row) == n and all(_is(c, _INT) and c >= 0 for c in row) for row in matrix)


def _samples_ok(record: dict) -> bool:
    return all(_is(c, _STR) for c in record["classes"]) and all(
        _has(item, SAMPLE_FIELDS) and all(_is(d, _INT) and d > 0 for d in item["shape"]) for item in record["items"])


_KIND_CHECKS = {"event": _event_ok, "hist": _hist_ok, "system": _system_ok, "confusion": _confusion_ok,
                "samples": _samples_ok}


def epoch_of_event(record: dict, format_version: int) -> int:
    """An event's 1-based epoch, also for format-1 runs (which wrote completed epochs)."""
    epoch = int(record.get("epoch", 0) or 0)
    return epoch + 1 if format_version < 2 and record.get("event") != "end" else epoch
