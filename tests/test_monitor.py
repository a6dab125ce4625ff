"""The monitor rule (best value, stale epochs, early stopping), without an engine."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tuitrain.monitor import Monitor, monitor_mode
from tuitrain.trainstate import TrainState


def _epochs(monitor: Monitor, values: list[dict], state: TrainState | None = None) -> tuple[TrainState, list[bool]]:
    """Feed one validation result per epoch, as the engine's end_epoch does."""
    state = state or TrainState()
    improved = []
    for val in values:
        state.epoch += 1
        improved.append(monitor.observe(state, val))
    return state, improved


def test_the_mode_follows_the_name_unless_given():
    assert monitor_mode("val_loss") == "min" and monitor_mode("val_rmse") == "min"
    assert monitor_mode("val_acc") == "max" and monitor_mode("val_f1") == "max"
    assert Monitor.of("val_loss").mode == "min"
    assert Monitor.of("val_loss", "max").mode == "max"
    assert Monitor.of("val_acc", patience=3) == Monitor("val_acc", "max", 3)


def test_max_mode_keeps_the_best_and_counts_stale_epochs():
    state, improved = _epochs(Monitor.of("val_acc"), [{"val_acc": a} for a in (0.5, 0.6, 0.6, 0.55)])
    assert improved == [True, True, False, False]
    assert (state.best, state.best_epoch, state.stale_epochs, state.best_val_acc) == (0.6, 2, 2, 0.6)


def test_min_mode_and_values_that_never_improve():
    monitor = Monitor.of("val_loss")
    state, improved = _epochs(monitor, [{"val_loss": v} for v in (math.nan, 2.0, math.inf, 1.5, 1.5)])
    assert improved == [False, True, False, True, False]
    assert (state.best, state.best_epoch, state.stale_epochs) == (1.5, 4, 1)
    assert monitor.value({}) != monitor.value({})  # absent: nan, which never improves


def test_best_accuracy_is_kept_whatever_is_monitored():
    state, _ = _epochs(Monitor.of("val_loss"), [{"val_loss": 1.0, "val_acc": 0.7}, {"val_loss": 2.0, "val_acc": 0.8}])
    assert state.best == 1.0 and state.best_val_acc == 0.8


def test_early_stopping_after_patience_but_not_at_the_last_epoch():
    monitor = Monitor.of("val_loss", patience=2)
    state, _ = _epochs(monitor, [{"val_loss": 1.0}, {"val_loss": 1.0}])
    assert not monitor.should_stop(state, epochs=10)  # one stale epoch
    _epochs(monitor, [{"val_loss": 1.1}], state)
    assert monitor.should_stop(state, epochs=10)
    assert not monitor.should_stop(state, epochs=3)  # the run ends here anyway
    assert not Monitor.of("val_loss").should_stop(TrainState(epoch=1, stale_epochs=99), epochs=10)


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=30), st.sampled_from(["min", "max"]))
def test_best_is_the_extreme_finite_value_and_stale_counts_since_it(values, mode):
    state, _ = _epochs(Monitor("val_x", mode), [{"val_x": v} for v in values])
    finite = [(v, i + 1) for i, v in enumerate(values) if math.isfinite(v)]
    if not finite:
        assert state.best is None and state.stale_epochs == len(values)
        return
    best = min(v for v, _ in finite) if mode == "min" else max(v for v, _ in finite)
    first = next(epoch for v, epoch in finite if v == best)  # ties keep the first epoch
    assert (state.best, state.best_epoch, state.stale_epochs) == (best, first, len(values) - first)


# ------------------------------------------------------------------------------- which way is better

LOWER_NAMES = ["val_loss", "val_l1", "val_nll", "val_ppl", "val_bce", "val_ce", "val_kld", "val_hamming", "val_mse",
               "val_mae", "val_rmse", "val_wer", "val_cer", "val_perplexity", "val_dice_loss", "val_top5_error",
               "val_recon_loss", "val_MeanSquaredError", "val_kl_div", "val_huber", "val_smooth_l1"]
HIGHER_NAMES = ["val_acc", "val_accuracy", "val_f1", "val_F1Score", "val_precision", "val_recall", "val_auroc",
                "val_iou", "val_mean_iou", "val_dice", "val_r2", "val_psnr", "val_ssim", "val_bleu", "val_top5_acc",
                "val_jaccard", "val_map", "val_mcc", "val_pearson", "val_exact_match"]


@pytest.mark.parametrize("name", LOWER_NAMES)
def test_losses_errors_and_divergences_are_better_lower(name):
    assert monitor_mode(name) == "min"
    assert Monitor.of(name).mode == "min"


@pytest.mark.parametrize("name", HIGHER_NAMES)
def test_accuracies_and_scores_are_better_higher(name):
    assert monitor_mode(name) == "max"
    assert Monitor.of(name).mode == "max"


@pytest.mark.parametrize("name", ["val_foo", "val_quality", "val_score", "val_acc_mse", "val_x"])
def test_a_name_that_says_neither_needs_mode(name):
    assert monitor_mode(name) == ""
    with pytest.raises(ValueError, match=rf"^cannot tell whether a higher or a lower {name} is better: pass mode="):
        Monitor.of(name)
    assert Monitor.of(name, "min").mode == "min"


def test_mode_given_wins_then_the_metrics_own_word_then_the_name():
    assert Monitor.of("val_l1", "max").mode == "max"
    assert Monitor.of("val_acc", higher_is_better=False).mode == "min"
    assert Monitor.of("val_foo", higher_is_better=True).mode == "max"
    assert Monitor.of("val_foo", "min", higher_is_better=True).mode == "min"


# ------------------------------------------------------------------------------- under tuitrain.fit
def _diabetes_like(n: int = 200, seed: int = 0):
    """sklearn's diabetes shape: 10 standardised features, a target of spread ~77 around ~152."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 10, generator=gen)
    y = 152 + 20 * x @ torch.linspace(-1, 1, 10) + 40 * torch.randn(n, generator=gen)
    return x, (y - y.mean()) / y.std()


def _fit(tmp_path, **kwargs):
    import torch

    import tuitrain

    torch.manual_seed(0)
    x, y = _diabetes_like()
    model = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1), torch.nn.Flatten(0))
    return tuitrain.fit(model, (x, y), loss_fn=torch.nn.MSELoss(), epochs=3, batch_size=32, lr=0.01, device="cpu",
                        headless=True, run_dir=str(tmp_path / "run"), **kwargs)


def test_early_stopping_on_val_l1_keeps_the_lowest_error_and_the_start_line_says_min(tmp_path, capsys):
    """val_l1 was taken as higher-is-better: best.pt, early stopping and restore_best kept the worst epoch."""
    result = _fit(tmp_path, metrics={"l1": lambda out, y: (out - y).abs().mean()}, monitor="val_l1")
    l1 = [e["val_l1"] for e in result.history]
    assert l1[-1] < l1[0] and result.best == min(l1) and result.best_epoch == 1 + l1.index(min(l1))
    assert "; monitor val_l1 (min)" in capsys.readouterr().err


def test_a_torchmetrics_metric_says_which_way_is_better(tmp_path):
    torchmetrics = pytest.importorskip("torchmetrics")
    # "quality" says nothing by its name: the metric's own higher_is_better (False for an error) decides.
    result = _fit(tmp_path, metrics={"quality": torchmetrics.MeanAbsoluteError()}, monitor="val_quality")
    values = [e["val_quality"] for e in result.history]
    assert result.best == min(values) and json.loads((tmp_path / "run" / "config.json").read_text())["mode"] == "min"


def test_a_monitor_that_says_neither_way_is_refused_before_the_run_dir(tmp_path):
    with pytest.raises(ValueError, match=r"^cannot tell whether a higher or a lower val_quality is better: pass mode="):
        _fit(tmp_path, metrics={"quality": lambda out, y: (out - y).abs().mean()}, monitor="val_quality")
    assert not (tmp_path / "run").exists()
    result = _fit(tmp_path, metrics={"quality": lambda out, y: (out - y).abs().mean()}, monitor="val_quality",
                  mode="min")
    assert result.best == min(e["val_quality"] for e in result.history)
