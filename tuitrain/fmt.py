"""One formatter per kind of number, used on every surface (dashboard, headless log, tables, CLI).

So the same accuracy reads the same in the status line, the curves' numbers, ``tuitrain runs``, the
sweep table and the final line. No Textual, no torch: plain functions of plain numbers.
"""

from __future__ import annotations

import math

MISSING = "-"
"""What a number that is not there (None, nan) is shown as."""


def acc(value: float | None) -> str:
    """An accuracy (a fraction of 1) as a percentage with two decimals: ``93.30%``."""
    return MISSING if value is None or math.isnan(value) else f"{100 * value:.2f}%"


def loss(value: float | None) -> str:
    """A loss (or any other value that is not a fraction to show as %): four decimals (``0.3412``),
    three significant digits when small or large (``0.00777``, ``1.23e+04``), never 17 digits."""
    if value is None or math.isnan(value):
        return MISSING
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value != 0 and not 1e-2 <= abs(value) < 1e4:
        return f"{value:.3g}"
    return f"{value:.4f}"


PERCENT_NAMES = ("acc", "accuracy")
"""A metric whose name ends in one of these (``val_acc``, ``best_val_acc``, ``subset_acc``,
``top1_accuracy``) is a fraction of 1 and is shown as a percentage."""


def is_percent(name: str) -> bool:
    """Whether the metric ``name`` reads as a percentage (an accuracy) rather than as a loss."""
    last = name.lower().rsplit("_", 1)[-1]
    return last in PERCENT_NAMES or name.lower() in PERCENT_NAMES


def metric(name: str, value: float | None) -> str:
    """A metric by its name: an accuracy as ``57.18%``, a learning rate as ``0.001``, a duration as
    ``6.1s``, anything else (losses, MSE, perplexity, dice) as :func:`loss` does."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return MISSING if value is None else str(value)
    key = name.lower()
    if is_percent(key):
        return acc(value)
    if key == "lr" or key.endswith("_lr"):
        return lr(value)
    if key.endswith("seconds"):
        return seconds(value)
    if isinstance(value, int):
        return count(value)
    return loss(value)


def shape(dims) -> str:
    """A tensor shape without its batch dimension, as the model panel shows it: ``6x24x24``
    (``-`` when there is nothing but the batch)."""
    return "x".join(str(d) for d in list(dims)[1:]) or MISSING


def best(name: str, value: float | None) -> str:
    """``best val_l1 0.4123``: the best value of what a run was judged by, and its name."""
    return f"best {name} {metric(name, value)}"


def lr(value: float | None) -> str:
    """A learning rate with three significant digits: ``0.001``, ``0.000512``, ``1e-05``."""
    return MISSING if value is None or math.isnan(value) else f"{value:.3g}"


def seconds(value: float | None) -> str:
    """A duration: ``6.1s`` under 10 s, ``45s``, ``3m20s``, ``1h02m``; ``-`` when unknown."""
    if value is None or not math.isfinite(value) or value < 0:
        return MISSING
    if value < 10:
        return f"{value:.1f}s"
    whole = int(value)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def size(num_bytes: float) -> str:
    """A size in bytes with three significant digits: ``771 B``, ``3.08 KB``, ``132 KB``, ``1.23 MB``."""
    value = float(num_bytes)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" or value >= 100 else f"{value:.3g} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def count(value: int | float) -> str:
    """A count, whole, with thousands separators: ``23,926``."""
    return f"{round(value):,}"


def rate(value: float | None) -> str:
    """A throughput (samples/s), whole: ``8,012``."""
    return MISSING if value is None or math.isnan(value) else f"{value:,.0f}"


def plural(n: int, word: str) -> str:
    """``1 epoch``, ``2 epochs``, ``0 epochs``."""
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def clock(unix_time: float | None, now: float | None = None) -> str:
    """A moment: ``14:05:40`` today, ``2025-03-02 14:05`` another day."""
    import time

    if unix_time is None or math.isnan(unix_time):
        return MISSING
    here = time.localtime(unix_time)
    today = time.localtime(time.time() if now is None else now)
    if here[:3] == today[:3]:
        return time.strftime("%H:%M:%S", here)
    return time.strftime("%Y-%m-%d %H:%M", here)



def details(fields: dict, event: str = "") -> str:
    """An event's (or a control answer's) fields as ``key=value`` pairs, each number as :func:`metric`
    shows it: ``best`` by the ``monitor`` it is the best of, ``old``/``new`` by the ``event`` they
    change (``lr``): ``monitor=val_loss best=0.00777 best_epoch=3``."""
    shown = []
    for key, value in fields.items():
        if isinstance(value, float):
            name = str(fields.get("monitor", "")) if key == "best" else event if key in ("old", "new") else key
            value = metric(name, value)
        shown.append(f"{key}={value}")
    return " ".join(shown)


def param(name: str, value: object) -> str:
    """A setting (a sweep's or a comparison's column): a learning rate as :func:`lr`, another number
    as short as it reads exactly (``0.9``, ``5e-04``), a list comma-separated, text as it is."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return lr(value) if name == "lr" or name.endswith("_lr") else f"{value:g}"
    if isinstance(value, list | tuple):
        return ",".join(param(name, v) for v in value)
    return str(value)
