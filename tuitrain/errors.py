"""Errors a user can fix: the CLI prints them on one line and exits 2 (README, Exit codes: bad usage or input)."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input from the user: an option, a data folder, a checkpoint. Message is one line."""


class DataError(UsageError):
    """A data set is missing, cannot be downloaded, or its files are damaged."""


class ModelError(UsageError):
    """A model name or a user's model file cannot be built."""


class CheckpointError(UsageError):
    """A checkpoint cannot be loaded: missing, damaged, foreign or for another architecture."""


def first_line(exc: BaseException, limit: int | None = 160, named: bool = False) -> str:
    """What went wrong, on one line: the first non-blank line of the exception's message (torch's
    messages are paragraphs), cut at ``limit`` characters, or its type name when the message is
    blank. ``named``: after the type name (``RuntimeError: ...``)."""
    line = next((part.strip() for part in str(exc).splitlines() if part.strip()), "")[:limit]
    if named:
        return f"{type(exc).__name__}: {line}" if line else type(exc).__name__
    return line or type(exc).__name__
