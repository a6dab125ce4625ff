"""Validation and histograms: computed on the device, read back in one transfer each.

Counts are taken with ``scatter_add_``, never ``torch.bincount``: bincount sizes its output from
the data, two host syncs per call on a GPU (tests/test_perf_syncs.py counts them there).

Used by the engine at epoch ends and histogram intervals; returns plain Python values.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from typing import Any

import torch

from tuitrain.confusion import CONFUSED_PAIRS, MATRIX_MAX_CLASSES, TOP_K
from tuitrain.records import SampleItem
from tuitrain.task import Task, batch_size_of, forward, primary

HIST_BINS = 32
GALLERY_SIZE = 16
"""Misclassified validation samples kept per epoch, most confidently wrong first."""


@torch.inference_mode()
def evaluate(model: torch.nn.Module, data: Any, task: Task, device: torch.device, autocast: Callable,
             batch_size: int) -> tuple[dict[str, Any], list[list[int]] | None, list[tuple[int, int, int, float]]]:
    """Validation over the whole split: ({val_loss, val_acc, val_<metric>...}, confusion, wrong samples).

    Classification over up to MATRIX_MAX_CLASSES classes gets its confusion matrix; above, no matrix
    (None) but ``val_top5`` and ``confused``, the most confused (true, predicted, count) pairs,
    counted sparsely: memory and the record stay O(samples + CONFUSED_PAIRS), not O(classes**2).
    ``val_ppl`` (exp of val_loss) where the task's loss is cross-entropy on a language model.
    Everything accumulates on the device; one transfer at the end (acceptable at an epoch end).
    """
    n_classes = 0
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    count = 0
    sums = {name: torch.zeros((), device=device, dtype=torch.float64)
            for name, fn in task.metrics.items() if not hasattr(fn, "update")}
    stateful = {name: fn.to(device) for name, fn in task.metrics.items() if hasattr(fn, "update")}
    for metric in stateful.values():
        metric.reset()
    confusion = torch.zeros(0, device=device, dtype=torch.long)
    hits = torch.zeros(2, device=device, dtype=torch.long)  # above MATRIX_MAX_CLASSES: correct, in the top k
    pairs: list[torch.Tensor] = []  # above MATRIX_MAX_CLASSES: true * C + predicted of each wrong sample
    confidence, predicted = [], []
    for batch in data.val_batches(batch_size):
        inputs, targets = task.split(batch)
        with autocast():
            outputs = forward(model, inputs)
            loss = task.loss(outputs, targets)
        n = batch_size_of(targets)
        count += n
        loss_sum += loss.detach().double() * n
        out = primary(outputs).float() if task.classification or task.metrics else None
        for name in sums:
            sums[name] += torch.as_tensor(task.metrics[name](out, targets), device=device).double() * n
        for metric in stateful.values():
            metric.update(out, targets)
        if task.classification and out is not None:
            n_classes = out.shape[1]
            conf, pred = out.softmax(dim=1).max(dim=1)
            if n_classes <= MATRIX_MAX_CLASSES:
                if not len(confusion):
                    confusion = torch.zeros(n_classes * n_classes, device=device, dtype=torch.long)
                confusion.scatter_add_(0, targets * n_classes + pred, torch.ones_like(pred))
            else:
                top = out.topk(TOP_K, dim=1).indices
                hits += torch.stack([(pred == targets).sum(), (top == targets[:, None]).any(dim=1).sum()])
                pairs.append(torch.where(pred != targets, targets * n_classes + pred, -1))
            confidence.append(torch.where(pred != targets, conf, -1.0))
            predicted.append(pred * n_classes + targets)
    parts = [loss_sum] + list(sums.values()) + [m.compute().double().reshape(()) for m in stateful.values()]
    top = torch.zeros(0, device=device, dtype=torch.float64)
    if task.classification and confidence:
        conf_all = torch.cat(confidence)
        values, index = conf_all.topk(min(GALLERY_SIZE, len(conf_all)))
        top = torch.cat([values.double(), index.double(), torch.cat(predicted)[index].double()])
    counted = confusion.double() if not pairs else torch.cat([hits.double(), _most_confused(pairs, n_classes)])
    flat = torch.cat([torch.stack(parts).to(torch.float64), counted, top]).tolist()
    count = max(count, 1)
    val: dict[str, Any] = {"val_loss": flat[0] / count}
    for i, name in enumerate(sums, start=1):
        val[f"val_{name}"] = flat[i] / count
    for i, name in enumerate(stateful, start=1 + len(sums)):
        val[f"val_{name}"] = flat[i]
    if task.perplexity and "ppl" not in task.metrics:
        val["val_ppl"] = math.exp(val["val_loss"]) if val["val_loss"] < PPL_OVERFLOW else math.inf
    rest = flat[1 + len(task.metrics):]
    if not task.classification:
        return val, None, []
    if n_classes > MATRIX_MAX_CLASSES:
        k = 2 + 3 * CONFUSED_PAIRS
        val["val_acc"], val["val_top5"] = rest[0] / count, rest[1] / count
        names = task.classes
        val["confused"] = [[_name(names, int(t)), _name(names, int(p)), int(n)]
                           for t, p, n in zip(*[iter(rest[2:k])] * 3, strict=True) if n > 0]
        matrix = None
    else:
        k = n_classes * n_classes
        matrix = [[int(c) for c in rest[r * n_classes : (r + 1) * n_classes]] for r in range(n_classes)]
        val["val_acc"] = sum(matrix[i][i] for i in range(n_classes)) / count
    m = (len(rest) - k) // 3
    confidences, indices, codes = rest[k : k + m], rest[k + m : k + 2 * m], rest[k + 2 * m :]
    wrong = [(int(i), int(c) % n_classes, int(c) // n_classes, v)
             for v, i, c in zip(confidences, indices, codes, strict=True) if v >= 0]
    return val, matrix, wrong


PPL_OVERFLOW = 709.0
"""exp() of more overflows a float: the perplexity is then inf."""


def _most_confused(pairs: list[torch.Tensor], n_classes: int) -> torch.Tensor:
    """The CONFUSED_PAIRS most frequent (true, predicted) pairs among the wrong samples' codes
    (true * C + predicted; -1 for a right one) as flat (true, predicted, count) triples, padded with
    zero counts: a sparse count (torch.unique, one sync) instead of a C x C matrix."""
    codes = torch.cat(pairs)
    out = torch.zeros(CONFUSED_PAIRS, 3, dtype=torch.float64, device=codes.device)
    unique, counts = torch.unique(codes[codes >= 0], return_counts=True)
    counts, order = counts.sort(descending=True, stable=True)  # ties: the lower true class first
    unique, counts = unique[order[:CONFUSED_PAIRS]], counts[:CONFUSED_PAIRS]
    out[: len(unique), 0] = (unique // n_classes).double()
    out[: len(unique), 1] = (unique % n_classes).double()
    out[: len(unique), 2] = counts.double()
    return out.flatten()


def _name(names: list[str], index: int) -> str:
    return names[index] if index < len(names) else str(index)


def sample_items(wrong: list[tuple[int, int, int, float]], images: torch.Tensor) -> list[SampleItem]:
    """The gallery's items: each wrong sample (index, true, predicted, confidence) with its image as
    base64 of its C*H*W uint8 bytes; the images come to the host in one transfer."""
    pixels = images.cpu().contiguous().numpy()
    return [{"index": i, "true": t, "pred": p, "confidence": round(c, 4), "shape": list(img.shape),
             "image": base64.b64encode(img.tobytes()).decode()}
            for (i, t, p, c), img in zip(wrong, pixels, strict=True)]


HIST_PARAMS_PER_STEP = 256
"""The most parameters one histogram step draws: a model with more is drawn a slice at a time, in
turn (a model of 10,000 tiny layers took 27 s a step drawing them all)."""


def histograms(model: torch.nn.Module, start: int = 0, limit: int = HIST_PARAMS_PER_STEP,
               stop: Callable[[], bool] | None = None) -> tuple[list[dict], int]:
    """Weight and gradient histograms of up to ``limit`` parameters from the ``start``-th on (wrapping
    round), computed on the device, one transfer; and where the next call starts. ``stop`` is asked
    between parameters: when it says so, what was drawn so far is returned."""
    params = list(model.named_parameters())
    if not params:
        return [], 0
    start %= len(params)
    chosen = (params[start:] + params[:start])[:limit]
    names, parts, done = [], [], 0
    for name, param in chosen:
        if stop is not None and stop():
            break
        done += 1
        for kind, tensor in (("w", param.detach()), ("g", param.grad)):
            if tensor is None or not tensor.numel():
                continue
            if tensor.is_complex():  # real and imaginary parts, side by side
                tensor = torch.view_as_real(tensor.detach())
            flat = tensor.detach().float().flatten()
            lo, hi = flat.min(), flat.max()
            counts = _histc(flat, lo, hi)
            stats = torch.stack([lo, hi, flat.norm(), flat.sum(), flat.square().sum()])
            # float64: a float32 count is exact only up to 2**24 (a bin of a large layer rounded off).
            parts.append(torch.cat([stats.double(), counts.double()]))
            names.append((name, kind))
    following = (start + done) % len(params)
    if not parts:
        return [], following
    values = torch.stack(parts).tolist()  # one sync per histogram interval
    layers: dict[str, dict] = {}
    for (name, kind), row in zip(names, values, strict=True):
        entry = layers.setdefault(name, {"name": name, "w": None, "g": None})
        entry[kind] = {"lo": row[0], "hi": row[1], "norm": row[2], "sum": row[3], "sumsq": row[4],
                       "counts": [int(c) for c in row[5:]]}
    return list(layers.values()), following


def _histc(flat: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """HIST_BINS counts between lo and hi without a host sync (histc wants Python bounds)."""
    span = (hi - lo).clamp_min(1e-12)
    idx = ((flat - lo) / span * HIST_BINS).long().clamp_(0, HIST_BINS - 1)
    counts = torch.zeros(HIST_BINS, dtype=torch.long, device=flat.device)
    return counts.scatter_add_(0, idx, torch.ones_like(idx))
