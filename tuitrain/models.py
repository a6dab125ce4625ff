"""The built-in models, the loader for a user's own nn.Module, and the summary table.

"The notes" are the classic PyTorch course notes on Fashion-MNIST (docs/ARCHITECTURE.md, Words).
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tuitrain import config
from tuitrain.errors import ModelError


class Network(nn.Module):
    """The Network of the classic Fashion-MNIST notes, attribute for attribute.

    Its state_dict loads into the notes' Network (and back) with ``strict=True``. On other image
    shapes (CIFAR-10: 3x32x32) only conv1's input channels and fc1's input width change.
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10):
        super().__init__()
        side = ((image_size - 4) // 2 - 4) // 2
        self.conv1 = nn.Conv2d(in_channels=in_channels, out_channels=6, kernel_size=5)
        self.conv2 = nn.Conv2d(in_channels=6, out_channels=12, kernel_size=5)
        self.fc1 = nn.Linear(in_features=12 * side * side, out_features=120)
        self.fc2 = nn.Linear(in_features=120, out_features=60)
        self.out = nn.Linear(in_features=60, out_features=num_classes)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        t = F.max_pool2d(F.relu(self.conv1(t)), kernel_size=2, stride=2)
        t = F.max_pool2d(F.relu(self.conv2(t)), kernel_size=2, stride=2)
        t = t.flatten(start_dim=1)
        t = F.relu(self.fc1(t))
        t = F.relu(self.fc2(t))
        return self.out(t)


class NetworkBN(Network):
    """The notes' Network with BatchNorm after the first pooled conv (bn1) and after fc1 (bn2)."""

    def __init__(self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10):
        super().__init__(in_channels, image_size, num_classes)
        self.bn1 = nn.BatchNorm2d(6)
        self.bn2 = nn.BatchNorm1d(120)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        t = self.bn1(F.max_pool2d(F.relu(self.conv1(t)), kernel_size=2, stride=2))
        t = F.max_pool2d(F.relu(self.conv2(t)), kernel_size=2, stride=2)
        t = t.flatten(start_dim=1)
        t = self.bn2(F.relu(self.fc1(t)))
        t = F.relu(self.fc2(t))
        return self.out(t)


class LeNet(nn.Module):
    """LeNet-5 (padding 2 on the first conv, so 28x28 inputs keep the 32x32 geometry)."""

    def __init__(self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10):
        super().__init__()
        pad = 2 if image_size == 28 else 0
        side = ((image_size + 2 * pad - 4) // 2 - 4) // 2
        self.conv1 = nn.Conv2d(in_channels, 6, kernel_size=5, padding=pad)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        t = F.max_pool2d(F.relu(self.conv1(t)), 2)
        t = F.max_pool2d(F.relu(self.conv2(t)), 2)
        t = t.flatten(start_dim=1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(t)))))


class MLP(nn.Module):
    """Flatten, 256 hidden units with ReLU, then the classes (784-256-10 on Fashion-MNIST)."""

    def __init__(self, in_features: int = 784, num_classes: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(in_features, 256)
        self.fc2 = nn.Linear(256, num_classes)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(t.flatten(start_dim=1))))


def build_model(name: str, shape: tuple[int, ...], num_classes: int = 10, model_args: dict | None = None) -> nn.Module:
    """Build a built-in model for images of ``shape`` (C, H, W), or a user's ``file.py:NAME``."""
    channels, height, width = (tuple(shape) + (1, 1, 1))[:3]
    if name == "cnn":
        return Network(channels, height, num_classes)
    if name == "cnn-bn":
        return NetworkBN(channels, height, num_classes)
    if name == "lenet":
        return LeNet(channels, height, num_classes)
    if name == "mlp":
        return MLP(channels * height * width, num_classes)
    return load_user_model(name, {"num_classes": num_classes, "in_channels": channels, "image_size": height},
                           model_args or {})


def load_user_model(spec: str, offered: dict | None = None, model_args: dict | None = None) -> nn.Module:
    """Import ``path/to/file.py:NAME`` and build it: NAME is an nn.Module class or a function
    returning one. Of ``offered`` (num_classes, in_channels, image_size) those its signature
    accepts are passed, then ``model_args`` (--model-arg). The file's folder is importable while
    it loads, so ``from blocks import ConvBlock`` beside it works.

    This runs the user's own code, by design (the README says so).
    """
    path_text, _, name = spec.rpartition(":")
    path = config.check_model_file(spec)
    folder = str(path.resolve().parent)
    mod_name = f"tuitrain_user_{path.stem}"
    module_spec = importlib.util.spec_from_file_location(mod_name, path)
    if module_spec is None or module_spec.loader is None:
        raise ModelError(f"cannot import {path}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[mod_name] = module
    sys.path.insert(0, folder)
    try:
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            raise ModelError(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
        except SystemExit as exc:  # the file is a script: its exit must not end tuitrain without a word
            raise ModelError(f"importing {path} failed: it called sys.exit({exc.code!r}) (a model file is "
                             f"imported; guard script code with `if __name__ == '__main__':`)") from None
        factory = getattr(module, name, None)
        if not (isinstance(factory, type) and issubclass(factory, nn.Module)) and not (
                callable(factory) and not isinstance(factory, type)):
            raise ModelError(f"{path} has no nn.Module subclass or function named {name}")
        kwargs = {k: v for k, v in (offered or {}).items() if _accepts(factory, k)}
        kwargs.update(model_args or {})
        try:
            model = factory(**kwargs)
        except (Exception, SystemExit) as exc:
            raise ModelError(f"{name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) failed: "
                             f"{type(exc).__name__}: {exc}") from None
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    if not isinstance(model, nn.Module):
        raise ModelError(f"{name}() returned a {type(model).__name__}, not an nn.Module")
    return model


def _accepts(fn, name: str) -> bool:
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params


@dataclass(frozen=True)
class SummaryRow:
    """One layer of the summary table."""

    name: str
    kind: str
    depth: int
    output_shape: tuple[int, ...]
    params: int
    trainable: str


@dataclass(frozen=True)
class ModelSummary:
    """The model summary: plain values only, so it can cross to the UI and into JSON."""

    rows: tuple[SummaryRow, ...]
    total_params: int
    trainable_params: int
    size_mb: float

    def to_dict(self) -> dict:
        """JSON-ready form (written into the run's start event)."""
        return {
            "rows": [[r.name, r.kind, r.depth, list(r.output_shape), r.params, r.trainable] for r in self.rows],
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "size_mb": self.size_mb,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ModelSummary:
        """Inverse of :meth:`to_dict`."""
        rows = tuple(SummaryRow(r[0], r[1], r[2], tuple(r[3]), r[4], r[5]) for r in data["rows"])
        return cls(rows, data["total_params"], data["trainable_params"], data["size_mb"])


def summarize(model: nn.Module, inputs) -> ModelSummary:
    """Layers, output shapes, parameter counts and size, through torchinfo, on real inputs: a tensor
    (or a tuple/dict of them, as the model takes them), or a shape (C, H, W) for one random sample."""
    import torchinfo

    if isinstance(inputs, tuple) and all(isinstance(d, int) for d in inputs):
        stats = torchinfo.summary(model, input_size=(1, *inputs), verbose=0, depth=4, device="cpu")
    else:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        stats = torchinfo.summary(model, input_data=[inputs] if isinstance(inputs, torch.Tensor) else inputs,
                                  verbose=0, depth=4, device=device, mode="eval")
    rows = tuple(
        SummaryRow(
            name=layer.var_name or layer.class_name,
            kind=layer.class_name,
            depth=layer.depth,
            output_shape=tuple(layer.output_size),
            params=layer.num_params,
            trainable=str(layer.trainable),
        )
        for layer in stats.summary_list
        if layer.depth > 0
    )
    size_mb = (stats.total_param_bytes + sum(b.numel() * b.element_size() for b in model.buffers())) / 1e6
    return ModelSummary(rows, stats.total_params, stats.trainable_params, round(size_mb, 6))


def format_summary(summary: ModelSummary) -> str:
    """The summary as a plain text table (``tuitrain summary``); columns as wide as their longest cell."""
    from tuitrain import fmt

    names = ["  " * (row.depth - 1) + f"{row.name} ({row.kind})" for row in summary.rows]
    shapes = [fmt.shape(row.output_shape) for row in summary.rows]
    nw = max([len("Layer"), *map(len, names)]) + 2
    sw = max([len("Output shape"), *map(len, shapes)]) + 2
    lines = [f"{'Layer':<{nw}}{'Output shape':<{sw}}{'Params':>12}  Trainable"]
    lines.append("-" * len(lines[0]))
    for row, name, shape in zip(summary.rows, names, shapes, strict=True):
        lines.append(f"{name:<{nw}}{shape:<{sw}}{fmt.count(row.params):>12}  {row.trainable}")
    lines.append("-" * len(lines[0]))
    lines.append(f"Total params: {fmt.count(summary.total_params)}  trainable: {fmt.count(summary.trainable_params)}")
    lines.append(f"Size: {fmt.size(summary.size_mb * 1e6)}")
    return "\n".join(lines)
