"""The training configuration: one frozen dataclass, validated before anything is written.

This module must not import torch: the CLI builds and checks a config before deciding to train.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from tuitrain.errors import UsageError
from tuitrain.options import Choice, Count, Flag, Number, Option, PathText, sweep_hint

DATASETS = ("fashion-mnist", "mnist", "cifar10", "synthetic")
MODELS = ("cnn", "lenet", "mlp", "cnn-bn")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adadelta", "adagrad", "nadam", "radam", "adamax")
SCHEDULERS = ("none", "step", "cosine", "onecycle", "plateau")
PRECISIONS = ("32", "bf16-mixed", "16-mixed")
MONITOR_RE = re.compile(r"^val_[A-Za-z_][A-Za-z0-9_]*$")
_DEVICE_RE = re.compile(r"(auto|cpu|mps|cuda(:[0-9]+)?)")  # fullmatch; [0-9], not \d (any Unicode digit)
MAX_SEED = 2**63 - 1
"""torch seeds take 64 bits; the top half of the unsigned range is left out so every seed also fits a signed int64."""


def default_data_dir() -> str:
    """$TUITRAIN_DATA, or ~/.cache/tuitrain/data (torchvision's layout inside)."""
    return os.environ.get("TUITRAIN_DATA") or str(Path.home() / ".cache" / "tuitrain" / "data")


def is_user_model(spec: str) -> bool:
    """``path/to/file.py:Name``: a model from the user's file."""
    path, sep, cls = spec.rpartition(":")
    return bool(sep) and path.endswith(".py") and cls.isidentifier()


T = TypeVar("T")


def option(default: T, kind: Option) -> T:
    """A TrainConfig field with its default and its option (config.OPTIONS holds them by name)."""
    return field(default=default, metadata={"option": kind})


def option_made(factory: Callable[[], T], kind: Option) -> T:
    """A field whose default ``factory`` makes (a dict, or a path from the environment)."""
    return field(default_factory=factory, metadata={"option": kind})


class LearningRate(Option):
    """A finite number above 0 (also what ``r`` and ``tuitrain ctl lr`` take)."""

    def parse(self, text: str) -> float:
        if "," in text:
            raise UsageError(sweep_hint(text, self.flag))
        return parse_lr(text)

    def check_value(self, value: Any, cfg: Any, custom: bool) -> None:
        check_lr(value)


class Device(Option):
    """auto, cpu, cuda, cuda:N or mps: only the syntax (whether it exists is checked with torch)."""

    def check_value(self, value: Any, cfg: Any, custom: bool) -> None:
        check_device_name(value)


class Monitor(Option):
    """val_loss, val_acc or val_<metric>; "" for the default."""

    def check_value(self, value: Any, cfg: Any, custom: bool) -> None:
        if value != "" and not (isinstance(value, str) and MONITOR_RE.fullmatch(value)):
            raise UsageError(f"{self.flag} must be val_loss, val_acc or val_<metric>, got {value!r}")


class ModelArgs(Option):
    """KEY=VALUE, repeated: keyword arguments for a path.py:NAME model."""

    action: ClassVar[str] = "append"

    def shown_default(self) -> str:
        return ""

    def parse(self, text: str) -> tuple[str, object]:
        """KEY=VALUE with VALUE a Python literal: text that is not one is refused (a model would get
        the string and fail far from the option), with the quoting that makes it text."""
        key, sep, value = text.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"must be KEY=VALUE with KEY a Python name, got {text!r}")
        try:
            return key, ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            raise UsageError(f"{value!r} is not a Python literal (a number, True, None, [1, 2]...); "
                             f"for text, quote it: {self.flag} \"{key}='{value}'\"") from None

    def collect(self, value: Any) -> dict:
        return dict(value)

    def check_value(self, value: Any, cfg: Any, custom: bool) -> None:
        """--model-arg goes to a path.py:NAME model's constructor and into config.json."""
        if not value:
            return
        if not isinstance(value, dict) or not all(isinstance(k, str) and k.isidentifier() for k in value):
            raise UsageError(f"{self.flag}: keys must be Python names, got {value!r}"[:300])
        if cfg.model in MODELS and not custom:
            raise UsageError(f"{self.flag} is for a path/to/file.py:NAME model; the built-in {cfg.model} takes none")
        try:
            json.dumps(value, default=str).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:
            raise UsageError(f"{self.flag}: a value cannot be written to config.json ({exc})"[:300]) from None


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a run; written whole to RUN_DIR/config.json.

    Each field declares its option once (``option(default, Kind(...))``, options.py): its flag,
    --help line, bounds, whether ``tuitrain.fit`` and ``tuitrain sweep`` take it, and its doc.
    """

    dataset: str = option("fashion-mnist", Choice(
        choices=DATASETS, noun="data set", custom="any", flag="DATASET", help=f"one of {', '.join(DATASETS)}",
        fit="name", sweep="one", doc="Data set name: fashion-mnist, mnist, cifar10 or synthetic; "
                                     "under tuitrain.fit, the label ``name`` gives."))
    model: str = option("cnn", Choice(
        choices=MODELS, noun="model", also="or path/to/file.py:ClassName", accept=is_user_model,
        custom="any", metavar="M", help=f"{', '.join(MODELS)} or path/to/file.py:ClassName", fit="model",
        sweep="values", doc="Built-in model name (cnn, lenet, mlp, cnn-bn) or ``path/to/file.py:ClassName``; "
                            "under tuitrain.fit, ``custom:`` and the model's class name."))
    epochs: int = option(10, Count(
        metavar="N", help="total epochs", sweep="values",
        doc="Total epochs; a resumed run trains the epochs after the checkpoint's up to this number."))
    batch_size: int = option(100, Count(
        metavar="N", help="samples per step", sweep="values",
        doc="Samples per batch (an optimizer step takes ``accumulate`` batches)."))
    lr: float = option(0.001, LearningRate(
        metavar="X", help="learning rate", sweep="values", doc="Initial learning rate."))
    optimizer: str = option("adam", Choice(
        choices=OPTIMIZERS, noun="optimizer", custom="prefixed", metavar="O", help=", ".join(OPTIMIZERS),
        sweep="values", doc="adam, adamw, sgd (momentum 0.9), rmsprop, adadelta, adagrad, nadam, radam, adamax; "
                            "``custom:Name`` for an optimizer given to ``tuitrain.fit``.",
        fit_doc="a name (adam, adamw, sgd with momentum 0.9, rmsprop, adadelta, adagrad, nadam, radam, "
                "adamax), an Optimizer over ``model``'s parameters, or ``params -> Optimizer``."))
    weight_decay: float = option(0.0, Number(
        metavar="X", help="weight decay", sweep="values", doc="Weight decay of a named optimizer (decoupled for adamw)."))
    scheduler: str = option("none", Choice(
        choices=SCHEDULERS, noun="scheduler", custom="prefixed", metavar="S",
        help=f"LR schedule: {', '.join(SCHEDULERS)}", sweep="values",
        doc="LR schedule: none, step (x0.1 every third of the epochs), cosine (per step to 0), onecycle "
            "(per step, peaking at --lr), plateau (x0.1 after 2 epochs without improvement of the monitor); "
            "``custom:Name`` for a factory given to ``tuitrain.fit``.",
        fit_doc="none, step (x0.1 every third of the epochs), cosine (per step to 0), onecycle (per step, "
                "peaking at lr), plateau (x0.1 after 2 epochs without improvement of the monitor), or "
                "``optimizer -> scheduler`` (any torch LR scheduler, stepped as ``scheduler_interval`` says; "
                "ReduceLROnPlateau with the monitored value, per epoch). Its state is in "
                "checkpoints. A manual LR change (``r``, ``tuitrain ctl lr``) rescales the schedule from "
                "the new value."))
    scheduler_interval: str = option("", Choice(
        choices=("step", "epoch"), noun="scheduler interval", blank=True, metavar="I", sweep="one",
        help="when the schedule steps: step (after each optimizer step) or epoch", shown="the schedule's own",
        doc="When the LR schedule steps: ``step`` (after every optimizer step; its counts are optimizer steps) "
            "or ``epoch`` (after each epoch's validation; counts are epochs); empty: the schedule's own: step for "
            "cosine and onecycle, epoch for step and plateau (plateau steps per epoch only).",
        fit_doc="When the schedule steps: ``step`` (after every optimizer step, as transformers' Trainer and "
                "OneCycleLR's docs do; warm-up and linear-decay schedules counted in optimizer steps) or "
                "``epoch`` (after each epoch's validation, as torch's docs step StepLR, MultiStepLR, "
                "ExponentialLR, CosineAnnealingLR and Lightning does by default). Empty: per step for the "
                "built-ins cosine and onecycle, OneCycleLR, CyclicLR, CosineAnnealingWarmRestarts and the "
                "schedules of transformers' ``get_scheduler``; per epoch for every other scheduler. A schedule "
                "whose first LR is 0 (a warm-up) under that per-epoch default is refused (it would train a "
                "whole epoch at LR 0): say which."))
    monitor: str = option("", Monitor(
        metavar="M", help="val_loss or val_acc: picks best.pt, drives early stopping and plateau", shown="val_acc",
        doc="What picks best.pt and drives early stopping and plateau: val_loss, val_acc or val_<metric>; "
            "empty: val_acc for classifiers under the default loss, else val_loss."))
    mode: str = option("", Choice(
        choices=("min", "max"), noun="mode", blank=True, cli=False,
        doc="min or max for the monitor; empty: a torchmetrics Metric's own ``higher_is_better``, else the "
            "monitor's name: min for a loss or an error (loss, error, mse, mae, rmse, l1, nll, ppl, bce, ce, kld, "
            "hamming, wer...), max for a score (acc, f1, precision, recall, auc, iou, dice, r2, psnr, bleu...); "
            "a name that says neither is refused (ValueError): pass mode."))
    early_stopping: int = option(0, Count(
        low=0, metavar="N", help="stop after N epochs without improvement of the monitor", shown="off",
        sweep="values", doc="Stop after this many epochs without improvement of the monitor (0: never), "
                            "with an ``early_stop`` event; the run ends done."))
    grad_clip: float = option(0.0, Number(
        metavar="X", help="clip the gradient norm to X", shown="off", sweep="values",
        doc="Clip the global gradient norm to this value (0: no clipping)."))
    accumulate: int = option(1, Count(
        metavar="N", help="batches per optimizer step", sweep="values",
        doc="Batches per optimizer step (gradient accumulation)."))
    precision: str = option("32", Choice(
        choices=PRECISIONS, noun="precision", metavar="P", help=", ".join(PRECISIONS), sweep="values",
        doc="32, bf16-mixed (autocast to bfloat16) or 16-mixed (float16 with a GradScaler, CUDA only)."))
    compile: bool = option(False, Flag(
        help="train through torch.compile (first steps compile)", sweep="one",
        doc="Train through ``torch.compile(model)`` (kernels fused; the first steps pay the compilation; "
            "evaluation, checkpoints and histograms use the model as it is)."))
    cuda_graphs: bool = option(False, Flag(
        help="replay each training step as one CUDA graph (CUDA, data on the GPU)", sweep="one",
        doc="Capture the whole training step (forward, backward, the divergence guard, clipping and the optimizer "
            "step) as one CUDA graph and replay it: one launch a step instead of hundreds, for small models at "
            "small batches. Needs a CUDA device, the training data on it (a built-in data set, or tensors under a "
            "GiB), a fused or capturable optimizer (the built-in adam, adamw and sgd are fused; the others are "
            "built capturable), and no accumulate, 16-mixed, --compile or distributed run. The first steps and an "
            "odd last batch run as usual; a load or a device switch captures again."))
    val_batch_size: int = option(0, Count(
        low=0, cli=False, doc="Batch size for validation; 0: the training batch size."))
    drop_last: bool = option(False, Flag(
        cli=False, doc="Drop the last incomplete training batch of each epoch (BatchNorm cannot train on one "
                       "sample)."))
    shuffle: bool = option(True, Flag(
        cli=False, shown="on", doc="Shuffle the training data each epoch (seeded, so resume is exact); False: in "
                                   "order, for stateful sequence training (a hidden state carried from batch to "
                                   "batch)."))
    model_args: dict = option_made(dict, ModelArgs(
        flag="--model-arg", metavar="KEY=VALUE", fit="",
        help="keyword argument for a path.py:NAME model (repeatable; VALUE a Python literal)",
        doc="Keyword arguments for a ``path.py:NAME`` model (``--model-arg KEY=VALUE``)."))
    loss: str = option("cross_entropy", Option(
        cli=False, fit="loss_fn", doc="The loss, as a label: cross_entropy (the default) or ``custom:Name`` "
                                      "from ``tuitrain.fit``'s loss_fn."))
    metrics: tuple = option((), Option(
        cli=False, fit="metrics", doc="Names of the user metrics (``tuitrain.fit``), reported as ``val_<name>``."))
    device: str = option("auto", Device(
        metavar="D", help="auto, cpu, cuda, cuda:N or mps", sweep="one",
        doc="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps."))
    seed: int = option(0, Count(
        low=0, high=MAX_SEED, high_text="2**63-1", metavar="N", help="seed for init and data order",
        sweep="values", doc="Seeds model initialisation and data order: the same seed gives the same run.",
        fit_doc="seeds the data order and the random numbers used while training; the model is yours and "
                "built before this call, so seed before building it for a repeatable run."))
    data_dir: str = option_made(default_data_dir, PathText(
        metavar="DIR", help="data folder, torchvision layout", shown="$TUITRAIN_DATA or ~/.cache/tuitrain/data",
        fit="", sweep="one", doc="Folder in torchvision's layout (DIR/FashionMNIST/raw/...)."))
    run_dir: str = option("", PathText(
        folder=True, metavar="DIR", help="where to write", shown="runs/DATASET-MODEL-YYYYmmdd-HHMMSS",
        doc="Where the run writes; empty means runs/DATASET-MODEL-YYYYmmdd-HHMMSS (never colliding)."))
    resume: str = option("", PathText(
        metavar="PATH", help="continue from a checkpoint", doc="Checkpoint to continue from; empty to start fresh."))
    headless: bool = option(False, Flag(
        help="no dashboard; progress on stderr", fit_default=None, doc="No dashboard: progress lines on stderr.",
        fit_doc="True: progress lines on stderr; False: the dashboard; None: the dashboard on a terminal."))
    on_hangup: str = option("continue", Choice(
        choices=("continue", "stop"), noun="--on-hangup value", metavar="WHAT", sweep="one", fit="",
        help="when the terminal goes away (SIGHUP): continue headless, progress in RUN_DIR/log.txt, "
             "or stop (last.pt, exit 129)",
        doc="What a hang-up (SIGHUP: the terminal or SSH session went away) does: continue (the dashboard "
            "ends, training goes on headless with progress lines in RUN_DIR/log.txt) or stop (last.pt, exit 129)."))
    log_every: int = option(20, Count(
        metavar="N", help="steps between step records",
        doc="Steps between step records (a record is also written at least once a second)."))
    hist_every: int = option(200, Count(
        metavar="N", help="steps between histograms", doc="Steps between per-layer weight/gradient histograms."))
    limit: int = option(0, Count(
        low=0, typed_low=1, metavar="N", help="use only the first N training samples and N/5 validation samples",
        shown="all", fit="", sweep="one",
        doc="Use only the first N training and N//5 validation samples (0: all); for quick trials."))
    on_nonfinite: str = option("stop", Choice(
        choices=("stop", "pause"), noun="on_nonfinite", cli=False, fit="",
        doc="What a non-finite loss or gradient does: stop (headless, exit 1) or pause (dashboard)."))

    def to_dict(self) -> dict:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    def replace(self, **changes) -> TrainConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


OPTIONS: dict[str, Option] = {
    f.name: f.metadata["option"].bound(f.name, f.default) for f in dataclasses.fields(TrainConfig)}
"""Every field's option, by field name, in the order of the fields."""


def cuda_graphs_refusal(cfg: TrainConfig) -> str | None:
    """Why --cuda-graphs cannot go with the other settings (one line), or None; whether the device
    and data allow it is known once they are loaded (graphstep.refusal)."""
    if not cfg.cuda_graphs:
        return None
    if cfg.device in ("cpu", "mps"):
        return f"--cuda-graphs needs a CUDA device, not --device {cfg.device}"
    if cfg.compile:
        return ("--cuda-graphs and --compile do not go together: --compile replays forward and backward as "
                "CUDA graphs already; --cuda-graphs captures the optimizer step with them")
    if cfg.accumulate > 1:
        return "--cuda-graphs captures one batch per optimizer step: it cannot accumulate batches"
    if cfg.precision == "16-mixed":
        return ("--cuda-graphs cannot capture 16-mixed's GradScaler (it reads its overflow flag on the host); "
                "use bf16-mixed")
    if cfg.scheduler == "onecycle":
        return ("--cuda-graphs cannot go with --scheduler onecycle: it cycles the optimizer's momentum every step, "
                "and a CUDA graph keeps the momentum it was captured with (cosine or step can step per step)")
    return None


def validate(cfg: TrainConfig, custom: bool = False) -> TrainConfig:
    """Check every field a user can get wrong; raise UsageError with one line, or return cfg.

    Also fills the default run directory, so that the config written to disk is complete.
    ``custom``: model and data come from ``tuitrain.fit``, so their names are labels only.
    """
    for opt in OPTIONS.values():
        opt.check(cfg, custom)
    together = cuda_graphs_refusal(cfg)
    if together:
        raise UsageError(together)
    if not cfg.run_dir:
        cfg = cfg.replace(run_dir=default_run_dir(cfg.dataset, cfg.model))
        OPTIONS["run_dir"].check(cfg, custom)
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
    if not isinstance(name, str) or not _DEVICE_RE.fullmatch(name):
        raise UsageError(f"unknown device {name!r} (auto, cpu, cuda, cuda:N or mps)")
    return name


def check_model_file(spec: str) -> Path:
    """The file of a ``path/to/file.py:NAME`` model; ModelError when it is not there (checked before
    the data loads, so a typo is said at once)."""
    from tuitrain.errors import ModelError

    path = Path(spec.rpartition(":")[0])
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    return path
