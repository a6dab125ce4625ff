"""The run directory: one writer for every record, and readers that tolerate a torn last line.

Layout (SPEC): config.json, metrics.jsonl (step, epoch and event records), checkpoints/, plus
histograms.jsonl (per-layer weight/gradient histograms), system.jsonl (CPU/RAM/GPU samples) and
status.json (the run's state and pid, rewritten as it changes). Never imports torch or textual.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

METRICS = "metrics.jsonl"
HISTOGRAMS = "histograms.jsonl"
SYSTEM = "system.jsonl"
SAMPLES = "samples.jsonl"
CONFIG = "config.json"
STATUS = "status.json"
CHECKPOINTS = "checkpoints"

# Which file each record type goes to; anything else goes to metrics.jsonl.
_FILES = {"hist": HISTOGRAMS, "system": SYSTEM, "samples": SAMPLES}


MAX_PENDING_BYTES = 16 << 20
"""Records kept in memory per file while it cannot be written (disk full): written once it can be."""

Problem = Callable[[str, "OSError | None", int], None]
"""``on_problem(target, error, lost)``: a target (a file or sink) started failing (``error``) or
works again (``error`` None; ``lost`` records could not be kept meanwhile)."""


class RunLog:
    """Appends records to the run directory's files, each line written as it comes.

    Writes come a few times a second at most (the engine batches), so a system call per record is
    cheap and means a kill loses nothing but the line being written.

    A write that fails (disk full, too many open files) never raises: the records wait in memory
    (up to MAX_PENDING_BYTES a file) and are written with the next record that gets through;
    status.json and config.json are rewritten then. ``on_problem`` hears once when a target fails
    and once when it works again, outside the lock (it may write a record about it).
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
        self.sinks: list = []
        """Other writers fed the same records (TensorBoard): objects with write(record) and close()."""

    def write_config(self, config: dict) -> None:
        """config.json: every setting, the data statistics and the versions."""
        self._write_json(CONFIG, config)

    def write(self, record: dict) -> None:
        """Append one record (a dict with "type") to the file its type belongs in."""
        name = _FILES.get(record.get("type", ""), METRICS)
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

    def close(self) -> None:
        """Write what waits (a last try), close every file (records written later reopen them)."""
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
        self._tell(changes)

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
                fd = self._fds[name] = os.open(self.run_dir / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if name in self._torn:
                _write_all(fd, b"\n")  # readers skip the torn fragment as a line that is not JSON
                self._torn.discard(name)
            while pending:
                written = _write_all(fd, pending[0])
                if written < len(pending[0]):
                    self._torn.add(name)
                    raise OSError(errno.ENOSPC, "short write")
                self._pending_bytes[name] -= len(pending.popleft())
        except OSError as exc:
            self._torn.add(name)  # a partial write cannot be told from a failed one by every file system
            fd = self._fds.pop(name, None)
            if fd is not None:
                os.close(fd)  # reopened at the next try (and an EMFILE frees a descriptor)
            return self._failed(name, exc)
        return self._recovered(name)

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


TENSORBOARD = "tensorboard"


def _write_all(fd: int, data: bytes) -> int:
    """os.write until all of ``data`` is written; the bytes written (fewer only when one wrote 0)."""
    done = 0
    while done < len(data):
        n = os.write(fd, data[done:])
        if n == 0:
            break
        done += n
    return done


def _print_problem(target: str, exc: OSError | None, lost: int) -> None:
    """The default report: one line on stderr when writing starts failing and when it works again."""
    if exc is not None:
        print(f"tuitrain: cannot write {target}: {exc}; training goes on, writing is retried", file=sys.stderr)
    else:
        print(f"tuitrain: writing {target} again" + (f" ({lost} records lost)" if lost else ""), file=sys.stderr)


def list_checkpoints(run_dir: str | Path) -> list[str]:
    """``RUN_DIR/checkpoints/*.pt``, newest first."""
    folder = Path(run_dir) / CHECKPOINTS
    found = sorted(folder.glob("*.pt"), key=lambda p: p.stat().st_mtime, reverse=True) if folder.is_dir() else []
    return [str(p) for p in found]


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON through a temp file and os.replace, so a reader never sees half a file; a write
    that fails (disk full) leaves the old file and no temp file behind."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1, default=str))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict | None:
    """A JSON file's object, or None when it is missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def parse_lines(chunk: bytes) -> tuple[list[dict], bytes]:
    """Complete lines of ``chunk`` as records, and the incomplete tail to keep for later.

    A line that is not a JSON object is skipped (a torn write in the middle of a file cannot
    happen with appends, but a reader must never die on one).
    """
    end = chunk.rfind(b"\n")
    if end < 0:
        return [], chunk
    records = []
    loads = json.loads
    for line in chunk[:end].split(b"\n"):
        if not line:
            continue
        try:
            record = loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records, chunk[end + 1 :]


class Follower:
    """Reads a JSONL file incrementally: each :meth:`poll` returns the records added since."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._offset = 0
        self._tail = b""

    def poll(self) -> list[dict]:
        """New complete records; a partial last line waits until it is complete."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except OSError:
            return []
        if not chunk:
            return []
        self._offset += len(chunk)
        records, self._tail = parse_lines(self._tail + chunk)
        return records


def read_records(path: str | Path) -> list[dict]:
    """Every complete record of a JSONL file (a partial last line is left out)."""
    return Follower(path).poll()


def read_history(path: str | Path, max_steps: int = 2000) -> tuple[list[dict], Follower]:
    """A run's records for a first screen, fast, and a Follower positioned after them.

    Every epoch and event record is parsed; of the step records (the bulk of a long run) at most
    about ``max_steps``, evenly spaced, plus the last one: drawing decimates anyway, and skipping
    the JSON parse of the rest is what makes 50,000 records load in a few hundredths of a second.
    """
    follower = Follower(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return [], follower
    end = data.rfind(b"\n") + 1
    follower._offset = end
    follower._tail = b""
    lines = data[:end].split(b"\n")
    step_marker = b'"type":"step"'
    step_lines = [i for i, line in enumerate(lines) if step_marker in line]
    stride = max(1, -(-len(step_lines) // max_steps))
    keep = set(step_lines[::stride])
    if step_lines:
        keep.add(step_lines[-1])
    wanted = [line for i, line in enumerate(lines) if i in keep or (line and step_marker not in line)]
    records, _ = parse_lines(b"\n".join(wanted) + b"\n")
    return records, follower


def read_last(path: str | Path) -> tuple[dict | None, Follower]:
    """Only the newest record of a JSONL file (histograms, system), and a Follower after it."""
    follower = Follower(path)
    try:
        size = Path(path).stat().st_size
    except OSError:
        return None, follower
    with open(path, "rb") as fh:
        fh.seek(max(0, size - 1_000_000))
        chunk = fh.read()
    follower._offset = size
    records, _ = parse_lines(chunk[chunk.find(b"\n") + 1 :] if size > 1_000_000 else chunk)
    return (records[-1] if records else None), follower
