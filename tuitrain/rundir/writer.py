"""The run directory's writer: every record the run reports, appended to the file its type belongs in.

One :class:`RunLog` per run (the process holding the run's lock, lock.RunLock): metrics.jsonl and
its index.jsonl, histograms.jsonl, system.jsonl, samples.jsonl, config.json and status.json
(written atomically, files.write_atomic), and the sinks fed the same records (TensorBoard).
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TypeAlias

from tuitrain.rundir.files import open_nofollow, write_all, write_json_atomic
from tuitrain.rundir.layout import CHECKPOINTS, CONFIG, INDEX, METRICS, STATUS, STEP_MARKER, TENSORBOARD, file_for
from tuitrain.rundir.read import checked_entries

MAX_PENDING_BYTES = 16 << 20
"""Records kept in memory per file while it cannot be written (disk full): written once it can be."""

MAX_INDEX_BYTES = 64 << 20
"""An index.jsonl (or a part of metrics.jsonl left unindexed) larger than this is not checked at a
resume but dropped: readers then scan metrics.jsonl."""

Problem: TypeAlias = Callable[[str, "OSError | None", int], None]
"""``on_problem(target, error, lost)``: a target (a file or sink) started failing (``error``) or
works again (``error`` None; ``lost`` records could not be kept meanwhile)."""


class RunLog:
    """Appends records to the run directory's files, each line written as it comes.

    Writes come a few times a second at most (the engine batches), so a system call per record is
    cheap and means a kill loses nothing but the line being written.

    A write that fails (disk full, too many open files) never raises: the records wait in memory
    (up to MAX_PENDING_BYTES a file) and are written with the next record that gets through;
    status.json is rewritten then. ``on_problem`` hears once when a target fails and once when it
    works again, outside the lock (it may write a record about it). config.json is the exception:
    :meth:`write_config` raises, since a folder without it is no run directory to any reader.

    Files are opened without following a symbolic link (files.open_nofollow), and every append
    starts on a fresh line: a file that ends in a line torn by a kill or a full disk gets a newline
    first. metrics.jsonl's line is written before its index.jsonl entry, and an index left by an
    earlier process is checked against metrics.jsonl's bytes (and repaired) before it is added to.
    """

    def __init__(self, run_dir: str | Path, on_problem: Problem | None = None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / CHECKPOINTS).mkdir(exist_ok=True)
        self._lock = threading.Lock()
        self._fds: dict[str, int] = {}
        self._pending: dict[str, deque[bytes]] = {}
        self._pending_bytes: dict[str, int] = {}
        self._torn: set[str] = set()
        """Files a failed write may have left with part of a line: the next write starts a new line."""
        self._json_due: dict[str, dict] = {}
        """config.json / status.json contents not written yet (their write failed)."""
        self._failing: dict[str, int] = {}
        """Target -> records lost since it failed."""
        self.on_problem: Problem = on_problem or _print_problem
        self._indexing = True
        """Whether index.jsonl is complete so far (dropped at the first failed write around it)."""
        self._index_checked = False
        """Whether an index.jsonl found at the first open of metrics.jsonl was checked (and repaired)."""
        self.sinks: list = []
        """Other writers fed the same records (TensorBoard): objects with write(record) and close()."""

    def write_config(self, config: dict) -> None:
        """config.json: every setting, the data statistics and the versions. Raises OSError when it
        cannot be written (nothing waits for a retry: without it no reader takes the folder for a run)."""
        write_json_atomic(self.run_dir / CONFIG, config)

    def write(self, record: dict) -> None:
        """Append one record (a dict with "type") to the file its type belongs in."""
        name = file_for(record.get("type"))
        line = (json.dumps(record, separators=(",", ":"), allow_nan=True) + "\n").encode()
        with self._lock:
            changes = self._append(name, line)
            for sink in self.sinks:
                changes += self._guarded(f"{TENSORBOARD}/", sink.write, record)
            for json_name in list(self._json_due):
                changes += self._flush_json(json_name)
        self._tell(changes)

    def write_status(self, status: dict) -> None:
        """status.json: the run's state, pid and progress, for `runs` and `watch`."""
        self._write_json(STATUS, status)

    def close(self) -> dict[str, int]:
        """Write what waits (a last try), close every file (records written later reopen them).

        Returns what could still not be written, now lost: records per file (status.json: 1).
        """
        with self._lock:
            changes = []
            for name in list(self._pending):
                changes += self._flush_file(name)
            for json_name in list(self._json_due):
                changes += self._flush_json(json_name)
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
            for sink in self.sinks:
                changes += self._guarded(f"{TENSORBOARD}/", sink.close)
            self.sinks.clear()
            lost = {name: len(lines) for name, lines in self._pending.items() if lines}
            lost.update({name: 1 for name in self._json_due})
        self._tell(changes)
        return lost

    # The helpers below run under the lock and return (target, error, lost) changes to report.
    def _append(self, name: str, line: bytes) -> list:
        pending = self._pending.setdefault(name, deque())
        pending.append(line)
        self._pending_bytes[name] = self._pending_bytes.get(name, 0) + len(line)
        while self._pending_bytes[name] > MAX_PENDING_BYTES and len(pending) > 1:
            self._pending_bytes[name] -= len(pending.popleft())
            if name in self._failing:  # always: only a failing file holds more than one line
                self._failing[name] += 1
        return self._flush_file(name)

    def _flush_file(self, name: str) -> list:
        """Write the file's waiting lines: one system call in the common case of one line."""
        pending = self._pending[name]
        if not pending:
            return []
        try:
            fd = self._fds.get(name)
            if fd is None:
                fd = self._fds[name] = self._open(name)
            if name in self._torn:
                if write_all(fd, b"\n") < 1:  # readers skip the torn fragment as a line that is not JSON
                    raise OSError(errno.ENOSPC, "short write")
                self._torn.discard(name)
            while pending:
                line = pending[0]
                at = os.fstat(fd).st_size if name == METRICS and self._indexing and STEP_MARKER not in line else -1
                written = write_all(fd, line)
                if written < len(line):
                    self._torn.add(name)
                    raise OSError(errno.ENOSPC, "short write")
                self._pending_bytes[name] -= len(pending.popleft())
                if at >= 0:
                    self._index(at, line)
        except OSError as exc:
            self._torn.add(name)  # a partial write cannot be told from a failed one by every file system
            fd = self._fds.pop(name, None)
            if fd is not None:
                os.close(fd)  # reopened at the next try (and an EMFILE frees a descriptor)
            return self._failed(name, exc)
        return self._recovered(name)

    def _open(self, name: str) -> int:
        """Open a JSONL file to append to, never through a link, ending on a whole line (a newline
        after a torn one); metrics.jsonl's index is checked at its first open."""
        fd = open_nofollow(self.run_dir / name, os.O_RDWR | os.O_APPEND | os.O_CREAT)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise OSError(errno.EINVAL, f"{name} is not a plain file")
            size = info.st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":  # readers skip the fragment as a line that is not JSON
                if write_all(fd, b"\n") < 1:
                    raise OSError(errno.ENOSPC, "short write")
                size += 1
            self._torn.discard(name)  # the file ends with a whole line now
            if name == METRICS and not self._index_checked:
                self._check_index(fd, size)
                self._index_checked = True
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _check_index(self, metrics: int, size: int) -> None:
        """Before the first metrics line of this process: keep index.jsonl's entries that point at
        their lines in metrics.jsonl (in order, from its start), cut the file after them, and add
        entries for the lines after the last one (what a kill between a line and its entry leaves).
        A file without an index gets none (readers scan it); one that cannot be checked is dropped."""
        path = self.run_dir / INDEX
        if size and not os.path.lexists(path):
            self._indexing = False  # written by a version without index.jsonl, or its index was dropped
            return
        try:
            index = open_nofollow(path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
        except OSError:
            self._drop_index()
            return
        self._fds[INDEX] = index
        try:
            data = os.pread(index, MAX_INDEX_BYTES + 1, 0) if size else b""
            _, keep, covered = checked_entries(data, lambda at, n: os.pread(metrics, n, at), size)
            if len(data) > MAX_INDEX_BYTES or size - covered > MAX_INDEX_BYTES:
                raise OSError(errno.EFBIG, "too much to check")
            if keep < os.fstat(index).st_size:
                os.ftruncate(index, keep)
            tail = os.pread(metrics, size - covered, covered)
            at = covered
            for line in tail[: tail.rfind(b"\n") + 1].split(b"\n")[:-1]:
                if line and STEP_MARKER not in line and _is_object(line):  # not a torn fragment
                    entry = b'{"at":%d,"record":%s}\n' % (at, line)
                    if write_all(index, entry) < len(entry):
                        raise OSError(errno.ENOSPC, "short write")
                at += len(line) + 1
        except OSError:
            self._drop_index()

    def _index(self, at: int, line: bytes) -> None:
        """index.jsonl: this metrics line's offset and record, written after the line itself, so an
        entry never points at a line that is not there (a kill between the two leaves a line without
        its entry: the next RunLog adds it, readers look past the last entry)."""
        entry = b'{"at":%d,"record":%s}\n' % (at, line.rstrip(b"\n"))
        try:
            index = self._fds.get(INDEX)
            if index is None:
                index = self._fds[INDEX] = open_nofollow(self.run_dir / INDEX, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            if write_all(index, entry) < len(entry):
                raise OSError(errno.ENOSPC, "short write")
        except OSError:
            self._drop_index()

    def _drop_index(self) -> None:
        """An index with a hole would hide events: without it, readers scan metrics.jsonl instead."""
        if not self._indexing:
            return
        self._indexing = False
        fd = self._fds.pop(INDEX, None)
        if fd is not None:
            os.close(fd)
        try:
            (self.run_dir / INDEX).unlink(missing_ok=True)
        except OSError:
            pass  # then its entries stop short of the metrics file's end, and readers scan instead

    def _write_json(self, name: str, data: dict) -> None:
        with self._lock:
            self._json_due[name] = data
            changes = self._flush_json(name)
        self._tell(changes)

    def _flush_json(self, name: str) -> list:
        try:
            write_json_atomic(self.run_dir / name, self._json_due[name])
        except OSError as exc:
            return self._failed(name, exc)
        del self._json_due[name]
        return self._recovered(name)

    def _guarded(self, target: str, call, *args) -> list:
        try:
            call(*args)
        except OSError as exc:
            return self._failed(target, exc)
        return self._recovered(target) if target in self._failing else []

    def _failed(self, target: str, exc: OSError) -> list:
        if target in self._failing:
            return []
        self._failing[target] = 0
        return [(target, exc, 0)]

    def _recovered(self, target: str) -> list:
        if target not in self._failing:
            return []
        return [(target, None, self._failing.pop(target))]

    def _tell(self, changes: list) -> None:
        for target, exc, lost in changes:
            self.on_problem(target, exc, lost)



def _is_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, RecursionError):
        return False


def _print_problem(target: str, exc: OSError | None, lost: int) -> None:
    """The default report: one line on stderr when writing starts failing and when it works again."""
    if exc is not None:
        print(f"tuitrain: cannot write {target}: {exc}; training goes on, writing is retried", file=sys.stderr)
    else:
        print(f"tuitrain: writing {target} again" + (f" ({lost} records lost)" if lost else ""), file=sys.stderr)
