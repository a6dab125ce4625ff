"""Several runs' curves overlaid, one colour each (``tuitrain watch A B ...``).

The x axis is the epoch by default (runs with different batch sizes cannot be compared by step) and can
be switched to step, samples seen or wall time. The legend is a line of its own under the plots, so it
never covers a curve, and names each run by the settings that differ (``lr=0.01 bs=100``); it wraps
between runs, never inside one, and gives way to the plots on a short terminal (the table's coloured
squares say which curve is which too).
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.geometry import Size
from textual.widget import Widget
from textual_plotext import PlotextPlot

from tuitrain.history import Series, smooth
from tuitrain.plotscale import labels, nice_ticks
from tuitrain.widgets.curves import fit_width
from tuitrain.widgets.plot import y_ticks

PALETTE = (4, 1, 2, 3, 6, 11, 8, 7)
"""Each run's colour, as an ANSI colour number: plotext draws it as such, the legend and the table's
squares name the same one, so the terminal's theme shows all three alike. (plotext's "orange" is ANSI
yellow and its "yellow" no colour at all, and Rich knows neither "orange" nor "gray": names differed.)
No magenta (5): Textual's default ANSI theme (Monokai) draws it as the same colour as red."""
ANSI = {1: "red", 2: "green", 3: "yellow", 4: "blue", 6: "cyan", 7: "white", 8: "bright_black", 11: "bright_yellow"}
COLORS = [f"ansi_{ANSI[n]}" for n in PALETTE]
"""The runs' colours as Textual names (``ansi_blue``...)."""


def swatch(run: int) -> str:
    """Run number ``run``'s colour square, as Rich markup (a DataTable cell)."""
    return f"[color({PALETTE[run % len(PALETTE)]})]■[/]"
AXES = ("epoch", "step", "samples", "time")
"""The x axes, switched in this order; epoch first."""
AXIS_TITLES = {"epoch": "epoch", "step": "step", "samples": "samples seen", "time": "wall time (s)"}
LEGEND_GAP = "   "
MIN_PLOT_ROWS = 12
"""The legend is shown only while the plots keep at least this many rows (title, frame and ticks take 4)."""


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


class Legend(Widget):
    """``━━ lr=0.01 bs=100   ━━ lr=0.001 bs=100 ...`` in each run's colour, wrapped between runs only."""

    DEFAULT_CSS = "Legend { height: auto; padding: 0 1; }"

    def __init__(self, names: list[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.names = names

    def entries(self) -> list[Content]:
        """One entry per run: a line in its colour and its label."""
        return [Content.assemble(("━━", COLORS[i % len(COLORS)]), f" {name}") for i, name in enumerate(self.names)]

    def lines(self, width: int) -> list[Content]:
        """The entries packed into lines of at most ``width`` cells; an entry wider than a line is cut."""
        lines: list[Content] = []
        for entry in self.entries():
            entry = entry.truncate(max(width, 1), ellipsis=True)
            if lines and lines[-1].cell_length + len(LEGEND_GAP) + entry.cell_length <= width:
                lines[-1] = lines[-1] + LEGEND_GAP + entry
            else:
                lines.append(entry)
        return lines

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self.lines(width))

    def render(self) -> Content:
        return Content("\n").join(self.lines(self.content_size.width))


class CompareCurves(Vertical):
    """Train loss and validation accuracy of every run, against the chosen x axis, and the legend."""

    DEFAULT_CSS = """
    CompareCurves Horizontal { height: 1fr; }
    CompareCurves PlotextPlot { width: 1fr; }
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
        yield Legend(self.names, id="cmp-legend")

    def on_resize(self) -> None:
        # On a short terminal (80x24 with a table of 8 runs) the plots need the rows more than the legend.
        legend = self.query_one(Legend)
        legend.display = self.content_size.height - len(legend.lines(self.content_size.width - 2)) >= MIN_PLOT_ROWS

    def on_mount(self) -> None:
        self._title()
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
        self._title()
        self.redraw()

    def _title(self) -> None:
        # The x axis is named here rather than under each plot: the row is a curve's on a short terminal.
        self.border_title = f"by {AXIS_TITLES[self.axis]} (x: next axis)"

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
            plt.plot(fit_width(s.xs, width), ys, color=PALETTE[i % len(PALETTE)], marker="braille" if smoothed else "hd")
            shown += ys
            lo = s.xs[0] if lo is None else min(lo, s.xs[0])
            hi = s.xs[-1] if hi is None else max(hi, s.xs[-1])
        if lo is not None and hi is not None:
            ticks = nice_ticks(lo, hi, 5)
            plt.xticks(ticks, labels(ticks))
            ticks = y_ticks(min(shown), max(shown), plot.size.height)
            plt.yticks(ticks, labels(ticks))
        plot.refresh()
