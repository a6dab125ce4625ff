"""Learning-rate schedules: the built-ins by name, when each one steps, how it steps, and how a
person's LR change carries over into it.

``Task.build_scheduler`` (task.py) picks between a user's factory and :func:`build`; the engine
calls :func:`step` at the interval the schedule was built with, and :func:`set_lr` for ``r`` /
``ctl lr`` / a load. Every rule about torch's schedulers is here, so the loop stays the loop.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from tuitrain.errors import UsageError

Interval = Literal["step", "epoch"]
"""When a schedule steps: after every optimizer step, or after every epoch's validation."""
PER_STEP_SCHEDULERS = (torch.optim.lr_scheduler.OneCycleLR, torch.optim.lr_scheduler.CyclicLR,
                       torch.optim.lr_scheduler.CosineAnnealingWarmRestarts)
"""A user's schedulers that step per optimizer step unless told: torch's docs call these after every
batch. Every other torch scheduler's docs step it once an epoch (its step_size, milestones, T_max or
total_iters count epochs), as Lightning does by default."""
PER_STEP_MODULES = ("transformers.",)
"""Where the functions of LambdaLR schedules counted in optimizer steps come from: transformers'
``get_scheduler`` (linear, cosine, polynomial... with ``num_warmup_steps``/``num_training_steps``)."""
NAMES = ("step", "cosine", "onecycle", "plateau", "none")
OWN_INTERVAL: dict[str, Interval] = {"step": "epoch", "cosine": "step", "onecycle": "step", "plateau": "epoch",
                                     "none": "epoch", "": "epoch"}
"""The built-ins' interval when none is asked for."""


def interval_of(scheduler: Any, requested: str = "") -> Interval:
    """When a user's scheduler steps: ``requested`` (step or epoch), else the rule of
    :data:`PER_STEP_SCHEDULERS` and :data:`PER_STEP_MODULES` (per epoch for any other).
    ReduceLROnPlateau steps on a validation value: per epoch only (UsageError for step)."""
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        if requested == "step":
            raise UsageError("ReduceLROnPlateau steps on the monitored validation value, once an epoch: "
                             "scheduler_interval='step' cannot apply")
        return "epoch"
    if requested in ("step", "epoch"):
        return requested  # type: ignore[return-value]
    if isinstance(scheduler, PER_STEP_SCHEDULERS) or _counts_steps(scheduler):
        return "step"
    return "epoch"


def _counts_steps(scheduler: Any) -> bool:
    """A LambdaLR/MultiplicativeLR whose functions come from transformers (counted in optimizer steps)."""
    lambdas = getattr(scheduler, "lr_lambdas", None) or []
    for fn in lambdas:
        inner = getattr(fn, "func", fn)  # functools.partial, as get_scheduler builds them
        if getattr(inner, "__module__", "").startswith(PER_STEP_MODULES):
            return True
    return False


def check_start(scheduler: Any, optimizer: torch.optim.Optimizer, interval: Interval, requested: str) -> None:
    """Refuse (UsageError) a schedule that starts at LR 0 and steps per epoch by default: a warm-up
    from 0 counted in optimizer steps would train all of epoch 1 at LR 0 and learn nothing."""
    if scheduler is None or requested or interval != "epoch":
        return
    if any(float(group["lr"]) == 0.0 for group in optimizer.param_groups):
        raise UsageError(f"the schedule ({type(scheduler).__name__}) starts at LR 0 and would step once an epoch "
                         f"(the default for it), training all of epoch 1 at LR 0: pass scheduler_interval='step' "
                         f"(a warm-up counted in optimizer steps) or scheduler_interval='epoch'")


def build(name: str, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int,
          mode: str, interval: str = "") -> tuple[Any, Interval]:
    """(scheduler or None, interval) of a built-in schedule by name; UsageError for another name.

    ``steps_per_epoch``: optimizer steps in an epoch; ``mode``: the monitor's (plateau follows it);
    ``interval``: step or epoch, "" for the schedule's own (:data:`OWN_INTERVAL`). The schedule's
    counts are in its interval's units: cosine's period and onecycle's length are the whole run.
    """
    sched = torch.optim.lr_scheduler
    if name not in NAMES and name != "":
        raise UsageError(f"unknown scheduler {name!r} ({', '.join(NAMES)})")
    every: Interval = interval if interval in ("step", "epoch") else OWN_INTERVAL[name]  # type: ignore[assignment]
    if name in ("", "none"):
        return None, every
    total = max(1, steps_per_epoch * epochs if every == "step" else epochs)
    if name == "step":
        return sched.StepLR(optimizer, step_size=max(1, total // 3), gamma=0.1), every
    if name == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=total), every
    if name == "onecycle":
        lrs = [g["lr"] for g in optimizer.param_groups]
        return sched.OneCycleLR(optimizer, max_lr=lrs, total_steps=total), every
    if every == "step":
        raise UsageError("the plateau schedule steps on the monitored validation value, once an epoch: "
                         "scheduler interval 'step' cannot apply")
    return sched.ReduceLROnPlateau(optimizer, mode="min" if mode == "min" else "max", factor=0.1, patience=2), every


def step(scheduler: Any, value: float | None = None) -> None:
    """One step of ``scheduler``. ``value``: the monitored value at an epoch end, which
    ReduceLROnPlateau steps on (it skips a step without a finite one)."""
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        if value is not None and math.isfinite(value):
            scheduler.step(value)
        return
    total = getattr(scheduler, "total_steps", None)
    if total is not None and scheduler.last_epoch + 1 >= total:
        return  # OneCycleLR ends at its last step (a run resumed with more epochs stays there)
    scheduler.step()


def set_lr(optimizer: torch.optim.Optimizer, scheduler: Any, lr: float) -> None:
    """Set the first parameter group's LR to ``lr`` and scale the others by new/old; a schedule goes
    on from the new value (every LR it would set is scaled too), so a person's change is not undone
    at the next scheduler step."""
    old = float(optimizer.param_groups[0]["lr"])
    ratio = lr / old if old > 0 else 1.0
    for i, group in enumerate(optimizer.param_groups):
        group["lr"] = lr if i == 0 else group["lr"] * ratio
        for key in ("initial_lr", "max_lr", "min_lr"):  # what OneCycleLR and others compute from
            if isinstance(group.get(key), float):
                group[key] *= ratio
    if scheduler is not None and hasattr(scheduler, "base_lrs"):
        scheduler.base_lrs = [b * ratio for b in scheduler.base_lrs]
        # torch keeps no public setter for the last LR it reports (get_last_lr, its state_dict):
        # without this, both would show the LR before the change until the next step.
        scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
