"""The run directory: one writer for every record, and readers that tolerate a torn last line.

Layout (SPEC): config.json, metrics.jsonl (step, epoch and event records), checkpoints/, plus
histograms.jsonl (per-layer weight/gradient histograms), system.jsonl (CPU/RAM/GPU samples) and
status.json (the run's state and pid, rewritten as it changes). Never imports torch or textual.
"""

from __future__ import annotations

import json
import os
import threading
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


class RunLog:
    """Appends records to the run directory's files, each line flushed as it is written.

    Writes come a few times a second at most (the engine batches), so a flush per record is cheap
    and means a kill loses nothing but the line being written.
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / CHECKPOINTS).mkdir(exist_ok=True)
        self._lock = threading.Lock()
        self._files: dict[str, object] = {}
        self.sinks: list = []
        """Other writers fed the same records (TensorBoard): objects with write(record) and close()."""

    def write_config(self, config: dict) -> None:
        """config.json: every setting, the data statistics and the versions."""
        write_json_atomic(self.run_dir / CONFIG, config)

    def write(self, record: dict) -> None:
        """Append one record (a dict with "type") to the file its type belongs in."""
        name = _FILES.get(record.get("type", ""), METRICS)
        line = json.dumps(record, separators=(",", ":"), allow_nan=True) + "\n"
        with self._lock:
            fh = self._files.get(name)
            if fh is None:
                fh = self._files[name] = open(self.run_dir / name, "a", encoding="utf-8")
            fh.write(line)
            fh.flush()
            for sink in self.sinks:
                sink.write(record)

    def write_status(self, status: dict) -> None:
        """status.json: the run's state, pid and progress, for `runs` and `watch`."""
        with self._lock:
            write_json_atomic(self.run_dir / STATUS, status)

    def close(self) -> None:
        """Close every file (records written later reopen them)."""
        with self._lock:
            for fh in self._files.values():
                fh.close()
            self._files.clear()
            for sink in self.sinks:
                sink.close()
            self.sinks.clear()


def list_checkpoints(run_dir: str | Path) -> list[str]:
    """``RUN_DIR/checkpoints/*.pt``, newest first."""
    folder = Path(run_dir) / CHECKPOINTS
    found = sorted(folder.glob("*.pt"), key=lambda p: p.stat().st_mtime, reverse=True) if folder.is_dir() else []
    return [str(p) for p in found]


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON through a temp file and os.replace, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


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
