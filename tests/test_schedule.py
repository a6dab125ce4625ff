"""The schedule rules (schedule.py), on plain torch objects."""

from __future__ import annotations

import math

import pytest
import torch

from tuitrain import schedule
from tuitrain.errors import UsageError


def _optimizer(lr: float = 0.1) -> torch.optim.Optimizer:
    return torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=lr)


def test_built_ins_and_their_intervals():
    opt = _optimizer()
    assert schedule.build("none", opt, 10, 2, "min") == (None, "epoch")
    assert [schedule.build(n, _optimizer(), 10, 3, "max")[1] for n in ("step", "cosine", "onecycle", "plateau")] == \
        ["epoch", "step", "step", "epoch"]
    with pytest.raises(UsageError, match=r"unknown scheduler 'linear' \(step, cosine, onecycle, plateau, none\)"):
        schedule.build("linear", opt, 10, 2, "min")
    assert schedule.interval_of(torch.optim.lr_scheduler.CyclicLR(_optimizer(), 0.01, 0.1)) == "step"
    assert schedule.interval_of(torch.optim.lr_scheduler.ExponentialLR(_optimizer(), 0.9)) == "epoch"


def test_a_manual_lr_change_is_what_the_scheduler_reports_and_goes_on_from():
    opt = _optimizer(0.1)
    sched, _ = schedule.build("cosine", opt, 10, 1, "min")
    for _ in range(3):
        opt.step()
        sched.step()
    lr_now = opt.param_groups[0]["lr"]
    schedule.set_lr(opt, sched, 0.5)
    assert opt.param_groups[0]["lr"] == 0.5 and sched.get_last_lr() == [0.5]
    assert sched.base_lrs == [pytest.approx(0.1 * 0.5 / lr_now)]  # the whole schedule scaled by new/old


def test_onecycle_stays_at_its_last_step_and_plateau_needs_a_finite_value():
    opt = _optimizer()
    sched, _ = schedule.build("onecycle", opt, 4, 1, "min")
    for _ in range(10):  # a resumed run with more epochs than the cycle was built for
        opt.step()
        schedule.step(sched)
    assert sched.last_epoch == 3
    opt = _optimizer(0.1)
    plateau, _ = schedule.build("plateau", opt, 4, 1, "min")
    for value in (1.0, math.nan, math.nan, math.nan, math.nan, None):
        schedule.step(plateau, value)
    assert opt.param_groups[0]["lr"] == 0.1  # nan and None are not epochs without improvement
    for _ in range(3):
        schedule.step(plateau, 2.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)
