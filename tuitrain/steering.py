"""How a run is steered: commands polled between optimizer steps, each answered by an event.

The engine calls :func:`poll` between optimizer steps; each command becomes a call to the
engine's public surface (``pause``, ``resume``, ``set_lr``, ``save``, ``load``, ``move_to``,
``request_stop``) in one ``match``, and is answered by an event: ok, or refused with the reason.
It knows the engine only as a :class:`Steerable`, so it never imports engine.py.
"""

from __future__ import annotations

import queue
import time
from pathlib import Path
from typing import Any, Protocol

from tuitrain import distributed
from tuitrain.commands import Command, Load, Pause, Resume, Save, SetDevice, SetLR, Stop
from tuitrain.config import TrainConfig
from tuitrain.errors import UsageError, first_line
from tuitrain.records import EventName
from tuitrain.rundir import list_checkpoints
from tuitrain.trainstate import TrainState

PAUSE_POLL_S = 0.5
"""How long a paused run waits on its queue at a time (it blocks there; it never spins)."""


class Steerable(Protocol):
    """What steering uses of an engine (tuitrain.engine.Engine is one)."""

    config: TrainConfig
    state: TrainState
    commands: queue.Queue
    dist: Any
    """A distributed.DistContext, or None in a single process."""
    device: Any
    paused: bool
    stop_reason: str

    @property
    def lr(self) -> float: ...
    def pause(self) -> bool: ...
    def resume(self) -> bool: ...
    def set_lr(self, lr: float) -> None: ...
    def save(self, name: str) -> Path: ...
    def load(self, path: str | Path, resume: bool = False) -> int: ...
    def move_to(self, name: str) -> Any: ...
    def request_stop(self, reason: str = "stop", cmd_id: int = 0) -> None: ...
    def emit_event(self, name: EventName, **details: Any) -> None: ...


def poll(engine: Steerable) -> float:
    """Apply queued commands; while paused, block on the queue for the next one (never spin).
    Returns the seconds spent waiting paused (the epoch's training time leaves them out)."""
    if engine.dist:
        return _poll_distributed(engine)
    waited = 0.0
    while True:
        try:
            if engine.paused:
                started = time.monotonic()
                try:
                    cmd = engine.commands.get(timeout=PAUSE_POLL_S)
                finally:
                    waited += time.monotonic() - started
            else:
                cmd = engine.commands.get_nowait()
        except queue.Empty:
            if engine.paused:
                continue
            return waited
        apply(engine, cmd)
        if engine.stop_reason:
            return waited


def _poll_distributed(engine: Steerable) -> float:
    """Rank 0's commands reach every rank at the same step: at logging steps, and while paused."""
    if engine.state.step % engine.config.log_every and not engine.paused:
        return 0.0
    waited = 0.0
    while True:
        started, paused = time.monotonic(), engine.paused
        pending = distributed.take_commands(engine.commands, engine.dist, PAUSE_POLL_S if paused else 0.0)
        if paused:
            waited += time.monotonic() - started
        for cmd in pending:
            apply(engine, cmd)
        if engine.stop_reason or not engine.paused:
            return waited


def apply(engine: Steerable, cmd: Command) -> None:
    """One command, answered by an event (ok, or refused with the reason)."""
    match cmd:
        case Pause():
            ok = engine.pause()
            _answer(engine, cmd, ok, reason="" if ok else "already paused")
        case Resume():
            ok = engine.resume()
            _answer(engine, cmd, ok, reason="" if ok else "not paused")
        case SetLR(lr=lr):
            old_lr = engine.lr
            try:
                engine.set_lr(lr)
            except UsageError as exc:
                _answer(engine, cmd, False, reason=str(exc), old=old_lr)
            else:
                _answer(engine, cmd, True, old=old_lr, new=engine.lr)
        case Save(name=name):
            _save(engine, cmd, name or f"step-{engine.state.step}.pt")
        case Load(path=path):
            _load(engine, cmd, path)
        case SetDevice(device=name):
            old = str(engine.device)
            try:
                engine.move_to(name)
            except UsageError as exc:
                _answer(engine, cmd, False, reason=str(exc), old=old)
            else:
                _answer(engine, cmd, True, old=old, new=str(engine.device))
        case Stop(reason=reason):
            engine.request_stop(reason, cmd.id)  # answered by the stop event at the end of the run
        case _:
            engine.emit_event("error", ok=False, reason=f"unknown command {cmd!r}")


def _answer(engine: Steerable, cmd: Command, ok: bool, reason: str = "", **details: Any) -> None:
    """The event answering ``cmd``: named as the command is on the wire (commands.WIRE_NAMES)."""
    extra = {"reason": reason} if reason else {}
    engine.emit_event(cmd.wire, ok=ok, cmd_id=cmd.id, **extra, **details)


def _save(engine: Steerable, cmd: Save, name: str) -> None:
    from tuitrain.control import save_name_problem

    if problem := save_name_problem(name):  # the dashboard sends straight here, not through ctl
        _answer(engine, cmd, False, reason=f"bad checkpoint name {name!r}: {problem}")
        return
    try:
        path = engine.save(name)
    except OSError as exc:
        _answer(engine, cmd, False, reason=f"saving failed: {exc}")
    else:
        _answer(engine, cmd, True, path=str(path))


def _load(engine: Steerable, cmd: Load, path: str) -> None:
    """Load ``path`` (empty: the run's newest checkpoint); a refused load leaves the run as it was."""
    if not path:
        found = list_checkpoints(engine.config.run_dir)
        if not found:
            _answer(engine, cmd, False, reason="no checkpoint in this run yet")
            return
        path = found[0]
    try:
        step = engine.load(path)
    except UsageError as exc:  # Engine.load refuses whatever went wrong as a CheckpointError
        reason = first_line(exc, limit=None)
        _answer(engine, cmd, False, reason=reason, path=str(path))
    else:
        _answer(engine, cmd, True, path=str(path), from_step=step)

