"""What the ports share and is not glue: generated data of the originals' shapes (no download), the
command line every port takes, and the one JSON line a port prints for ``run_all.py``.

A port's ``main(epochs, limit, run_dir, headless, variant)`` trains through ``tuitrain.fit`` and
returns ``verdict(...)``: whether the run learned what the original learns, judged on one figure
against what it should be (chance level, a baseline, the noise floor). An exception from ``fit``
propagates: ``run_all.py`` reads the run directory to tell "failed before training" from "failed
during training".
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

RESULT_PREFIX = "PORT_RESULT "


def digits(n: int, seed: int, classes: int = 10, noise: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST-shaped data: (n, 1, 28, 28) float images in [0, 1] and (n,) int64 labels.

    Each class is a fixed figure of 3 strokes (the same for every seed); a sample is its class's
    figure shifted by up to 2 pixels, with random stroke strength and ``noise`` (uniform, added to
    the background; 0 gives MNIST's clean black background): as learnable
    as MNIST for the originals' models (a CNN reaches >95% in an epoch), chance is 10%.
    """
    proto = torch.zeros(classes, 28, 28)
    strokes = torch.Generator().manual_seed(1234)
    t = torch.linspace(0, 1, 40)
    for c in range(classes):
        for _ in range(3):
            a, b = torch.rand(2, 2, generator=strokes) * 16 + 6
            pts = (a[None] * (1 - t[:, None]) + b[None] * t[:, None]).round().long().clamp(0, 27)
            proto[c, pts[:, 1], pts[:, 0]] = 1.0
    proto = F.max_pool2d(proto[:, None], 3, stride=1, padding=1)[:, 0]  # strokes 3 pixels wide
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=gen)
    shift = torch.randint(-2, 3, (n, 2), generator=gen)
    x = torch.stack([torch.roll(proto[int(c)], (int(s[0]), int(s[1])), (0, 1)) for c, s in zip(y, shift, strict=True)])
    x = x * (0.6 + 0.4 * torch.rand(n, 1, 1, generator=gen)) + noise * torch.rand(n, 28, 28, generator=gen)
    return x.clamp(0, 1)[:, None], y


def verdict(result: Any, *, figure: str, value: float, expected: str, ok: bool, reason: str = "",
            **extra: Any) -> dict:
    """What ``run_all.py`` tabulates: trained (``ok``) or trained wrong (with the reason)."""
    return {"status": "trained" if ok else "trained wrong", "figure": f"{figure} {_fmt(value)}",
            "expected": expected, "reason": "" if ok else reason, "epochs_done": result.epochs_done,
            "step": result.step, "monitor": result.monitor, "best": result.best, "best_epoch": result.best_epoch,
            "run_dir": result.run_dir, **extra}


def skipped(reason: str) -> dict:
    """A port that cannot run here (an optional package missing)."""
    return {"status": "skipped", "figure": "", "expected": "", "reason": reason}


def last(result: Any, key: str) -> float:
    """The last epoch record's ``key`` (nan when absent)."""
    return float(result.history[-1].get(key, math.nan)) if result.history else math.nan


def _fmt(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def cli(main: Callable[..., dict], doc: str, epochs: int, limit: int) -> None:
    """``python examples/ports/NAME.py [--epochs N] [--limit N] [--headless] [--run-dir D] [--variant V]``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--limit", type=int, default=limit, help="training samples generated (default %(default)s)")
    parser.add_argument("--headless", action="store_true", help="progress lines instead of the dashboard")
    parser.add_argument("--run-dir", default="", help="the run directory (default: tuitrain's runs/...)")
    parser.add_argument("--variant", default="", help="a variant of the port that shows one defect (see the docstring)")
    args = parser.parse_args()
    out = main(epochs=args.epochs, limit=args.limit, run_dir=args.run_dir,
               headless=True if args.headless else None, variant=args.variant)
    print(RESULT_PREFIX + json.dumps(out, default=str), file=sys.stdout, flush=True)
