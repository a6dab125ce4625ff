"""Axis arithmetic for the terminal plots: compact tick labels, round tick positions, log scale, and a
y-range that a single spike cannot flatten. Pure functions (no textual, no torch), unit-tested alone."""

from __future__ import annotations

import math

SPIKE_FACTOR = 3.0
"""A point is a spike when it lies above the rest by more than this many times the rest's own span."""
MAX_SPIKE_SHARE = 50
"""At most one point in this many may count as a spike: more than that is the curve, not a spike."""


def compact(value: float, digits: int = 3) -> str:
    """A number in at most ~6 characters: ``0.523``, ``12k``, ``1.5M``, ``4.1e15``, ``3e-4``."""
    if not math.isfinite(value):
        return str(value)
    rounded = float(f"{value:.{digits}g}")  # rounded first, so 999.7 becomes 1k and not 1e+03
    size = abs(rounded)
    if size == 0:
        return "0"
    if size >= 1e9 or size < 1e-3:
        mantissa, exponent = f"{value:.{max(digits - 2, 1)}e}".split("e")
        return f"{_trim(mantissa)}e{int(exponent)}"
    for unit, suffix in ((1e6, "M"), (1e3, "k")):
        if size >= unit:
            return f"{_plain(rounded / unit, digits)}{suffix}"
    return _plain(rounded, digits)


def _plain(value: float, digits: int) -> str:
    """Below 1000: whole numbers as integers (never ``9.1e+02``), others to ``digits`` significant digits."""
    value = float(f"{value:.{digits}g}")
    return str(int(value)) if value == int(value) else f"{value:.{digits}g}"


def _trim(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text


def labels(ticks: list[float]) -> list[str]:
    """Compact labels for tick positions, with as many digits as it takes to tell them apart."""
    for digits in range(2, 8):
        out = [compact(t, digits) for t in ticks]
        if len(set(out)) == len(out):
            return out
    return out


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round positions (steps of 1, 2 or 5 times a power of ten) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    scaled = raw / power
    step = power * (1 if scaled < 1.5 else 2 if scaled < 3 else 5 if scaled < 7 else 10)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)
        value = first + len(ticks) * step
    return ticks


def log_ticks(lo: float, hi: float) -> tuple[list[float], list[str]]:
    """Tick positions in log10 space for data in [10**lo, 10**hi], labelled with the data values."""
    if hi - lo >= 1:
        powers = list(range(math.ceil(lo), math.floor(hi) + 1))
        stride = max(1, -(-len(powers) // 6))  # at most ~6 labels, however many decades
        positions = [float(p) for p in powers[::stride]]
    else:
        positions = [math.log10(v) for v in nice_ticks(10**lo, 10**hi, 4) if v > 0]
    return positions, labels([10**p for p in positions])


def spike_cut(ys: list[float]) -> float:
    """The value above which points of ``ys`` are upward spikes (``inf`` when there is none).

    A spike is one of the few highest points (at most one in ``MAX_SPIKE_SHARE``) that stands above
    the others by more than ``SPIKE_FACTOR`` times their span, so one learning-rate mistake (a loss of
    4e15) does not flatten the rest of the curve to a line. Non-finite values are left to the caller.
    """
    finite = sorted(y for y in ys if math.isfinite(y))
    candidates = max(1, len(finite) // MAX_SPIKE_SHARE)
    if len(finite) <= candidates + 2:
        return math.inf
    lo, body_top = finite[0], finite[-candidates - 1]
    cut = body_top + SPIKE_FACTOR * max(body_top - lo, abs(body_top) * 1e-6)
    return cut if finite[-1] > cut else math.inf


def robust_range(ys: list[float]) -> tuple[float, float, list[int]]:
    """The y-range of ``ys`` without its spikes (see :func:`spike_cut`) and non-finite values, and their indexes."""
    cut = spike_cut(ys)
    bad = [i for i, y in enumerate(ys) if not math.isfinite(y) or y > cut]
    kept = [y for i, y in enumerate(ys) if math.isfinite(y) and y <= cut]
    return (min(kept), max(kept), bad) if kept else (0.0, 1.0, bad)


def without(ys: list[float], drop: list[int]) -> list[float]:
    """``ys`` with the points at ``drop`` replaced by the previous kept value (so smoothing skips them)."""
    if not drop:
        return ys
    dropped, out, last = set(drop), [], None
    for i, y in enumerate(ys):
        if i in dropped:
            y = last if last is not None else next((v for j, v in enumerate(ys) if j not in dropped), 0.0)
        out.append(y)
        last = y
    return out
