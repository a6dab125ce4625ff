"""A ResNet for small images, to train with tuitrain's CLI through ``--model FILE:NAME``:

    tuitrain fashion-mnist --model examples/resnet.py:make_resnet --model-arg depth=18 --model-arg width=0.5
    tuitrain synthetic --model examples/resnet.py:make_resnet --model-arg depth=10 --epochs 1 --limit 500

tuitrain passes ``num_classes`` and ``in_channels`` (the signature takes them), then every
``--model-arg``. The stem is a 3x3 convolution without pooling, as ResNets for 28x28 and 32x32
images use: ImageNet's 7x7 stride-2 stem and max-pool would leave a 7x7 map after one layer.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

BLOCKS = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
"""Basic blocks per stage for each depth (He et al., 2016, table 1)."""


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a shortcut (a 1x1 convolution where the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Stem, four stages of basic blocks (the last three halve the map), global average pool, linear."""

    def __init__(self, blocks: tuple[int, ...], width: float, num_classes: int, in_channels: int) -> None:
        super().__init__()
        channels = [max(8, round(c * width)) for c in (64, 128, 256, 512)]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels[0]), nn.ReLU())
        stages, previous = [], channels[0]
        for i, (count, out) in enumerate(zip(blocks, channels, strict=True)):
            layers = [BasicBlock(previous, out, stride=1 if i == 0 else 2)]
            layers += [BasicBlock(out, out) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layers))
            previous = out
        self.stages = nn.Sequential(*stages)
        self.out = nn.Linear(previous, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.out(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def make_resnet(depth: int = 18, width: float = 1.0, num_classes: int = 10, in_channels: int = 1) -> ResNet:
    """A ResNet-``depth`` (10, 18 or 34) with ``width`` times the usual channels (64, 128, 256, 512)."""
    if depth not in BLOCKS:
        raise ValueError(f"depth must be one of {sorted(BLOCKS)}, got {depth!r}")
    if not width > 0:
        raise ValueError(f"width must be above 0, got {width!r}")
    return ResNet(BLOCKS[depth], width, num_classes, in_channels)
