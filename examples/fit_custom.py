"""Train your own model on your own data with tuitrain's dashboard: a complete example.

    python examples/fit_custom.py              # dashboard in a terminal
    python examples/fit_custom.py --headless   # progress lines; same run directory

It builds a small data set in memory (two interleaved spirals, 3 classes; no download), defines an
nn.Module, and hands both to tuitrain.fit. While it trains: p pauses, r changes the learning rate,
s saves a checkpoint, q stops (writing last.pt). `tuitrain watch RUN_DIR` and `tuitrain ctl` work
on it as on any run.
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn as nn

import tuitrain
from tuitrain import fmt


def spirals(n_per_class: int = 1000, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Points on ``classes`` interleaved spiral arms with noise: (inputs [N, 2], labels [N])."""
    gen = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for c in range(classes):
        r = torch.linspace(0.05, 1.0, n_per_class)
        theta = torch.linspace(0, 4, n_per_class) + c * 2 * math.pi / classes
        theta = theta + torch.randn(n_per_class, generator=gen) * 0.15
        xs.append(torch.stack([r * torch.sin(theta), r * torch.cos(theta)], dim=1))
        ys.append(torch.full((n_per_class,), c))
    return torch.cat(xs), torch.cat(ys)


class SpiralNet(nn.Module):
    """A small MLP: 2 inputs, two hidden layers of 64, 3 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2, 64)
        self.fc2 = nn.Linear(64, 64)
        self.out = nn.Linear(64, 3)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc2(torch.relu(self.fc1(t)))))


def main(epochs: int = 30, headless: bool | None = None, run_dir: str = ""):
    """Train SpiralNet on the spirals; return tuitrain's Result."""
    torch.manual_seed(0)
    train = spirals(seed=0)
    val = spirals(n_per_class=300, seed=1)
    return tuitrain.fit(SpiralNet(), train, val, epochs=epochs, batch_size=64, lr=0.01, headless=headless,
                        run_dir=run_dir, name="spirals", classes=["arm 0", "arm 1", "arm 2"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--headless", action="store_true")
    parser.add_argument("--run-dir", default="")
    args = parser.parse_args()
    result = main(args.epochs, True if args.headless else None, args.run_dir)
    print(f"{result.status}: best val_acc {fmt.acc(result.best_val_acc)}")
