"""Several runs' curves overlaid, one colour each (``tuitrain watch A B ...``).

The x axis is the epoch by default (runs with different batch sizes cannot be compared by step) and can
be switched to step, samples seen or wall time. The legend is a line of its own under the plots, so it
never covers a curve, and names each run by the settings that differ (``lr=0.01 bs=100``).
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static
from textual_plotext import PlotextPlot

from tuitrain.history import Series, smooth
from tuitrain.plotscale import labels, nice_ticks
from tuitrain.widgets.curves import fit_width

COLORS = ["blue", "red", "green", "orange", "magenta", "cyan", "yellow", "gray"]
AXES = ("epoch", "step", "samples", "time")
"""The x axes, switched in this order; epoch first."""
AXIS_TITLES = {"epoch": "epoch", "step": "step", "samples": "samples seen", "time": "wall time (s)"}


class RunAxes:
    """Turns one run's records into x positions on every axis (what the start event and config tell)."""

    def __init__(self, config: dict) -> None:
        self.steps_per_epoch: int | None = None
        self.batch_size = _positive(config.get("batch_size"))
        self.t0: float | None = None

    def positions(self, record: dict) -> dict[str, float | None] | None:
        """x of this step/epoch record on each axis (None for an axis it cannot place), or None."""
        if record.get("type") == "event" and record.get("event") == "start":
            self.steps_per_epoch = _positive(record.get("steps_per_epoch")) or self.steps_per_epoch
            self.batch_size = _positive(record.get("batch_size")) or self.batch_size
        if isinstance(record.get("time"), int | float) and self.t0 is None:
            self.t0 = record["time"]
        kind, step = record.get("type"), record.get("step")
        if kind not in ("step", "epoch") or not isinstance(step, int | float):
            return None
        if kind == "epoch":
            epoch = record.get("epoch") if isinstance(record.get("epoch"), int | float) else None
        elif self.steps_per_epoch:
            epoch = step / self.steps_per_epoch  # steps count from the run's first epoch, resumed or not
        else:
            epoch = None
        samples = step * self.batch_size if self.batch_size else None
        time = record.get("time")
        return {"epoch": epoch, "step": step, "samples": samples,
                "time": time - self.t0 if isinstance(time, int | float) and self.t0 is not None else None}


def _positive(value: object) -> int | None:
    """A positive whole number from a record, or None (records come from files: anything may be there)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


class CompareCurves(Vertical):
    """Train loss and validation accuracy of every run, against the chosen x axis, and the legend."""

    DEFAULT_CSS = """
    CompareCurves Horizontal { height: 1fr; }
    CompareCurves PlotextPlot { width: 1fr; }
    CompareCurves #cmp-legend { height: auto; max-height: 4; padding: 0 1; }
    """

    def __init__(self, names: list[str], configs: list[dict] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.names = names
        self.axis = "epoch"
        """The x axis drawn (one of AXES)."""
        self._axes = [RunAxes(c) for c in (configs or [{}] * len(names))]
        self._loss = {axis: [Series() for _ in names] for axis in AXES}
        self._acc = {axis: [Series() for _ in names] for axis in AXES}
        self._dirty = True

    @property
    def train_loss(self) -> list[Series]:
        """Each run's train loss against the current axis."""
        return self._loss[self.axis]

    @property
    def val_acc(self) -> list[Series]:
        """Each run's validation accuracy against the current axis."""
        return self._acc[self.axis]

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield PlotextPlot(id="cmp-loss")
            yield PlotextPlot(id="cmp-acc")
        yield Static(self._legend(), id="cmp-legend")

    def _legend(self) -> str:
        # No-break spaces inside an entry: a narrow terminal wraps between runs, never inside one.
        return "   ".join(f"[{COLORS[i % len(COLORS)]}]━━[/]\u00a0{name.replace(' ', chr(0xA0))}"
                           for i, name in enumerate(self.names))

    def on_mount(self) -> None:
        self.set_interval(1.0, self._redraw_if_dirty)

    def add(self, run: int, record: dict) -> None:
        """One record of run number ``run``."""
        xs = self._axes[run].positions(record)
        if xs is None:
            return
        kind = record["type"]
        value = record.get("loss") if kind == "step" else record.get("val_acc")
        if not isinstance(value, int | float):
            return
        for axis, x in xs.items():
            if x is not None:
                (self._loss if kind == "step" else self._acc)[axis][run].append(x, value)
        self._dirty = True

    def set_axis(self, axis: str) -> None:
        """Draw against another x axis (one of AXES)."""
        self.axis = axis
        self.redraw()

    def _redraw_if_dirty(self) -> None:
        if self._dirty:
            self._dirty = False
            self.redraw()

    def redraw(self) -> None:
        """Draw both plots."""
        self._draw(self.query_one("#cmp-loss", PlotextPlot), "train loss (smoothed)", self.train_loss, True)
        self._draw(self.query_one("#cmp-acc", PlotextPlot), "val accuracy", self.val_acc, False)

    def _draw(self, plot: PlotextPlot, title: str, series: list[Series], smoothed: bool) -> None:
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(title)
        width = max(plot.size.width * 2, 20)
        lo = hi = None
        shown: list[float] = []
        for i, s in enumerate(series):
            if not s.xs:
                continue
            ys = smooth(s.ys, 0.9 if len(s.ys) > 200 else 0.6) if smoothed else s.ys
            ys = fit_width(ys, width)
            plt.plot(fit_width(s.xs, width), ys, color=COLORS[i % len(COLORS)], marker="braille" if smoothed else "hd")
            shown += ys
            lo = s.xs[0] if lo is None else min(lo, s.xs[0])
            hi = s.xs[-1] if hi is None else max(hi, s.xs[-1])
        if lo is not None and hi is not None:
            ticks = nice_ticks(lo, hi, 5)
            plt.xticks(ticks, labels(ticks))
            ticks = nice_ticks(min(shown), max(shown), 5)
            plt.yticks(ticks, labels(ticks))
        plt.xlabel(AXIS_TITLES[self.axis])
        plot.refresh()
