"""One run directory, one writer: RUN_DIR/.lock, flocked by the process writing the run."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from tuitrain.errors import UsageError
from tuitrain.rundir.files import remove_stale_temps
from tuitrain.rundir.layout import CHECKPOINTS, LOCK, METRICS
from tuitrain.rundir.status import read_status, run_state


class RunLock:
    """RUN_DIR/.lock held (flock, exclusive) for the run's life, taken before anything else is
    written: of two runs started on one directory, one trains and the other is refused. The kernel
    drops the lock with the process, so a killed run never leaves a stale one."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = run_dir
        self._fd: int | None = None

    def acquire(self) -> None:
        """Create the folder if needed and take the lock; UsageError (one line) when it cannot be
        created or another run holds it (folders this call created are removed again)."""
        path = Path(self.run_dir)
        made = []  # the folders this call creates, deepest first: removed again when it fails
        try:
            made = [p for p in (path, *path.parents) if not p.exists()]
            path.mkdir(parents=True, exist_ok=True)
            fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            for folder in made:
                try:
                    folder.rmdir()
                except OSError:
                    break
            raise UsageError(f"cannot create run dir {self.run_dir}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise UsageError(f"run dir {self.run_dir} is in use by another tuitrain run (pid {holder}); "
                             f"choose another --run-dir") from None
        try:  # the holder's pid, for the message above (the lock itself is the flock)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:  # a full disk: the lock holds all the same
            pass
        self._fd = fd
        for folder in (path, path / CHECKPOINTS):  # what writers killed mid-write left; none is writing now
            remove_stale_temps(folder)

    def release(self) -> None:
        """Let go (closing the descriptor releases the flock); nothing when not held."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def refuse_if_in_use(run_dir: str | Path, resume: bool) -> None:
    """UsageError when the folder must not be written: it holds another run and this one does not
    continue it (``resume``), or a live process of another run writes it. Two live processes must
    never write one run directory, and a fresh run must not be mixed into the records of an old one."""
    if not resume and (Path(run_dir) / METRICS).exists():
        raise UsageError(f"run dir {run_dir} already holds a run; choose another --run-dir "
                         f"or continue it with --resume")
    found = read_status(run_dir) or {}
    if run_state(run_dir) in ("running", "paused") and found.get("pid") != os.getpid():
        raise UsageError(f"run dir {run_dir} is in use by a live run (pid {found.get('pid')})")
