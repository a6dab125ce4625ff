"""The training configuration: one frozen dataclass, validated before anything is written.

This module must not import torch: the CLI builds and checks a config before deciding to train.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from tuitrain.errors import UsageError

DATASETS = ("fashion-mnist", "mnist", "cifar10", "synthetic")
MODELS = ("cnn", "lenet", "mlp", "cnn-bn")
OPTIMIZERS = ("adam", "adamw", "sgd")
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def default_data_dir() -> str:
    """$TUITRAIN_DATA, or ~/.cache/tuitrain/data (torchvision's layout inside)."""
    return os.environ.get("TUITRAIN_DATA") or str(Path.home() / ".cache" / "tuitrain" / "data")


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a run; written whole to RUN_DIR/config.json."""

    dataset: str = "fashion-mnist"
    """Data set name: fashion-mnist, mnist, cifar10 or synthetic."""
    model: str = "cnn"
    """Built-in model name (cnn, lenet, mlp, cnn-bn) or ``path/to/file.py:ClassName``."""
    epochs: int = 10
    """Total epochs; a resumed run trains the epochs after the checkpoint's up to this number."""
    batch_size: int = 100
    """Samples per optimizer step."""
    lr: float = 0.001
    """Initial learning rate."""
    optimizer: str = "adam"
    """adam, adamw or sgd."""
    device: str = "auto"
    """auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps."""
    seed: int = 0
    """Seeds model initialisation and data order: the same seed gives the same run."""
    data_dir: str = field(default_factory=default_data_dir)
    """Folder in torchvision's layout (DIR/FashionMNIST/raw/...)."""
    run_dir: str = ""
    """Where the run writes; empty means runs/DATASET-MODEL-YYYYmmdd-HHMMSS."""
    resume: str = ""
    """Checkpoint to continue from; empty to start fresh."""
    headless: bool = False
    """No dashboard: progress lines on stderr."""
    log_every: int = 20
    """Steps between step records (a record is also written at least once a second)."""
    hist_every: int = 200
    """Steps between per-layer weight/gradient histograms."""
    limit: int = 0
    """Use only the first N training and N//5 validation samples (0: all); for quick trials."""
    on_nonfinite: str = "stop"
    """What a non-finite loss or gradient does: stop (headless, exit 1) or pause (dashboard)."""

    def to_dict(self) -> dict:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    def replace(self, **changes) -> TrainConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def validate(cfg: TrainConfig, custom: bool = False) -> TrainConfig:
    """Check every field a user can get wrong; raise UsageError with one line, or return cfg.

    Also fills the default run directory, so that the config written to disk is complete.
    ``custom``: model and data come from ``tuitrain.fit``, so their names are labels only.
    """
    if cfg.dataset not in DATASETS and not custom:
        raise UsageError(f"unknown data set {cfg.dataset!r} (choose from {', '.join(DATASETS)})")
    if cfg.model not in MODELS and not _is_user_model(cfg.model) and not custom:
        raise UsageError(
            f"unknown model {cfg.model!r} (choose from {', '.join(MODELS)} or path/to/file.py:ClassName)"
        )
    if cfg.optimizer not in OPTIMIZERS:
        raise UsageError(f"unknown optimizer {cfg.optimizer!r} (choose from {', '.join(OPTIMIZERS)})")
    check_lr(cfg.lr)
    for name in ("epochs", "batch_size", "log_every", "hist_every"):
        if getattr(cfg, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be a positive whole number, got {getattr(cfg, name)}")
    if cfg.limit < 0:
        raise UsageError(f"--limit must be 0 or more, got {cfg.limit}")
    check_device_name(cfg.device)
    if not cfg.run_dir:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        model = cfg.model.split(":")[-1].lower() if ":" in cfg.model else cfg.model
        cfg = cfg.replace(run_dir=str(Path("runs") / f"{cfg.dataset}-{model}-{stamp}"))
    return cfg


def check_lr(lr: float) -> float:
    """A learning rate must be a finite number above zero."""
    if not isinstance(lr, (int, float)) or not math.isfinite(lr):
        raise UsageError(f"learning rate must be a finite number, got {lr}")
    if lr <= 0:
        raise UsageError(f"learning rate must be above 0, got {lr:g}")
    return float(lr)


def parse_lr(text: str) -> float:
    """Parse a learning rate typed by a user (CLI, prompt or ctl); UsageError when it is not one."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise UsageError(f"learning rate must be a number, got {text!r}") from None
    return check_lr(value)


def check_device_name(name: str) -> str:
    """Only the syntax: whether the device exists is checked where torch is loaded."""
    if not _DEVICE_RE.match(name):
        raise UsageError(f"unknown device {name!r} (auto, cpu, cuda, cuda:N or mps)")
    return name


def _is_user_model(spec: str) -> bool:
    path, sep, cls = spec.rpartition(":")
    return bool(sep) and path.endswith(".py") and cls.isidentifier()
