"""The monitored value: which way is better, the best so far, stale epochs, early stopping.

Keras' EarlyStopping and ModelCheckpoint(save_best_only) as one small rule the engine asks at each
epoch end. The counts it keeps live in the :class:`~tuitrain.trainstate.TrainState` (they survive a
restart in the checkpoint); the :class:`Monitor` holds only what the run was told. No torch here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from tuitrain.errors import UsageError
from tuitrain.trainstate import TrainState

LOSS_WORDS = frozenset({"loss", "losses", "error", "errors", "err"})
"""A loss or an error of anything (``val_dice_loss``, ``val_top5_error``) is better lower."""
LOWER_IS_BETTER = frozenset({
    "mse", "mae", "rmse", "msle", "rmsle", "mape", "smape", "wmape", "l1", "l2", "huber", "nll", "ppl", "perplexity",
    "bce", "ce", "xent", "crossentropy", "kld", "kl", "kldiv", "divergence", "hamming", "wer", "cer", "mer", "wil",
    "ter", "eer", "distance", "dist", "logloss", "brier", "fid", "kid", "lpips", "fpr", "fnr", "far", "frr", "miss"})
"""Words of a monitored name that make lower values better."""
HIGHER_IS_BETTER = frozenset({
    "acc", "accuracy", "top1", "top5", "f1", "f2", "fbeta", "precision", "prec", "recall", "auc", "auroc", "auprc",
    "ap", "map", "iou", "miou", "jaccard", "dice", "r2", "psnr", "ssim", "bleu", "sacrebleu", "rouge", "meteor",
    "chrf", "ndcg", "mrr", "hits", "kappa", "mcc", "spearman", "pearson", "corr", "correlation", "specificity",
    "sensitivity", "tpr", "tnr", "wip", "em", "exact", "match", "similarity", "cosine", "explained", "variance"})
"""Words of a monitored name that make higher values better."""


class ModeError(UsageError, ValueError):
    """A monitored name whose better direction is unknown: ``mode=`` must say it."""


def words(monitor: str) -> list[str]:
    """The words of a monitored name: after ``val_``, split at ``_``, ``-`` and camel case, lower case."""
    name = monitor[4:] if monitor.startswith("val_") else monitor
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return [w for w in re.split(r"[_\-\s]+", name.lower()) if w]


def monitor_mode(monitor: str) -> str:
    """min for losses and errors, max for accuracy and scores, "" for a name that says neither
    (or both: ``val_acc_mse``); a loss or an error of anything is min."""
    found = set(words(monitor))
    if found & LOSS_WORDS:
        return "min"
    lower, higher = bool(found & LOWER_IS_BETTER), bool(found & HIGHER_IS_BETTER)
    return "min" if lower and not higher else "max" if higher and not lower else ""


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
    def of(cls, name: str, mode: str = "", patience: int = 0, higher_is_better: bool | None = None) -> Monitor:
        """A monitor of ``name``. Its mode: ``mode`` when given, else the metric's own
        ``higher_is_better`` (a torchmetrics Metric's), else the one its name implies
        (:func:`monitor_mode`); ModeError (one line) when none of them says."""
        if not mode and higher_is_better is not None:
            mode = "max" if higher_is_better else "min"
        mode = mode or monitor_mode(name)
        if not mode:
            raise ModeError(f"cannot tell whether a higher or a lower {name} is better: pass mode='min' or mode='max'")
        return cls(name, mode, patience)

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
