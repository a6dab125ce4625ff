"""The monitored value: which way is better, the best so far, stale epochs, early stopping.

Keras' EarlyStopping and ModelCheckpoint(save_best_only) as one small rule the engine asks at each
epoch end. The counts it keeps live in the :class:`~tuitrain.trainstate.TrainState` (they survive a
restart in the checkpoint); the :class:`Monitor` holds only what the run was told. No torch here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from tuitrain.trainstate import TrainState

LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "rmse", "perplexity", "wer", "cer")
"""Words in a monitored name that make lower values better."""


def monitor_mode(monitor: str) -> str:
    """min for losses and errors, max for accuracy and scores."""
    return "min" if any(word in monitor.lower() for word in LOWER_IS_BETTER) else "max"


@dataclass(frozen=True)
class Monitor:
    """The rule for the monitored validation value (``--monitor``, ``--mode``, ``--early-stopping``)."""

    name: str = ""
    """The validation value watched: val_loss, val_acc or val_<metric>."""
    mode: str = "max"
    """Which way is better: min or max."""
    patience: int = 0
    """Epochs without improvement before training stops early (0: never)."""

    @classmethod
    def of(cls, name: str, mode: str = "", patience: int = 0) -> Monitor:
        """A monitor of ``name``; without a ``mode``, the one its name implies (:func:`monitor_mode`)."""
        return cls(name, mode or monitor_mode(name), patience)

    def value(self, val: Mapping[str, float]) -> float:
        """The monitored value among an epoch's validation results (nan when absent)."""
        return val.get(self.name, math.nan)

    def improves(self, value: float, best: float | None) -> bool:
        """Whether ``value`` beats ``best`` (any finite value beats none; nan and inf never do)."""
        if not math.isfinite(value):
            return False
        return best is None or (value < best if self.mode == "min" else value > best)

    def observe(self, state: TrainState, val: Mapping[str, float]) -> bool:
        """Count the epoch that just ended (``state.epoch`` already includes it): the best value and
        its epoch, the stale epochs, the best accuracy. Returns whether the monitored value improved."""
        improved = self.improves(self.value(val), state.best)
        if improved:
            state.best, state.best_epoch, state.stale_epochs = self.value(val), state.epoch, 0
        else:
            state.stale_epochs += 1
        acc = val.get("val_acc")
        if acc is not None and (state.best_val_acc is None or acc > state.best_val_acc):
            state.best_val_acc = acc
        return improved

    def should_stop(self, state: TrainState, epochs: int) -> bool:
        """Early stopping: ``patience`` epochs without improvement, with epochs still to train."""
        return bool(self.patience) and state.stale_epochs >= self.patience and state.epoch < epochs
