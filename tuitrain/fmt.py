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
    """A loss: four decimals (``0.3412``), or three significant digits when large or tiny."""
    if value is None or math.isnan(value):
        return MISSING
    if value != 0 and not 1e-3 <= abs(value) < 1e4:
        return f"{value:.3g}"
    return f"{value:.4f}"


def monitored(name: str, value: float | None) -> str:
    """A monitored value by its name: an accuracy (``val_acc``, ``val_top5_acc``) as a percentage,
    anything else (a loss, an error, a score) as a loss is: ``93.30%``, ``0.1234``."""
    return acc(value) if name.endswith("_acc") else loss(value)


def best(name: str, value: float | None) -> str:
    """``best val_l1 0.4123``: the best value of what a run was judged by, and its name."""
    return f"best {name} {monitored(name, value)}"


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
