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
"""A user's schedulers that step per optimizer step; any other steps per epoch."""
NAMES = ("step", "cosine", "onecycle", "plateau", "none")


def interval_of(scheduler: Any) -> Interval:
    """When a user's scheduler steps (it was built without telling)."""
    return "step" if isinstance(scheduler, PER_STEP_SCHEDULERS) else "epoch"


def build(name: str, optimizer: torch.optim.Optimizer, total_steps: int, epochs: int,
          mode: str) -> tuple[Any, Interval]:
    """(scheduler or None, interval) of a built-in schedule by name; UsageError for another name.

    ``total_steps``: optimizer steps in the whole run; ``mode``: the monitor's (plateau follows it).
    """
    sched = torch.optim.lr_scheduler
    if name in ("", "none"):
        return None, "epoch"
    if name == "step":
        return sched.StepLR(optimizer, step_size=max(1, epochs // 3), gamma=0.1), "epoch"
    if name == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=max(1, total_steps)), "step"
    if name == "onecycle":
        lrs = [g["lr"] for g in optimizer.param_groups]
        return sched.OneCycleLR(optimizer, max_lr=lrs, total_steps=max(1, total_steps)), "step"
    if name == "plateau":
        return sched.ReduceLROnPlateau(optimizer, mode="min" if mode == "min" else "max", factor=0.1,
                                       patience=2), "epoch"
    raise UsageError(f"unknown scheduler {name!r} ({', '.join(NAMES)})")


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
