"""The training engine: a synchronous class that callers run in a thread.

A config (and, from ``tuitrain.fit``, the user's model, data and :class:`~tuitrain.task.Task`) goes
in; records (records.py) come out through ``report``; commands come in through a queue and are
applied between optimizer steps. Nothing here knows about a UI. It reads as Fabric's trainer does:
``setup -> run -> train_epoch -> training_step / optimizer_step -> end_epoch -> evaluate``.
Training metrics stay on the device and are read once per logging interval (window.py).

What a person can do to a running engine is its public surface: ``pause``, ``resume``,
``set_lr``, ``save``, ``load``, ``move_to``, ``request_stop``, ``emit_event`` (steering.py maps
commands onto them). Policy lives beside it: the monitor and early stopping (monitor.py), the
schedules (schedule.py), devices (device.py), what a checkpoint holds (checkpoints.py).
"""

from __future__ import annotations

import contextlib
import errno
import inspect
import logging
import math
import os
import queue
import random
import re
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tuitrain import checkpoints, cpuload, data, distributed, evaluation, graphstep, models, records, schedule, steering
from tuitrain.commands import Command, Stop
from tuitrain.config import TrainConfig, check_lr, is_user_model
from tuitrain.device import autocast, resolve_device
from tuitrain.errors import CheckpointError, UsageError, first_line
from tuitrain.graphstep import WholeStep
from tuitrain.monitor import Monitor
from tuitrain.rundir import list_checkpoints
from tuitrain.task import Task, batch_size_of, forward, language_model, primary
from tuitrain.trainstate import TrainState
from tuitrain.window import MetricWindow, grad_norm

Report = Callable[[dict], None]
LOG_MAX_INTERVAL_S = 1.0
MAX_WARNINGS = 50
"""Distinct warnings recorded as events in a run; later ones are dropped (a message per step would
otherwise flood metrics.jsonl)."""

SAVE_RETRY_WAITS_S = (0.25, 0.5, 1.0, None)
"""Seconds between tries of an automatic save that ran out of file descriptors (None: the last try)."""


@dataclass(frozen=True)
class Result:
    """How a run ended. ``status``: done, stopped, interrupted or failed (records.RunStatus)."""

    status: str
    epochs_done: int
    step: int
    best_val_acc: float | None
    message: str = ""
    best: float | None = None
    """The best value of the monitored quantity."""
    monitor: str = ""
    best_epoch: int = 0
    run_dir: str = ""
    best_checkpoint: str | None = None
    last_checkpoint: str | None = None
    history: list[dict] = field(default_factory=list)
    """The epoch records, in order."""
    stop_reason: str = ""
    error: BaseException | None = field(default=None, repr=False, compare=False)
    """The exception that failed the run (user code or torch); ``fit`` re-raises it."""

    @property
    def exit_code(self) -> int:
        """The process exit code for this ending (README, Exit codes)."""
        return records.exit_code(self.status, self.stop_reason)


def compiler_error(exc: BaseException) -> bool:
    """Whether ``exc`` came from torch.compile's machinery (no C++ compiler, an unsupported
    construct...) rather than from the user's code running as it is."""
    return type(exc).__module__.startswith(("torch._dynamo", "torch._inductor"))


CUDA_HOME_NOTE = "No CUDA runtime is found"
"""The start of the warning torch's C++ extension loader logs when --compile compiles on a machine
with a CUDA toolkit folder but no GPU: true, harmless and nothing a user can act on."""


class CudaHomeNote(logging.Filter):
    """Drops just that warning; anything else the loader logs passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(CUDA_HOME_NOTE)


@contextlib.contextmanager
def without_cuda_home_note(compiling: bool):
    """While a compiled model trains (torch.compile compiles lazily, at its first calls), without the
    CUDA_HOME warning; other runs, other loggers and the loader's other messages are left alone."""
    if not compiling:
        yield
        return
    logger, note = logging.getLogger("torch.utils.cpp_extension"), CudaHomeNote()
    logger.addFilter(note)
    try:
        yield
    finally:
        logger.removeFilter(note)


class Engine:
    """Trains one run. ``setup()`` loads everything (UsageError on bad input); ``run()`` trains."""

    def __init__(self, config: TrainConfig, report: Report | None = None, commands: queue.Queue | None = None,
                 model: torch.nn.Module | None = None, dataset: Any = None, task: Task | None = None):
        self.config = config
        self.dist = distributed.from_env()  # None unless started by torchrun with several processes
        noop: Report = lambda record: None  # noqa: E731
        self.report: Report = (report or noop) if self._is_main else noop  # rank 0 alone reports and writes
        self.commands: queue.Queue = commands if commands is not None else queue.Queue()
        self.checkpoint_dir = Path(config.run_dir) / "checkpoints"
        self.task = task or Task()
        self.model: torch.nn.Module = model  # type: ignore[assignment]  # built in setup() when None
        self.data: Any = dataset
        self.net: torch.nn.Module = model  # type: ignore[assignment]  # DDP wraps it in a distributed run
        self.device = torch.device("cpu")
        self.state = TrainState()
        self.optimizer: torch.optim.Optimizer = None  # type: ignore[assignment]
        self.scheduler: Any = None
        self.scheduler_interval = "epoch"
        self.scaler: torch.amp.GradScaler | None = None
        self.fused = False
        self._inherited_best: dict | None = None
        """A resumed run's best.pt from another run directory, written here when the run starts."""
        self.notices: list[str] = []
        """What setup decided for the user (a batch dropped...): a ``notice`` event each, at the start."""
        self.closure = False
        """The optimizer's step takes a closure (LBFGS): optimizer_step passes _evaluate_again."""
        self._closure_batch: tuple[Any, Any, torch.Tensor] | None = None
        self._closure_calls = 0
        self.monitoring = Monitor(config.monitor, config.mode, config.early_stopping)
        """The monitored value's rule (monitor.py); its counts are in ``state``."""
        self.summary: dict | None = None
        self.summary_error = ""
        self.slow_watch: cpuload.SlowWatch | None = None
        self.steps_per_epoch = 0
        self.data_gen = torch.Generator()
        self.window = MetricWindow(self.device)
        self.found_inf = torch.zeros(())
        self._one = torch.ones(())
        self.history: list[dict] = []
        self.paused = False
        self.stop_reason = ""
        self.stop_id = 0
        self.error: BaseException | None = None
        self.nonfinite_message = ""
        self._warnings_seen: set[str] = set()
        self._early_warnings: list[warnings.WarningMessage] = []
        """Warnings the model raised on the pre-flight batch: recorded as events once the run starts."""
        self._hist_due = False
        self._hist_next = 0
        """The parameter the next histogram step starts at (evaluation.HIST_PARAMS_PER_STEP a step)."""
        self._epoch_started = 0.0
        self._paused_seconds = 0.0
        self.grad_norm_tensor: torch.Tensor | None = None
        """The gradient norm of the last measured optimizer step, on the device, for the next record."""
        self.whole_step: WholeStep | None = None
        """Set when steps replay as one CUDA graph (--cuda-graphs, graphstep.py)."""
        self.capturable = False
        """Whether this run's optimizer was built capturable (its loaded states must stay so, on CUDA)."""
        self.graphs_failed = ""
        """Why CUDA graphs were given up in this run (a device switch does not try them again)."""
        self._graphs = False
        """Whether the model runs as CUDA graphs (--compile on CUDA): each step starts a new graph run."""

    @property
    def _is_main(self) -> bool:
        return self.dist is None or self.dist.is_main

    @property
    def monitor(self) -> str:
        """The monitored validation value (val_acc, val_loss, val_<metric>)."""
        return self.monitoring.name

    @property
    def mode(self) -> str:
        """Which way the monitored value is better: min or max."""
        return self.monitoring.mode

    # ----------------------------------------------------------------- setup
    def setup(self) -> None:
        """Resolve the device, load data, build and check the model on a real batch, build the
        optimizer and schedule, apply --resume. UsageError (or TargetError) on bad input."""
        cfg = self.config
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        self.device = resolve_device(cfg.device)
        if self.dist and self.device.type == "cuda":
            self.device = torch.device(f"cuda:{self.dist.local_rank}")
        if cfg.precision == "16-mixed" and self.device.type != "cuda":
            raise UsageError("precision 16-mixed needs a CUDA device (its GradScaler); use bf16-mixed on CPU")
        if self.data is None:
            self.data = data.load(cfg.dataset, cfg.data_dir, cfg.limit)
        if not self.task.classes:
            self.task.classes = list(getattr(self.data, "classes", []) or [])
        if self.model is None:
            self.model = models.build_model(cfg.model, self.data.shape, len(self.data.classes), cfg.model_args)
        self.model.to(self.device)
        self.data.place(self.device)
        self.task.bind(self.model)
        self._check_on_a_batch()
        if self.task.own_loss and cfg.loss == "cross_entropy":
            self.config = cfg = cfg.replace(loss="model")  # config.json says what trained: outputs.loss
        monitor = self.task.monitor_for(cfg.monitor)
        self.monitoring = Monitor.of(monitor, cfg.mode, cfg.early_stopping, self.task.higher_is_better(monitor))
        per_rank = self.data.n_train // self.dist.world if self.dist else self.data.n_train
        bs = cfg.batch_size
        self.steps_per_epoch = per_rank // bs if cfg.drop_last else -(-per_rank // bs)
        if self.steps_per_epoch < 1:
            raise UsageError(f"{per_rank} training samples make no full batch of {bs} (drop_last): "
                             f"lower the batch size")
        if not cfg.drop_last and bs > 1 and per_rank % bs == 1 and _has_batchnorm(self.model):
            # BatchNorm cannot train on one sample ("Expected more than 1 value per channel"): known
            # now, not at the end of epoch 1. The config says so, as if drop_last=True were given.
            self.config = cfg = cfg.replace(drop_last=True)
            self.steps_per_epoch = per_rank // bs
            self.notices.append(f"the last training batch would hold 1 sample ({per_rank} = {self.steps_per_epoch} x "
                                f"{bs} + 1), which BatchNorm cannot train on: it is left out of each epoch "
                                f"(drop_last=True)")
        self.optimizer = self.task.build_optimizer(cfg.optimizer, self.model.parameters(), cfg.lr, cfg.weight_decay,
                                                   capturable=cfg.cuda_graphs and self.device.type == "cuda")
        self.fused = bool(self.optimizer.defaults.get("fused"))
        self.capturable = bool(self.optimizer.defaults.get("capturable"))
        self.closure = needs_closure(self.optimizer)
        if self.closure and (cfg.accumulate > 1 or cfg.precision == "16-mixed"):
            raise UsageError(f"{type(self.optimizer).__name__} evaluates the loss several times a step (its "
                             f"step takes a closure): it cannot accumulate batches or use 16-mixed's GradScaler")
        self.scheduler, self.scheduler_interval = self.task.build_scheduler(
            cfg.scheduler, self.optimizer, -(-self.steps_per_epoch // cfg.accumulate), cfg.epochs, self.mode,
            cfg.scheduler_interval)
        if cfg.precision == "16-mixed":
            self.scaler = torch.amp.GradScaler(self.device.type)
        self.data_gen.manual_seed(cfg.seed)
        self.state.data_order = self.data_gen.get_state()
        if cfg.resume:
            self.load(cfg.resume, resume=True)
        self._arm_guard()
        self.window = MetricWindow(self.device)
        self.net = self.model
        if self.dist:
            from torch.nn.parallel import DistributedDataParallel

            distributed.init(self.dist, self.device)
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        if cfg.compile:
            # On CUDA, whole forward and backward passes replay as CUDA graphs: a small model's step
            # is bound by kernel launches there. Accumulated gradients would outlive a graph's
            # memory and DDP has its own hooks, so those compile without graphs.
            self._graphs = self.device.type == "cuda" and cfg.accumulate == 1 and not self.dist
            self.net = torch.compile(self.net, mode="reduce-overhead" if self._graphs else None)  # type: ignore[assignment]
        if cfg.cuda_graphs:
            reason = graphstep.refusal(self)
            if reason:
                raise UsageError(reason)
            self.whole_step = WholeStep(self)

    def _check_on_a_batch(self) -> None:
        """Run the model on two real samples: refuse ill-posed targets, and take the summary there."""
        batch = self.data.peek(2)
        inputs, targets = self.task.split(batch)
        was_training = self.model.training
        self.model.eval()  # BatchNorm and dropout must not change state or draw random numbers here
        try:
            with torch.no_grad(), self._autocast(), warnings.catch_warnings(record=True) as early:
                warnings.simplefilter("always")  # recorded as events when the run starts (shown, not refused)
                try:
                    outputs = forward(self.model, inputs)
                except TypeError as exc:
                    hint = _split_hint(batch, self.task, exc)
                    if hint is None:
                        raise
                    raise hint from exc
            self._early_warnings = list(early)
            try:
                self.task.check(outputs, targets)
            except UsageError as exc:
                raise _for_the_cli(exc, self.config) from None
            self.task.check_loss(outputs, targets)
            self.task.perplexity = language_model(self.task, inputs, outputs, targets)
            try:
                with warnings.catch_warnings():  # the model runs again: what it warns was recorded above
                    warnings.simplefilter("ignore")
                    self.summary = models.summarize(self.model, inputs).to_dict()
            except Exception as exc:  # a summary is a nicety: say why there is none and train anyway
                self.summary_error = first_line(exc, limit=None, named=True)[:200]
        finally:
            self.model.train(was_training)

    def _arm_guard(self) -> None:
        """Device tensors of the divergence guard, on the run's device (setup, a device move)."""
        self.found_inf = torch.zeros((), device=self.device)
        self._one = torch.ones((), device=self.device)
        self._attach_guard()

    def _attach_guard(self) -> None:
        """The fused optimizer step reads the guard's flag as an attribute: set it (again after a load)."""
        if self.fused and self.scaler is None:
            self.optimizer.found_inf = self.found_inf  # type: ignore[attr-defined]

    def _autocast(self):
        # A CUDA graph must not capture autocast's cache of casted weights (torch.cuda.graphs' notes).
        return autocast(self.device, self.config.precision, cache=self.whole_step is None)

    # ----------------------------------------------------------------- loop
    def run(self) -> Result:
        """Train to the configured number of epochs, or until stopped. Never raises: a crash in
        user code or torch ends the run ``failed`` with its traceback in an ``error`` event."""
        with without_cuda_home_note(self.config.compile):
            return self._train()

    def _train(self) -> Result:
        cfg, st = self.config, self.state
        self.emit_event("start", epochs=cfg.epochs, steps_per_epoch=self.steps_per_epoch,
                         total_steps=self.steps_per_epoch * cfg.epochs, device=str(self.device),
                         start_epoch=st.epoch, start_batch=st.batch, lr=self.lr, resumed_from=cfg.resume or None,
                         summary=self.summary,
                         summary_error=self.summary_error or None, dataset=cfg.dataset, model=cfg.model,
                         samples=self.data.n_train, batch_size=cfg.batch_size, monitor=self.monitor, mode=self.mode,
                         classification=self.task.classification, metrics=list(self.task.metrics),
                         classes=self.task.classes, scheduler=cfg.scheduler,
                         scheduler_interval=self.scheduler_interval if self.scheduler is not None else None,
                         threads=self._threads())
        # A CPU run on a box other processes take says so when its throughput collapses (cpuload.py).
        self.slow_watch = cpuload.SlowWatch() if not self.dist else None
        for notice in self.notices:
            self.emit_event("notice", reason=notice)
        for early in self._early_warnings:  # the model's, on the pre-flight batch
            self._warning(early.category, early.message, early.filename, early.lineno)
        shown = warnings.showwarning
        warnings.showwarning = self._warned(shown, threading.current_thread())
        try:  # from the swap on: the finally below puts showwarning back, whatever ends the run
            if self._inherited_best is not None and self._is_main:
                self._copy_inherited_best()
            if cfg.resume and self._is_main:
                self._settle_best()
            while st.epoch < cfg.epochs and not self.stop_reason:
                self.train_epoch()
                if self.stop_reason:
                    break
                self.end_epoch()
        except KeyboardInterrupt:
            self.stop_reason = "interrupt"
        except Exception as exc:  # user code or torch: record where, keep what was saved
            self.error = exc
            reason = f"{type(exc).__name__}: {exc}"
            if cfg.compile and compiler_error(exc):
                reason = f"--compile failed ({first_line(exc, limit=None, named=True)}); run without --compile"
            self.emit_event("error", ok=False, reason=reason, traceback=traceback.format_exc())
            self.emit_event("end", status="failed", best_val_acc=st.best_val_acc, epochs_done=st.epoch)
            self._leave_group()
            return self._result("failed", reason)
        finally:
            warnings.showwarning = shown
        if self.stop_reason == "nonfinite":
            # No save here: the guard kept the weights finite, not sane (an LR of 1e30 leaves 1e30s),
            # and the message points at last.pt of the last epoch end, which must stay that.
            self.emit_event("end", status="failed", best_val_acc=st.best_val_acc, epochs_done=st.epoch)
            return self._result("failed", self.nonfinite_message)
        status = "done"
        if self.stop_reason and self.stop_reason != "early_stop":
            self._save_quietly("last.pt")
            status = "interrupted" if self.stop_reason in records.EXIT_SIGNALS else "stopped"
            self.emit_event("stop", ok=True, reason=self.stop_reason, cmd_id=self.stop_id)
        extra = {}
        if self.dist:
            extra = {"world_size": self.dist.world, "ranks_in_sync": distributed.ranks_in_sync(self.model)}
            self._leave_group()
        self.emit_event("end", status=status, best_val_acc=st.best_val_acc, best=st.best, monitor=self.monitor,
                         epochs_done=st.epoch, **extra)
        return self._result(status)

    def _warned(self, shown: Callable, thread: threading.Thread) -> Callable:
        """warnings.showwarning while training: a warning raised in this run's thread (by the model,
        the loss, torch) becomes a ``warning`` event, once per distinct message: in metrics.jsonl, on
        the dashboard and in the progress lines. Other threads' warnings are shown as before."""

        def show(message, category, filename, lineno, file=None, line=None):
            if threading.current_thread() is not thread:
                return shown(message, category, filename, lineno, file, line)
            self._warning(category, message, filename, lineno)
            return None

        return show

    def _warning(self, category: type, message: Any, filename: str, lineno: int) -> None:
        """A ``warning`` event, unless this message was recorded already (or MAX_WARNINGS were)."""
        text = " ".join(str(message).split())[:500]
        key = f"{category.__name__}: {text}"
        if key in self._warnings_seen or len(self._warnings_seen) >= MAX_WARNINGS:
            return
        self._warnings_seen.add(key)
        self.emit_event("warning", category=category.__name__, message=text, source=f"{filename}:{lineno}")

    def _copy_inherited_best(self) -> None:
        """The resumed run's best.pt into this run directory (see _inherit_best)."""
        path = self.checkpoint_dir / "best.pt"
        payload, self._inherited_best = self._inherited_best, None
        try:
            checkpoints.save_checkpoint(path, payload)  # type: ignore[arg-type]
        except OSError as exc:
            self.emit_event("save", ok=False, reason=f"copying the resumed run's best.pt failed: {exc}", auto=True)
        else:
            self.emit_event("save", ok=True, path=str(path), auto=True, best_epoch=self.state.best_epoch)

    def _leave_group(self) -> None:
        """Leave the process group and free the DDP wrapper here, in this thread, while Python runs:
        its reducer holds the process group, whose destructor must not run at interpreter shutdown."""
        if self.dist:
            distributed.close()
            self.net = self.model

    def _result(self, status: str, message: str = "") -> Result:
        st = self.state
        found = {Path(p).name: p for p in list_checkpoints(self.config.run_dir)}
        return Result(status, st.epoch, st.step, st.best_val_acc, message, best=st.best, monitor=self.monitor,
                      best_epoch=st.best_epoch, run_dir=self.config.run_dir, best_checkpoint=found.get("best.pt"),
                      last_checkpoint=found.get("last.pt"), history=list(self.history),
                      stop_reason=self.stop_reason, error=self.error)

    def train_epoch(self) -> None:
        """The batches of one epoch (from ``state.batch`` on, after a mid-epoch resume)."""
        cfg, st = self.config, self.state
        # Each epoch's data order comes from its own generator state, saved in checkpoints, so a
        # mid-epoch resume replays the same order.
        if st.data_order is not None:
            self.data_gen.set_state(st.data_order)
        if cfg.shuffle:
            order = torch.randperm(self.data.n_train, generator=self.data_gen)
        else:
            order = torch.arange(self.data.n_train)
        if self.dist:
            order = distributed.shard(order, self.dist)
        batches = None  # made where the usual path starts (again, after CUDA graphs end mid-epoch)
        self.model.train()
        self._epoch_started, self._paused_seconds = time.monotonic(), 0.0
        while st.batch < self.steps_per_epoch:
            if st.batch % cfg.accumulate == 0:  # commands act between optimizer steps
                self.poll_commands()
                if self.stop_reason:
                    return
            if self.whole_step is not None:  # forward to optimizer step as one CUDA graph replay
                batches = None
                self._whole_step(order)
            else:
                if batches is None:
                    batches = self.data.train_batches(order, st.batch, cfg.batch_size, self.steps_per_epoch)
                self.training_step(next(batches))
            st.batch += 1
            st.step += 1
            if st.step == 1 or st.step % cfg.hist_every == 0 or st.batch == self.steps_per_epoch:
                self._hist_due = True  # drawn after the optimizer step, while gradients exist
            # A record at least once a second, except in DDP, where every rank must log at the same step.
            late = not self.dist and self.window.elapsed > LOG_MAX_INTERVAL_S
            record = st.step % cfg.log_every == 0 or late
            if st.batch % cfg.accumulate == 0 or st.batch == self.steps_per_epoch:
                self.optimizer_step(measure=record or st.batch == self.steps_per_epoch)
            if record:
                self._report_step()

    def training_step(self, batch: Any) -> None:
        """Forward, loss and backward of one batch; metrics added to the window on the device."""
        inputs, targets = self.task.split(batch)
        if self._graphs:
            torch.compiler.cudagraph_mark_step_begin()  # the last step's graph outputs are consumed
        with self._autocast():
            outputs = forward(self.net, inputs)
            loss = self.task.loss(outputs, targets)
        scaled = loss / self.config.accumulate if self.config.accumulate > 1 else loss
        (self.scaler.scale(scaled) if self.scaler else scaled).backward()
        correct = None
        if self.task.classification:
            correct = (primary(outputs).argmax(dim=1) == targets).sum()
        self.window.add(loss, batch_size_of(targets), correct)
        if self.closure:
            self._closure_batch = (inputs, targets, loss.detach())

    def _whole_step(self, order: torch.Tensor) -> None:
        """One batch through the CUDA graph (graphstep.py); a failed capture is said once and the
        run goes on the usual path."""
        assert self.whole_step is not None
        ws = self.whole_step
        ws.run(order, self.state.batch)
        if ws.failed:  # this batch's forward and backward are done: optimizer_step goes on as usual
            self.whole_step = None
            self.graphs_failed = ws.failed
            self.emit_event("notice", reason=f"--cuda-graphs: {ws.failed}; training goes on without CUDA graphs")
        elif ws.captures == 1 and ws.replays == 1:
            self.emit_event("notice", reason=f"the training step replays as one CUDA graph from step "
                                             f"{self.state.step + 1} ({graphstep.WARMUP_STEPS} steps warmed up first)")

    def optimizer_step(self, measure: bool = False) -> None:
        """Guard, clip, step (step_device), then histograms and the schedule. No host sync: the
        guard's flag stays on the device. ``measure``: keep the gradient norm (on the device) for the
        next step record. With CUDA graphs the graph did the device part already."""
        if self.whole_step is None:
            self.step_device(measure)
        if self._hist_due and self._is_main:
            self._report_histograms()
        self._hist_due = False
        if self.whole_step is None:  # a graph's gradients are static: its backward overwrites them
            self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None and self.scheduler_interval == "step":
            schedule.step(self.scheduler)

    def step_device(self, measure: bool = False) -> None:
        """The device part of an optimizer step: guard, clip, step, the guard's flag into the window.
        Device ops only (no host sync), so a CUDA graph can capture it (graphstep.py)."""
        opt, cfg = self.optimizer, self.config
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if self.scaler is not None:
            # Mixed fp16: the GradScaler owns overflow handling (inf gradients are expected there
            # and skip the step); the guard watches the loss alone.
            self.scaler.unscale_(opt)
        if measure:
            self.grad_norm_tensor = grad_norm(grads)  # before the guard and clipping: what the gradients were
        if self.scaler is None and grads:
            # The divergence guard (AMP's mechanism): one fused check of every gradient sets found_inf
            # on the device; the fused optimizer skips its update when it is set; others get zeroed
            # gradients. Non-finite values never reach the weights; the flag is read with the next record.
            self.found_inf.zero_()
            # Complex gradients are checked and zeroed as their real and imaginary parts (views).
            real = [torch.view_as_real(g) if g.is_complex() else g for g in grads]
            torch._amp_foreach_non_finite_check_and_unscale_(real, self.found_inf, self._one)
            if not self.fused:
                keep = 1 - self.found_inf
                for g in real:
                    g.nan_to_num_(0.0, 0.0, 0.0).mul_(keep)
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip, foreach=True)
        if self.scaler is not None:
            self.scaler.step(opt)
            self.scaler.update()
        elif self.closure:
            self._closure_calls = 0
            opt.step(self._evaluate_again)  # type: ignore[arg-type]  # LBFGS takes a tensor too
        else:
            opt.step()
        self.window.flag(self.found_inf)

    def _evaluate_again(self) -> torch.Tensor:
        """The closure of an optimizer that evaluates the loss several times a step (LBFGS), as
        Lightning passes one: its first call returns the loss and gradients training_step just
        computed; later ones recompute both on the same batch at the optimizer's trial weights."""
        assert self._closure_batch is not None  # training_step keeps it for a closure optimizer
        inputs, targets, loss = self._closure_batch
        if self._closure_calls:
            self.optimizer.zero_grad(set_to_none=True)
            if self._graphs:
                torch.compiler.cudagraph_mark_step_begin()
            with self._autocast():
                loss = self.task.loss(forward(self.net, inputs), targets)
            loss.backward()
            loss = loss.detach()
        self._closure_calls += 1
        return loss

    def end_epoch(self) -> None:
        """Validate, write the epoch's records, step an epoch schedule, save last.pt (and best.pt),
        early-stop."""
        st, cfg = self.state, self.config
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the epoch's time is the device's, not the launches'
        train_seconds = time.monotonic() - self._epoch_started - self._paused_seconds
        if self.window.count:
            self._report_step()
        train_loss, train_acc = self.window.epoch_means()
        self.window.reset_epoch()
        lr = self.lr
        val, confusion, wrong = self.evaluate()
        if not math.isfinite(val["val_loss"]) and not self._weights_finite():
            # The guard watches gradients and the training loss; an update can still overflow the
            # weights on the last step of an epoch (an LR of 1e308): that is divergence too.
            self._nonfinite(val["val_loss"], math.nan)
        st.epoch += 1
        st.batch = 0
        st.data_order = self.data_gen.get_state()
        improved = self.monitoring.observe(st, val)
        train = {"train_loss": train_loss, **({"train_acc": train_acc} if self.task.classification else {})}
        self._report_epoch(records.epoch_record(
            epoch=st.epoch, step=st.step, **train, **val, lr=lr, train_seconds=round(train_seconds, 3),
            paused_seconds=round(self._paused_seconds, 3), best=improved, monitor=self.monitor), confusion, wrong)
        if self.scheduler is not None and self.scheduler_interval == "epoch":
            schedule.step(self.scheduler, self.monitoring.value(val))
        self._save_quietly("last.pt")
        if improved:
            self._save_quietly("best.pt")
        if self.monitoring.should_stop(st, cfg.epochs):
            self.emit_event("early_stop", ok=True, monitor=self.monitor, best=st.best, best_epoch=st.best_epoch,
                            patience=self.monitoring.patience)
            self.stop_reason = "early_stop"

    def evaluate(self) -> tuple[dict[str, Any], list[list[int]] | None, list[tuple[int, int, int, float]]]:
        """Validation over the whole split: ({val_loss, val_acc, val_<metric>...}, confusion, wrong samples)
        (evaluation.evaluate)."""
        self.model.eval()
        try:
            return evaluation.evaluate(self.model, self.data, self.task, self.device, self._autocast,
                                       self.config.val_batch_size or self.config.batch_size)
        finally:
            self.model.train()

    # ----------------------------------------------------------------- records
    @property
    def lr(self) -> float:
        """The first parameter group's learning rate."""
        return float(self.optimizer.param_groups[0]["lr"])

    @staticmethod
    def _threads() -> dict:
        """The start event's ``threads``: torch's CPU threads, their wait policy and why (cpuload.py)."""
        choice = cpuload.chosen()
        return {**(choice.to_record() if choice else {}), "torch_threads": torch.get_num_threads(),
                "wait_policy": os.environ.get("OMP_WAIT_POLICY", "")}

    def epoch_now(self) -> int:
        """The 1-based epoch records belong to (records.py): in progress, or just ended between epochs."""
        st = self.state
        return min(st.epoch + 1, self.config.epochs) if st.batch or st.epoch == 0 else max(st.epoch, 1)

    def _report_step(self) -> None:
        norm = self.grad_norm_tensor
        if norm is None:  # mid-accumulation: the gradients gathered so far
            norm = grad_norm([p.grad for p in self.model.parameters() if p.grad is not None])
        self.grad_norm_tensor = None
        all_sum = distributed.window_sum(self.dist) if self.dist else None
        loss_sum, correct, bad, norm_read, count = self.window.read(norm, all_sum)
        count = max(count, 1)
        if bad or not math.isfinite(loss_sum):
            self._nonfinite(loss_sum / count, norm_read)
        extra = {"acc": correct / count} if self.task.classification else {}
        self.report(dict(records.step_record(step=self.state.step, epoch=self.state.epoch + 1, batch=self.state.batch,
                                             loss=loss_sum / count, **extra, lr=self.lr, grad_norm=norm_read,
                                             samples_per_s=round(count / self.window.elapsed, 1))))
        if self.slow_watch is not None and self.device.type == "cpu":
            said = self.slow_watch.observe(count / self.window.elapsed)
            if said:
                self.emit_event("slow", **said)
        self.window.reset()

    def _report_epoch(self, record: records.EpochRecord, confusion: list[list[int]] | None,
                      wrong: list[tuple[int, int, int, float]]) -> None:
        """An epoch's record (kept in the history), its confusion matrix and its wrong samples."""
        st = self.state
        self.history.append(dict(record))
        self.report(dict(record))
        if confusion is not None:
            self.report(dict(records.confusion_record(st.epoch, st.step, self._class_names(len(confusion)), confusion)))
        if wrong:
            self._report_samples(wrong)

    def _report_histograms(self) -> None:
        """Per-parameter weight and gradient histograms (one transfer; see evaluation.histograms)."""
        layers, self._hist_next = evaluation.histograms(self.model, self._hist_next, stop=self._stop_waiting)
        if layers:
            self.report(dict(records.hist_record(self.state.step, self.state.epoch + 1, layers)))

    def _stop_waiting(self) -> bool:
        """Whether a stop is requested or waits in the command queue (asked between slow pieces of work)."""
        return bool(self.stop_reason) or any(isinstance(c, Stop) for c in list(self.commands.queue))

    def _report_samples(self, wrong: list[tuple[int, int, int, float]]) -> None:
        """The most confidently wrong validation images of the epoch (image data only)."""
        images = self.data.val_images([i for i, *_ in wrong]) if hasattr(self.data, "val_images") else None
        if images is None:
            return
        classes = self._class_names(len(self.task.classes) or 0)
        self.report(dict(records.samples_record(self.state.epoch, self.state.step, classes,
                                                evaluation.sample_items(wrong, images))))

    def _class_names(self, n: int) -> list[str]:
        names = list(self.task.classes)
        width = max(n, len(names))
        return [names[i] if i < len(names) else str(i) for i in range(width)]

    def _weights_finite(self) -> bool:
        """Whether every floating-point weight is finite (one sync; only asked after a non-finite loss)."""
        floats = [p.detach() for p in self.model.parameters() if p.is_floating_point()]
        return not floats or bool(torch.stack([torch.isfinite(p).all() for p in floats]).all())

    def _nonfinite(self, loss: float, grad_norm: float) -> None:
        """The divergence guard: stop (headless) or pause (dashboard), and say what to do."""
        stop = self.config.on_nonfinite == "stop"
        self.nonfinite_message = (
            f"loss or gradient became non-finite before step {self.state.step} (loss {loss}, grad norm {grad_norm}); "
            + ("lower the learning rate or resume from checkpoints/last.pt (saved before it)"
               if (self.checkpoint_dir / "last.pt").exists() else "lower the learning rate and start again"))
        self.emit_event("nonfinite", ok=False, reason=self.nonfinite_message, loss=loss, grad_norm=grad_norm,
                         action="stopped" if stop else "paused")
        if stop:
            self.stop_reason = "nonfinite"
        else:
            self.paused = True

    def emit_event(self, name: records.EventName, **details: Any) -> None:
        """Report an event record at the current step and epoch (records.event_record)."""
        self.report(dict(records.event_record(name, self.state.step, self.epoch_now(), **details)))

    # ----------------------------------------------------------------- commands
    def poll_commands(self) -> None:
        """Apply queued commands (steering.py); while paused, wait for them here."""
        self._paused_seconds += steering.poll(self)

    def apply(self, cmd: Command) -> None:
        """Apply one command now, answered by an event (steering.py)."""
        steering.apply(self, cmd)

    def pause(self) -> bool:
        """Stop stepping until :meth:`resume` (commands still apply); False if already paused."""
        was = self.paused
        self.paused = True
        return not was

    def resume(self) -> bool:
        """Go on after :meth:`pause`; False if it was not paused."""
        was = self.paused
        self.paused = False
        self.window.started = time.monotonic()  # a pause must not count against samples/s
        return was

    def request_stop(self, reason: str = "stop", cmd_id: int = 0) -> None:
        """End the run at this step boundary (last.pt is written); ``cmd_id`` goes in the stop event."""
        self.stop_reason = reason or "stop"
        self.stop_id = cmd_id
        self.paused = False

    def set_lr(self, lr: float) -> None:
        """Set the learning rate (UsageError unless a finite number above 0); a schedule goes on
        from the new value (schedule.set_lr), so a person's change is not undone at its next step."""
        schedule.set_lr(self.optimizer, self.scheduler, check_lr(lr))

    def move_to(self, name: str) -> torch.device:
        """Move model, optimizer state, data and metric window to device ``name``. UsageError when it
        cannot: a distributed or 16-mixed run, a device not here, the device in use."""
        if self.dist:
            raise UsageError("a distributed run cannot switch device")
        if self.scaler is not None:
            raise UsageError("a 16-mixed run stays on its GPU (its GradScaler is per device)")
        device = resolve_device(name)
        if device == self.device:
            raise UsageError(f"already on {self.device}")
        if self.whole_step is not None:
            self.whole_step.arm()  # the graph's static gradients stay behind
        opt_state = self.optimizer.state_dict()
        self.model.to(device)
        # Round-tripping the state dict moves every optimizer tensor to its parameter's device.
        self.optimizer.load_state_dict(opt_state)
        graphstep.set_capturable(self.optimizer, self.capturable and device.type == "cuda")
        self.data.place(device)
        self.device = device
        self.window.to(device)
        self._arm_guard()
        if self.config.cuda_graphs:
            graphs = device.type == "cuda" and graphstep.resident(self.data, device) and not self.graphs_failed
            self.whole_step = WholeStep(self) if graphs else None
            if device.type != "cuda":
                self.emit_event("notice", reason=f"--cuda-graphs: steps on {device} run without CUDA graphs "
                                                 f"(they come back with a move to a GPU)")
        return device

    # ----------------------------------------------------------------- checkpoints
    def parts(self) -> checkpoints.Parts:
        """The pieces a checkpoint holds: the live objects, which checkpoints.restore changes in place."""
        return checkpoints.Parts(self.model, self.optimizer, self.state, self.scheduler, self.scaler,
                                 self.config.to_dict(), self.monitor)

    def save(self, name: str) -> Path:
        """Write checkpoints/NAME atomically; OSError when it cannot be written or the weights are
        not finite (a diverged model must never overwrite a good checkpoint)."""
        payload = checkpoints.capture(self.parts())
        floats = [t for t in payload["model"].values() if t.is_floating_point()]
        if floats and not bool(torch.stack([torch.isfinite(t).all() for t in floats]).all()):
            raise OSError("the weights are not finite (diverged); the previous checkpoint is kept")
        path = self.checkpoint_dir / name
        if self._is_main:  # every rank holds the same state; rank 0 alone writes it
            checkpoints.save_checkpoint(path, payload)
        return path

    def _save_quietly(self, name: str) -> None:
        """Automatic saves (epoch end, stop): a failure is reported and training goes on. Out of file
        descriptors (EMFILE, ENFILE: something else holds them for a while) is reported and retried
        a few times, a second apart at most; the next epoch's save tries again anyway."""
        for wait in SAVE_RETRY_WAITS_S:
            try:
                path = self.save(name)
            except OSError as exc:
                self.emit_event("save", ok=False, reason=f"saving {name} failed: {exc}", auto=True)
                if exc.errno not in (errno.EMFILE, errno.ENFILE) or wait is None:
                    return
                time.sleep(wait)
            else:
                self.emit_event("save", ok=True, path=str(path), auto=True)
                return

    def _settle_best(self) -> None:
        """After ``--resume``: the best epoch the checkpoint names must be this run's best.pt. A kill
        during the best.pt save leaves last.pt naming that epoch and no best.pt (or an older one),
        and only a later, better epoch would write it again. When the state just loaded is that
        epoch's end, best.pt is written from it; otherwise the claim is dropped, said in an event,
        and the next epoch becomes the best so far."""
        st = self.state
        if not st.best_epoch:
            return
        path = self.checkpoint_dir / "best.pt"
        try:
            found = checkpoints.load_checkpoint(path, max_bytes=checkpoints.size_bound(self.model)).get("epoch")
        except CheckpointError:
            found = None
        if found == st.best_epoch:
            return
        if st.epoch == st.best_epoch and st.batch == 0:
            self._save_quietly("best.pt")
            return
        what = "is missing or unreadable" if found is None else f"holds epoch {found}"
        self.emit_event("save", ok=False, auto=True,
                        reason=f"best.pt of epoch {st.best_epoch} {what} (a kill during its save?) and cannot be "
                               f"written from this checkpoint; the best so far starts again with the next epoch")
        st.best, st.best_val_acc, st.best_epoch, st.stale_epochs = None, None, 0, 0

    def load(self, path: str | Path, resume: bool = False) -> int:
        """Load a checkpoint into this run and return its step: check it, back up the live state,
        apply it, roll back on any failure, re-arm the guard.

        ``resume``: also the position, best values, schedule and random states (``--resume``);
        otherwise the weights and optimizer moments, and the LR in use goes on. Refused with one
        line (CheckpointError; UsageError for a checkpoint --resume cannot continue), whatever went
        wrong, and the run is then exactly as it was.
        """
        lr = self.lr
        try:  # the check: nothing live changes here
            ckpt = checkpoints.load_checkpoint(path, map_location=self.device,
                                               max_bytes=checkpoints.size_bound(self.model))
            try:
                checkpoints.check_payload(path, ckpt, self.model, self.optimizer)
            except CheckpointError as exc:
                raise _other_optimizer(path, ckpt, self.config, exc) from None
            if resume:
                checkpoints.check_resume(path, ckpt, self.config.epochs, self.config.batch_size)
        except UsageError:
            raise
        except Exception as exc:  # anything a foreign file provokes is a refusal, never a crash
            raise _refusal(path, exc) from exc
        parts = self.parts()
        backup = checkpoints.snapshot(parts)  # copies: a load that fails half-way puts these back
        try:
            checkpoints.restore(ckpt, parts, resume, path)
            if not resume:  # a load brings weights and moments back, not the LR a person set since
                schedule.set_lr(self.optimizer, self.scheduler, lr)
            elif self.config.lr != (ckpt.get("config") or {}).get("lr", self.config.lr):
                schedule.set_lr(self.optimizer, self.scheduler, self.config.lr)  # --lr given anew on resume
        except BaseException as exc:
            checkpoints.restore(backup, parts, resume)
            if isinstance(exc, UsageError) or not isinstance(exc, Exception):
                raise
            raise _refusal(path, exc) from exc
        finally:
            # A loaded optimizer state brings the capturable flag of the machine that saved it.
            graphstep.set_capturable(self.optimizer, self.capturable and self.device.type == "cuda")
            self._attach_guard()
            if self.whole_step is not None:
                self.whole_step.arm()  # new optimizer tensors: the next steps capture anew
        if resume:
            self._inherit_best(Path(path))
        return int(ckpt["step"])

    def _inherit_best(self, resumed: Path) -> None:
        """Resuming into another run directory: the best value and epoch come with the checkpoint, so
        its run's best.pt comes too (copied in when the run starts), and Result.best_checkpoint and
        restore_best mean that epoch. Without that file (or one of another epoch) the best starts afresh."""
        st = self.state
        if st.best is None or resumed.parent.resolve() == self.checkpoint_dir.resolve():
            return
        best = resumed.parent / "best.pt"
        try:
            payload = checkpoints.load_checkpoint(best, max_bytes=checkpoints.size_bound(self.model))
            found = payload.get("best_epoch") == st.best_epoch and payload.get("best") == st.best
        except Exception:  # no best.pt there, or not a readable one: nothing to inherit
            found = False
        if found:
            self._inherited_best = payload
        else:
            st.best, st.best_epoch = None, 0


def _has_batchnorm(model: torch.nn.Module) -> bool:
    """Whether any layer normalises by batch statistics while training (BatchNorm1d/2d/3d, SyncBatchNorm, lazy ones)."""
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _split_hint(batch: Any, task: Task, exc: TypeError) -> UsageError | None:
    """The model's TypeError on a sample of three or more elements that the default batch_fn split
    as (inputs, targets, *extra): a model of several inputs needs batch_fn to say which are which."""
    if task.batch_fn is not None or not isinstance(batch, (list, tuple)) or len(batch) < 3:
        return None
    return UsageError(
        f"the model failed on a sample of {len(batch)} elements taken as (inputs, targets, *extra): "
        f"{first_line(exc, named=True)}. For a model of several inputs, pass batch_fn= returning "
        f"(inputs, targets), e.g. batch_fn=lambda b: ((b[0], b[1]), b[2])")


CLI_LOSS = ("the CLI trains with cross-entropy over the data set's classes, so the model must return "
            "(N, classes) scores; for another loss, train it from Python with tuitrain.fit(model, data, loss_fn=...)")


def _for_the_cli(exc: UsageError, cfg: TrainConfig) -> UsageError:
    """A refusal that tells ``tuitrain.fit``'s user to pass loss_fn=, reworded for a
    ``--model file.py:NAME`` model on the command line, which has no such flag."""
    if not is_user_model(cfg.model) or "loss_fn=" not in str(exc):
        return exc
    text = re.sub(r"[.;]?\s*[Pp]ass loss_fn=.*$", "", str(exc), flags=re.S)
    reworded = type(exc)(f"{cfg.model}: {text}; {CLI_LOSS}")
    reworded.__cause__ = exc.__cause__
    return reworded


def _other_optimizer(path: str | Path, ckpt: dict, cfg: TrainConfig, exc: CheckpointError) -> CheckpointError:
    """A refused optimizer state, named: the checkpoint was trained with another optimizer than this
    run's (its state "lacks momentum" says nothing of that)."""
    saved = (ckpt.get("config") or {}).get("optimizer") if isinstance(ckpt.get("config"), dict) else None
    if "optimizer state" not in str(exc) or not isinstance(saved, str) or saved == cfg.optimizer:
        return exc
    again = f"--optimizer {saved}" if not saved.startswith("custom:") else f"the {saved[7:]} optimizer"
    return CheckpointError(f"checkpoint {path} was trained with optimizer {saved}, this run uses {cfg.optimizer}: "
                           f"its optimizer state does not fit; resume with {again}")


def needs_closure(optimizer: torch.optim.Optimizer) -> bool:
    """Whether the optimizer's ``step`` takes a required closure (LBFGS: it evaluates the loss
    several times a step)."""
    try:
        closure = inspect.signature(optimizer.step).parameters.get("closure")
    except (TypeError, ValueError):
        return False
    return closure is not None and closure.default is inspect.Parameter.empty


def _refusal(path: str | Path, exc: Exception) -> CheckpointError:
    """An unexpected failure of a load, as the one line that refuses it."""
    return CheckpointError(f"checkpoint {path} cannot be loaded ({first_line(exc, named=True)})")
