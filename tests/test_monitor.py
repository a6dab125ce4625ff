"""The monitor rule (best value, stale epochs, early stopping), without an engine."""

from __future__ import annotations

import math

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
