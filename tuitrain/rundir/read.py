"""Reading the run directory's JSONL files: whole, incrementally (Follower), or sampled for a first screen.

Every reader tolerates what a file may hold: a torn last line (the run is writing it) waits until
it is complete, a line that is not a JSON object is skipped. Checking a record's fields is the
caller's part (records.valid; follow.Follow does it for every viewer).
"""

from __future__ import annotations

import bisect
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from tuitrain.rundir.layout import INDEX, METRICS, STEP_MARKER


def parse_lines(chunk: bytes) -> tuple[list[dict], bytes]:
    """Complete lines of ``chunk`` as records, and the incomplete tail to keep for later.

    A line that is not a JSON object is skipped (a torn write in the middle of a file cannot
    happen with appends, but a reader must never die on one).
    """
    found, tail = parse_lines_at(chunk)
    return [record for record, _ in found], tail


def parse_lines_at(chunk: bytes, start: int = 0) -> tuple[list[tuple[dict, int]], bytes]:
    """Like :func:`parse_lines`, each record with the offset just after its line (``chunk`` begins
    at offset ``start`` of its file)."""
    end = chunk.rfind(b"\n")
    if end < 0:
        return [], chunk
    found = []
    loads = json.loads
    at = start
    for line in chunk[:end].split(b"\n"):
        at += len(line) + 1
        if not line:
            continue
        try:
            record = loads(line)
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
            continue
        if isinstance(record, dict):
            found.append((record, at))
    return found, chunk[end + 1 :]


class Follower:
    """Reads a JSONL file incrementally: each :meth:`poll` returns the records added since.

    ``offset``: where to start, the end of a line (a :attr:`position` handed back, to go on exactly
    after the records read before).
    """

    def __init__(self, path: str | Path, offset: int = 0):
        self.path = Path(path)
        self._offset = offset
        self._tail = b""
        self.more = False
        """The last poll stopped at its ``limit``: more is there to read now."""

    @property
    def position(self) -> int:
        """The offset just after the last complete line read (a partial line is read again)."""
        return self._offset - len(self._tail)

    def poll(self, limit: int | None = None) -> list[dict]:
        """New complete records; a partial last line waits until it is complete."""
        return [record for record, _ in self.poll_at(limit)]

    def poll_at(self, limit: int | None = None) -> list[tuple[dict, int]]:
        """New complete records, each with the offset just after its line; at most about ``limit``
        bytes are read (None: all there is), so a long file is taken in bounded pieces."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read(-1 if limit is None else limit)
        except OSError:
            return []
        self.more = limit is not None and len(chunk) == limit
        if not chunk:
            return []
        start = self.position
        self._offset += len(chunk)
        found, self._tail = parse_lines_at(self._tail + chunk, start)
        return found


def read_records(path: str | Path) -> list[dict]:
    """Every complete record of a JSONL file (a partial last line is left out)."""
    return Follower(path).poll()


WHOLE_BELOW = 16 << 20
"""metrics.jsonl files smaller than this are read whole; larger ones are sampled (read_history)."""
# Scanned for in runs without an index: epoch and event (one search for both: each search over 1 GB
# costs about 0.4 s), confusion.
_NOT_STEP = (b'"type":"e', b'"type":"c')
# The same for a file another program wrote (json.dumps' default separators, "type" anywhere in the
# line): spaces allowed, any type but "step". Slower (it stops at every line), so used only then.
_STEP_RE = re.compile(rb'"type"\s*:\s*"step"')
_NOT_STEP_RE = re.compile(rb'"type"\s*:\s*"(?!step")')
_PROBE = 1 << 13  # bytes read at a time at each sampled offset
_PROBE_MAX = 1 << 20  # bytes one sample reads at most (never the same bytes twice: samples go forward)
MAX_STEP_LINE = 1 << 18
"""A line longer than this is never taken for a step record by the sampler (it is skipped unread)."""
_SNIFF = 1 << 16  # bytes at the file's start looked at to tell RunLog's format from another writer's
Progress = Callable[[int, int], None]
"""``progress(done, total)``: bytes of metrics.jsonl read so far, of ``total`` (a first screen says so)."""


def is_step_line(line: bytes) -> bool:
    """Whether a JSONL line holds a step record, without parsing it: RunLog's compact bytes, or
    another writer's (spaces around the colon, "type" not first)."""
    return STEP_MARKER in line or _STEP_RE.search(line) is not None


def read_history(path: str | Path, max_steps: int = 2000, whole_below: int = WHOLE_BELOW,
                 progress: Progress | None = None) -> tuple[list[dict], Follower]:
    """A run's records for a first screen, fast and in bounded memory, and a Follower after them.

    Every record that is not a step record (epochs, events), and about ``max_steps`` step records
    evenly spaced through the run plus the last one, in file order: drawing decimates anyway. A
    file under ``whole_below`` bytes is read whole; a larger one is sampled by seeking to evenly
    spaced offsets, with the other records taken from index.jsonl (or, for runs written without
    one, found by a byte search, unparsed lines never held at once), so a 1 GB file costs a few MB.
    Each sample reads at most _PROBE_MAX bytes, never bytes an earlier one read, and skips lines
    over MAX_STEP_LINE, so a file of long lines costs at most one pass. A file another program wrote
    (``"type": "step"``) is recognised by its first lines and searched with patterns that allow for
    it. ``progress`` hears how far the reading got (a large file without an index takes seconds).
    """
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < whole_below:
                records, end = _read_whole(fh, max_steps)
            else:
                end = _complete_end(fh, size)
                found = _indexed(fh, Path(path).with_name(INDEX), end, progress) if Path(path).name == METRICS else None
                if found is None:
                    found = _scan_not_steps(fh, end, progress=progress)
                found += _sample_steps(fh, end, max_steps)
                found.sort(key=lambda item: item[0])
                records = _unique_records(found)
    except OSError:
        return [], Follower(path)
    return records, Follower(path, end)


def _read_whole(fh, max_steps: int) -> tuple[list[dict], int]:
    """Small files: every line at hand; parse all but the step records left out by the stride."""
    data = fh.read()
    end = data.rfind(b"\n") + 1
    lines = data[:end].split(b"\n")
    step_lines = [i for i, line in enumerate(lines) if is_step_line(line)]
    stride = max(1, -(-len(step_lines) // max_steps))
    keep = set(step_lines[::stride])
    if step_lines:
        keep.add(step_lines[-1])
    step_set = set(step_lines)
    wanted = [line for i, line in enumerate(lines) if i in keep or (line and i not in step_set)]
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


def _step_line_from(fh, offset: int, end: int,
                    skipped: list[tuple[int, int]] | None = None) -> tuple[tuple[int, bytes] | None, int]:
    """The first step line that starts at or after ``offset`` (and ends before ``end``): ((offset,
    line) or None, the offset to go on from). At most _PROBE_MAX bytes are read; a line longer than
    MAX_STEP_LINE is passed over unheld; where reading stopped is returned so that the next sample
    starts there (at the start of a line it had not finished, or inside a long line it skips).
    ``skipped`` gets the spans passed over unheld (to the next line start, and long lines)."""
    pos = max(offset - 1, 0)
    fh.seek(pos)
    skipping = offset > 0  # looking for the first line start (the read began mid-line, or in a long line)
    skip_from = pos
    begin = offset  # where the line being collected starts
    parts: list[bytes] = []
    held = 0
    budget = _PROBE_MAX
    while pos < end and budget > 0:
        chunk = fh.read(min(_PROBE, end - pos, budget))
        if not chunk:
            break
        budget -= len(chunk)
        i = 0
        while (newline := chunk.find(b"\n", i)) >= 0:
            if not skipping:
                line = b"".join(parts) + chunk[i:newline] if parts else chunk[i:newline]
                if held + newline - i <= MAX_STEP_LINE and is_step_line(line):
                    return (begin, line), pos + newline + 1
            elif skipped is not None:
                skipped.append((skip_from, pos + newline + 1))
            skipping, parts, held = False, [], 0
            begin = pos + newline + 1
            i = newline + 1
        if not skipping:
            held += len(chunk) - i
            if held > MAX_STEP_LINE:
                skipping, skip_from, parts, held = True, begin, [], 0  # too long for a step record: passed over
            else:
                parts.append(chunk[i:])
        pos += len(chunk)
    if skipping and skipped is not None:
        skipped.append((skip_from, pos))
    if not skipping and parts and pos < end:
        return None, begin  # a line begun but not finished: the next sample reads it from its start
    return None, pos


def _last_step_line(fh, end: int) -> tuple[int, bytes] | None:
    """The last step line before ``end``: (offset, line), looking back at most _PROBE_MAX bytes."""
    pos = end
    parts: list[bytes] = []
    while pos > 0 and end - pos < _PROBE_MAX:
        start = max(0, pos - _PROBE)
        fh.seek(start)
        parts.insert(0, fh.read(pos - start))
        pos = start
        buf = b"".join(parts)
        stop = len(buf) - 1  # buf ends with a newline: ``end`` follows a complete line
        while (newline := buf.rfind(b"\n", 0, stop)) >= 0 or pos == 0:
            if stop - newline - 1 <= MAX_STEP_LINE and is_step_line(buf[newline + 1 : stop]):
                return pos + newline + 1, buf[newline + 1 : stop]
            if newline < 0:
                return None
            stop = newline
        parts = [buf[: stop + 1]] if stop < MAX_STEP_LINE else []  # the unfinished line, unless too long
        if not parts:
            return None
    return None


def _sample_steps(fh, end: int, max_steps: int) -> list[tuple[int, bytes | dict]]:
    """About ``max_steps`` step lines at evenly spaced offsets, and the last one. A sample starts
    where the one before it stopped when that is further on (after long lines: none is read twice).

    Long lines take offsets but hold no step: when they took a quarter of the file or more, the
    samples are spread again over the rest (so a 20 MB line does not leave the steps before it
    with one sample)."""
    skipped: list[tuple[int, int]] = []
    found = _samples(fh, [i * end // max_steps for i in range(max_steps)], end, skipped)
    long = _merged(skipped)
    if sum(b - a for a, b in long) * 4 >= end:
        rest = end - sum(b - a for a, b in long)
        found = _samples(fh, _around(long, [i * rest // max_steps for i in range(max_steps)]), end, None, long)
    last = _last_step_line(fh, end)
    if last and (not found or last[0] > found[-1][0]):
        found.append(last)
    return found


def _samples(fh, offsets: list[int], end: int, skipped: list[tuple[int, int]] | None,
             long: Sequence[tuple[int, int]] = ()) -> list[tuple[int, bytes | dict]]:
    """The first step line at or after each offset (going on where the one before stopped, and
    past the ``long`` spans known to hold no step line)."""
    found: list[tuple[int, bytes | dict]] = []
    last_at = -1
    going_on = 0
    starts = [a for a, _ in long]
    for offset in offsets:
        start = max(offset, going_on)
        k = bisect.bisect_right(starts, start) - 1
        if k >= 0 and start < long[k][1]:
            start = long[k][1]
        hit, going_on = _step_line_from(fh, start, end, skipped)
        if hit and hit[0] > last_at:
            found.append(hit)
            last_at = hit[0]
        if going_on >= end:
            break
    return found


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Spans joined where they touch, then only those longer than MAX_STEP_LINE (the long lines)."""
    joined: list[list[int]] = []
    for a, b in sorted(spans):
        if joined and a <= joined[-1][1] + 1:
            joined[-1][1] = max(joined[-1][1], b)
        else:
            joined.append([a, b])
    return [(a, b) for a, b in joined if b - a > MAX_STEP_LINE]


def _around(long: list[tuple[int, int]], offsets: list[int]) -> list[int]:
    """Offsets counted in the bytes outside ``long`` (sorted), as offsets in the file."""
    mapped, shift, k = [], 0, 0
    for offset in offsets:
        while k < len(long) and offset + shift >= long[k][0]:
            shift += long[k][1] - long[k][0]
            k += 1
        mapped.append(offset + shift)
    return mapped


_ENTRY = re.compile(rb'\{"at":(\d{1,18}),"record":(.*)\}', re.S)


def checked_entries(data: bytes, read_at: Callable[[int, int], bytes],
                    end: int) -> tuple[list[tuple[int, bytes]], int, int]:
    """The leading entries of index.jsonl's bytes ``data`` that each point at exactly their line of
    metrics.jsonl, in order: ``read_at(offset, n)`` reads metrics.jsonl, ``end`` is
    the end of its last complete line. Returns those entries (offset, the line's bytes), the length
    of ``data`` they take, and the offset in metrics.jsonl after the last one's line (0: none).

    An entry that does not match the bytes at its offset (one written before its line, by a process
    killed between the two, and the line written later by another) ends the checked part: what
    lies after it is the metrics file's to say.
    """
    entries: list[tuple[int, bytes]] = []
    pos = covered = 0
    while (newline := data.find(b"\n", pos)) >= 0:
        match = _ENTRY.fullmatch(data, pos, newline)
        if match is None:
            break
        at, line = int(match[1]), match[2]
        if at < covered or at + len(line) + 1 > end:
            break
        if read_at(at, len(line) + 1) != line + b"\n":
            break
        entries.append((at, line))
        covered, pos = at + len(line) + 1, newline + 1
    return entries, pos, covered


def _indexed(fh, index_path: Path, end: int, progress: Progress | None = None) -> list[tuple[int, bytes | dict]] | None:
    """index.jsonl's records that lie before ``end``, each checked against the bytes at its offset,
    and the records before its first entry and after its last checked one found by a scan; None
    without a usable index.

    Before the first entry lie a torn fragment, or the records of a run continued by a version that
    started an index mid-file; after the first entry that does not match its line (a damaged index,
    a kill between a line and its entry), or after the last, the file is scanned.
    """
    try:
        with open(index_path, "rb") as ih:
            data = ih.read()
    except OSError:
        return None

    def read_at(at: int, size: int) -> bytes:
        fh.seek(at)
        return fh.read(size)

    entries, _, covered = checked_entries(data, read_at, end)
    if not entries:
        return None
    head = _scan_not_steps(fh, entries[0][0]) if entries[0][0] else []
    return head + list(entries) + _scan_not_steps(fh, end, start=covered, progress=progress)


def _scan_not_steps(fh, end: int, chunk_size: int = 8 << 20, start: int = 0,
                    progress: Progress | None = None) -> list[tuple[int, bytes | dict]]:
    """Lines of known non-step types from ``start`` (a line's start) to ``end``, found by a byte search
    chunk by chunk (no index: older runs; or the part after the index's last entry). A file another
    program wrote is searched with _NOT_STEP_RE instead."""
    found: list[tuple[int, bytes | dict]] = []
    foreign = _foreign(fh, end)
    pos = start
    while pos < end:
        if progress:
            progress(pos, end)
        fh.seek(pos)
        chunk = fh.read(min(chunk_size, end - pos))
        while (cut := chunk.rfind(b"\n") + 1) == 0:  # a line longer than a chunk: read on (each byte once)
            chunk += fh.read(min(len(chunk), end - pos - len(chunk)))
        if foreign:
            i = 0
            while (match := _NOT_STEP_RE.search(chunk, i, cut)) is not None:
                begin = chunk.rfind(b"\n", 0, match.start()) + 1
                stop = chunk.find(b"\n", match.start())
                found.append((pos + begin, chunk[begin:stop]))
                i = stop + 1
        else:
            for marker in _NOT_STEP:
                i = chunk.find(marker, 0, cut)
                while i >= 0:
                    begin = chunk.rfind(b"\n", 0, i) + 1
                    stop = chunk.find(b"\n", i)
                    found.append((pos + begin, chunk[begin:stop]))
                    i = chunk.find(marker, stop, cut)
        pos += cut  # the partial line at the chunk's end is read again with the next chunk
    if progress:
        progress(end, end)
    return found


def _foreign(fh, end: int) -> bool:
    """Whether the file's first lines were written by another program than RunLog: a record whose
    line does not hold its type in RunLog's compact bytes (``"type":"step"``)."""
    fh.seek(0)
    head = fh.read(min(_SNIFF, end))
    for line in head[: head.rfind(b"\n") + 1].split(b"\n")[:100]:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict) and isinstance(record.get("type"), str):
            marker = b'"type":' + json.dumps(record["type"]).encode()
            if marker not in line:
                return True
    return False


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
            except (ValueError, RecursionError):
                continue
        if isinstance(item, dict):
            records.append(item)
    return records


LAST_WINDOW = 1 << 20
"""read_last looks at this many bytes at the file's end."""


def read_last(path: str | Path) -> tuple[dict | None, Follower]:
    """Only the newest record of a JSONL file (histograms, system, samples), and a Follower after it.

    A partial last line (the run is writing it) is left to the Follower, which reads it once complete.
    """
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            start = max(0, size - LAST_WINDOW)
            fh.seek(start)
            chunk = fh.read(size - start)
    except OSError:
        return None, Follower(path)
    end = chunk.rfind(b"\n") + 1
    begin = chunk.find(b"\n") + 1 if start else 0  # a window that starts mid-line skips that line
    records, _ = parse_lines(chunk[begin:end])
    return (records[-1] if records else None), Follower(path, start + end)
