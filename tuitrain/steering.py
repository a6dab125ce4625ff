"""How the engine takes commands: polled between optimizer steps, each answered by an event.

Held by :class:`tuitrain.engine.Engine` and working on its state: the training loop
stays in engine.py and reads top to bottom; what a person's pause, save, load, LR change or
device switch does is here, one ``match`` over the command types.
"""

from __future__ import annotations

import copy
import queue
import time
from typing import TYPE_CHECKING, Any

from tuitrain import checkpoints, distributed
from tuitrain.commands import Command, Load, Pause, Resume, Save, SetDevice, SetLR, Stop
from tuitrain.config import check_lr
from tuitrain.errors import CheckpointError, UsageError, first_line
from tuitrain.rundir import list_checkpoints

if TYPE_CHECKING:
    from tuitrain.engine import Engine

PAUSE_POLL_S = 0.5


class Steering:
    """The command side of an engine: it reads and changes the engine's state, between steps only."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def poll(self) -> None:
        """Apply queued commands; while paused, block on the queue (never spin)."""
        if self.engine.dist:
            self._poll_commands_distributed()
            return
        while True:
            try:
                if self.engine.paused:
                    started = time.monotonic()
                    try:
                        cmd = self.engine.commands.get(timeout=PAUSE_POLL_S)
                    finally:
                        self.engine._paused_seconds += time.monotonic() - started
                else:
                    cmd = self.engine.commands.get_nowait()
            except queue.Empty:
                if self.engine.paused:
                    continue
                return
            self.apply(cmd)
            if self.engine.stop_reason:
                return

    def _poll_commands_distributed(self) -> None:
        """Rank 0's commands reach every rank at the same step: at logging steps, and while paused."""
        assert self.engine.dist is not None
        if self.engine.state.step % self.engine.config.log_every and not self.engine.paused:
            return
        while True:
            pending = []
            if self.engine.dist.is_main:
                try:
                    pending.append(self.engine.commands.get(timeout=PAUSE_POLL_S) if self.engine.paused else self.engine.commands.get_nowait())
                    while True:
                        pending.append(self.engine.commands.get_nowait())
                except queue.Empty:
                    pass
            for cmd in distributed.broadcast_commands(pending, self.engine.dist):
                self.apply(cmd)
            if self.engine.stop_reason or not self.engine.paused:
                return

    def apply(self, cmd: Command) -> None:
        """One command, answered by an event (ok, or refused with the reason)."""
        match cmd:
            case Pause():
                ok = not self.engine.paused
                self.engine.paused = True
                self._answer(cmd, ok, reason="" if ok else "already paused")
            case Resume():
                ok = self.engine.paused
                self.engine.paused = False
                self.engine.window.started = time.monotonic()  # a pause must not count against samples/s
                self._answer(cmd, ok, reason="" if ok else "not paused")
            case SetLR(lr=lr):
                old = self.engine.lr
                try:
                    self.engine.set_lr(check_lr(lr))
                except UsageError as exc:
                    self._answer(cmd, False, reason=str(exc), old=old)
                else:
                    self._answer(cmd, True, old=old, new=self.engine.lr)
            case Save():
                self._command_save(cmd)
            case Load():
                self._command_load(cmd)
            case SetDevice():
                self._command_device(cmd)
            case Stop(reason=reason):
                self.engine.stop_reason = reason or "stop"
                self.engine.stop_id = cmd.id
                self.engine.paused = False
            case _:
                self.engine._event("error", ok=False, reason=f"unknown command {cmd!r}")

    def _answer(self, cmd: Command, ok: bool, reason: str = "", **details: Any) -> None:
        """The event answering ``cmd``: named as the command is on the wire (commands.WIRE_NAMES)."""
        extra = {"reason": reason} if reason else {}
        self.engine._event(cmd.wire, ok=ok, cmd_id=cmd.id, **extra, **details)

    def _command_save(self, cmd: Save) -> None:
        from tuitrain.control import save_name_problem

        name = cmd.name or f"step-{self.engine.state.step}.pt"
        if problem := save_name_problem(name):  # the dashboard sends straight here, not through ctl
            self._answer(cmd, False, reason=f"bad checkpoint name {name!r}: {problem}")
            return
        try:
            path = self.engine.save(name)
        except OSError as exc:
            self._answer(cmd, False, reason=f"saving failed: {exc}")
        else:
            self._answer(cmd, True, path=str(path))

    def _command_load(self, cmd: Load) -> None:
        found = list_checkpoints(self.engine.config.run_dir)
        path = cmd.path or (found[0] if found else "")
        if not path:
            self._answer(cmd, False, reason="no checkpoint in this run yet")
            return
        lr = self.engine.lr
        # Copies, not references: a load that fails half-way puts these back.
        backup = {"model": {k: v.clone() for k, v in self.engine.model.state_dict().items()},
                  "optimizer": copy.deepcopy(self.engine.optimizer.state_dict())}
        try:
            ckpt = checkpoints.load_checkpoint(path, map_location=self.engine.device,
                                               max_bytes=checkpoints.size_bound(self.engine.model))
            self.engine._restore(ckpt, path, resume=False)
        except (CheckpointError, ValueError, KeyError, TypeError, RuntimeError, IndexError) as exc:
            checkpoints.restore(backup, "(state before the load)", self.engine, resume=False)  # untouched
            self._answer(cmd, False, reason=first_line(exc, limit=None),
                         path=str(path))
            return
        self.engine.set_lr(lr)  # the LR a person set goes on; a load restores weights and moments
        self._answer(cmd, True, path=str(path), from_step=int(ckpt["step"]))

    def _command_device(self, cmd: SetDevice) -> None:
        old = str(self.engine.device)
        try:
            if self.engine.dist:
                raise UsageError("a distributed run cannot switch device")
            if self.engine.scaler is not None:
                raise UsageError("a 16-mixed run stays on its GPU (its GradScaler is per device)")
            from tuitrain.engine import resolve_device

            device = resolve_device(cmd.device)
            if device == self.engine.device:
                raise UsageError(f"already on {old}")
        except UsageError as exc:
            self._answer(cmd, False, reason=str(exc), old=old)
            return
        opt_state = self.engine.optimizer.state_dict()
        self.engine.model.to(device)
        # Round-tripping the state dict moves every optimizer tensor to its parameter's device.
        self.engine.optimizer.load_state_dict(opt_state)
        self.engine.data.place(device)
        self.engine.device = device
        self.engine.window.to(device)
        self.engine._arm_guard()
        self._answer(cmd, True, old=old, new=str(device))
