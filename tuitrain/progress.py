"""Headless progress: an updating bar on a terminal, plain periodic lines in a log."""

from __future__ import annotations

import sys
import time
from typing import TextIO

LINE_EVERY_S = 10.0
BAR_EVERY_S = 0.25


class Progress:
    """Turns engine records into progress output on ``stream`` (stderr by default)."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.total = 0
        self.per_epoch = 0
        self._last = 0.0
        self._bar_shown = False

    def __call__(self, record: dict) -> None:
        """Handle one record (called from the engine thread; cheap and throttled)."""
        kind = record.get("type")
        if kind == "step":
            self._step(record)
        elif kind == "epoch":
            values = " ".join(f"{k} {v:.4f}" for k, v in record.items()
                              if (k.startswith(("train_", "val_")) and k != "train_seconds" and isinstance(v, float)))
            self._line(f"epoch {record['epoch']}: {values}" + (" (best)" if record.get("best") else "")
                       + f" [{record['train_seconds']:.1f}s]")
        elif kind == "event":
            self._event(record)

    def _event(self, record: dict) -> None:
        event = record["event"]
        if event == "start":
            self.total = record["total_steps"]
            self.per_epoch = record["steps_per_epoch"]
            self._line(
                f"training {record['model']} on {record['dataset']} ({record['samples']} samples) on "
                f"{record['device']}: {record['epochs']} epochs x {self.per_epoch} steps"
                + (f", resumed at epoch {record['start_epoch']}" if record.get("resumed_from") else "")
            )
        elif event == "save" and record.get("auto") and record.get("ok"):
            return  # every epoch saves last.pt; the epoch line already says an epoch ended
        elif event in ("end",):
            return
        elif event == "error" or not record.get("ok", True):
            self._line(f"{event}: {record.get('reason', 'failed')}")
        elif event not in ("start",):
            detail = {k: v for k, v in record.items() if k not in ("type", "event", "time", "ok", "cmd_id", "epoch")}
            self._line(f"{event}: " + " ".join(f"{k}={v}" for k, v in detail.items()))

    def _step(self, record: dict) -> None:
        now = time.monotonic()
        if now - self._last < (BAR_EVERY_S if self.tty else LINE_EVERY_S):
            return
        self._last = now
        step, total = record["step"], max(self.total, 1)
        rate = record.get("samples_per_s", 0.0)
        acc = f" acc {record['acc']:.3f}" if "acc" in record else ""
        text = f"epoch {record['epoch']} step {step}/{total} loss {record['loss']:.4f}{acc} {rate:,.0f} samples/s"
        if self.tty:
            width = 24
            done = int(width * step / total)
            self.stream.write(f"\r[{'#' * done}{'.' * (width - done)}] {100 * step / total:5.1f}% {text}\x1b[K")
            self.stream.flush()
            self._bar_shown = True
        else:
            self._line(f"{100 * step / total:5.1f}% {text}")

    def _line(self, text: str) -> None:
        if self._bar_shown:
            self.stream.write("\r\x1b[K")
            self._bar_shown = False
        self.stream.write(text + "\n")
        self.stream.flush()


def final_line(result, run_dir: str) -> str:
    """The one summary line a run ends with (headless and dashboard alike)."""
    if result is None:  # the session itself crashed; its traceback went to stderr
        return f"tuitrain: run failed (run dir {run_dir})"
    if result.status == "failed":
        return f"tuitrain: run failed: {result.message} (run dir {run_dir})"
    monitor = getattr(result, "monitor", "") or "val_acc"
    value = getattr(result, "best", None) if monitor != "val_acc" else result.best_val_acc
    best = "n/a" if value is None else f"{value:.4f}"
    at = f" (epoch {result.best_epoch})" if getattr(result, "best_epoch", 0) and value is not None else ""
    return (f"tuitrain: {result.status} after {result.epochs_done} epochs ({result.step} steps); "
            f"best {monitor} {best}{at}; run dir {run_dir}")
