"""The training engine: a synchronous class that callers run in a thread.

A config goes in; records (plain dicts, the same as metrics.jsonl lines) come out through
``report``; commands come in through a queue and are applied between steps. Nothing here knows
about a UI. The hot loop keeps loss and accuracy on the device and reads them only at the logging
interval (one host sync per record, not per step).
"""

from __future__ import annotations

import copy
import math
import queue
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from tuitrain import checkpoints, data, distributed, models
from tuitrain.commands import Load, Pause, Resume, Save, SetDevice, SetLR, Stop
from tuitrain.config import TrainConfig, check_lr
from tuitrain.errors import CheckpointError, UsageError
from tuitrain.runlog import list_checkpoints

Report = Callable[[dict], None]
HIST_BINS = 32
EVAL_BATCH = 1000
PAUSE_POLL_S = 0.5
LOG_MAX_INTERVAL_S = 1.0


@dataclass(frozen=True)
class Result:
    """How a run ended: status is done, stopped, interrupted or failed."""

    status: str
    epochs_done: int
    step: int
    best_val_acc: float | None
    message: str = ""


def available_devices() -> list[str]:
    """Devices that exist here: cpu, then each CUDA GPU, then mps."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        found.append("mps")
    return found


def resolve_device(name: str) -> torch.device:
    """auto picks CUDA, then MPS, then CPU; a device that does not exist is a UsageError."""
    present = available_devices()
    if name == "auto":
        return torch.device(next((d for d in present if d != "cpu"), "cpu"))
    wanted = "cuda:0" if name == "cuda" else name
    if wanted not in present:
        raise UsageError(f"device {name} is not available here (available: {', '.join(present)})")
    return torch.device(wanted)


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    """adam, adamw or sgd (momentum 0.9), on the fused implementation (one kernel for all
    parameters: on 2 CPU cores about 10% more samples/s than foreach for the notes' cnn)."""
    params = list(params)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, fused=True)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, fused=True)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, fused=True)
    raise UsageError(f"unknown optimizer {name!r}")


class Engine:
    """Trains one run. ``setup()`` loads everything (UsageError on bad input); ``run()`` trains."""

    def __init__(self, config: TrainConfig, report: Report | None = None, commands: queue.Queue | None = None,
                 model: torch.nn.Module | None = None, dataset: data.UserData | None = None):
        self.config = config
        self._given_model, self._given_data = model, dataset  # tuitrain.fit: the user's own
        self.dist = distributed.from_env()  # None unless started by torchrun with several processes
        if self.dist and not self.dist.is_main:
            self.report = lambda record: None  # rank 0 alone reports and writes
        self.report: Report = report or (lambda record: None)
        self.commands: queue.Queue = commands if commands is not None else queue.Queue()
        self.checkpoint_dir = Path(config.run_dir) / "checkpoints"
        self.epoch = 0  # completed epochs
        self.batch = 0  # next batch within the current epoch
        self.step = 0
        self.best_val_acc: float | None = None
        self.paused = False
        self._stop_reason = ""
        self._stop_id = 0
        self._nonfinite_message = ""
        self._epoch_loss_sum = self._epoch_correct = self._epoch_count = 0
        self._epoch_seconds = 0.0

    # ----------------------------------------------------------------- setup
    def setup(self) -> None:
        """Resolve the device, load data, build the model and optimizer, apply --resume."""
        cfg = self.config
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        self.device = resolve_device(cfg.device)
        if self.dist and self.device.type == "cuda":
            self.device = torch.device(f"cuda:{self.dist.local_rank}")
        self.data = self._given_data or data.load(cfg.dataset, cfg.data_dir, cfg.limit)
        self.model = self._given_model or models.build_model(cfg.model, self.data.shape, len(self.data.classes))
        self.summary = models.summarize(copy.deepcopy(self.model), self.data.shape)
        self.optimizer = make_optimizer(cfg.optimizer, self.model.parameters(), cfg.lr)
        self.data_gen = torch.Generator().manual_seed(cfg.seed)
        self.epoch_gen_state = self.data_gen.get_state()
        if cfg.resume:
            self._resume(cfg.resume)
        self._place(self.device)
        per_rank = self.data.n_train // self.dist.world if self.dist else self.data.n_train
        self.steps_per_epoch = math.ceil(per_rank / cfg.batch_size)
        self.net = self.model  # what the loop calls; DistributedDataParallel around it in a DDP run
        if self.dist:
            from torch.nn.parallel import DistributedDataParallel

            distributed.init(self.dist, self.device)
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)

    def _resume(self, path: str) -> None:
        ckpt = checkpoints.load_checkpoint(path, max_bytes=checkpoints.size_bound(self.model))
        checkpoints.check_payload(path, ckpt, self.model, self.optimizer)
        epoch, batch = int(ckpt["epoch"]), int(ckpt.get("batch", 0))
        if epoch >= self.config.epochs and batch == 0:
            raise UsageError(f"checkpoint {path} has already trained {epoch} epochs; pass --epochs above {epoch}")
        self.model.load_state_dict(ckpt["model"])
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"checkpoint {path}: optimizer state does not fit ({exc})") from None
        if self.config.lr != ckpt["config"].get("lr", self.config.lr):
            self._set_lr(self.config.lr)
        self.epoch, self.batch, self.step = epoch, batch, int(ckpt["step"])
        self.best_val_acc = ckpt.get("best_val_acc")
        rng = ckpt.get("rng") or {}
        if "data" in rng:
            self.data_gen.set_state(rng["data"])
            self.epoch_gen_state = rng["data"]
        if "torch" in rng:
            checkpoints.set_rng_state(rng)

    def _place(self, device: torch.device) -> None:
        """Put model, optimizer state, data and normalisation on ``device``."""
        opt_state = self.optimizer.state_dict()
        self.model.to(device)
        # Round-tripping the state dict moves every optimizer tensor to its parameter's device
        # (and keeps Adam's step counters where the optimizer wants them).
        self.optimizer.load_state_dict(opt_state)
        self.data.place(device)
        self._found_inf = torch.zeros((), device=device)
        self._one = torch.ones((), device=device)
        self.optimizer.found_inf = self._found_inf  # read by the fused step: skip when set
        self.device = device

    # ----------------------------------------------------------------- loop
    def run(self) -> Result:
        """Train to the configured number of epochs, or until stopped. Never raises for a stop."""
        cfg = self.config
        self._event("start", epochs=cfg.epochs, steps_per_epoch=self.steps_per_epoch,
                    total_steps=self.steps_per_epoch * cfg.epochs, device=str(self.device),
                    start_epoch=self.epoch, lr=self.lr, resumed_from=cfg.resume or None,
                    summary=self.summary.to_dict(), dataset=cfg.dataset, model=cfg.model,
                    samples=self.data.n_train, batch_size=cfg.batch_size)
        self._reset_window()
        try:
            while self.epoch < cfg.epochs and not self._stop_reason:
                self._train_epoch()
                if self._stop_reason:
                    break
                self._end_epoch()
        except KeyboardInterrupt:
            self._stop_reason = "interrupt"
        except Exception as exc:  # a crash in user code or torch: record it, keep what was saved
            self._event("error", ok=False, reason=f"{type(exc).__name__}: {exc}")
            self._event("end", status="failed", best_val_acc=self.best_val_acc)
            return Result("failed", self.epoch, self.step, self.best_val_acc, f"{type(exc).__name__}: {exc}")
        if self._stop_reason == "nonfinite":
            self._save_quietly("last.pt")  # refused if the weights are not finite: the old file stays
            self._event("end", status="failed", best_val_acc=self.best_val_acc, epochs_done=self.epoch)
            return Result("failed", self.epoch, self.step, self.best_val_acc, self._nonfinite_message)
        if self._stop_reason:
            self._save_quietly("last.pt")
            status = "interrupted" if self._stop_reason == "interrupt" else "stopped"
            self._event("stop", ok=True, reason=self._stop_reason, cmd_id=self._stop_id)
        else:
            status = "done"
        extra = {}
        if self.dist:
            extra = {"world_size": self.dist.world, "ranks_in_sync": distributed.ranks_in_sync(self.model)}
            distributed.close()
        self._event("end", status=status, best_val_acc=self.best_val_acc, epochs_done=self.epoch, **extra)
        return Result(status, self.epoch, self.step, self.best_val_acc)

    def _train_epoch(self) -> None:
        cfg = self.config
        n = self.data.n_train
        # The data order of each epoch comes from a generator of its own; its state at the epoch's
        # start goes into checkpoints so a mid-epoch resume replays the same order.
        self.data_gen.set_state(self.epoch_gen_state)
        order = torch.randperm(n, generator=self.data_gen)
        if self.dist:
            order = distributed.shard(order, self.dist)
        batches = self.data.train_batches(order, self.batch, cfg.batch_size)
        self.model.train()
        epoch_started = time.monotonic()
        while self.batch < self.steps_per_epoch:
            self._poll_commands()
            if self._stop_reason:
                return
            x, y = next(batches)
            out = self.net(x)
            loss = F.cross_entropy(out, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # The divergence guard, without a host sync: one fused check of every gradient sets
            # found_inf on the device, and the fused optimizer skips the update when it is set (the
            # mechanism of AMP's GradScaler). Non-finite values never reach the weights; the flag is
            # read with the next step record, where the run stops or pauses.
            self._found_inf.zero_()
            torch._amp_foreach_non_finite_check_and_unscale_(self._grads(), self._found_inf, self._one)
            self.optimizer.step()
            self._acc_bad.add_(self._found_inf)  # a non-finite loss shows in _acc_loss itself
            self.batch += 1
            self.step += 1
            self._acc_loss.add_(loss.detach(), alpha=len(y))
            self._acc_correct += (out.argmax(dim=1) == y).sum()
            self._acc_count += len(y)
            if self.step % cfg.hist_every == 0 and self._is_main:
                self._report_histograms()
            # A record at least once a second, except in DDP, where every rank must log at the same step.
            late = not self.dist and time.monotonic() - self._window_start > LOG_MAX_INTERVAL_S
            if self.step % cfg.log_every == 0 or late:
                self._report_step()
        self._epoch_seconds = time.monotonic() - epoch_started

    def _end_epoch(self) -> None:
        if self._acc_count:
            self._report_step()
        train_loss, train_acc = self._epoch_totals()
        val_loss, val_acc = self.evaluate()
        self.epoch += 1
        self.batch = 0
        self.epoch_gen_state = self.data_gen.get_state()
        best = self.best_val_acc is None or val_acc > self.best_val_acc
        if best:
            self.best_val_acc = val_acc
        self.report({"type": "epoch", "epoch": self.epoch, "step": self.step, "train_loss": train_loss,
                     "train_acc": train_acc, "val_loss": val_loss, "val_acc": val_acc, "lr": self.lr,
                     "train_seconds": round(self._epoch_seconds, 3), "best": best, "time": time.time()})
        self._epoch_loss_sum = self._epoch_correct = self._epoch_count = 0
        self._save_quietly("last.pt")
        if best:
            self._save_quietly("best.pt")

    @torch.inference_mode()
    def evaluate(self) -> tuple[float, float]:
        """Validation loss and accuracy over the whole validation split."""
        self.model.eval()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        for x, y in self.data.val_batches(EVAL_BATCH):
            out = self.model(x)
            loss_sum += F.cross_entropy(out, y, reduction="sum")
            correct += (out.argmax(dim=1) == y).sum()
        self.model.train()
        n = self.data.n_val
        # One sync per evaluation, acceptable at an epoch end.
        loss_total, correct_total = torch.stack([loss_sum, correct.float()]).tolist()
        return loss_total / n, correct_total / n

    # ----------------------------------------------------------------- records
    @property
    def _is_main(self) -> bool:
        return self.dist is None or self.dist.is_main

    @property
    def lr(self) -> float:
        """The first parameter group's learning rate."""
        return float(self.optimizer.param_groups[0]["lr"])

    def _reset_window(self) -> None:
        self._acc_loss = torch.zeros((), device=self.device)
        self._acc_correct = torch.zeros((), device=self.device, dtype=torch.long)
        self._acc_count = 0
        self._acc_bad = torch.zeros((), device=self.device)
        self._window_start = time.monotonic()

    def _grads(self) -> list[torch.Tensor]:
        return [p.grad for p in self.model.parameters() if p.grad is not None]

    def _report_step(self) -> None:
        # The one host sync of a logging interval: loss, correct count, guard flag and grad norm together.
        window = torch.stack([self._acc_loss, self._acc_correct.float(), self._acc_bad.float(),
                              _total_norm(self._grads()).to(self.device)])
        count = self._acc_count
        if self.dist:
            window = distributed.all_sum(window)
            window[3] /= self.dist.world
            count *= self.dist.world
        loss_sum, correct, bad, grad_norm = window.tolist()
        if bad or not math.isfinite(loss_sum):
            self._nonfinite(loss_sum / max(count, 1), grad_norm)
        elapsed = max(time.monotonic() - self._window_start, 1e-9)
        self._epoch_loss_sum += loss_sum
        self._epoch_correct += correct
        self._epoch_count += count
        self.report({"type": "step", "step": self.step, "epoch": self.epoch + 1, "batch": self.batch,
                     "loss": loss_sum / count, "acc": correct / count, "lr": self.lr, "grad_norm": grad_norm,
                     "samples_per_s": round(count / elapsed, 1), "time": time.time()})
        self._reset_window()

    def _epoch_totals(self) -> tuple[float, float]:
        count = max(self._epoch_count, 1)
        return self._epoch_loss_sum / count, self._epoch_correct / count

    def _report_histograms(self) -> None:
        """Per-parameter weight and gradient histograms, computed on the device, one transfer."""
        names, parts = [], []
        for name, param in self.model.named_parameters():
            for kind, tensor in (("w", param.detach()), ("g", param.grad)):
                if tensor is None:
                    continue
                flat = tensor.detach().float().flatten()
                lo, hi = flat.min(), flat.max()
                counts = _histc(flat, lo, hi)
                stats = torch.stack([lo, hi, flat.norm(), flat.sum(), flat.square().sum()])
                parts.append(torch.cat([stats, counts]))
                names.append((name, kind))
        values = torch.stack(parts).tolist()  # one sync per histogram interval
        layers: dict[str, dict] = {}
        for (name, kind), row in zip(names, values, strict=True):
            entry = layers.setdefault(name, {"name": name, "w": None, "g": None})
            entry[kind] = {"lo": row[0], "hi": row[1], "norm": row[2], "sum": row[3], "sumsq": row[4],
                           "counts": [int(c) for c in row[5:]]}
        self.report({"type": "hist", "step": self.step, "epoch": self.epoch + 1, "time": time.time(),
                     "layers": list(layers.values())})

    def _nonfinite(self, loss: float, grad_norm: float) -> None:
        """The divergence guard: stop (headless) or pause (dashboard), and say what to do."""
        stop = self.config.on_nonfinite == "stop"
        self._nonfinite_message = (
            f"loss or gradient became non-finite before step {self.step} (loss {loss}, grad norm {grad_norm}); "
            f"lower the learning rate or resume from checkpoints/last.pt")
        self._event("nonfinite", ok=False, reason=self._nonfinite_message, loss=loss, grad_norm=grad_norm,
                    action="stopped" if stop else "paused")
        if stop:
            self._stop_reason = "nonfinite"
        else:
            self.paused = True
        self._acc_bad.zero_()

    def _event(self, name: str, **details) -> None:
        self.report({"type": "event", "event": name, "step": self.step, "epoch": self.epoch,
                     "time": time.time(), **details})

    # ----------------------------------------------------------------- commands
    def _poll_commands(self) -> None:
        """Apply queued commands; while paused, block on the queue (never spin)."""
        if self.dist:
            self._poll_commands_distributed()
            return
        while True:
            try:
                cmd = self.commands.get(timeout=PAUSE_POLL_S) if self.paused else self.commands.get_nowait()
            except queue.Empty:
                if self.paused:
                    continue
                return
            self._apply(cmd)
            if self._stop_reason:
                return

    def _poll_commands_distributed(self) -> None:
        """Rank 0's commands reach every rank at the same step: at logging steps, and while paused."""
        if self.step % self.config.log_every and not self.paused:
            return
        while True:
            pending = []
            if self.dist.is_main:
                try:
                    pending.append(self.commands.get(timeout=PAUSE_POLL_S) if self.paused else self.commands.get_nowait())
                    while True:
                        pending.append(self.commands.get_nowait())
                except queue.Empty:
                    pass
            for cmd in distributed.broadcast_commands(pending, self.dist):
                self._apply(cmd)
            if self._stop_reason or not self.paused:
                return

    def _apply(self, cmd) -> None:
        if isinstance(cmd, Pause):
            ok = not self.paused
            self.paused = True
            self._answer(cmd, "pause", ok, reason="" if ok else "already paused")
        elif isinstance(cmd, Resume):
            ok = self.paused
            self.paused = False
            self._window_start = time.monotonic()  # a pause must not count against samples/s
            self._answer(cmd, "resume", ok, reason="" if ok else "not paused")
        elif isinstance(cmd, SetLR):
            old = self.lr
            try:
                self._set_lr(check_lr(cmd.lr))
            except UsageError as exc:
                self._answer(cmd, "lr", False, reason=str(exc), old=old)
            else:
                self._answer(cmd, "lr", True, old=old, new=self.lr)
        elif isinstance(cmd, Save):
            self._command_save(cmd)
        elif isinstance(cmd, Load):
            self._command_load(cmd)
        elif isinstance(cmd, SetDevice):
            self._command_device(cmd)
        elif isinstance(cmd, Stop):
            self._stop_reason = cmd.reason or "stop"
            self._stop_id = cmd.id
            self.paused = False
        else:
            self._event("error", ok=False, reason=f"unknown command {cmd!r}")

    def _answer(self, cmd, name: str, ok: bool, reason: str = "", **details) -> None:
        extra = {"reason": reason} if reason else {}
        self._event(name, ok=ok, cmd_id=cmd.id, **extra, **details)

    def _set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _command_save(self, cmd: Save) -> None:
        name = cmd.name or f"step-{self.step}.pt"
        if not name.endswith(".pt") or "/" in name or name.startswith("."):
            self._answer(cmd, "save", False, reason=f"bad checkpoint name {name!r}")
            return
        try:
            path = self.save(name)
        except OSError as exc:
            self._answer(cmd, "save", False, reason=f"saving failed: {exc}")
        else:
            self._answer(cmd, "save", True, path=str(path))

    def _command_load(self, cmd: Load) -> None:
        found = list_checkpoints(self.config.run_dir)
        path = cmd.path or (found[0] if found else "")
        if not path:
            self._answer(cmd, "load", False, reason="no checkpoint in this run yet")
            return
        try:
            ckpt = checkpoints.load_checkpoint(path, map_location=self.device, max_bytes=checkpoints.size_bound(self.model))
            checkpoints.check_payload(path, ckpt, self.model, self.optimizer)
            # Load the optimizer into a copy first: a mismatch must leave the live one untouched.
            trial = make_optimizer(self.config.optimizer, self.model.parameters(), self.lr)
            trial.load_state_dict(ckpt["optimizer"])
        except (CheckpointError, ValueError, KeyError, TypeError) as exc:
            self._answer(cmd, "load", False, reason=str(exc), path=str(path))
            return
        lr = self.lr
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self._set_lr(lr)  # the LR a person set goes on; a load restores weights and moments
        self._answer(cmd, "load", True, path=str(path), from_step=int(ckpt["step"]))

    def _command_device(self, cmd: SetDevice) -> None:
        old = str(self.device)
        if self.dist:
            self._answer(cmd, "device", False, reason="a distributed run cannot switch device", old=old)
            return
        try:
            device = resolve_device(cmd.device)
        except UsageError as exc:
            self._answer(cmd, "device", False, reason=str(exc), old=old)
            return
        if device == self.device:
            self._answer(cmd, "device", False, reason=f"already on {old}", old=old)
            return
        self._place(device)
        self._acc_loss = self._acc_loss.to(device)
        self._acc_correct = self._acc_correct.to(device)
        self._acc_bad = self._acc_bad.to(device)
        self._answer(cmd, "device", True, old=old, new=str(device))

    # ----------------------------------------------------------------- checkpoints
    def checkpoint_payload(self) -> dict:
        """The checkpoint dict (plain values and tensors only) for the current step boundary."""
        rng = checkpoints.rng_state()
        rng["data"] = self.epoch_gen_state
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "batch": self.batch,
            "step": self.step,
            "config": self.config.to_dict(),
            "best_val_acc": self.best_val_acc,
            "rng": rng,
        }

    def save(self, name: str) -> Path:
        """Write checkpoints/NAME atomically; OSError when it cannot be written or the weights are
        not finite (a diverged model must never overwrite a good checkpoint)."""
        payload = self.checkpoint_payload()
        floats = [t for t in payload["model"].values() if t.is_floating_point()]
        if floats and not bool(torch.stack([torch.isfinite(t).all() for t in floats]).all()):
            raise OSError("the weights are not finite (diverged); the previous checkpoint is kept")
        path = self.checkpoint_dir / name
        if self._is_main:  # every rank holds the same state; rank 0 alone writes it
            checkpoints.save_checkpoint(path, payload)
        return path

    def _save_quietly(self, name: str) -> None:
        """Automatic saves (epoch end, stop): a failure is reported and training goes on."""
        try:
            path = self.save(name)
        except OSError as exc:
            self._event("save", ok=False, reason=f"saving {name} failed: {exc}", auto=True)
        else:
            self._event("save", ok=True, path=str(path), auto=True)



def _total_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The global L2 norm of the gradients, on the device (no host sync)."""
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def _histc(flat: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """HIST_BINS counts between lo and hi without a host sync (histc wants Python bounds)."""
    span = (hi - lo).clamp_min(1e-12)
    idx = ((flat - lo) / span * HIST_BINS).long().clamp_(0, HIST_BINS - 1)
    return torch.bincount(idx, minlength=HIST_BINS).float()
