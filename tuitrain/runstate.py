"""What the dashboard knows about a run, derived from its records alone (no Textual here).

The App applies every record to one :class:`RunState`; the status line draws from it and the keys
read it (is it paused, finished, what LR and device). Kept apart from the UI so it is unit-tested
with plain records, and so lr and device are held in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

END_STATES = {"done": "DONE", "failed": "FAILED", "stopped": "STOPPED", "interrupted": "INTERRUPTED",
              "dead": "DEAD"}
"""The ``end`` event's status as the state the dashboard shows."""
EXIT_CODES = {"DONE": 0, "STOPPED": 0, "FAILED": 1, "INTERRUPTED": 130}
"""The exit code of the dashboard once the run ended in a state (SPEC)."""
DIVERGED_NOTE = "diverged: lower the LR (r) or load a checkpoint (l), then p"


class RunState:
    """The run as the records tell it: state, progress, throughput, lr, device, and the note shown."""

    def __init__(self, watch_mode: bool = False) -> None:
        self.watch_mode = watch_mode
        """Watching a run directory (leaving does not stop the run) rather than training here."""
        self.state = "STARTING"
        """STARTING, RUNNING, PAUSED, STOPPING, then DONE, FAILED, STOPPED, INTERRUPTED or DEAD."""
        self.note = ""
        """A short remark after the state (why it failed, the best result when done, read-only...)."""
        self.paused = False
        """Whether the engine is paused (p then resumes); stays true while STOPPING a paused run."""
        self.finished = ""
        """The end state once the run ended, else empty."""
        self.quit_requested = False
        """q (or Ctrl-C) was pressed while the run went on: leave as soon as it ends."""
        self.replaying = False
        """Watch is loading the history: its events are old news (no notifications)."""
        self.lr: float | None = None
        self.device = ""
        self.epoch = self.epochs = self.step = self.total = self.batch_size = 0
        self.samples_per_s = 0.0

    def apply(self, record: dict) -> None:
        """Take what a record says about the run (records of unknown types change nothing)."""
        kind = record.get("type")
        if kind == "step":
            self.step, self.epoch = record["step"], record["epoch"]
            self.samples_per_s, self.lr = record.get("samples_per_s", 0.0), record.get("lr", self.lr)
        elif kind == "epoch":
            self.step, self.lr = record["step"], record.get("lr", self.lr)
        elif kind == "event":
            self._apply_event(record)
        elif kind == "replay":
            self.replaying = record["begin"]

    def _apply_event(self, record: dict) -> None:
        event, ok = record["event"], record.get("ok", True)
        if ok:
            self.step = record.get("step", self.step)
        if event == "start":
            self.epochs, self.total = record["epochs"], record["total_steps"]
            self.batch_size, self.device = record.get("batch_size", 0), record["device"]
            self.lr, self.epoch = record.get("lr"), record.get("start_epoch", 0)
            self.state = "RUNNING"
        elif not ok:
            return  # a refused command changed nothing
        elif event == "pause":
            self.paused, self.state = True, "PAUSED"
        elif event == "resume":
            self.paused, self.state, self.note = False, "RUNNING", ""
        elif event == "lr":
            self.lr = record["new"]
        elif event == "device":
            self.device = record["new"]
        elif event == "nonfinite" and record.get("action") == "paused":
            self.paused, self.state, self.note = True, "PAUSED", DIVERGED_NOTE
        elif event == "end":
            best = record.get("best_val_acc")
            self.finish(END_STATES.get(record.get("status", ""), "DONE"),
                        f"best val_acc {best:.4f}" if best is not None else "")

    def finish(self, state: str, note: str = "") -> None:
        """The run ended in ``state``: the note says how and, in watch, that it is read-only."""
        self.finished = self.state = state
        if self.watch_mode:
            note = f"{note}  read-only: the run has ended" if state != "DEAD" else "read-only: its process is gone"
        self.note = note + ("  (q to leave)" if not self.quit_requested else "")

    def request_quit(self) -> None:
        """q while the run goes on: STOPPING until its end event arrives."""
        self.quit_requested = True
        self.state = "STOPPING"

    @property
    def exit_code(self) -> int:
        """The dashboard's exit code for the state the run ended in (0 while it has not)."""
        return EXIT_CODES.get(self.finished, 0)

    def eta_seconds(self) -> float | None:
        """Seconds left at the current throughput, or None when unknown."""
        if not self.samples_per_s or not self.total:
            return None
        return (self.total - self.step) * max(self.batch_size, 1) / self.samples_per_s


@dataclass(frozen=True)
class Notice:
    """A notification to show for a record."""

    message: str
    title: str = ""
    severity: Literal["information", "warning", "error"] = "information"
    timeout: float | None = None


def notice_for(record: dict) -> Notice | None:
    """The notification an event record deserves (None: nothing to say, e.g. automatic saves)."""
    if record.get("type") != "event":
        return None
    event, ok = record["event"], record.get("ok", True)
    if event == "nonfinite":
        return Notice(record.get("reason", ""), "training diverged", "error", 30)
    if not ok:
        return Notice(f"{event} refused: {record.get('reason', '')}", severity="error", timeout=8)
    if record.get("auto") or event in ("start", "stop"):
        return None
    messages = {
        "pause": f"paused at step {record['step']}",
        "resume": f"resumed at step {record['step']}",
        "save": f"saved {record.get('path')}",
        "load": f"loaded {record.get('path')} (weights of step {record.get('from_step')})",
        "lr": f"learning rate {record.get('old')} → {record.get('new')}",
        "device": f"moved to {record.get('new')}",
        "end": f"run {record.get('status')}",
        "error": f"error: {record.get('reason')}",
    }
    if event not in messages:
        return None
    failed = event == "error" or record.get("status") == "failed"
    return Notice(messages[event], severity="error" if failed else "information")
