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
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adadelta", "adagrad", "nadam", "radam", "adamax")
SCHEDULERS = ("none", "step", "cosine", "onecycle", "plateau")
PRECISIONS = ("32", "bf16-mixed", "16-mixed")
MONITOR_RE = re.compile(r"^val_[A-Za-z_][A-Za-z0-9_]*$")
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
    """adam, adamw, sgd (momentum 0.9), rmsprop, adadelta, adagrad, nadam, radam, adamax; ``custom:Name``
    for an optimizer given to ``tuitrain.fit``."""
    weight_decay: float = 0.0
    """Weight decay of a built-in optimizer (decoupled for adamw)."""
    scheduler: str = "none"
    """LR schedule: none, step (x0.1 every third of the epochs), cosine (per step to 0), onecycle
    (per step, peaking at --lr), plateau (x0.1 after 2 epochs without improvement of the monitor);
    ``custom:Name`` for a factory given to ``tuitrain.fit``."""
    monitor: str = ""
    """What picks best.pt and drives early stopping and plateau: val_loss, val_acc or val_<metric>;
    empty: val_acc for classifiers under the default loss, else val_loss."""
    mode: str = ""
    """min or max for the monitor; empty: inferred (min for losses and errors)."""
    early_stopping: int = 0
    """Stop after this many epochs without improvement of the monitor (0: never)."""
    grad_clip: float = 0.0
    """Clip the global gradient norm to this value (0: no clipping)."""
    accumulate: int = 1
    """Batches per optimizer step (gradient accumulation)."""
    precision: str = "32"
    """32, bf16-mixed (autocast to bfloat16) or 16-mixed (float16 with a GradScaler, CUDA only)."""
    val_batch_size: int = 0
    """Batch size for validation; 0: the training batch size."""
    drop_last: bool = False
    """Drop the last incomplete training batch of each epoch (BatchNorm cannot train on one sample)."""
    model_args: dict = field(default_factory=dict)
    """Keyword arguments for a ``path.py:NAME`` model (``--model-arg KEY=VALUE``)."""
    loss: str = "cross_entropy"
    """The loss, as a label: cross_entropy (the default) or ``custom:Name`` from ``tuitrain.fit``."""
    metrics: tuple = ()
    """Names of the user metrics (``tuitrain.fit``), reported as ``val_<name>``."""
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
    if cfg.optimizer not in OPTIMIZERS and not (custom and cfg.optimizer.startswith("custom:")):
        raise UsageError(f"unknown optimizer {cfg.optimizer!r} (choose from {', '.join(OPTIMIZERS)})")
    if cfg.scheduler not in SCHEDULERS and not (custom and cfg.scheduler.startswith("custom:")):
        raise UsageError(f"unknown scheduler {cfg.scheduler!r} (choose from {', '.join(SCHEDULERS)})")
    if cfg.precision not in PRECISIONS:
        raise UsageError(f"unknown precision {cfg.precision!r} (choose from {', '.join(PRECISIONS)})")
    if cfg.monitor and not MONITOR_RE.match(cfg.monitor):
        raise UsageError(f"--monitor must be val_loss, val_acc or val_<metric>, got {cfg.monitor!r}")
    if cfg.mode not in ("", "min", "max"):
        raise UsageError(f"mode must be min or max, got {cfg.mode!r}")
    check_lr(cfg.lr)
    for name in ("epochs", "batch_size", "log_every", "hist_every", "accumulate"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be a positive whole number, got {value!r}")
    for name in ("early_stopping", "val_batch_size"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be 0 or a positive whole number, got {value!r}")
    for name in ("grad_clip", "weight_decay"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be a finite number, 0 or more, got {value!r}")
    if cfg.limit < 0:
        raise UsageError(f"--limit must be 0 or more, got {cfg.limit}")
    check_device_name(cfg.device)
    if not cfg.run_dir:
        cfg = cfg.replace(run_dir=default_run_dir(cfg.dataset, cfg.model))
    return cfg


def default_run_dir(dataset: str, model: str, root: str = "runs") -> str:
    """runs/DATASET-MODEL-YYYYmmdd-HHMMSS, with -2, -3... when that folder exists (never collides)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    model = model.split(":")[-1].lower() if ":" in model else model
    base = Path(root) / re.sub(r"[^A-Za-z0-9._-]", "_", f"{dataset}-{model}-{stamp}")
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return str(path)


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
