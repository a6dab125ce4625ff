"""The one loop that follows a run directory: the dashboard's watch, ``watch`` into a file, the
comparison and the remote stream all read a run through it, so they skip, order and end alike.

::

    follow = Follow(run_dir)
    first = follow.history()      # the first screen: sampled and bounded, every record checked
    for batch in follow:          # then the records the run writes, as it writes them
        for read in batch:
            show(read.record)     # read.file and read.end say where it was in the run directory
    follow.ended                  # "end" (its end event was read), "dead" (its process is gone), "" (stopped)

Every record is checked (records.valid): one that does not fit is skipped and counted
(:attr:`Follow.skipped`), never handed on. Records come in file order within each file; a batch
holds metrics.jsonl's new records first, then those of histograms, system and samples (of those
only the newest by default: a viewer draws the latest). Iterating polls every ``poll_s`` seconds,
waiting on an Event (:meth:`Follow.stop` from another thread ends it at once), and ends after the
batch with the run's end event, or when the run's process is gone without one (a last batch then
holds a made-up end record, status ``dead``, as ``watch`` shows it).

A consumer that loses its connection goes on exactly where it was: :attr:`Follow.position` (or the
:class:`Position` it kept with ``position.after(read)`` for each record it handled) handed to
``Follow(run_dir, position=...)`` reads every record after those, none twice. The history is
sampled, so its records carry no position of their own: the position after it is
:attr:`Follow.position` once :meth:`Follow.history` returned.

No torch, no textual: used from a thread (the dashboard) and from a plain loop alike.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

from tuitrain.records import valid
from tuitrain.rundir.layout import HISTOGRAMS, METRICS, RECORD_FILES, SAMPLES, SYSTEM
from tuitrain.rundir.read import Follower, Progress, read_history, read_last
from tuitrain.rundir.status import run_state

LATEST_ONLY = (HISTOGRAMS, SYSTEM, SAMPLES)
"""Files of which a poll hands on only the newest record (the dashboard draws only the latest)."""
POLL_S = 0.25
ALIVE_CHECK_S = 2.0
"""How often a follower that reads nothing new asks whether the run's process still lives."""
MAX_STEPS = 2000
"""Step records in a history (about; evenly spaced through the run, plus the last)."""
READ_LIMIT = 16 << 20
"""Bytes read from a file per poll: a follower far behind catches up in bounded pieces."""
MAX_OFFSET = 1 << 62
DEAD_REASON = "the run's process is gone without ending the run"


class Read(NamedTuple):
    """One record as a follower read it."""

    record: dict
    """The record, checked by records.valid."""
    file: str = ""
    """The file it was read from (layout.RECORD_FILES); "" for a record made up here (a dead run's end)."""
    end: int = -1
    """The byte offset just after its line in ``file`` (-1: none, for a made-up record)."""


@dataclass(frozen=True)
class Position:
    """Where a follower stands in each file: the byte offset just after the last line it has read
    (a file not named: from its start). Plain JSON through :meth:`to_dict` / :meth:`from_dict`."""

    offsets: dict[str, int] = field(default_factory=dict)

    def after(self, read: Read) -> Position:
        """This position moved past ``read`` (the same for a made-up record)."""
        if not read.file or read.end < 0:
            return self
        return Position({**self.offsets, read.file: read.end})

    def to_dict(self) -> dict[str, int]:
        """``{"metrics.jsonl": 123456, ...}``, for a command line or a connection."""
        return dict(self.offsets)

    @classmethod
    def from_dict(cls, data: object) -> Position:
        """A position handed back (parsed JSON from outside); ValueError saying what is wrong unless
        it maps record files of a run directory to byte offsets (whole numbers from 0)."""
        if not isinstance(data, dict):
            raise ValueError("a position is a JSON object of file names and byte offsets")
        for name, offset in data.items():
            if name not in RECORD_FILES:
                raise ValueError(f"a position names {str(name)[:40]!r}, not one of {', '.join(RECORD_FILES)}")
            if type(offset) is not int or not 0 <= offset <= MAX_OFFSET:
                raise ValueError(f"the offset of {name} must be a whole number from 0, not {str(offset)[:40]}")
        return cls(dict(data))


def dead_end() -> dict:
    """The end record a follower makes up for a run whose process is gone without writing one."""
    return {"type": "event", "event": "end", "status": "dead", "step": 0, "time": time.time(), "reason": DEAD_REASON}


class Follow:
    """Follows one run directory: :meth:`history` first (or a ``position`` to go on from), then
    :meth:`poll` (never blocks) or iteration (batches until the run ends, see the module's text).

    ``files``: the record files to read (all by default; ``watch`` into a file reads metrics.jsonl
    only). ``latest_only``: files of which a poll hands on only the newest record. ``stop``: an
    Event the owner sets to end the iteration (one is made when none is given; :meth:`stop` sets it).
    """

    def __init__(self, run_dir: str | Path, position: Position | None = None, *,
                 files: Iterable[str] = RECORD_FILES, latest_only: Iterable[str] = LATEST_ONLY,
                 poll_s: float = POLL_S, alive_check_s: float = ALIVE_CHECK_S,
                 stop: threading.Event | None = None):
        self.run_dir = Path(run_dir)
        self.latest_only = frozenset(latest_only)
        self.poll_s = poll_s
        self.alive_check_s = alive_check_s
        self._stop = stop or threading.Event()
        offsets = position.offsets if position is not None else {}
        self._followers = {name: Follower(self.run_dir / name, offsets.get(name, 0)) for name in files}
        self._fresh = position is None
        """No position was given and nothing was read yet: history() may come."""
        self.skipped = 0
        """Records read but not handed on: they lack a field a reader needs or carry a wrong type."""
        self.ended: Literal["", "end", "dead"] = ""
        """Why following is over: the run's end event was read ("end"), its process is gone ("dead")."""
        self.end_record: dict | None = None
        """The end record once ``ended`` (made up for a dead run)."""

    @property
    def position(self) -> Position:
        """Where this follower stands: after every line it has read (skipped ones included)."""
        return Position({name: follower.position for name, follower in self._followers.items()})

    @property
    def more(self) -> bool:
        """The last poll stopped at READ_LIMIT in some file: poll again at once."""
        return any(follower.more for follower in self._followers.values())

    def history(self, max_steps: int = MAX_STEPS, progress: Progress | None = None) -> list[dict]:
        """The first screen, checked, in file order: metrics.jsonl's history (read_history: every
        record that is not a step record, and about ``max_steps`` step records evenly spaced, in
        bounded time and memory) and the newest record of each other file. Following goes on after
        what it read. Called once, before anything else, by a follower given no position.
        ``progress(done, total)`` hears how far metrics.jsonl's reading got (read.read_history)."""
        if not self._fresh:
            raise RuntimeError("history() comes first, and only for a follower given no position")
        self._fresh = False
        records: list[dict] = []
        for name in self._followers:
            path = self.run_dir / name
            if name == METRICS:
                found, self._followers[name] = read_history(path, max_steps, progress=progress)
            else:
                last, self._followers[name] = read_last(path)
                found = [last] if last is not None else []
            records += [r for r in found if self._fits(r)]
        self._note_end(records)
        return records

    def poll(self) -> list[Read]:
        """What was written since the last read, checked: metrics.jsonl's records first, then the
        other files' (the newest only of a ``latest_only`` file). Never blocks."""
        self._fresh = False
        batch: list[Read] = []
        for name, follower in self._followers.items():
            reads = [Read(r, name, end) for r, end in follower.poll_at(READ_LIMIT) if self._fits(r)]
            batch += reads[-1:] if name in self.latest_only else reads
        self._note_end(read.record for read in batch if read.file == METRICS)
        return batch

    def __iter__(self) -> Iterator[list[Read]]:
        """Batches as the run writes them, until it ended, its process is gone, or :meth:`stop`.

        A batch comes when records arrived or were skipped (so a viewer can say so); the last one
        holds the end record.
        """
        last_check = time.monotonic()
        pause = 0.0  # the first poll at once: a follower given a position may be far behind
        while not self.ended:
            if self._stop.wait(pause):
                return
            skipped = self.skipped
            batch = self.poll()
            pause = 0.0 if self.more else self.poll_s
            if batch or self.skipped != skipped:
                yield batch
            elif time.monotonic() - last_check >= self.alive_check_s:
                last_check = time.monotonic()
                if run_state(self.run_dir) == "dead":
                    late = self.poll()  # written just before the process went
                    if not late and not self.ended:
                        self.ended, self.end_record = "dead", dead_end()
                        late = [Read(self.end_record)]
                    yield late

    def stop(self) -> None:
        """End the iteration at once (thread-safe; the run itself is never touched)."""
        self._stop.set()

    def _fits(self, record: dict) -> bool:
        if valid(record):
            return True
        self.skipped += 1
        return False

    def _note_end(self, records: Iterable[dict]) -> None:
        """The newest start or end event decides: a run resumed in its own folder starts again."""
        for record in records:
            if record.get("type") != "event":
                continue
            if record.get("event") == "end":
                self.ended, self.end_record = "end", record
            elif record.get("event") == "start":
                self.ended, self.end_record = "", None
