"""Commands to a running engine: frozen dataclasses, applied between steps.

Every command is answered by an event record (``ok`` true or false, with the reason); ``id`` lets a
sender (the control channel) find its answer among the records.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pause:
    """Stop stepping until Resume (other commands still apply while paused)."""

    id: int = 0


@dataclass(frozen=True)
class Resume:
    """Continue after Pause."""

    id: int = 0


@dataclass(frozen=True)
class Save:
    """Write a checkpoint now (mid-epoch too): checkpoints/step-N.pt, or ``name`` if given."""

    name: str = ""
    id: int = 0


@dataclass(frozen=True)
class Load:
    """Load model and optimizer state from ``path`` (empty: the run's newest checkpoint)."""

    path: str = ""
    id: int = 0


@dataclass(frozen=True)
class SetLR:
    """Set every parameter group's learning rate."""

    lr: float
    id: int = 0


@dataclass(frozen=True)
class SetDevice:
    """Move model, optimizer state and data to another device."""

    device: str
    id: int = 0


@dataclass(frozen=True)
class Stop:
    """End the run at the next step boundary, writing checkpoints/last.pt first."""

    reason: str = "stop"
    id: int = 0


Command = Pause | Resume | Save | Load | SetLR | SetDevice | Stop
