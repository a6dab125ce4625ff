"""The run directory: one writer for every record, and readers that tolerate a torn last line.

Layout (README, The run directory): config.json, metrics.jsonl (step, epoch and event records), checkpoints/, plus
histograms.jsonl (per-layer weight/gradient histograms), system.jsonl (CPU/RAM/GPU samples),
index.jsonl (every metrics.jsonl record that is not a step record, with its byte offset there, so a
viewer finds epochs and events of a long run without parsing it whole) and status.json (the run's
state and pid, rewritten as it changes). Never imports torch or textual.
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
from typing import TypeAlias

METRICS = "metrics.jsonl"
INDEX = "index.jsonl"
HISTOGRAMS = "histograms.jsonl"
SYSTEM = "system.jsonl"
SAMPLES = "samples.jsonl"
CONFIG = "config.json"
STATUS = "status.json"
CHECKPOINTS = "checkpoints"

# Which file each record type goes to; anything else goes to metrics.jsonl.
_FILES = {"hist": HISTOGRAMS, "system": SYSTEM, "samples": SAMPLES}
STEP_MARKER = b'"type":"step"'
"""How a step record's line is told from the others without parsing it (records put "type" first)."""


MAX_PENDING_BYTES = 16 << 20
"""Records kept in memory per file while it cannot be written (disk full): written once it can be."""

Problem: TypeAlias = Callable[[str, "OSError | None", int], None]
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
        self._indexing = True
        """Whether index.jsonl is complete so far (dropped at the first failed write around it)."""
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
                if name == METRICS and self._indexing and STEP_MARKER not in pending[0]:
                    self._index(fd, pending[0])
                written = _write_all(fd, pending[0])
                if written < len(pending[0]):
                    self._torn.add(name)
                    raise OSError(errno.ENOSPC, "short write")
                self._pending_bytes[name] -= len(pending.popleft())
        except OSError as exc:
            self._torn.add(name)  # a partial write cannot be told from a failed one by every file system
            if name == METRICS:
                self._drop_index()  # its last line may point at a line that is not there
            fd = self._fds.pop(name, None)
            if fd is not None:
                os.close(fd)  # reopened at the next try (and an EMFILE frees a descriptor)
            return self._failed(name, exc)
        return self._recovered(name)

    def _index(self, fd: int, line: bytes) -> None:
        """index.jsonl: this metrics line's offset and record, written before the line itself, so a
        reader that finds the line in metrics.jsonl finds its index entry."""
        entry = b'{"at":%d,"record":%s}\n' % (os.fstat(fd).st_size, line.rstrip(b"\n"))
        try:
            index = self._fds.get(INDEX)
            if index is None:
                index = self._fds[INDEX] = os.open(self.run_dir / INDEX, os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                                                   0o644)
            if _write_all(index, entry) < len(entry):
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


WHOLE_BELOW = 16 << 20
"""metrics.jsonl files smaller than this are read whole; larger ones are sampled (read_history)."""
_STEP = b'"type":"step"'
# Scanned for in runs without an index: epoch and event (one search for both: each search over 1 GB
# costs about 0.4 s), confusion.
_NOT_STEP = (b'"type":"e', b'"type":"c')
_PROBE = 1 << 13  # bytes read at each sampled offset
_PROBE_MAX = 1 << 20  # give up on a sample after this many bytes without a step record


def read_history(path: str | Path, max_steps: int = 2000,
                 whole_below: int = WHOLE_BELOW) -> tuple[list[dict], Follower]:
    """A run's records for a first screen, fast and in bounded memory, and a Follower after them.

    Every record that is not a step record (epochs, events), and about ``max_steps`` step records
    evenly spaced through the run plus the last one, in file order: drawing decimates anyway. A
    file under ``whole_below`` bytes is read whole; a larger one is sampled by seeking to evenly
    spaced offsets, with the other records taken from index.jsonl (or, for runs written without
    one, found by a byte search, unparsed lines never held at once), so a 1 GB file costs a few MB.
    """
    follower = Follower(path)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < whole_below:
                records, end = _read_whole(fh, max_steps)
            else:
                end = _complete_end(fh, size)
                found = _indexed(fh, Path(path).with_name(INDEX), end) if Path(path).name == METRICS else None
                if found is None:
                    found = _scan_not_steps(fh, end)
                found += _sample_steps(fh, end, max_steps)
                found.sort(key=lambda item: item[0])
                records = _unique_records(found)
    except OSError:
        return [], follower
    follower._offset = end
    follower._tail = b""
    return records, follower


def _read_whole(fh, max_steps: int) -> tuple[list[dict], int]:
    """Small files: every line at hand; parse all but the step records left out by the stride."""
    data = fh.read()
    end = data.rfind(b"\n") + 1
    lines = data[:end].split(b"\n")
    step_lines = [i for i, line in enumerate(lines) if _STEP in line]
    stride = max(1, -(-len(step_lines) // max_steps))
    keep = set(step_lines[::stride])
    if step_lines:
        keep.add(step_lines[-1])
    wanted = [line for i, line in enumerate(lines) if i in keep or (line and _STEP not in line)]
    records, _ = parse_lines(b"\n".join(wanted) + b"\n")
    return records, end


def _complete_end(fh, size: int) -> int:
    """The offset just after the last complete line (a run may be writing the next one)."""
    pos = size
    while pos > 0:
        start = max(0, pos - _PROBE)
        fh.seek(start)
        newline = fh.read(pos - start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        pos = start
    return 0


def _step_line_from(fh, offset: int, end: int) -> tuple[int, bytes] | None:
    """The first step line that starts at or after ``offset`` (and ends before ``end``): (offset, line)."""
    start = max(offset - 1, 0)
    fh.seek(start)
    buf = b""
    begin = 0 if offset == 0 else -1  # -1: no line start found yet (the read began mid-line)
    while True:
        if begin < 0 and (newline := buf.find(b"\n")) >= 0:
            begin = newline + 1
        while begin >= 0 and (stop := buf.find(b"\n", begin)) >= 0:
            if _STEP in buf[begin:stop]:
                return start + begin, buf[begin:stop]
            begin = stop + 1
        if start + len(buf) >= end or len(buf) >= _PROBE_MAX:
            return None
        buf += fh.read(min(_PROBE, end - start - len(buf)))


def _last_step_line(fh, end: int) -> tuple[int, bytes] | None:
    """The last step line before ``end``: (offset, line)."""
    pos, buf = end, b""
    while pos > 0 and len(buf) < _PROBE_MAX:
        start = max(0, pos - _PROBE)
        fh.seek(start)
        buf = fh.read(pos - start) + buf
        pos = start
        stop = len(buf) - 1  # buf ends with a newline: ``end`` follows a complete line
        while (newline := buf.rfind(b"\n", 0, stop)) >= 0 or pos == 0:
            if _STEP in buf[newline + 1 : stop]:
                return pos + newline + 1, buf[newline + 1 : stop]
            if newline < 0:
                return None
            stop = newline
    return None


def _sample_steps(fh, end: int, max_steps: int) -> list[tuple[int, bytes | dict]]:
    """About ``max_steps`` step lines at evenly spaced offsets, and the last one."""
    found: list[tuple[int, bytes | dict]] = []
    last_at = -1
    for i in range(max_steps):
        hit = _step_line_from(fh, i * end // max_steps, end)
        if hit and hit[0] > last_at:
            found.append(hit)
            last_at = hit[0]
    last = _last_step_line(fh, end)
    if last and last[0] > last_at:
        found.append(last)
    return found


def _indexed(fh, index_path: Path, end: int) -> list[tuple[int, bytes | dict]] | None:
    """index.jsonl's records that lie before ``end``, or None without a usable index.

    An index is used only when it starts at the file's start (the start event at offset 0) and its
    last entry is where it says: a run continued by a version that wrote none, or a damaged index,
    is scanned instead.
    """
    try:
        with open(index_path, "rb") as ih:
            entries, _ = parse_lines(ih.read())
    except OSError:
        return None
    found: list[tuple[int, bytes | dict]] = [
        (e["at"], e["record"]) for e in entries
        if isinstance(e.get("at"), int) and isinstance(e.get("record"), dict) and e["at"] < end]
    if not found or found[0][0] != 0:
        return None
    at, record = found[-1]
    fh.seek(at)
    line, _ = parse_lines(fh.readline())
    if not line or not isinstance(record, dict) or any(line[0].get(k) != record.get(k) for k in ("type", "time", "step")):
        return None
    return found


def _scan_not_steps(fh, end: int, chunk_size: int = 8 << 20) -> list[tuple[int, bytes | dict]]:
    """Lines of known non-step types, found by a byte search chunk by chunk (no index: older runs)."""
    found: list[tuple[int, bytes | dict]] = []
    pos = 0
    while pos < end:
        fh.seek(pos)
        size = chunk_size
        while (cut := (chunk := fh.read(min(size, end - pos))).rfind(b"\n") + 1) == 0:
            size *= 2  # a line longer than a chunk
            fh.seek(pos)
        for marker in _NOT_STEP:
            i = chunk.find(marker, 0, cut)
            while i >= 0:
                begin = chunk.rfind(b"\n", 0, i) + 1
                stop = chunk.find(b"\n", i)
                found.append((pos + begin, chunk[begin:stop]))
                i = chunk.find(marker, stop, cut)
        pos += cut  # the partial line at the chunk's end is read again with the next chunk
    return found


def _unique_records(found: list[tuple[int, bytes | dict]]) -> list[dict]:
    """Records in offset order, each once; lines that are not JSON objects are skipped."""
    records, last_at = [], -1
    for at, item in found:
        if at == last_at:
            continue
        last_at = at
        if isinstance(item, bytes):
            try:
                item = json.loads(item)
            except ValueError:
                continue
        if isinstance(item, dict):
            records.append(item)
    return records


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
