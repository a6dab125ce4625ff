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
