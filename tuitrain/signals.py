"""SIGTERM, SIGHUP, SIGINT and SIGUSR1 for a training process (README, Exit codes).

SIGTERM (systemd, Slurm, ``timeout``) stops the run like Ctrl-C: last.pt is written at the next
step and the process exits 143. SIGUSR1 saves a checkpoint now and training goes on (the cluster
convention for "checkpoint before preemption"). SIGHUP means the terminal went away (a dropped SSH
session, ``tmux kill-session``): the standard streams leave the terminal at once (:func:`leave_terminal`),
then the run goes on headless (``--on-hangup continue``) or stops like SIGTERM with exit 129
(``stop``). A SIGHUP ignored when the process started (``nohup``) stays ignored.

Two phases. From the command's start until a run exists (loading data, building the model, and
between the runs of a sweep), :class:`startup` handlers act alone: a stop signal raises
:class:`Stopped` in the main thread (nothing is trained, nothing to save), SIGUSR1 says there is
nothing to save. While a run exists, a :class:`SignalRelay` acts through the run.

A Python signal handler runs in the main thread between two bytecodes, wherever that thread is:
possibly inside ``queue.Queue.put`` or Textual's event loop, holding a lock the handler would need.
So the relay's handler only redirects file descriptors and writes the signal's number to a pipe
(system calls, no lock); a relay thread reads it and acts through thread-safe calls
(``Session.send``, ``App.call_from_thread``).
"""

from __future__ import annotations

import os
import signal
import stat
import sys
import threading
from collections.abc import Callable

from tuitrain.records import EXIT_SIGNALS

STOP_SIGNALS = {signal.SIGTERM: "sigterm", signal.SIGHUP: "sighup", signal.SIGINT: "interrupt"}
"""Signals that stop the run, and the stop reason each gives (records.EXIT_SIGNALS maps it to the exit code)."""
SAVE_SIGNAL = signal.SIGUSR1
HANGUP_MODES = ("continue", "stop")
"""``--on-hangup``: what SIGHUP does to a run."""

_hung_up = False
"""Whether the terminal hung up (a plain bool: a signal handler must not take a lock)."""


class Stopped(KeyboardInterrupt):
    """A stop signal while no run is training (start-up, between the runs of a sweep): raised in
    the main thread like Ctrl-C's KeyboardInterrupt, with the exit code of the signal."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
        self.exit_code = EXIT_SIGNALS[reason]


def hung_up() -> bool:
    """Whether this process's terminal hung up (a SIGHUP came, or the terminal refused a write)."""
    return _hung_up


def leave_terminal() -> None:
    """Point standard input, output and error at /dev/null unless they are regular files (a log the
    user redirected to stays): after a hang-up, a write to the terminal fails (EIO) and a write to a
    pipe whose reader left fails (EPIPE) or blocks. Only system calls: safe in a signal handler.

    Standard input too is /dev/null, not a pipe that never delivers: Textual's input thread may have
    seen the terminal readable (end-of-file) just before, and its read must return, not wait."""
    global _hung_up
    _hung_up = True
    try:
        null = os.open(os.devnull, os.O_RDWR)
    except OSError:
        return
    for fd in (0, 1, 2):
        try:
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
        except OSError:  # closed: /dev/null there, so nothing else takes the number
            regular = False
        if not regular:
            try:
                os.dup2(null, fd)
            except OSError:
                pass
    os.close(null)


def hang_up_self() -> None:
    """The terminal refused a write (EIO) without a SIGHUP: act as if it had sent one (unless
    SIGHUP is ignored, as under nohup: then only leave the terminal)."""
    if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
        leave_terminal()
    else:
        os.kill(os.getpid(), signal.SIGHUP)


def _say(text: str) -> None:
    try:
        os.write(2, f"tuitrain: {text}\n".encode())
    except OSError:  # no terminal any more
        pass


class startup:
    """Handlers for the time no run is training, installed first thing by the training commands
    (``tuitrain DATASET``, ``tuitrain sweep``) and restored on exit (a context manager): SIGTERM
    raises :class:`Stopped` (exit 143); SIGHUP leaves the terminal and, with ``on_hangup="stop"``,
    raises :class:`Stopped` (exit 129), else loading goes on and the run trains headless; SIGUSR1
    says that nothing is trained yet. SIGINT keeps Python's KeyboardInterrupt (exit 130). An
    ignored SIGHUP (nohup) stays ignored."""

    def __init__(self, on_hangup: str = "continue"):
        self.on_hangup = on_hangup
        self._previous: dict[int, object] = {}

    def __enter__(self) -> startup:
        if threading.current_thread() is not threading.main_thread():
            return self
        signals = [signal.SIGTERM, SAVE_SIGNAL]
        if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
            signals.append(signal.SIGHUP)
        for signum in signals:
            self._previous[signum] = signal.signal(signum, self._save if signum == SAVE_SIGNAL else self._stop)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)  # type: ignore[arg-type]
        self._previous.clear()

    def _stop(self, signum: int, frame) -> None:
        if signum == signal.SIGHUP:
            leave_terminal()
            if self.on_hangup != "stop":
                return
        _say(f"{signal.Signals(signum).name}: no run is training; exiting")
        raise Stopped(STOP_SIGNALS[signal.Signals(signum)])

    def _save(self, signum: int, frame) -> None:
        _say("SIGUSR1: nothing is trained yet, so there is no checkpoint to save")


class SignalRelay:
    """While installed, SIGTERM (and SIGINT with ``interrupt``) call ``on_stop(reason)``, SIGUSR1
    calls ``on_save()``, SIGHUP calls ``on_hangup()`` (or, without one, ``on_stop("sighup")``),
    all from the relay thread; SIGHUP leaves the terminal first (:func:`leave_terminal`), in the
    handler. A context manager; the previous handlers come back on exit. An ignored SIGHUP stays
    ignored."""

    def __init__(self, on_stop: Callable[[str], None], on_save: Callable[[], None],
                 on_hangup: Callable[[], None] | None = None, interrupt: bool = False):
        self.on_stop = on_stop
        self.on_save = on_save
        self.on_hangup = on_hangup
        self.interrupt = interrupt
        """SIGINT too (the dashboard: Python's KeyboardInterrupt would land in Textual's event loop)."""
        self._previous: dict[int, object] = {}
        self._read_fd = self._write_fd = -1
        self._thread: threading.Thread | None = None

    def __enter__(self) -> SignalRelay:
        if threading.current_thread() is not threading.main_thread():
            return self  # signal.signal works only in the main thread; fit() from a thread keeps the defaults
        self._read_fd, self._write_fd = os.pipe()
        self._thread = threading.Thread(target=self._relay, name="tuitrain-signals", daemon=True)
        self._thread.start()
        signals = [signal.SIGTERM, SAVE_SIGNAL, *([signal.SIGINT] if self.interrupt else [])]
        if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # nohup's ignore stays
            signals.append(signal.SIGHUP)
        for signum in signals:
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
        if signum == signal.SIGHUP:
            leave_terminal()  # before anything can write to (or block on) the terminal that is gone
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
                    elif signum == signal.SIGHUP and self.on_hangup is not None:
                        self.on_hangup()
                    else:
                        self.on_stop(STOP_SIGNALS[signal.Signals(signum)])
                except Exception as exc:  # a signal must never kill the relay: say why and go on
                    try:
                        print(f"tuitrain: {signal.Signals(signum).name} not handled: {exc}", file=sys.stderr)
                    except OSError:
                        pass
