"""Headless progress: an updating bar on a terminal, plain periodic lines in a log.

Also ``tuitrain watch RUN > file`` (no terminal): the same plain lines, following the run directory.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable
from typing import Protocol, TextIO

from tuitrain import fmt

LINE_EVERY_S = 10.0
BAR_EVERY_S = 0.25
FOLLOW_POLL_S = 0.5
ALIVE_CHECK_S = 2.0


def watch_hint(run_dir: str) -> str:
    """The first line of a headless run: where it writes and the exact command to watch it."""
    return f"tuitrain: run dir {run_dir}; watch it live with: tuitrain watch {shlex.quote(str(run_dir))}"


class Stream(Protocol):
    """What progress lines are written to: a text file (stderr) or a :class:`LogFile`."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...

    def isatty(self) -> bool: ...


class LogFile:
    """RUN_DIR/log.txt as a text stream for :class:`Progress`, opened (appending, never through a
    symlink) at the first write: where the progress lines go once the terminal is gone. A write
    that fails is dropped (the run directory keeps every record); the run goes on."""

    def __init__(self, run_dir: str):
        from pathlib import Path

        from tuitrain.rundir import LOG

        self.path = Path(run_dir) / LOG
        self._fd: int | None = None

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        import os

        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                                   0o644)
            os.write(self._fd, text.encode("utf-8", "replace"))
        except OSError:
            pass
        return len(text)

    def flush(self) -> None:
        """Each write is one system call: nothing is held back."""


class Progress:
    """Turns engine records into progress output on ``stream`` (stderr by default).

    Elapsed time and ETA come from the records' own times, so the same lines are written live and
    when following a run directory; time spent paused counts in neither.
    """

    def __init__(self, stream: Stream | None = None, tty: bool | None = None, run_dir: str = ""):
        self.stream: Stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.run_dir = run_dir
        """Printed first, with the command to watch it (empty: not printed); where log.txt goes
        when ``stream`` refuses a write (EIO, EPIPE: the terminal or the pipe's reader went away)."""
        self.gone: Callable[[], None] | None = None
        """Called once when ``stream`` refuses a write, before the lines move to log.txt."""
        self.quiet = False
        """Take records without writing anything (a follower catching up on the history)."""
        self.total = 0
        self.per_epoch = 0
        self.started: float | None = None
        self.start_step = 0
        self.paused_since: float | None = None
        self.paused_total = 0.0
        self._last = 0.0
        self._bar_shown = False

    def to_log(self, run_dir: str) -> None:
        """The terminal is gone: plain lines into RUN_DIR/log.txt from now on."""
        self.stream, self.tty, self._bar_shown = LogFile(run_dir), False, False

    def __call__(self, record: dict) -> None:
        """Handle one record (called from the engine thread; cheap and throttled)."""
        kind = record.get("type")
        if kind == "step":
            self._step(record)
        elif kind == "epoch":
            self._epoch(record)
        elif kind == "event":
            self._event(record)

    def elapsed(self, now: float) -> float | None:
        """Seconds of training since the start event, leaving out time paused."""
        if self.started is None:
            return None
        paused = self.paused_total + (now - self.paused_since if self.paused_since is not None else 0.0)
        return max(now - self.started - paused, 0.0)

    def eta(self, step: int, now: float) -> float | None:
        """Seconds left at the pace so far (validation included), or None before there is a pace."""
        elapsed = self.elapsed(now)
        done = step - self.start_step
        if elapsed is None or done <= 0 or not self.total:
            return None
        return elapsed / done * max(self.total - step, 0)

    def _epoch(self, record: dict) -> None:
        paused = record.get("paused_seconds") or 0.0
        took = fmt.seconds(record.get("train_seconds")) + (f", paused {fmt.seconds(paused)}" if paused else "")
        values = []
        for key, value in record.items():  # train_loss, train_acc, val_loss, val_acc, val_<metric>
            if key.startswith(("train_", "val_")) and key != "train_seconds" and isinstance(value, (int, float)):
                values.append(f"{key} {fmt.metric(key, value)}")
        self._line(f"epoch {record['epoch']}: {' '.join(values)}" + (" (best)" if record.get("best") else "")
                   + f" [{took}]")

    def _event(self, record: dict) -> None:
        event = record["event"]
        when = record.get("time", time.time())
        if event == "start":
            self.total = record["total_steps"]
            self.per_epoch = record["steps_per_epoch"]
            self.started, self.start_step = when, record.get("step", 0)
            self.paused_since, self.paused_total = None, 0.0
            if self.run_dir:
                self._line(watch_hint(self.run_dir))
            self._line(
                f"training {record['model']} on {record['dataset']} ({fmt.count(record['samples'])} samples) on "
                f"{record['device']}: {fmt.plural(record['epochs'], 'epoch')} x {fmt.plural(self.per_epoch, 'step')}"
                + (resumed_at(record) if record.get("resumed_from") else "")
                + start_details(record)
            )
            threads = record.get("threads") or {}
            if threads.get("wait_policy") and threads.get("reason"):  # chosen for a busy box (cpuload.py)
                self._line(f"torch threads: OMP_WAIT_POLICY={threads['wait_policy']}, {threads['reason']}")
            return
        # The divergence pause is not ok (training diverged), yet the run is paused all the same.
        if (event == "pause" and record.get("ok", True)) or (event == "nonfinite" and record.get("action") == "paused"):
            self.paused_since = self.paused_since or when
        elif event == "resume" and record.get("ok", True) and self.paused_since is not None:
            self.paused_total += when - self.paused_since
            self.paused_since = None
        if event == "save" and record.get("auto") and record.get("ok"):
            return  # every epoch saves last.pt; the epoch line already says an epoch ended
        if event == "end":
            return
        if event == "slow":
            self._line(f"{'slow' if record.get('state') == 'slow' else 'recovered'}: {record.get('reason', '')}")
            return
        if event == "warning":  # the engine records each distinct message once
            self._line(f"warning: {record.get('category', 'Warning')}: {record.get('message', '')}")
            return
        if event == "notice":
            self._line(f"tuitrain: {record.get('reason', '')}")
        elif event == "error" or not record.get("ok", True):
            self._line(f"{event}: {record.get('reason', 'failed')}")
        else:
            detail = {k: v for k, v in record.items() if k not in ("type", "event", "time", "ok", "cmd_id", "epoch")}
            self._line(f"{event}: " + fmt.details(detail, event))

    def _step(self, record: dict) -> None:
        now = time.monotonic()
        if self.quiet or now - self._last < (BAR_EVERY_S if self.tty else LINE_EVERY_S):
            return
        self._last = now
        step, total = record["step"], max(self.total, 1)
        when = record.get("time", time.time())
        acc = f"acc {fmt.acc(record['acc'])} " if "acc" in record else ""  # classification only
        text = (f"epoch {record['epoch']} step {fmt.count(step)}/{fmt.count(total)} loss {fmt.loss(record['loss'])} "
                f"{acc}{fmt.rate(record.get('samples_per_s'))} samples/s "
                f"elapsed {fmt.seconds(self.elapsed(when))} ETA {fmt.seconds(self.eta(step, when))}")
        if self.tty:
            width = 24
            done = int(width * step / total)
            self._write(f"\r[{'#' * done}{'.' * (width - done)}] {100 * step / total:5.1f}% {text}\x1b[K")
            self._bar_shown = self.tty
        else:
            self._line(f"{100 * step / total:5.1f}% {text}")

    def say(self, text: str) -> None:
        """One line of its own (on a terminal, under the progress bar)."""
        self._line(text)

    def _line(self, text: str) -> None:
        if self.quiet:
            return
        if self._bar_shown:
            self._bar_shown = False
            self._write("\r\x1b[K")
        self._write(text + "\n")

    def _write(self, text: str) -> None:
        """Write and flush; a stream that refuses (the terminal is gone) is left for log.txt."""
        try:
            self.stream.write(text)
            self.stream.flush()
        except OSError:
            if not self.run_dir or isinstance(self.stream, LogFile):
                raise
            if self.gone is not None:
                self.gone()
            self.to_log(self.run_dir)
            if not text.startswith("\r"):  # a bar is not repeated in a log
                self.stream.write(text)


def start_details(start: dict) -> str:
    """What the start line adds after the plan: what picks the best epoch and which way (``monitor
    val_l1 (min)``), and when a schedule steps (``scheduler cosine per step``)."""
    text = ""
    if isinstance(start.get("monitor"), str) and start["monitor"]:
        mode = start.get("mode")
        text += f"; monitor {start['monitor']}" + (f" ({mode})" if isinstance(mode, str) and mode else "")
    scheduler, interval = start.get("scheduler"), start.get("scheduler_interval")
    if isinstance(scheduler, str) and scheduler not in ("", "none") and isinstance(interval, str):
        text += f"; scheduler {scheduler} per {interval}"
    return text


def final_line(result, run_dir: str) -> str:
    """The one summary line a run ends with (headless and dashboard alike)."""
    if result is None:  # the session itself crashed; its traceback went to stderr
        return f"tuitrain: run failed (run dir {run_dir})"
    if result.status == "failed":
        return f"tuitrain: run failed: {result.message} (run dir {run_dir})"
    monitor = getattr(result, "monitor", "") or "val_acc"
    value = result.best_val_acc if monitor == "val_acc" else getattr(result, "best", None)
    at = f" (epoch {result.best_epoch})" if getattr(result, "best_epoch", 0) and value is not None else ""
    return (f"tuitrain: {result.status} after {fmt.plural(result.epochs_done, 'epoch')} "
            f"({fmt.plural(result.step, 'step')}); {fmt.best(monitor, value)}{at}; run dir {run_dir}")


def best_so_far(records: list[dict]) -> tuple[str, float | None]:
    """(the monitored name, its best value) from a run's records: the value of the last epoch that
    improved it (epoch records say ``best``), named by the start event (val_acc for runs older than
    the monitor)."""
    start = next((r for r in records if r.get("event") == "start"), {})
    monitor = start.get("monitor") if isinstance(start.get("monitor"), str) and start.get("monitor") else ""
    epochs = [r for r in records if r.get("type") == "epoch"]
    monitor = monitor or next((e["monitor"] for e in epochs if isinstance(e.get("monitor"), str)), "") or "val_acc"
    improved = [e[monitor] for e in epochs if e.get("best") is True and isinstance(e.get(monitor), (int, float))]
    if improved:
        return monitor, float(improved[-1])
    if monitor == "val_acc":  # records without the best flag: the highest accuracy
        return monitor, max((e["val_acc"] for e in epochs if isinstance(e.get("val_acc"), (int, float))), default=None)
    return monitor, None


def status_line(run_dir: str, records: list[dict], state: str) -> str:
    """One line on where a run stands, from its records and its state (rundir.run_state)."""
    epochs = [r for r in records if r.get("type") == "epoch"]
    steps = [r["step"] for r in records if r.get("type") in ("step", "epoch") and "step" in r]
    start = next((r for r in records if r.get("event") == "start"), {})
    monitor, best = best_so_far(records)
    done = epochs[-1]["epoch"] if epochs else start.get("start_epoch", 0)
    total = fmt.count(start["total_steps"]) if "total_steps" in start else "?"
    return (f"tuitrain: {run_dir}: {state}, epoch {done}/{start.get('epochs', '?')}, "
            f"step {fmt.count(max(steps, default=0))}/{total}, {fmt.best(monitor, best)}")


def watch_plain(run_dir: str, stream: TextIO | None = None, poll_s: float = FOLLOW_POLL_S) -> int:
    """``tuitrain watch RUN`` with no terminal: where the run stands, then (while it lives) plain
    progress lines as it goes, until it ends or its process is gone. Returns the exit code (0).

    Reads through rundir.Follow, as the dashboard does: a record that does not fit is skipped.
    """
    from tuitrain.records import LIVE_STATES
    from tuitrain.rundir import METRICS, Follow, run_state

    out = stream or sys.stdout
    follow = Follow(run_dir, files=(METRICS,), poll_s=poll_s, alive_check_s=ALIVE_CHECK_S)
    history = follow.history()
    state = run_state(run_dir)
    out.write(status_line(run_dir, history, state) + "\n")
    out.flush()
    if state not in LIVE_STATES or follow.ended:
        return 0
    progress = Progress(out, tty=False)
    progress.quiet = True  # catch up (start time, totals, pauses) without repeating the history
    for record in history:
        progress(record)
    progress.quiet = False
    seen = list(history)  # what the end line names the best value from
    for batch in follow:
        for read in batch:
            record = read.record
            if not read.file:  # made up by the follower: the process is gone without an end event
                out.write(f"tuitrain: {run_dir}: {record['reason']}\n")
                out.flush()
                return 0
            progress(record)
            if record.get("type") in ("epoch", "event"):
                seen.append(record)
            if record.get("event") == "end":
                monitor, best = best_so_far(seen)
                if isinstance(record.get("monitor"), str) and record["monitor"]:
                    monitor = record["monitor"]
                if isinstance(record.get("best"), (int, float)):
                    best = record["best"]
                elif monitor == "val_acc" and isinstance(record.get("best_val_acc"), (int, float)):
                    best = record["best_val_acc"]
                out.write(f"tuitrain: {run_dir}: {record.get('status', 'ended')} at step {fmt.count(record.get('step', 0))}; "
                          f"{fmt.best(monitor, best)}\n")
                out.flush()
                return 0
    return 0


def resumed_at(start: dict) -> str:
    """Where a resumed run goes on, 1-based as epochs are shown: ``start_epoch`` counts the epochs
    done, ``start_batch`` the batches of the next one (a mid-epoch checkpoint)."""
    epoch, batch = start.get("start_epoch", 0) + 1, start.get("start_batch", 0)
    return f", resumed at epoch {epoch}" + (f" batch {batch + 1}" if batch else "")
