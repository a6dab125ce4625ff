"""Whole files written atomically and read back tolerantly: the one atomic writer of tuitrain
(status.json, config.json, checkpoints and their sha256 sidecars)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

TMP_SUFFIX = ".tmp"
"""Temp files end so; a killed write can leave one (checkpoints.cleanup_temp removes them)."""


def write_all(fd: int, data: bytes) -> int:
    """os.write until all of ``data`` is written; the bytes written (fewer only when one wrote 0)."""
    view = memoryview(data)
    done = 0
    while done < len(view):
        n = os.write(fd, view[done:])
        if n == 0:
            break
        done += n
    return done


LINK_REASON = "is a symbolic link (tuitrain never writes through one)"


def open_nofollow(path: str | Path, flags: int, mode: int = 0o644) -> int:
    """os.open that never follows a symbolic link at ``path`` itself (a link planted in the run
    directory, even a dangling one, must not send writes elsewhere): OSError(ELOOP) saying so."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP and os.path.islink(path):
            raise OSError(errno.ELOOP, f"{Path(path).name} {LINK_REASON}") from None
        raise


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write ``path`` through a temp file in the same folder: write, fsync, os.replace, fsync the folder.

    A reader sees the old file or the new one, never half of one, and after a crash the new one is
    on disk whole. A write that fails (disk full) raises OSError and leaves the old file and no
    temp file behind. The temp file is created anew (O_EXCL, O_NOFOLLOW): a file or link planted at
    its name is removed first, never written through; a link at ``path`` is replaced, not followed.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    raw = data.encode() if isinstance(data, str) else data
    try:
        try:
            fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:  # left by a killed process of this pid, or planted: never written through
            os.unlink(tmp)
            fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            if write_all(fd, raw) < len(raw):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        folder = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return  # the file is in place; only its folder entry's durability is left to the kernel
    try:
        os.fsync(folder)
    except OSError:
        pass  # some file systems refuse to fsync a folder
    finally:
        os.close(folder)


def write_json_atomic(path: str | Path, data: dict) -> None:
    """A JSON object (indented, so a person can read it) written with :func:`write_atomic`."""
    write_atomic(path, json.dumps(data, indent=1, default=str))


def read_json(path: str | Path) -> dict | None:
    """A JSON file's object, or None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Remove the temp files (``.NAME.PID.tmp``) that writers killed mid-write left in ``folder``:
    those of processes no longer alive (the caller holds the run's lock, so no other writer of this
    run is). Best effort; returns what was removed."""
    removed: list[Path] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(".") and name.endswith(TMP_SUFFIX)):
            continue
        pid_text = name[: -len(TMP_SUFFIX)].rpartition(".")[2]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _alive(int(pid_text)):
            continue
        path = Path(folder) / name
        try:
            path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: no pid is that large
        return False
    except PermissionError:  # another user's live process
        return True
    return True
