"""SIGTERM, SIGHUP and SIGUSR1 for a training process (README, Exit codes).

SIGTERM and SIGHUP (systemd, Slurm, ``timeout``, a dropped SSH session) stop the run like Ctrl-C:
last.pt is written at the next step and the process exits 143 / 129. SIGUSR1 saves a checkpoint
now and training goes on (the cluster convention for "checkpoint before preemption").

A Python signal handler runs in the main thread between two bytecodes, wherever that thread is:
possibly inside ``queue.Queue.put`` or Textual's event loop, holding a lock the handler would need.
So the handler only writes the signal's number to a pipe (one system call, no lock); a relay thread
reads it and acts through thread-safe calls (``Session.send``, ``App.call_from_thread``).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable

STOP_SIGNALS = {signal.SIGTERM: "sigterm", signal.SIGHUP: "sighup"}
"""Signals that stop the run, and the stop reason each gives (records.EXIT_SIGNALS maps it to the exit code)."""
SAVE_SIGNAL = signal.SIGUSR1


class SignalRelay:
    """While installed, SIGTERM/SIGHUP call ``on_stop(reason)`` and SIGUSR1 calls ``on_save()``,
    both from the relay thread. A context manager; the previous handlers come back on exit."""

    def __init__(self, on_stop: Callable[[str], None], on_save: Callable[[], None]):
        self.on_stop = on_stop
        self.on_save = on_save
        self._previous: dict[int, object] = {}
        self._read_fd = self._write_fd = -1
        self._thread: threading.Thread | None = None

    def __enter__(self) -> SignalRelay:
        if threading.current_thread() is not threading.main_thread():
            return self  # signal.signal works only in the main thread; fit() from a thread keeps the defaults
        self._read_fd, self._write_fd = os.pipe()
        self._thread = threading.Thread(target=self._relay, name="tuitrain-signals", daemon=True)
        self._thread.start()
        for signum in (*STOP_SIGNALS, SAVE_SIGNAL):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)  # type: ignore[arg-type]
        self._previous.clear()
        if self._thread is not None:
            os.close(self._write_fd)  # the relay reads end-of-file and returns
            self._thread.join()
            os.close(self._read_fd)
            self._thread = None

    def _handle(self, signum: int, frame) -> None:
        try:
            os.write(self._write_fd, bytes([signum]))
        except OSError:  # the pipe is full (a signal storm): the signals already queued are enough
            pass

    def _relay(self) -> None:
        while True:
            data = os.read(self._read_fd, 64)
            if not data:
                return
            for signum in data:
                try:
                    if signum == SAVE_SIGNAL:
                        self.on_save()
                    else:
                        self.on_stop(STOP_SIGNALS[signal.Signals(signum)])
                except Exception as exc:  # a signal must never kill the relay: say why and go on
                    print(f"tuitrain: {signal.Signals(signum).name} not handled: {exc}", file=sys.stderr)
