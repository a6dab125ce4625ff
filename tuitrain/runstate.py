"""What the dashboard knows about a run, derived from its records alone (no Textual here).

The App applies every record to one :class:`RunState`; the status line draws from it and the keys
read it (is it paused, finished, what LR and device). Kept apart from the UI so it is unit-tested
with plain records, and so lr and device are held in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

from tuitrain import fmt
from tuitrain.records import END_STATES, RunStatus, exit_code

Status: TypeAlias = RunStatus | Literal["stopping"]
"""A run's state in the one vocabulary (records.RunStatus: status.json, ``tuitrain runs``, the end
event), plus the dashboard's own ``stopping``: q was pressed and the run has not ended yet."""
LOADING_NOTE = "reading the history:"
"""The note while ``watch`` reads a long metrics.jsonl (its first screen says how far it got)."""
DIVERGED_NOTE = "diverged: lower the LR (r) or load a checkpoint (l), then p"
SLOW_NOTE = "SLOW"
"""Starts the note while a busy box slows the run (the engine's ``slow`` event writes the rest)."""
LEAVE_HINT = "(q to leave)"
"""Ends the note of an ended run; the status line keeps it when it has to cut the note."""


class RunState:
    """The run as the records tell it: state, progress, throughput, lr, device, and the note shown."""

    def __init__(self, watch_mode: bool = False) -> None:
        self.watch_mode = watch_mode
        """Watching a run directory (leaving does not stop the run) rather than training here."""
        self.status: Status = "starting"
        """starting, running, paused, stopping, then done, failed, stopped, interrupted or dead."""
        self.note = ""
        """A short remark after the state (why it failed, the best result when done, read-only...)."""
        self.paused = False
        """Whether the engine is paused (p then resumes); stays true while stopping a paused run."""
        self.quit_requested = False
        """q (or Ctrl-C) was pressed while the run went on: leave as soon as it ends."""
        self.replaying = False
        """Watch is loading the history: its events are old news (no notifications)."""
        self.lr: float | None = None
        self.device = ""
        self.epoch = self.epochs = self.step = self.total = self.batch_size = 0
        self.samples_per_s = 0.0
        self.warnings = 0
        """Distinct warnings raised while training (``warning`` events)."""
        self.checkpoints: dict[str, CheckpointInfo] = {}
        """What each saved checkpoint holds, by file name (one entry per file: bounded)."""
        self._last_epoch: dict = {}
        self.host = ""
        """The machine the run is on, when it is followed through ssh (tuitrain.remote's link records)."""

    @property
    def state(self) -> str:
        """The status as the dashboard shows it: the same word, upper-case (RUNNING, PAUSED, DONE...)."""
        return self.status.upper()

    @property
    def finished(self) -> str:
        """The end state (as shown) once the run ended, else empty."""
        return self.state if self.status in END_STATES else ""

    def apply(self, record: dict) -> None:
        """Take what a record says about the run (records of unknown types change nothing)."""
        kind = record.get("type")
        if kind == "step":
            self.step, self.epoch = record["step"], record["epoch"]
            self.samples_per_s, self.lr = record.get("samples_per_s", 0.0), record.get("lr", self.lr)
        elif kind == "epoch":
            self.step, self.lr = record["step"], record.get("lr", self.lr)
            self._last_epoch = record
        elif kind == "event":
            self._apply_event(record)
        elif kind == "replay":
            self.replaying = record["begin"]
            if self.note.startswith(LOADING_NOTE):
                self.note = ""
        elif kind == "loading" and self.status == "starting":  # watch reading a long history
            done, total = record.get("done"), record.get("total")
            if type(done) is int and type(total) is int and 0 <= done <= total:
                self.note = f"{LOADING_NOTE} {fmt.count(done // 1_000_000)} of {fmt.count(total // 1_000_000)} MB"
        elif kind == "link":
            self._apply_link(record)

    def _apply_link(self, record: dict) -> None:
        """The connection to a remote run (made by the backend, never read from a run): reconnecting
        is said in the note until it is back."""
        self.host = str(record.get("host", ""))
        if record.get("state") == "reconnecting":
            self.note = f"reconnecting to {self.host}: {record.get('reason', '')}".rstrip(": ")
        elif self.note.startswith("reconnecting"):
            self.note = ""

    def _apply_event(self, record: dict) -> None:
        event, ok = record["event"], record.get("ok", True)
        if ok:
            self.step = record.get("step", self.step)
        if event == "start":
            self.epochs, self.total = record["epochs"], record["total_steps"]
            self.batch_size, self.device = record.get("batch_size", 0), record["device"]
            # Epochs count from 1 (step records carry the current one); start_epoch counts those done.
            self.lr, self.epoch = record.get("lr"), min(record.get("start_epoch", 0) + 1, self.epochs)
            self.status, self.note = "running", ""  # also after an end: a run resumed in its own folder
        elif event == "nonfinite" and record.get("action") == "paused":
            # Not ok (training diverged) yet the run is paused: p must resume it.
            self.paused, self.status, self.note = True, "paused", DIVERGED_NOTE
        elif not ok:
            return  # a refused command changed nothing
        elif event == "pause":
            self.paused, self.status = True, "paused"
        elif event == "resume":
            self.paused, self.status, self.note = False, "running", ""
        elif event == "save" and record.get("path"):
            self._note_checkpoint(record)
        elif event == "lr":
            self.lr = record["new"]
        elif event == "device":
            self.device = record["new"]
        elif event == "warning":  # kept on the status line (the notification goes away) until a later note
            self.warnings += 1
            self.note = self.note or f"{record.get('category', 'Warning')}: {record.get('message', '')}"
        elif event == "slow":  # a busy box took the CPU (cpuload.py): said until it recovers
            slow = record.get("state") == "slow"
            if slow or self.note.startswith(SLOW_NOTE):
                self.note = str(record.get("note") or SLOW_NOTE) if slow else ""
        elif event == "end":
            said = record.get("monitor")
            monitor: str = said if isinstance(said, str) and said else "val_acc"
            best = record.get("best_val_acc") if monitor == "val_acc" else record.get("best")
            status = record.get("status")
            self.finish(status if status in END_STATES else "done",  # a status of a later format: shown as done
                        fmt.best(monitor, best) if isinstance(best, (int, float)) else "")

    def _note_checkpoint(self, record: dict) -> None:
        # Saved at an epoch's end (last.pt, best.pt): the weights that epoch's val_acc was measured on.
        at_epoch_end = self._last_epoch.get("step") == record["step"]
        self.checkpoints[Path(record["path"]).name] = CheckpointInfo(
            record["step"], record.get("epoch", 0), record.get("time"),
            self._last_epoch.get("val_acc") if at_epoch_end else None, at_epoch_end)

    def finish(self, status: RunStatus, note: str = "") -> None:
        """The run ended in ``status``: the note says how and, in watch, that it is read-only."""
        self.status = status
        if self.watch_mode:
            note = f"{note}  read-only: the run has ended" if status != "dead" else "read-only: its process is gone"
        self.note = note + (f"  {LEAVE_HINT}" if not self.quit_requested else "")

    def request_quit(self) -> None:
        """q while the run goes on: stopping until its end event arrives."""
        self.quit_requested = True
        self.status = "stopping"

    @property
    def exit_code(self) -> int:
        """The dashboard's exit code for the state the run ended in (0 while it has not; README, Exit codes)."""
        return exit_code(self.status) if self.status in END_STATES else 0

    def eta_seconds(self) -> float | None:
        """Seconds left at the current throughput; None when unknown or not running (paused, ended)."""
        if self.status != "running" or not self.samples_per_s or not self.total:
            return None
        return (self.total - self.step) * max(self.batch_size, 1) / self.samples_per_s


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint holds, from its save event (no file is opened)."""

    step: int
    epochs: int
    """Completed epochs when it was saved."""
    time: float | None
    val_acc: float | None
    """The validation accuracy of these weights (saved at an epoch's end), else None."""
    at_epoch_end: bool = True


def checkpoint_choices(paths: list[str], known: dict[str, CheckpointInfo],
                       mtime: dict[str, float] | None = None) -> tuple[str, list[tuple[str, str]]]:
    """The load prompt's column header and (path, label) rows: name, step, epoch, val_acc, saved at.

    A checkpoint without a save event (copied in, or older than the records) shows its file time.
    """
    names = [Path(p).name for p in paths]
    width = max([len("checkpoint"), *map(len, names)])
    header = f"{'checkpoint':<{width}}  {'step':>7}  {'epoch':>5}  {'val_acc':>7}  saved"
    rows = []
    for path, name in zip(paths, names, strict=True):
        info = known.get(name)
        if info is None:
            when = (mtime or {}).get(path)
            rows.append((path, f"{name:<{width}}  {'-':>7}  {'-':>5}  {'-':>7}  {fmt.clock(when)}"))
            continue
        epoch = f"{info.epochs}" + ("" if info.at_epoch_end else "+")
        rows.append((path, f"{name:<{width}}  {fmt.count(info.step):>7}  {epoch:>5}  {fmt.acc(info.val_acc):>7}  "
                           f"{fmt.clock(info.time)}"))
    return header, rows


@dataclass(frozen=True)
class Notice:
    """A notification to show for a record."""

    message: str
    title: str = ""
    severity: Literal["information", "warning", "error"] = "information"
    timeout: float | None = None


def _short(path: str | None) -> str:
    """``checkpoints/step-150.pt`` for a checkpoint path: the run dir is on the status line, and a
    whole path would wrap mid-word in a notification."""
    if not path:
        return "-"
    p = Path(path)
    return f"{p.parent.name}/{p.name}" if p.parent.name else p.name


def notice_for(record: dict) -> Notice | None:
    """The notification an event record deserves (None: nothing to say, e.g. automatic saves)."""
    if record.get("type") != "event":
        return None
    event, ok = record["event"], record.get("ok", True)
    if event == "nonfinite":
        return Notice(record.get("reason", ""), "training diverged", "error", 10)  # the status line keeps it
    if not ok:
        return Notice(f"{event} refused: {record.get('reason', '')}", severity="error", timeout=6)
    if event == "warning":  # raised while training (the model, the loss, torch): once per distinct message
        return Notice(f"{record.get('category', 'Warning')}: {record.get('message', '')}", "warning while training",
                      "warning", 20)
    if event == "slow":
        slow = record.get("state") == "slow"
        return Notice(str(record.get("reason", "")), "slow" if slow else "", "warning" if slow else "information",
                      10 if slow else 3)
    if record.get("auto") or event in ("start", "stop"):
        return None
    messages = {
        "pause": f"paused at step {fmt.count(record['step'])}",
        "resume": f"resumed at step {fmt.count(record['step'])}",
        "save": f"saved {_short(record.get('path'))}",
        "load": f"loaded {_short(record.get('path'))} (weights of step {record.get('from_step')})",
        "lr": f"learning rate {fmt.metric('lr', record.get('old'))} → {fmt.metric('lr', record.get('new'))}",
        "device": f"moved to {record.get('new')}",
        "end": f"run {record.get('status')}",
        "error": f"error: {record.get('reason')}",
        "notice": str(record.get("reason", "")),
    }
    if event not in messages:
        return None
    failed = event == "error" or record.get("status") == "failed"
    return Notice(messages[event], severity="error" if failed else "information")
