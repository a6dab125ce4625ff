"""What the dashboard talks to: a live engine in this process, or (watch) a run directory.

The App gets a backend injected, so tests build apps against fakes. A backend's ``run(emit)``
blocks in the App's thread worker and calls ``emit(records)`` with plain dicts; the App never
sees a tensor.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from tuitrain.commands import to_wire
from tuitrain.rundir import Follow, list_checkpoints

Emit = Callable[[list[dict]], None]

POST_EVERY_S = 0.5
"""The live engine's metric records reach the UI in batches at most this often (see Coalescer)."""
METRIC_TYPES = frozenset({"step", "system", "hist"})
"""Records that may wait for the next batch; any other (events, epochs, classes) goes at once."""


class Coalescer:
    """Gathers records from the training threads and hands them to ``emit`` in batches, in order.

    Each batch posted wakes the UI thread, and on a machine whose cores the torch threads keep busy,
    every wake-up stalls a parallel region of training. So metric records (a step record every
    ``log_every`` steps, many a second for a small model) go at most every ``every_s``; any other
    record goes at once with what waits before it. A record that waits goes with the next one: the
    engine writes a step record at least once a second and the sampler a system record every two,
    so nothing waits for long, and :meth:`flush` sends the rest when the run ends. No timer, no thread.
    """

    def __init__(self, emit: Emit, every_s: float = POST_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.emit = emit
        self.every_s = every_s
        self.clock = clock
        self.posted = 0
        """Batches handed to ``emit``."""
        self._pending: list[dict] = []
        self._last = -float("inf")
        self._lock = threading.Lock()  # the engine's thread and the system sampler's both report

    def __call__(self, record: dict) -> None:
        with self._lock:
            self._pending.append(record)
            now = self.clock()
            if record.get("type") in METRIC_TYPES and now - self._last < self.every_s:
                return
            batch, self._pending, self._last = self._pending, [], now
            self.posted += 1
            self.emit(batch)  # under the lock: batches reach the UI in the order the records came

    def flush(self) -> None:
        """Hand over what waits (the run ended)."""
        with self._lock:
            if self._pending:
                batch, self._pending = self._pending, []
                self.posted += 1
                self.emit(batch)


class SkipNotice:
    """What a viewer says of records it skipped (they lack a field the panels need or carry a wrong
    type): one notice when the count grew, at most every ``every_s`` seconds."""

    def __init__(self, source: str, every_s: float = 10.0):
        self.source = source
        """How the notice names where the records came from ("of this run", "from HOST")."""
        self.every_s = every_s
        self._told = 0
        self._told_at = -float("inf")

    def __call__(self, skipped: int) -> list[dict]:
        now = time.monotonic()
        if skipped == self._told or now - self._told_at < self.every_s:
            return []
        self._told, self._told_at = skipped, now
        return [{"type": "event", "event": "error", "ok": True, "local": True, "step": 0, "time": time.time(),
                 "reason": f"{skipped} records {self.source} do not fit the record format and are not shown"}]


class Backend(Protocol):
    """The dashboard's view of a run."""

    run_dir: str
    controls: bool
    """Whether keys control the run (False: a finished run shown read-only)."""
    quit_stops_run: bool
    """True for the live dashboard (q stops the run); False for watch (the run goes on)."""
    detached: bool
    """The dashboard's terminal went away and the run goes on without it: leaving must not stop it."""

    def run(self, emit: Emit) -> None:
        """Feed records to ``emit`` until the run ends or :meth:`quit` is called (blocking)."""

    def send(self, command) -> None:
        """Deliver a command (commands.py) to the run; its answer comes back as an event record."""

    def devices(self) -> list[str]:
        """Devices the run could move to."""

    def checkpoints(self) -> list[str]:
        """The run's checkpoints, newest first."""

    def quit(self, reason: str = "quit") -> None:
        """Leave: stop the run (live) or stop following it (watch)."""


class LiveBackend:
    """A Session trained in this process; ``run`` is the training itself."""

    controls = True
    quit_stops_run = True

    def __init__(self, session):
        self.session = session
        self.run_dir = session.config.run_dir
        self.detached = False
        self.started = False
        """Whether ``run`` began training (in the dashboard's worker thread)."""
        self._lock = threading.Lock()

    def run(self, emit: Emit) -> None:
        """Train; the records the engine reports are emitted in batches (Coalescer), all of them."""
        coalesce = Coalescer(emit)
        with self._lock:
            if self.detached:  # the terminal went away before training began: launch trains it headless
                return
            self.started = True
            self.session.on_record = coalesce
        try:
            self.session.run()
        finally:
            coalesce.flush()  # after a hang-up: to the app that is gone, harmlessly (post_message)

    def detach(self, on_record: Callable[[dict], None]) -> bool:
        """The dashboard goes away and the run goes on: records go to ``on_record`` from now, and
        :meth:`quit` no longer stops the run. Returns whether training already began in ``run``
        (else the caller trains the session itself)."""
        with self._lock:
            self.detached = True
            self.session.on_record = on_record
            return self.started

    def send(self, command) -> None:
        """Queue the command for the next step boundary."""
        self.session.send(command)

    def devices(self) -> list[str]:
        """Devices present on this machine."""
        from tuitrain.device import available_devices

        return available_devices()

    def checkpoints(self) -> list[str]:
        """The run's checkpoints, newest first."""
        return list_checkpoints(self.run_dir)

    def quit(self, reason: str = "quit") -> None:
        """Stop the run at the next step boundary (last.pt is written first); nothing once detached."""
        from tuitrain.commands import Stop

        if not self.detached:
            self.session.send(Stop(reason))


class WatchBackend:
    """Follows a run directory (rundir.Follow): the history first, then new records as they are written.

    While the run lives, commands go through its control channel; a finished or dead run is shown
    as it ended, read-only. Leaving (q) never touches the run.
    """

    quit_stops_run = False
    detached = False
    POLL_S = 0.25
    ALIVE_CHECK_S = 2.0

    def __init__(self, run_dir: str | Path):
        from tuitrain.rundir import require_run_dir, run_state

        self.run_dir = str(require_run_dir(run_dir))
        self.controls = run_state(self.run_dir) in ("running", "paused")
        self._stop = threading.Event()
        self._emit: Emit | None = None
        self._follow: Follow | None = None
        self._skip_notice = SkipNotice("of this run")
        self._loading_at = 0.0

    @property
    def skipped(self) -> int:
        """Records read but not shown: they lack a field the panels need or carry a wrong type."""
        return self._follow.skipped if self._follow else 0

    def run(self, emit: Emit) -> None:
        """Emit the history (replayed), then follow until the run ends or the viewer leaves."""
        self._emit = emit
        follow = self._follow = Follow(self.run_dir, poll_s=self.POLL_S, alive_check_s=self.ALIVE_CHECK_S,
                                       stop=self._stop)
        history = follow.history(progress=self._loading)
        emit([{"type": "replay", "begin": True}, *history, {"type": "replay", "begin": False},
              *self._skip_notice(self.skipped)])
        for batch in follow:
            new = [read.record for read in batch] + self._skip_notice(self.skipped)
            if new:
                emit(new)
        self.controls = False

    LOADING_EVERY_S = 0.2

    def _loading(self, done: int, total: int) -> None:
        """How far reading a long history got, for the first screen (at most every LOADING_EVERY_S)."""
        now = time.monotonic()
        if self._emit is None or (now - self._loading_at < self.LOADING_EVERY_S and done < total):
            return
        self._loading_at = now
        self._emit([{"type": "loading", "done": done, "total": total}])

    def send(self, command) -> None:
        """Send through the control channel in a thread; a failure comes back as a refused event."""
        threading.Thread(target=self._send, args=(command,), daemon=True).start()

    def _send(self, command) -> None:
        from tuitrain.control import send_command
        from tuitrain.errors import UsageError

        name, arg = to_wire(command)
        try:
            answer = send_command(self.run_dir, name, arg)
        except (UsageError, OSError, ValueError) as exc:
            answer = {"ok": False, "reason": str(exc)}
        if not answer.get("ok") and "cmd_id" not in answer and self._emit:
            # The run never saw it, so no event will come through metrics.jsonl: say so here.
            self._emit([{"type": "event", "event": name, "ok": False, "reason": answer.get("reason", ""),
                         "step": 0, "time": time.time(), "local": True}])

    def devices(self) -> list[str]:
        """The devices the run's machine had at its start (config.json)."""
        from tuitrain.rundir import CONFIG, read_json

        devices = (read_json(Path(self.run_dir) / CONFIG) or {}).get("devices")
        if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
            return ["cpu"]  # a config.json from elsewhere, or tampered with
        return devices

    def checkpoints(self) -> list[str]:
        """The run's checkpoints, newest first."""
        return list_checkpoints(self.run_dir)

    def quit(self, reason: str = "quit") -> None:
        """Stop following; the run goes on."""
        self._stop.set()
