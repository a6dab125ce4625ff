"""Where training is: the one dataclass of counters that, with the model, optimizer, scheduler and
scaler, survives a restart (checkpoints.capture / restore save and apply it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass
class TrainState:
    """Where training is; everything here (and the model, optimizer, scheduler) is in a checkpoint."""

    epoch: int = 0
    """Completed epochs."""
    batch: int = 0
    """Next batch within the current epoch."""
    step: int = 0
    """Training batches done in all."""
    best: float | None = None
    """Best value of the monitored quantity."""
    best_epoch: int = 0
    """The epoch (1-based) that reached ``best``."""
    best_val_acc: float | None = None
    """Best validation accuracy (classification), whatever is monitored."""
    stale_epochs: int = 0
    """Epochs since the monitored value last improved (early stopping)."""
    data_order: torch.Tensor | None = None
    """The data generator's state at the start of the current epoch: a mid-epoch resume replays it."""
