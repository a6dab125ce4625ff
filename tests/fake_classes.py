"""Confusion and samples records exactly as the engine writes them (SPEC), for the UI tests."""

from __future__ import annotations

import base64
import math

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot"]
# Off-diagonal counts of a plausible Fashion-MNIST model: (true, predicted) -> samples.
MISTAKES = {(6, 0): 112, (0, 6): 74, (4, 2): 61, (2, 4): 55, (6, 2): 48, (6, 4): 40, (3, 4): 22, (9, 7): 21,
            (7, 9): 18, (5, 7): 15, (2, 6): 30, (4, 6): 35, (0, 3): 12, (3, 0): 10, (8, 0): 3}


def confusion_record(epoch: int = 3, step: int = 1800, per_class: int = 1000) -> dict:
    """A 10-class confusion record over ``10 * per_class`` validation samples (rows sum to per_class)."""
    matrix = [[0] * 10 for _ in range(10)]
    for (t, p), n in MISTAKES.items():
        matrix[t][p] = n * per_class // 1000
    for i in range(10):
        matrix[i][i] = per_class - sum(matrix[i])
    return {"type": "confusion", "epoch": epoch, "step": step, "time": 1000.0 + epoch, "classes": FASHION,
            "matrix": matrix}


def _pixels(kind: int, size: int = 28) -> bytes:
    """A recognisable grey 28x28 picture: a ring, a bar or a block, with a soft gradient."""
    out = bytearray()
    for y in range(size):
        for x in range(size):
            r = math.hypot(x - 13.5, y - 13.5)
            on = (6 < r < 11) if kind == 0 else (9 < x < 18) if kind == 1 else (5 < x < 22 and 8 < y < 20)
            out.append(min(255, 60 + 7 * y) if on else 0)
    return bytes(out)


def samples_record(epoch: int = 3, step: int = 1800, count: int = 8) -> dict:
    """A samples record of ``count`` grey 1x28x28 items, most confidently wrong first."""
    pairs = sorted(MISTAKES, key=MISTAKES.get, reverse=True)
    items = [{"index": 100 + i, "true": t, "pred": p, "confidence": round(0.99 - 0.04 * i, 2), "shape": [1, 28, 28],
              "image": base64.b64encode(_pixels(i % 3)).decode()} for i, (t, p) in enumerate(pairs[:count])]
    return {"type": "samples", "epoch": epoch, "step": step, "time": 1000.0 + epoch, "classes": FASHION,
            "items": items}
