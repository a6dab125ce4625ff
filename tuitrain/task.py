"""What is trained and how it is judged: loss, metrics, batch unpacking, optimizer and schedule.

The engine's loop is the same for every training; a :class:`Task` holds what differs between a
notes-style classifier and a practitioner's regression or multi-output model. The defaults are
the notes' classifier: cross-entropy over class indices, accuracy, Adam. Built here so the
engine reads top to bottom; checked on a real batch before the first step, so an ill-posed
combination (a single output under cross-entropy, float targets) is refused rather than trained.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from tuitrain import schedule
from tuitrain.errors import UsageError
from tuitrain.graphstep import capturable_kwargs

INPUT_KEYS = ("input", "inputs", "x", "pixel_values", "input_ids", "image", "images", "features")
TARGET_KEYS = ("label", "labels", "y", "target", "targets")
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop,
    "adadelta": torch.optim.Adadelta, "adagrad": torch.optim.Adagrad, "nadam": torch.optim.NAdam,
    "radam": torch.optim.RAdam, "adamax": torch.optim.Adamax,
}
FUSED = ("adam", "adamw", "sgd")
"""Optimizers built on the fused kernel: one kernel for all parameters (about 10% more samples/s
for the notes' cnn on 2 CPU cores), and the divergence guard's sync-free skip (``found_inf``)."""


ELEMENTWISE_LOSSES = (torch.nn.MSELoss, torch.nn.L1Loss, torch.nn.SmoothL1Loss, torch.nn.HuberLoss, torch.nn.BCELoss,
                      torch.nn.BCEWithLogitsLoss, torch.nn.SoftMarginLoss, torch.nn.KLDivLoss, torch.nn.PoissonNLLLoss)
"""torch's losses that compare outputs and targets element by element: the two must have one shape."""


class TargetError(UsageError, ValueError):
    """Targets (or outputs) that the loss cannot train on: refused before the first step."""


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch) if not hasattr(batch, "_fields") else \
            type(batch)(*(to_device(v, device) for v in batch))
    return batch


def default_batch_fn(batch: Any) -> tuple[Any, Any]:
    """``(x, y)``, ``(x, y, *extra)`` or a dict with common keys -> (inputs, targets)."""
    if isinstance(batch, Mapping):
        input_key, target_key = dict_keys(batch)
        rest = {k: v for k, v in batch.items() if k not in TARGET_KEYS}
        # input_ids travel with their attention masks: the model gets every input key by name.
        inputs = rest if input_key == "input_ids" and len(rest) > 1 else rest[input_key]
        return inputs, batch[target_key]
    if isinstance(batch, (list, tuple)) and len(batch) >= 2:
        return batch[0], batch[1]
    raise UsageError(f"cannot find (inputs, targets) in a batch of type {type(batch).__name__}; pass batch_fn=")


def dict_keys(batch: Mapping) -> tuple[str, str]:
    """(input key, target key) of a dict batch: the first of INPUT_KEYS and TARGET_KEYS it holds."""
    target_key = next((k for k in TARGET_KEYS if k in batch), None)
    if target_key is None:
        raise UsageError(f"a dict batch needs a target key (one of {', '.join(TARGET_KEYS)}); "
                         f"found {', '.join(map(str, batch))}; pass batch_fn=")
    input_key = next((k for k in INPUT_KEYS if k in batch and k not in TARGET_KEYS), None)
    if input_key is None:
        raise UsageError(f"a dict batch needs an input key (one of {', '.join(INPUT_KEYS)}); "
                         f"found {', '.join(map(str, batch))}; pass batch_fn=")
    return input_key, target_key


def model_loss(outputs: Any) -> torch.Tensor | None:
    """The loss a model computed itself (Hugging Face style: ``outputs.loss`` or ``outputs["loss"]``)."""
    loss = outputs.get("loss") if isinstance(outputs, Mapping) else getattr(outputs, "loss", None)
    return loss if isinstance(loss, torch.Tensor) else None


def keywords_of(model: torch.nn.Module) -> frozenset[str]:
    """The argument names ``model``'s forward takes by name (not ``**kwargs``)."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return frozenset()
    return frozenset(n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def primary(outputs: Any) -> torch.Tensor:
    """The tensor that predictions come from: element 0 of a tuple/list, ``logits`` of a dict or of
    an output object (a Hugging Face ``ModelOutput``)."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    if not isinstance(outputs, Mapping) and isinstance(getattr(outputs, "logits", None), torch.Tensor):
        return outputs.logits
    if isinstance(outputs, Mapping):
        if "logits" in outputs:
            return outputs["logits"]
        raise UsageError(f"the model returned a dict without 'logits' (keys: {', '.join(map(str, outputs))}); "
                         f"pass loss_fn= that reads it")
    if isinstance(outputs, (list, tuple)) and outputs and isinstance(outputs[0], torch.Tensor):
        return outputs[0]
    raise UsageError(f"the model returned {type(outputs).__name__}, not a tensor, tuple or dict")


def forward(model: torch.nn.Module, inputs: Any) -> Any:
    """Call the model: a tuple of inputs as positional arguments, a dict as keyword arguments."""
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (list, tuple)):
        return model(*inputs)
    return model(inputs)


def batch_size_of(targets: Any) -> int:
    """Samples in a batch, from its targets."""
    if isinstance(targets, torch.Tensor):
        return int(targets.shape[0]) if targets.dim() else 1
    if isinstance(targets, Mapping):
        return batch_size_of(next(iter(targets.values())))
    if isinstance(targets, (list, tuple)):
        return batch_size_of(targets[0]) if targets and isinstance(targets[0], torch.Tensor) else len(targets)
    raise UsageError(f"targets of type {type(targets).__name__}: pass batch_fn= returning tensors")


@dataclass
class Task:
    """The parts of training that differ between models: see the module docstring."""

    loss_fn: Callable[[Any, Any], torch.Tensor] | None = None
    """``(outputs, targets) -> scalar``; None: cross-entropy over class-index targets of shape (N,)."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """``{"name": fn or torchmetrics.Metric}``, computed on validation each epoch as ``val_<name>``."""
    batch_fn: Callable[[Any], tuple[Any, Any]] | None = None
    """``batch -> (inputs, targets)``; None: :func:`default_batch_fn`."""
    optimizer: Any = None
    """An Optimizer, or ``params -> Optimizer``; None: the config's optimizer name."""
    scheduler: Any = None
    """``optimizer -> scheduler``; None: the config's scheduler name."""
    classes: list[str] = field(default_factory=list)
    classification: bool = True
    """Decided on the first batch: class-index targets of shape (N,) and (N, C) outputs."""
    perplexity: bool = False
    """Decided on the first batch (:func:`language_model`): validation reports ``val_ppl``."""
    takes: frozenset[str] = frozenset()
    """The names the model's forward takes (:meth:`bind`): a dict batch's target key among them
    (``labels``) goes to the model too, as transformers' models compute their loss from it."""
    own_loss: bool = False
    """Decided on the first batch: no loss_fn, and the model returns its own ``loss``: trained on."""

    def bind(self, model: torch.nn.Module) -> None:
        """Learn which arguments ``model`` takes by name."""
        self.takes = keywords_of(model)

    def split(self, batch: Any) -> tuple[Any, Any]:
        """(inputs, targets) of a batch; with the default batch_fn, a dict batch's target key goes
        to the model as well when its forward takes that name (``forward(input_ids, labels=None)``)."""
        if self.batch_fn is not None:
            return self.batch_fn(batch)
        inputs, targets = default_batch_fn(batch)
        if isinstance(batch, Mapping) and self.takes:
            input_key, target_key = dict_keys(batch)
            if target_key in self.takes:
                if isinstance(inputs, Mapping):
                    inputs = {**inputs, target_key: targets}
                elif input_key in self.takes:
                    inputs = {input_key: inputs, target_key: targets}
        return inputs, targets

    def loss(self, outputs: Any, targets: Any) -> torch.Tensor:
        """The training loss of a batch."""
        if self.loss_fn is None:
            if self.own_loss:
                loss = model_loss(outputs)
                if loss is None:
                    raise TargetError("the model returned no loss for this batch (it did on the first one)")
                return loss
            return F.cross_entropy(primary(outputs), targets)
        return self.loss_fn(outputs, targets)

    def check(self, outputs: Any, targets: Any) -> None:
        """Refuse targets the default loss cannot mean; decide whether accuracy means something."""
        self.own_loss = self.loss_fn is None and model_loss(outputs) is not None  # transformers' Trainer does so
        out = primary(outputs) if (self.loss_fn is None and not self.own_loss) or not _is_raw(outputs) else None
        classes = (isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[1] >= 2
                   and isinstance(targets, torch.Tensor) and targets.dim() == 1 and not targets.is_floating_point()
                   and not targets.is_complex() and targets.dtype != torch.bool and len(targets) == len(out))
        if self.loss_fn is None and not classes and not self.own_loss:
            raise TargetError(
                f"the default loss is cross-entropy over class indices: it needs outputs of shape (N, C>=2) "
                f"and integer targets of shape (N,); got outputs {_describe(out if out is not None else outputs)} "
                f"and targets {_describe(targets)}. Pass loss_fn= (e.g. torch.nn.MSELoss() for regression)")
        if classes and out is not None:
            top = int(targets.max()) if len(targets) else 0
            if top >= out.shape[1] or (len(targets) and int(targets.min()) < 0):
                raise TargetError(f"class index {top if top >= out.shape[1] else int(targets.min())} is outside "
                                  f"the model's {out.shape[1]} outputs")
        self.classification = bool(classes)

    def check_loss(self, outputs: Any, targets: Any) -> None:
        """The given loss on the pre-flight batch: refuse (TargetError) outputs and targets of
        different shapes under an elementwise torch loss (MSELoss broadcasts (N, 1) against (N,) to
        (N, N) and trains on every pair), any warning the loss raises, and a loss that is not a
        scalar tensor. An exception is left for the first step to raise, with its traceback."""
        if self.loss_fn is None:
            return  # cross-entropy: check() has held the shapes to (N, C) and (N,)
        if (isinstance(self.loss_fn, ELEMENTWISE_LOSSES) and isinstance(outputs, torch.Tensor)
                and isinstance(targets, torch.Tensor) and outputs.shape != targets.shape):
            raise TargetError(
                f"{type(self.loss_fn).__name__} compares outputs and targets element by element, but the outputs are "
                f"{_describe(outputs)} and the targets {_describe(targets)}{_broadcast(outputs, targets)}: "
                f"reshape one to the other (e.g. targets.view(-1, 1) or outputs.squeeze(1)), in the data or the model")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                loss = self.loss_fn(outputs, targets)
            except Exception:
                return  # the first training step raises it again, with its traceback in the error event
        if caught:
            said = " ".join(str(caught[0].message).split())
            raise TargetError(f"the loss warned on the first batch (outputs {_describe(primary_or(outputs))}, targets "
                              f"{_describe(targets)}): {caught[0].category.__name__}: {said}")
        if not isinstance(loss, torch.Tensor):
            hint = (" (a model computes its own loss only when given the labels)" if loss is None else "")
            raise TargetError(f"loss_fn returned {type(loss).__name__}, not a tensor{hint}")
        if loss.numel() != 1:
            raise TargetError(f"loss_fn returned a tensor {_describe(loss)}, not a scalar: reduce it (e.g. .mean())")

    def monitor_for(self, requested: str) -> str:
        """The monitored value: as requested (checked), else val_acc for classifiers under the default
        loss or the model's own, else val_loss."""
        if not requested:
            return "val_acc" if self.classification and self.loss_fn is None else "val_loss"
        allowed = ["val_loss"] + (["val_acc"] if self.classification else []) + [f"val_{n}" for n in self.metrics]
        if requested not in allowed:
            raise UsageError(f"cannot monitor {requested!r}: choose from {', '.join(allowed)}")
        return requested

    def higher_is_better(self, monitor: str) -> bool | None:
        """What the monitored metric says of itself: a torchmetrics Metric's ``higher_is_better``
        (None for val_loss, val_acc, a function metric, or a Metric that does not say)."""
        metric = self.metrics.get(monitor[4:]) if monitor.startswith("val_") else None
        said = getattr(metric, "higher_is_better", None)
        return said if isinstance(said, bool) else None

    def build_optimizer(self, name: str, params, lr: float, weight_decay: float,
                        capturable: bool = False) -> torch.optim.Optimizer:
        """The optimizer: the user's (object or factory), else a built-in by name. ``capturable``: a
        built-in without a fused kernel is built capturable=True (its step count on the GPU), so a
        CUDA graph can capture its step (--cuda-graphs)."""
        params = list(params)
        if isinstance(self.optimizer, torch.optim.Optimizer):
            return self.optimizer
        if callable(self.optimizer):
            return self.optimizer(params)
        if name not in OPTIMIZERS:
            raise UsageError(f"unknown optimizer {name!r} (choose from {', '.join(OPTIMIZERS)})")
        kwargs: dict[str, Any] = {"lr": lr, "weight_decay": weight_decay}
        if name == "sgd":
            kwargs["momentum"] = 0.9
        if name in FUSED and all(p.is_floating_point() for p in params):  # the fused kernel takes no complex
            kwargs["fused"] = True
        if capturable:  # fused Adam too: its step refuses a capture unless built capturable=True
            kwargs.update(capturable_kwargs(OPTIMIZERS[name]))
        return OPTIMIZERS[name](params, **kwargs)

    def build_scheduler(self, name: str, optimizer, steps_per_epoch: int, epochs: int, mode: str,
                        interval: str = ""):
        """(scheduler or None, interval): a user's factory, else a built-in by name (schedule.py).
        ``steps_per_epoch``: optimizer steps; ``interval``: step, epoch or "" (the schedule's own)."""
        if callable(self.scheduler):
            built = self.scheduler(optimizer)
            every = schedule.interval_of(built, interval)
            schedule.check_start(built, optimizer, every, interval)
            return built, every
        return schedule.build(name, optimizer, steps_per_epoch, epochs, mode, interval)


def language_model(task: Task, inputs: Any, outputs: Any, targets: Any) -> bool:
    """Whether perplexity (exp of the validation loss) means something for this task: class-index
    targets, a loss that is cross-entropy (on this batch its value is ``F.cross_entropy``'s of the
    outputs, as for ``nn.CrossEntropyLoss`` or ``nn.NLLLoss`` over log-softmax outputs) and inputs
    that are token ids of the outputs' own vocabulary (every integer tensor of the inputs below C:
    a language model reads and predicts the same words, a text classifier reads more words than it
    has classes)."""
    if not task.classification:
        return False
    out = primary(outputs)
    tokens = [t for t in _tensors(inputs) if not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool]
    if not tokens or any(len(t.flatten()) and (int(t.min()) < 0 or int(t.max()) >= out.shape[1]) for t in tokens):
        return False
    if task.loss_fn is None:
        return True
    try:
        loss = task.loss(outputs, targets)
        expected = F.cross_entropy(out.float(), targets)
    except Exception:  # the loss's own failure is reported where training meets it
        return False
    return isinstance(loss, torch.Tensor) and loss.numel() == 1 and bool(
        torch.isclose(loss.detach().float().reshape(()), expected, rtol=1e-4, atol=1e-6))


def _tensors(value: Any) -> list[torch.Tensor]:
    """Every tensor of a (nested) tuple, list or dict."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def metric_names_clash(metrics: Mapping[str, Any]) -> None:
    """Metric names become record fields ``val_<name>``: plain identifiers, not loss/acc."""
    for name in metrics:
        if not isinstance(name, str) or not name.isidentifier() or name in ("loss", "acc"):
            raise UsageError(f"metric name {name!r}: use an identifier other than 'loss' and 'acc'")
        fn = metrics[name]
        if not callable(fn) and not hasattr(fn, "update"):
            raise UsageError(f"metric {name!r} is neither a function nor a torchmetrics Metric")


def accepts(fn: Callable, name: str) -> bool:
    """Whether ``fn`` takes a keyword argument ``name`` (or any keywords)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def primary_or(outputs: Any) -> Any:
    """The prediction tensor of ``outputs`` when there is one, else ``outputs`` as they are."""
    return outputs if _is_raw(outputs) else primary(outputs)


def _broadcast(outputs: torch.Tensor, targets: torch.Tensor) -> str:
    """``, which broadcast to (N, N)``: what a loss that broadcasts would compare."""
    try:
        shape = torch.broadcast_shapes(outputs.shape, targets.shape)
    except RuntimeError:
        return ""
    if shape in (outputs.shape, targets.shape) and outputs.numel() == targets.numel():
        return ""
    n = len(targets) if targets.dim() else 0
    dims = ["N" if d == n and n else str(d) for d in shape]
    return f", which broadcast to ({', '.join(dims)}{',' if len(dims) == 1 else ''})"


def _is_raw(outputs: Any) -> bool:
    """Outputs a custom loss reads as they are (a dict without logits, say)."""
    try:
        primary(outputs)
    except UsageError:
        return True
    return False


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        shape = ", ".join(["N", *map(str, value.shape[1:])]) if value.dim() else ""
        return f"of shape ({shape}{',' if value.dim() == 1 else ''}) {str(value.dtype).replace('torch.', '')}"
    return type(value).__name__
