"""A training session: the engine, the run directory and the system sampler, wired together.

Used by the headless CLI and by the dashboard alike, so both write the same records. Every record
the engine reports goes to the run directory first, then to ``on_record`` (progress lines or the UI).
"""

from __future__ import annotations

import os
import platform
import queue
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tuitrain import __version__, records
from tuitrain.config import TrainConfig
from tuitrain.control import ControlServer, run_identity
from tuitrain.errors import UsageError
from tuitrain.records import RunStatus
from tuitrain.runlog import STATUS, RunLog, read_json

SYSTEM_EVERY_S = 2.0
LOCK = ".lock"
"""RUN_DIR/.lock: flocked by the process writing the run."""


class Session:
    """One run: ``prepare()`` (may raise UsageError, writes nothing), then ``run()``."""

    def __init__(self, config: TrainConfig, on_record: Callable[[dict], None] | None = None,
                 model=None, dataset=None, task=None):
        from tuitrain.engine import Engine, Result  # torch loads here, not at import of the CLI

        self.config = config
        self.on_record = on_record
        self.commands: queue.Queue = queue.Queue()
        self.engine = Engine(config, self._report, self.commands, model=model, dataset=dataset, task=task)
        self.log: RunLog | None = None
        self.control: ControlServer | None = None
        self.result: Result | None = None
        self._state: RunStatus = "starting"
        self._done = threading.Event()
        self._lock_fd: int | None = None

    def prepare(self) -> None:
        """Load data and model, check --resume; raises UsageError before anything is written."""
        self.engine.setup()

    def open_run_dir(self) -> None:
        """Create the run directory, clean temp files a killed save left, write config.json."""
        import torch

        from tuitrain import checkpoints
        from tuitrain.device import available_devices

        control = ControlServer(self.config.run_dir, self.send)  # refuses a bad socket folder before anything is written
        self._lock_run_dir()
        try:
            self._refuse_if_in_use()
            self.log = RunLog(self.config.run_dir, on_problem=self._write_problem)
            from tuitrain.tboard import TensorBoardSink

            self.log.sinks.append(TensorBoardSink(self.config.run_dir))
            checkpoints.cleanup_temp(self.engine.checkpoint_dir)
            self.control = control
            self.control.start()
        except BaseException:
            self._unlock_run_dir()
            raise
        eng = self.engine
        self.log.write_config({
            **self.config.to_dict(),
            "record_format": records.FORMAT,
            "monitor": eng.monitor,
            "mode": eng.mode,
            "classification": eng.task.classification,
            "data": eng.data.describe(),
            "device_resolved": str(eng.device),
            "devices": available_devices(),
            "versions": {"tuitrain": __version__, "torch": torch.__version__, "python": platform.python_version()},
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": time.time(),
        })
        self._write_status("running")

    def run(self):
        """Train (blocking) while sampling system usage; return the engine's Result."""
        # Samples go to the run dir and the UI; a DDP worker (rank > 0) has neither. The sampler is joined before returning:
        # its bound method holds this session (and through it the DDP model); a daemon thread that
        # dropped the last reference during interpreter shutdown freed the gloo process group there
        # and aborted the process ("terminate called without an active exception", issue 12 #14).
        sampler = threading.Thread(target=self._sample_system, name="tuitrain-system", daemon=True)
        if self.log or self.on_record:
            sampler.start()
        try:
            self.result = self.engine.run()
        finally:
            self._done.set()
            if sampler.is_alive():
                sampler.join()
            if self.control:
                self.control.close()
        self._write_status("failed" if self.result.status == "failed" else
                           "done" if self.result.status == "done" else "stopped")
        if self.log:
            self.log.close()
        self._unlock_run_dir()
        return self.result

    def send(self, command) -> None:
        """Queue a command for the next step boundary (thread-safe)."""
        self.commands.put(command)

    def _report(self, record: dict) -> None:
        if self.log:
            self.log.write(record)
        if self.control:
            self.control.on_record(record)  # after the write: an answer implies the record is on disk
        kind = record.get("type")
        if kind == "epoch":
            self._write_status(self._state)  # epochs done and best accuracy, for `tuitrain runs`
        elif kind == "event" and record.get("ok", True) and record["event"] in ("pause", "resume", "device"):
            state: RunStatus = {"pause": "paused", "resume": "running"}.get(record["event"], self._state)  # type: ignore[assignment]
            self._write_status(state)
        if self.on_record:
            try:
                self.on_record(record)
            except OSError:  # progress lines to a full disk or a closed terminal: the run dir has the record
                pass

    def _write_problem(self, target: str, error: OSError | None, lost: int) -> None:
        """A run-dir file or TensorBoard stopped (or started again) taking writes: one event each
        way, shown by the dashboard and the progress lines; training goes on (issue 12 #2)."""
        st = self.engine.state
        if error is not None:
            record = records.event_record("write", st.step, self.engine.epoch_now(), ok=False, target=target,
                                          reason=f"cannot write {target}: {error}; training goes on, "
                                                 f"writing is retried")
        else:
            record = records.event_record("write", st.step, self.engine.epoch_now(), ok=True, target=target,
                                          lost=lost, reason=f"writing {target} again")
        self._report(dict(record))

    def _write_status(self, state: RunStatus) -> None:
        self._state = state
        if not self.log:
            return
        eng, st = self.engine, self.engine.state
        self.log.write_status({
            "state": state, "pid": os.getpid(), "host": socket.gethostname(), "time": time.time(),
            "epoch": st.epoch, "epochs_done": st.epoch, "epochs": self.config.epochs, "step": st.step,
            "best_val_acc": st.best_val_acc, "best": st.best, "monitor": eng.monitor, "device": str(eng.device),
            "control": str(self.control.path) if self.control and state in ("running", "paused") else None,
            "run_id": run_identity(self.config.run_dir),  # a copied folder is told apart from the live one
        })

    def _lock_run_dir(self) -> None:
        """Hold RUN_DIR/.lock (flock, exclusive) for the run's life, taken before anything else is
        written: of two runs started on one directory, one trains and the other is refused. The
        kernel drops the lock with the process, so a killed run never leaves a stale one."""
        import fcntl

        path = Path(self.config.run_dir)
        made = []  # the folders this call creates, deepest first: removed again when it fails
        try:
            made = [p for p in (path, *path.parents) if not p.exists()]
            path.mkdir(parents=True, exist_ok=True)
            fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            for folder in made:
                try:
                    folder.rmdir()
                except OSError:
                    break
            raise UsageError(f"cannot create run dir {self.config.run_dir}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise UsageError(f"run dir {self.config.run_dir} is in use by another tuitrain run (pid {holder}); "
                             f"choose another --run-dir") from None
        try:  # the holder's pid, for the message above (the lock itself is the flock)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:  # a full disk: the lock holds all the same
            pass
        self._lock_fd = fd

    def _unlock_run_dir(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def _refuse_if_in_use(self) -> None:
        """Two live processes must never write one run directory, and a fresh run must not be mixed
        into the records of an old one (continuing one with --resume is fine)."""
        from tuitrain.runlog import METRICS
        from tuitrain.runs import run_state

        if not self.config.resume and (Path(self.config.run_dir) / METRICS).exists():
            raise UsageError(f"run dir {self.config.run_dir} already holds a run; choose another --run-dir "
                             f"or continue it with --resume")
        status = read_json(Path(self.config.run_dir) / STATUS) or {}
        if run_state(self.config.run_dir) in ("running", "paused") and status.get("pid") != os.getpid():
            raise UsageError(f"run dir {self.config.run_dir} is in use by a live run (pid {status.get('pid')})")

    def _sample_system(self) -> None:
        from tuitrain.system import SystemSampler

        sampler = SystemSampler()
        while not self._done.wait(SYSTEM_EVERY_S):
            record = sampler.sample().to_record()
            if self.log:
                self.log.write(record)
            if self.on_record:
                self.on_record(record)
