"""Messages from the training side to the UI: small, plain, thread-safe to post."""

from __future__ import annotations

from textual.message import Message


class RecordsArrived(Message):
    """Records (metrics.jsonl-style dicts) from the engine or from a followed run directory.

    Never replaced or dropped: every metric point must reach the curves.
    """

    def __init__(self, records: list[dict]) -> None:
        super().__init__()
        self.records = records


class BackendFinished(Message):
    """The backend's worker returned (the run ended, or the followed run can no longer change)."""

    def __init__(self, error: str = "") -> None:
        super().__init__()
        self.error = error


class HungUp(Message):
    """The terminal went away (SIGHUP) and the run goes on headless: leave now, without stopping it."""
