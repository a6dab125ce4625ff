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


# ------------------------------------------------------------------------------- scheduler_interval
def test_an_interval_asked_for_builds_the_built_ins_in_its_units():
    cosine, every = schedule.build("cosine", _optimizer(), 10, 3, "min", "epoch")
    assert every == "epoch" and cosine.T_max == 3  # epochs, not 30 steps
    step, every = schedule.build("step", _optimizer(), 10, 3, "min", "step")
    assert every == "step" and step.step_size == 10  # a third of the 30 steps
    onecycle, every = schedule.build("onecycle", _optimizer(), 10, 3, "min", "epoch")
    assert every == "epoch" and onecycle.total_steps == 3
    with pytest.raises(UsageError, match="plateau .* once an epoch"):
        schedule.build("plateau", _optimizer(), 10, 3, "min", "step")


def _warm_up(opt: torch.optim.Optimizer, warm: int = 4, total: int = 40) -> torch.optim.lr_scheduler.LambdaLR:
    """transformers' get_scheduler("linear"): 0 -> 1 over ``warm`` steps, then linearly to 0 at ``total``."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: s / warm if s < warm else max(0.0, (total - s) / (total - warm)))


def test_a_users_scheduler_steps_as_asked_else_by_its_kind():
    lam = _warm_up(_optimizer())
    assert schedule.interval_of(lam, "step") == "step" and schedule.interval_of(lam) == "epoch"
    assert schedule.interval_of(torch.optim.lr_scheduler.OneCycleLR(_optimizer(), 0.1, total_steps=10), "epoch") == "epoch"
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(_optimizer())
    assert schedule.interval_of(plateau) == "epoch"
    with pytest.raises(UsageError, match="ReduceLROnPlateau"):
        schedule.interval_of(plateau, "step")


def test_transformers_schedules_count_optimizer_steps():
    """get_scheduler's LambdaLR holds a functools.partial of a function of transformers.optimization."""
    import functools

    def _get_linear_schedule_with_warmup_lr_lambda(current_step, *, num_warmup_steps, num_training_steps):
        return min(1.0, current_step / max(1, num_warmup_steps))

    _get_linear_schedule_with_warmup_lr_lambda.__module__ = "transformers.optimization"
    fn = functools.partial(_get_linear_schedule_with_warmup_lr_lambda, num_warmup_steps=5, num_training_steps=50)
    assert schedule.interval_of(torch.optim.lr_scheduler.LambdaLR(_optimizer(), fn)) == "step"


def test_a_warm_up_from_zero_stepped_per_epoch_by_default_is_refused():
    opt = _optimizer()
    lam = _warm_up(opt)
    with pytest.raises(UsageError, match="starts at LR 0 .* scheduler_interval='step'"):
        schedule.check_start(lam, opt, "epoch", "")
    schedule.check_start(lam, opt, "epoch", "epoch")  # asked for: as the user says
    schedule.check_start(lam, opt, "step", "step")


def _glue_like(n: int, seed: int) -> list[dict]:
    """SST-2-shaped samples as transformers' collator gives them: padded token ids, an attention mask and
    a label, 1 when the positive token 7 occurs (learnable; chance 50%)."""
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(n):
        ids = torch.randint(10, 200, (16,), generator=gen)
        label = int(torch.randint(0, 2, (1,), generator=gen))
        if label:
            ids[int(torch.randint(0, 16, (1,), generator=gen))] = 7
        samples.append({"input_ids": ids, "attention_mask": torch.ones(16, dtype=torch.long), "labels": torch.tensor(label)})
    return samples


class _TextClassifier(torch.nn.Module):
    """An embedding, a mean over the attended tokens and a linear head: (N, 16) ids -> (N, 2) logits."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(200, 32)
        self.head = torch.nn.Linear(32, 2)

    def forward(self, input_ids, attention_mask=None):
        mask = attention_mask.unsqueeze(-1).float()
        return self.head((self.embed(input_ids) * mask).sum(1) / mask.sum(1))


def test_a_warm_up_stepped_per_step_trains_from_step_1_at_the_schedules_values(tmp_path, capsys):
    """The GLUE port's linear warm-up (LambdaLR) was stepped once an epoch: LR 0 for all of epoch 1."""
    import tuitrain
    from tuitrain.rundir import read_records

    torch.manual_seed(0)
    model = _TextClassifier()
    warm, epochs, steps = 4, 2, 8  # 64 samples / batch 8
    lam = lambda s: s / warm if s < warm else max(0.0, (epochs * steps - s) / (epochs * steps - warm))  # noqa: E731
    result = tuitrain.fit(model, _glue_like(64, 0), _glue_like(32, 1), optimizer="adamw", lr=0.01, batch_size=8,
                          epochs=epochs, scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lam),
                          scheduler_interval="step", log_every=1, headless=True, device="cpu",
                          run_dir=str(tmp_path / "run"))
    records = read_records(tmp_path / "run" / "metrics.jsonl")
    start = next(r for r in records if r.get("event") == "start")
    assert start["scheduler_interval"] == "step"
    assert "scheduler custom:<lambda> per step" in capsys.readouterr().err
    lrs = {r["step"]: r["lr"] for r in records if r["type"] == "step"}
    assert lrs[1] > 0
    # after step k the schedule has stepped k times: the LR of the next step is lam(k)
    assert all(lrs[k] == pytest.approx(0.01 * lam(k)) for k in range(1, epochs * steps + 1)), lrs
    assert result.epochs_done == epochs


def test_a_warm_up_given_without_an_interval_is_refused_before_the_run_dir(tmp_path):
    import tuitrain

    with pytest.raises(UsageError, match="scheduler_interval"):
        tuitrain.fit(_TextClassifier(), _glue_like(32, 0), epochs=1, batch_size=8, headless=True, device="cpu",
                     scheduler=lambda opt: _warm_up(opt), run_dir=str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
