"""The run directory: everything that writes it or reads it, and nothing else. No torch, no textual.

- ``layout``: the file names (README, The run directory), which file a record goes to, the folder's
  identity, its checkpoints.
- ``files``: the one atomic writer (temp file, fsync, os.replace) and a tolerant JSON reader.
- ``writer``: :class:`RunLog`, the run's one writer of records, config.json and status.json.
- ``lock``: :class:`RunLock` (one writing process per folder) and :func:`refuse_if_in_use`.
- ``status``: status.json, built (:func:`status_json`) and read (:func:`run_state`, one vocabulary:
  records.RunStatus).
- ``read``: the JSONL readers: whole, incremental (:class:`Follower`), sampled (:func:`read_history`).
- ``follow``: :class:`Follow`, the one loop every viewer follows a run with (dashboard, ``watch``
  into a file, the comparison, the remote stream), with a :class:`Position` to go on from.
- ``runs``: finding runs (``tuitrain runs``, the runs ``watch`` is given).
"""

from __future__ import annotations

from tuitrain.rundir.files import read_json, write_atomic, write_json_atomic
from tuitrain.rundir.follow import Follow, Position, Read
from tuitrain.rundir.layout import (
    CHECKPOINTS,
    CONFIG,
    HISTOGRAMS,
    INDEX,
    LOCK,
    LOG,
    METRICS,
    RECORD_FILES,
    SAMPLES,
    STATUS,
    SYSTEM,
    TENSORBOARD,
    identity,
    list_checkpoints,
)
from tuitrain.rundir.lock import RunLock, refuse_if_in_use
from tuitrain.rundir.read import Follower, read_history, read_last, read_records
from tuitrain.rundir.runs import RunInfo, expand_runs, format_runs, is_run_dir, list_runs, require_run_dir
from tuitrain.rundir.status import STATES, UNREADABLE, pid_alive, read_status, run_state, status_json
from tuitrain.rundir.writer import RunLog

__all__ = ["CHECKPOINTS", "CONFIG", "HISTOGRAMS", "INDEX", "LOCK", "LOG", "METRICS", "RECORD_FILES", "SAMPLES", "STATES",
           "STATUS", "SYSTEM", "TENSORBOARD", "UNREADABLE", "Follow", "Follower", "Position", "Read", "RunInfo",
           "RunLock", "RunLog", "expand_runs", "format_runs", "identity", "is_run_dir", "list_checkpoints",
           "list_runs", "pid_alive", "read_history", "read_json", "read_last", "read_records", "read_status",
           "refuse_if_in_use", "require_run_dir", "run_state", "status_json", "write_atomic", "write_json_atomic"]
