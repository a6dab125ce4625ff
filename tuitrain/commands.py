"""Commands to a running engine: frozen dataclasses, applied between steps.

Every command is answered by an event record (``ok`` true or false, with the reason); ``id`` lets a
sender (the control channel) find its answer among the records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

WireName = Literal["pause", "resume", "save", "load", "lr", "device", "stop"]


@dataclass(frozen=True)
class Pause:
    """Stop stepping until Resume (other commands still apply while paused)."""

    wire: ClassVar[WireName] = "pause"
    id: int = 0


@dataclass(frozen=True)
class Resume:
    """Continue after Pause."""

    wire: ClassVar[WireName] = "resume"
    id: int = 0


@dataclass(frozen=True)
class Save:
    """Write a checkpoint now (mid-epoch too): checkpoints/step-N.pt, or ``name`` if given."""

    wire: ClassVar[WireName] = "save"
    name: str = ""
    id: int = 0


@dataclass(frozen=True)
class Load:
    """Load model and optimizer state from ``path`` (empty: the run's newest checkpoint)."""

    wire: ClassVar[WireName] = "load"
    path: str = ""
    id: int = 0


@dataclass(frozen=True)
class SetLR:
    """Set every parameter group's learning rate."""

    wire: ClassVar[WireName] = "lr"
    lr: float
    id: int = 0


@dataclass(frozen=True)
class SetDevice:
    """Move model, optimizer state and data to another device."""

    wire: ClassVar[WireName] = "device"
    device: str
    id: int = 0


@dataclass(frozen=True)
class Stop:
    """End the run at the next step boundary, writing checkpoints/last.pt first."""

    wire: ClassVar[WireName] = "stop"
    reason: str = "stop"
    id: int = 0


Command = Pause | Resume | Save | Load | SetLR | SetDevice | Stop

WIRE_NAMES: tuple[WireName, ...] = tuple(c.wire for c in (Pause, Resume, Save, Load, SetLR, SetDevice, Stop))
"""Each command's one name: on the control channel, in `tuitrain ctl`, and as its answering event."""


def to_wire(command: Command) -> tuple[WireName, str | None]:
    """A command as the control channel's (name, argument); the inverse is control.build_command."""
    match command:
        case Save(name=name):
            arg: str | None = name or None
        case Load(path=path):
            arg = path or None
        case SetLR(lr=lr):
            arg = repr(lr)
        case SetDevice(device=device):
            arg = device
        case _:
            arg = None
    return command.wire, arg
