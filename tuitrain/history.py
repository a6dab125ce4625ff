"""Bounded metric history for drawing: decimated as it grows, never an ever-growing list.

No torch, no textual: the dashboard's widgets and `watch` both keep their curves in these.
"""

from __future__ import annotations


class Series:
    """Points (x, y) kept to at most ``max_points``: when full, neighbours are averaged in pairs.

    A run of a million steps costs the same memory as one of ``max_points`` steps; the curve's
    shape survives, single spikes are smoothed. New points are averaged in groups of ``stride``
    before they are kept, so the spacing stays even after a decimation.
    """

    def __init__(self, max_points: int = 2000):
        self.max_points = max_points
        self.xs: list[float] = []
        self.ys: list[float] = []
        self.stride = 1
        self._pending: list[tuple[float, float]] = []

    def __len__(self) -> int:
        return len(self.xs)

    def append(self, x: float, y: float) -> None:
        """Add one point (x ascending)."""
        if self.stride > 1:
            self._pending.append((x, y))
            if len(self._pending) < self.stride:
                return
            x = sum(p[0] for p in self._pending) / len(self._pending)
            y = sum(p[1] for p in self._pending) / len(self._pending)
            self._pending.clear()
        self.xs.append(x)
        self.ys.append(y)
        if len(self.xs) > self.max_points:
            self._halve()

    def _halve(self) -> None:
        xs, ys = self.xs, self.ys
        n = len(xs) - len(xs) % 2
        self.xs = [(xs[i] + xs[i + 1]) / 2 for i in range(0, n, 2)] + xs[n:]
        self.ys = [(ys[i] + ys[i + 1]) / 2 for i in range(0, n, 2)] + ys[n:]
        self.stride *= 2

    @property
    def last(self) -> float | None:
        """The newest y (pending points included), or None."""
        if self._pending:
            return self._pending[-1][1]
        return self.ys[-1] if self.ys else None


def smooth(ys: list[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average (TensorBoard's smoothing), debiased at the start."""
    out, value = [], 0.0
    for i, y in enumerate(ys, start=1):
        value = weight * value + (1 - weight) * y
        out.append(value / (1 - weight**i))
    return out


class Markers:
    """Events to mark on the curves (step, kind, label), bounded to the newest ``max_items``."""

    def __init__(self, max_items: int = 200):
        self.max_items = max_items
        self.items: list[tuple[int, str, str]] = []

    def add(self, step: int, kind: str, label: str) -> None:
        """Remember one marker."""
        self.items.append((step, kind, label))
        if len(self.items) > self.max_items:
            del self.items[: len(self.items) - self.max_items]
