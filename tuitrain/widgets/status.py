"""The status line: state, epoch and step with a progress bar and ETA, samples/s, LR, device, run dir."""

from __future__ import annotations

import math

from textual.content import Content
from textual.reactive import reactive
from textual.widgets import Static

from tuitrain.widgets.system import bar

STATE_STYLE = {"RUNNING": "green", "PAUSED": "yellow", "DONE": "cyan", "FAILED": "red", "STOPPING": "yellow",
               "STOPPED": "yellow", "STARTING": "white", "DEAD": "red", "INTERRUPTED": "yellow"}


def format_eta(seconds: float | None) -> str:
    """``1h02m``, ``3m20s``, ``45s`` or ``-``."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:  # NaN, or inf from a tiny samples/s
        return "-"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class StatusLine(Static):
    """Two lines of run status, redrawn from its reactive state."""

    DEFAULT_CSS = "StatusLine { height: 2; }"

    state: reactive[str] = reactive("STARTING")
    """RUNNING, PAUSED, DONE, FAILED, STOPPING, STOPPED, DEAD..."""
    note: reactive[str] = reactive("")
    """A short remark after the state (why it failed, the best result when done, read-only...)."""

    def __init__(self, run_dir: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.run_dir = run_dir
        self.epoch = self.epochs = self.step = self.total = self.batch_size = 0
        self.samples_per_s = 0.0
        self.lr: float | None = None
        self.device = ""

    def update_record(self, record: dict) -> None:
        """Take what the status shows from any record (call :meth:`refresh_text` after a batch)."""
        kind = record.get("type")
        if kind == "event" and record["event"] == "start":
            self.epochs, self.total = record["epochs"], record["total_steps"]
            self.batch_size, self.device = record.get("batch_size", 0), record["device"]
            self.lr, self.epoch, self.step = record.get("lr"), record.get("start_epoch", 0), record["step"]
        elif kind == "step":
            self.step, self.epoch = record["step"], record["epoch"]
            self.samples_per_s, self.lr = record.get("samples_per_s", 0.0), record.get("lr", self.lr)
        elif kind == "epoch":
            self.step, self.lr = record["step"], record.get("lr", self.lr)
        elif kind == "event" and record.get("ok", True):
            self.step = record.get("step", self.step)
            if record["event"] == "lr":
                self.lr = record["new"]
            elif record["event"] == "device":
                self.device = record["new"]

    def watch_state(self) -> None:
        self.refresh_text()

    def watch_note(self) -> None:
        self.refresh_text()

    def eta_seconds(self) -> float | None:
        """Seconds left at the current throughput."""
        if not self.samples_per_s or not self.total:
            return None
        return (self.total - self.step) * max(self.batch_size, 1) / self.samples_per_s

    def refresh_text(self) -> None:
        """Rebuild both lines."""
        color = STATE_STYLE.get(self.state, "white")
        frac = self.step / self.total if self.total else 0.0
        lr = "-" if self.lr is None else f"{self.lr:.3g}"
        first = (f"[b {color}]{self.state}[/]  epoch {self.epoch}/{self.epochs}  step {self.step}/{self.total} "
                 f"{bar(frac, 20)} {100 * frac:5.1f}%  ETA {format_eta(self.eta_seconds())}")
        second = f"{self.samples_per_s:,.0f} samples/s  lr {lr}  device $device  run $run" + (
            "  [b]$note[/b]" if self.note else "")
        # Device, run dir and note come from records and paths: $variables are inserted as text, never markup.
        text = Content.from_markup(f"{first}\n{second}", device=str(self.device or "-"), run=str(self.run_dir),
                                   note=str(self.note))
        self.update(text, layout=False)  # fixed height: no relayout
