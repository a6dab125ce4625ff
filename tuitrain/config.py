"""The training configuration: one frozen dataclass, validated before anything is written.

This module must not import torch: the CLI builds and checks a config before deciding to train.
"""

from __future__ import annotations

import dataclasses
import json
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
_DEVICE_RE = re.compile(r"(auto|cpu|mps|cuda(:[0-9]+)?)")  # fullmatch; [0-9], not \d (any Unicode digit)


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
    compile: bool = False
    """Train through ``torch.compile(model)`` (kernels fused; the first steps pay the compilation;
    evaluation, checkpoints and histograms use the model as it is)."""
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
    _check_text(cfg)
    if cfg.monitor and not MONITOR_RE.fullmatch(cfg.monitor):
        raise UsageError(f"--monitor must be val_loss, val_acc or val_<metric>, got {cfg.monitor!r}")
    if cfg.mode not in ("", "min", "max"):
        raise UsageError(f"mode must be min or max, got {cfg.mode!r}")
    check_lr(cfg.lr)
    for name in ("epochs", "batch_size", "log_every", "hist_every", "accumulate"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_COUNT:
            raise UsageError(f"--{name.replace('_', '-')} must be a whole number from 1 to 2**53, got {value!r}")
    for name in ("early_stopping", "val_batch_size"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
            raise UsageError(f"--{name.replace('_', '-')} must be a whole number from 0 to 2**53, got {value!r}")
    for name in ("grad_clip", "weight_decay"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be a finite number, 0 or more, got {value!r}")
    if isinstance(cfg.limit, bool) or not isinstance(cfg.limit, int) or not 0 <= cfg.limit <= MAX_COUNT:
        raise UsageError(f"--limit must be a whole number from 0 to 2**53, got {cfg.limit!r}")
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or not 0 <= cfg.seed <= MAX_SEED:
        raise UsageError(f"--seed must be a whole number from 0 to 2**63-1, got {cfg.seed!r}")
    _check_model_args(cfg, custom)
    check_device_name(cfg.device)
    if not cfg.run_dir:
        cfg = cfg.replace(run_dir=default_run_dir(cfg.dataset, cfg.model))
    check_path(cfg.run_dir, "--run-dir")
    check_lengths(cfg.data_dir, "--data-dir")
    check_lengths(cfg.resume, "--resume")
    return cfg


MAX_COUNT = 2**53
"""The largest count (epochs, batch size, steps...): what a float, JSON and every reader hold exactly."""
MAX_SEED = 2**63 - 1
"""torch seeds take 64 bits; the top half of the unsigned range is left out so every seed also fits a signed int64."""
NAME_MAX = 255
"""The longest file name (bytes) of Linux and macOS file systems."""
PATH_MAX = 4096
"""The longest path (bytes) Linux takes."""


def _check_text(cfg: TrainConfig) -> None:
    """Every text setting is written to config.json and used in paths: it must be UTF-8 (a file
    name of other bytes reaches Python as lone surrogates) without NUL or other control characters."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if not isinstance(value, str):
            continue
        option = f"--{f.name.replace('_', '-')}"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"{option} must be UTF-8 text, got {value!r}") from None
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise UsageError(f"{option} must not hold control characters (newline, NUL...), got {value!r}")


def check_lengths(path: str, option: str) -> str:
    """Each name of ``path`` at most NAME_MAX bytes, the whole at most PATH_MAX: longer ones fail
    every file call with ENAMETOOLONG, somewhere it would be a traceback."""
    if len(path.encode("utf-8", "surrogateescape")) >= PATH_MAX:
        raise UsageError(f"{option}: the path is longer than {PATH_MAX} bytes")
    for part in Path(path).parts:
        if len(part.encode("utf-8", "surrogateescape")) > NAME_MAX:
            raise UsageError(f"{option}: the name {part[:40]!r}... is longer than {NAME_MAX} bytes")
    return path


def check_path(path: str, option: str) -> str:
    """A folder to create: names not too long, and not under a file (checked before anything is
    loaded or made; what only creating it tells is refused then, in one line too)."""
    check_lengths(path, option)
    for parent in Path(path).parents:
        try:
            if parent.exists():
                if not parent.is_dir():
                    raise UsageError(f"{option} {path} is under {parent}, which is a file, not a folder")
                break
        except OSError as exc:
            raise UsageError(f"{option} {path}: {exc.strerror or exc}") from None
    return path


def _check_model_args(cfg: TrainConfig, custom: bool) -> None:
    """--model-arg goes to a path.py:NAME model's constructor and into config.json."""
    if not cfg.model_args:
        return
    if not isinstance(cfg.model_args, dict) or not all(isinstance(k, str) and k.isidentifier() for k in cfg.model_args):
        raise UsageError(f"--model-arg: keys must be Python names, got {cfg.model_args!r}"[:300])
    if cfg.model in MODELS and not custom:
        raise UsageError(f"--model-arg is for a path/to/file.py:NAME model; the built-in {cfg.model} takes none")
    try:
        json.dumps(cfg.model_args, default=str).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise UsageError(f"--model-arg: a value cannot be written to config.json ({exc})"[:300]) from None


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
    if not isinstance(name, str) or not _DEVICE_RE.fullmatch(name):
        raise UsageError(f"unknown device {name!r} (auto, cpu, cuda, cuda:N or mps)")
    return name


def _is_user_model(spec: str) -> bool:
    path, sep, cls = spec.rpartition(":")
    return bool(sep) and path.endswith(".py") and cls.isidentifier()
