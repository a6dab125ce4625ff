"""One run directory, one writer: RUN_DIR/.lock, flocked by the process writing the run."""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

from tuitrain.errors import UsageError
from tuitrain.rundir.files import LINK_REASON, open_nofollow, remove_stale_temps
from tuitrain.rundir.layout import CHECKPOINTS, CONFIG, INDEX, LOCK, METRICS, RECORD_FILES, STATUS
from tuitrain.rundir.status import read_status, run_state


class RunLock:
    """RUN_DIR/.lock held (flock, exclusive) for the run's life, taken before anything else is
    written: of two runs started on one directory, one trains and the other is refused. The kernel
    drops the lock with the process, so a killed run never leaves a stale one."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = run_dir
        self._fd: int | None = None
        self._made: list[Path] = []
        """The folders :meth:`acquire` created, deepest first."""

    def acquire(self) -> None:
        """Create the folder if needed and take the lock; UsageError (one line) when it cannot be
        created or another run holds it (folders this call created are removed again)."""
        path = Path(self.run_dir)
        made = []  # the folders this call creates, deepest first: removed again when it fails
        try:
            made = [p for p in (path, *path.parents) if not p.exists()]
            path.mkdir(parents=True, exist_ok=True)
            refuse_links(path)
            fd = open_nofollow(path / LOCK, os.O_RDWR | os.O_CREAT)
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
        self._made = made
        for folder in (path, path / CHECKPOINTS):  # what writers killed mid-write left; none is writing now
            remove_stale_temps(folder)

    def release(self) -> None:
        """Let go (closing the descriptor releases the flock); nothing when not held."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def remove_created(self) -> None:
        """Let go, and remove what a start that wrote nothing else left, when :meth:`acquire` created
        the folder: .lock, an empty checkpoints/ and the folders (a folder holding more stays)."""
        self.release()
        if not self._made:
            return
        path = Path(self.run_dir)
        for leftover in (path / LOCK, path / CHECKPOINTS, *self._made):
            _remove(leftover)
        self._made = []


WRITTEN = (LOCK, CONFIG, STATUS, INDEX, *RECORD_FILES)
"""The run directory's files a run writes: none may be a symbolic link or anything but a plain file."""


def refuse_links(run_dir: str | Path) -> None:
    """UsageError (one line) when a file the run writes is a symbolic link (dangling or not) or not a
    plain file: writes would go through it to wherever it points (O_NOFOLLOW refuses them anyway;
    this says so before anything is written)."""
    for name in WRITTEN:
        try:
            mode = os.lstat(Path(run_dir) / name).st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise UsageError(f"cannot use run dir {run_dir}: {name}: {exc.strerror or exc}") from None
        if stat.S_ISLNK(mode):
            raise UsageError(f"run dir {run_dir}: {name} {LINK_REASON}; remove it or choose another --run-dir")
        if not stat.S_ISREG(mode):
            raise UsageError(f"run dir {run_dir}: {name} is not a plain file; remove it or choose another --run-dir")
    try:  # the folder the checkpoints go in: O_NOFOLLOW guards a path's last part only
        mode = os.lstat(Path(run_dir) / CHECKPOINTS).st_mode
    except OSError:
        return
    if stat.S_ISLNK(mode):
        raise UsageError(f"run dir {run_dir}: {CHECKPOINTS} {LINK_REASON}; remove it or choose another --run-dir")
    if not stat.S_ISDIR(mode):
        raise UsageError(f"run dir {run_dir}: {CHECKPOINTS} is not a folder; remove it or choose another --run-dir")


def _remove(path: Path) -> None:
    try:
        path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()
    except OSError:
        pass


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
