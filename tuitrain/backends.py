"""What the dashboard talks to: a live engine in this process, or (watch) a run directory.

The App gets a backend injected, so tests build apps against fakes. A backend's ``run(emit)``
blocks in the App's thread worker and calls ``emit(records)`` with plain dicts; the App never
sees a tensor.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

Emit = Callable[[list[dict]], None]


class Backend(Protocol):
    """The dashboard's view of a run."""

    run_dir: str
    controls: bool
    """Whether keys control the run (False: a finished run shown read-only)."""
    quit_stops_run: bool
    """True for the live dashboard (q stops the run); False for watch (the run goes on)."""

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


def list_checkpoints(run_dir: str | Path) -> list[str]:
    """``RUN_DIR/checkpoints/*.pt``, newest first."""
    folder = Path(run_dir) / "checkpoints"
    found = sorted(folder.glob("*.pt"), key=lambda p: p.stat().st_mtime, reverse=True) if folder.is_dir() else []
    return [str(p) for p in found]


class LiveBackend:
    """A Session trained in this process; ``run`` is the training itself."""

    controls = True
    quit_stops_run = True

    def __init__(self, session):
        self.session = session
        self.run_dir = session.config.run_dir

    def run(self, emit: Emit) -> None:
        """Train; every record the engine reports is emitted as it comes."""
        self.session.on_record = lambda record: emit([record])
        self.session.run()

    def send(self, command) -> None:
        """Queue the command for the next step boundary."""
        self.session.send(command)

    def devices(self) -> list[str]:
        """Devices present on this machine."""
        from tuitrain.engine import available_devices

        return available_devices()

    def checkpoints(self) -> list[str]:
        """The run's checkpoints, newest first."""
        return list_checkpoints(self.run_dir)

    def quit(self, reason: str = "quit") -> None:
        """Stop the run at the next step boundary (last.pt is written first)."""
        from tuitrain.commands import Stop

        self.session.send(Stop(reason))
