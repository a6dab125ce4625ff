"""A training session: the engine, the run directory and the system sampler, wired together.

Used by the headless CLI and by the dashboard alike, so both write the same records. Every record
the engine reports goes to the run directory first, then to ``on_record`` (progress lines or the UI).
"""

from __future__ import annotations

import os
import platform
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from tuitrain import __version__, records
from tuitrain.config import TrainConfig
from tuitrain.control import ControlServer
from tuitrain.errors import UsageError
from tuitrain.records import RunStatus
from tuitrain.rundir import CONFIG, METRICS, STATUS, RunLock, RunLog, read_history, refuse_if_in_use, status_json

SYSTEM_EVERY_S = 2.0


def check_first(config: TrainConfig, own_model: bool = False) -> None:
    """What can be refused without loading the data or building the model (seconds each): a run dir
    that already holds a run, a model file or a checkpoint to resume that is not there. UsageError.
    ``own_model``: ``tuitrain.fit`` brought its model, so --model names no file."""
    from tuitrain.config import MODELS, check_model_file
    from tuitrain.errors import CheckpointError

    refuse_if_in_use(config.run_dir, bool(config.resume))  # checked again under the lock when writing
    if not own_model and config.model not in MODELS:
        check_model_file(config.model)
    if config.cuda_graphs:  # the device --cuda-graphs needs, before the data loads
        from tuitrain.device import resolve_device

        device = resolve_device(config.device)
        if device.type != "cuda":
            raise UsageError(f"--cuda-graphs needs a CUDA device; --device {config.device} is {device} here")
    if config.resume and not Path(config.resume).is_file():
        what = "is not a file" if Path(config.resume).exists() else "does not exist"
        raise CheckpointError(f"checkpoint {config.resume} {what}")


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
        self.ended = threading.Event()
        """Set when ``run`` has returned (or raised): everything written, the lock released."""
        self.start_record: dict | None = None
        """The run's start event, for progress lines that begin mid-run (the terminal went away)."""
        self._lock = RunLock(config.run_dir)
        self._recorded: set[tuple] = set()
        """(epoch, step, lr) of the epoch records already in the run dir a resume continues."""
        self._repeated: set[int] = set()
        """Epochs retrained after a resume whose records are already there: not written twice."""

    def prepare(self) -> None:
        """Load data and model, check --resume; raises UsageError before anything is written.
        The config written is the engine's after setup (settings a checkpoint or the data decided)."""
        self.engine.setup()
        self.config = self.engine.config

    def open_run_dir(self) -> None:
        """Create the run directory, clean temp files a killed save left, write config.json."""
        from tuitrain import checkpoints

        control = ControlServer(self.config.run_dir, self.send)  # refuses a bad socket folder before anything is written
        self._lock.acquire()
        try:
            refuse_if_in_use(self.config.run_dir, bool(self.config.resume))
            try:
                self.log = RunLog(self.config.run_dir, on_problem=self._write_problem)
                self.log.write_config(self._config_json())
            except OSError as exc:  # a full or read-only disk: no reader would take the folder for a run
                if self.log:
                    self.log.close()
                    self.log = None
                self._lock.remove_created()
                raise UsageError(f"cannot write {CONFIG} in run dir {self.config.run_dir}: {exc.strerror or exc}; "
                                 f"nothing was trained") from None
            from tuitrain.tboard import TensorBoardSink

            self.log.sinks.append(TensorBoardSink(self.config.run_dir))
            checkpoints.cleanup_temp(self.engine.checkpoint_dir)
            if self.config.resume:
                self._recorded = _epochs_recorded(Path(self.config.run_dir) / METRICS)
            self.control = control
            self.control.start()
        except BaseException:
            self._lock.release()
            raise
        self._write_status("running")

    def _config_json(self) -> dict:
        """config.json's contents: every setting, the data statistics and the versions."""
        import torch

        from tuitrain.device import available_devices

        eng = self.engine
        return {
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
        }

    def run(self):
        """Train (blocking) while sampling system usage; return the engine's Result."""
        try:
            return self._run()
        finally:
            self.ended.set()

    def _run(self):
        # Samples go to the run dir and the UI; a DDP worker (rank > 0) has neither. The sampler is joined before returning:
        # its bound method holds this session (and through it the DDP model); a daemon thread that
        # dropped the last reference during interpreter shutdown freed the gloo process group there
        # and aborted the process ("terminate called without an active exception").
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
        # One word for how it ended, the end event's: done, stopped, interrupted (a signal) or failed.
        self._write_status(cast(RunStatus, self.result.status))
        if self.log:
            lost = self.log.close()
            if lost:
                print("tuitrain: could not write " + ", ".join(f"{name} ({n} records)" if name != STATUS else name
                                                               for name, n in lost.items())
                      + f" to run dir {self.config.run_dir}: lost", file=sys.stderr)
        self._lock.release()
        return self.result

    def send(self, command) -> None:
        """Queue a command for the next step boundary (thread-safe)."""
        self.commands.put(command)

    def _report(self, record: dict) -> None:
        kind = record.get("type")
        if self._recorded and kind in ("epoch", "confusion", "samples"):
            # A resume retraining an epoch this run dir already recorded (a kill between the epoch's
            # record and last.pt): the resume is exact, so its records would be a second copy.
            if kind == "epoch" and _epoch_key(record) in self._recorded:
                self._repeated.add(record["epoch"])
            if record.get("epoch") in self._repeated:
                if kind == "epoch":
                    self._write_status(self._state)
                return
        if self.log:
            self.log.write(record)
        if self.control:
            self.control.on_record(record)  # after the write: an answer implies the record is on disk
        if kind == "event" and record.get("event") == "start":
            self.start_record = record
        if kind == "epoch":
            self._write_status(self._state)  # epochs done and best accuracy, for `tuitrain runs`
        elif kind == "event" and record.get("ok", True) and record["event"] in ("pause", "resume", "device"):
            state: RunStatus = {"pause": "paused", "resume": "running"}.get(record["event"], self._state)  # type: ignore[assignment]
            self._write_status(state)
        elif kind == "event" and record["event"] == "nonfinite" and record.get("action") == "paused":
            self._write_status("paused")  # the divergence guard paused it (an event that is not ok)
        if self.on_record:
            try:
                self.on_record(record)
            except OSError:  # progress lines to a full disk or a closed terminal: the run dir has the record
                pass

    def _write_problem(self, target: str, error: OSError | None, lost: int) -> None:
        """A run-dir file or TensorBoard stopped (or started again) taking writes: one event each
        way, shown by the dashboard and the progress lines; training goes on."""
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
        self.log.write_status(status_json(
            self.config.run_dir, state, epoch=st.epoch, epochs_done=st.epoch, epochs=self.config.epochs, step=st.step,
            best_val_acc=st.best_val_acc, best=st.best, monitor=eng.monitor, device=str(eng.device),
            control=str(self.control.path) if self.control and state in ("running", "paused") else None))

    def _sample_system(self) -> None:
        from tuitrain.system import SystemSampler

        sampler = SystemSampler()
        while not self._done.wait(SYSTEM_EVERY_S):
            try:
                record = sampler.sample().to_record()
            except OSError:  # out of file descriptors (EMFILE) or /proc unreadable: skip this sample
                continue
            if self.log:
                self.log.write(record)
            if self.on_record:
                self.on_record(record)


def _epoch_key(record: dict) -> tuple:
    return record.get("epoch"), record.get("step"), record.get("lr")


def _epochs_recorded(metrics: Path) -> set[tuple]:
    """The epoch records a run dir holds, by epoch, step and LR (what a retraining repeats exactly)."""
    return {_epoch_key(r) for r in read_history(metrics, max_steps=1)[0] if r.get("type") == "epoch"}
