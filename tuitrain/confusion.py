"""Reading the `confusion` and `samples` records (README, The run directory): checks, per-class accuracy, confused pairs, images.

Pure Python (no textual, no torch): the classes view, the gallery and TensorBoard all use these, and a
record that does not have the documented shape is refused here (None) rather than crashing a reader.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

MAX_SAMPLES = 16
"""The engine writes at most this many misclassified samples per epoch; readers keep no more."""
MATRIX_MAX_CLASSES = 100
"""Up to this many classes a run writes its confusion matrix each epoch (100 x 100: about 30 KB a
record; the classes view draws the worst 40 of it, the lists cover all). Above it (a vocabulary, 1,000
ImageNet classes) a matrix is unreadable and grows as the square: 3,848 words made 59 MB of
metrics.jsonl in 2 epochs. Such runs get top-k accuracy and the most confused pairs instead, counted
sparsely (TOP_K, CONFUSED_PAIRS)."""
TOP_K = 5
"""Above MATRIX_MAX_CLASSES: ``val_top5`` is the share of samples whose class is among the 5 most likely."""
CONFUSED_PAIRS = 10
"""Above MATRIX_MAX_CLASSES: the epoch record's ``confused`` lists this many (true, predicted, count), most first."""


@dataclass(frozen=True)
class Confusion:
    """A checked confusion record: ``matrix[true][pred]`` counts over the validation split."""

    epoch: int
    classes: list[str]
    matrix: list[list[int]]

    @property
    def total(self) -> int:
        """How many validation samples were counted."""
        return sum(map(sum, self.matrix))

    @property
    def accuracy(self) -> float:
        """Correct over all (the trace over the sum); 0 when empty."""
        return sum(self.matrix[i][i] for i in range(len(self.classes))) / max(self.total, 1)


def read_confusion(record: dict) -> Confusion | None:
    """The record as a Confusion, or None when its classes and matrix do not fit together."""
    classes, matrix = record.get("classes"), record.get("matrix")
    if not isinstance(classes, list) or not isinstance(matrix, list) or not classes:
        return None
    n = len(classes)
    if len(matrix) != n or any(not isinstance(row, list) or len(row) != n for row in matrix):
        return None
    if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for row in matrix for c in row):
        return None
    epoch = record.get("epoch", 0)
    return Confusion(epoch if isinstance(epoch, int) else 0, [str(c) for c in classes], matrix)


def per_class(conf: Confusion) -> list[tuple[str, float, int]]:
    """(class, accuracy, samples) for each class that has samples, worst first."""
    rows = [(name, conf.matrix[i][i] / sum(conf.matrix[i]), sum(conf.matrix[i]))
            for i, name in enumerate(conf.classes) if sum(conf.matrix[i])]
    return sorted(rows, key=lambda row: (row[1], row[0]))


def confused_pairs(conf: Confusion, count: int = 5) -> list[tuple[str, str, int]]:
    """The ``count`` largest off-diagonal cells as (true class, predicted class, samples)."""
    cells = [(conf.matrix[t][p], t, p) for t in range(len(conf.classes)) for p in range(len(conf.classes))
             if t != p and conf.matrix[t][p]]
    cells.sort(key=lambda cell: (-cell[0], cell[1], cell[2]))
    return [(conf.classes[t], conf.classes[p], n) for n, t, p in cells[:count]]


@dataclass(frozen=True)
class Sample:
    """One misclassified validation image: labels, confidence, and its pixels (C*H*W uint8, planar)."""

    index: int
    true: str
    pred: str
    confidence: float
    channels: int
    height: int
    width: int
    pixels: bytes


def read_samples(record: dict) -> list[Sample]:
    """The record's usable items (at most MAX_SAMPLES); an item that does not decode is skipped."""
    classes, items = record.get("classes"), record.get("items")
    if not isinstance(classes, list) or not isinstance(items, list):
        return []
    out = []
    for item in items[:MAX_SAMPLES]:
        sample = _read_item(item, classes)
        if sample is not None:
            out.append(sample)
    return out


def _read_item(item: object, classes: list) -> Sample | None:
    if not isinstance(item, dict):
        return None
    shape, true, pred, confidence = item.get("shape"), item.get("true"), item.get("pred"), item.get("confidence")
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(d, int) and d > 0 for d in shape)):
        return None
    if not (isinstance(true, int) and isinstance(pred, int) and 0 <= true < len(classes) and 0 <= pred < len(classes)):
        return None
    if not isinstance(confidence, (int, float)) or shape[0] not in (1, 3):
        return None
    try:
        pixels = base64.b64decode(item.get("image", ""), validate=True)
    except (binascii.Error, ValueError, TypeError):
        return None
    if len(pixels) != shape[0] * shape[1] * shape[2]:
        return None
    index = item.get("index")
    return Sample(index if isinstance(index, int) else -1, str(classes[true]), str(classes[pred]),
                  float(confidence), shape[0], shape[1], shape[2], pixels)
