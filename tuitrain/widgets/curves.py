"""Loss and accuracy against step: train smoothed over its faint raw trace, val per epoch, and the
person's interventions (pause, LR change, load, device switch) marked where they happened."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Static
from textual_plotext import PlotextPlot

from tuitrain.history import Markers, Series, smooth

REDRAW_EVERY_S = 1.0
"""Plots are redrawn at most this often: plotext is pure Python and shares the GIL with training."""

MARK_COLORS = {"pause": "orange", "lr": "magenta", "load": "cyan", "device": "green", "nonfinite": "red"}


def fit_width(values: list[float], width: int) -> list[float]:
    """At most ``width`` values: averages of equal runs of ``values`` (the last run may be shorter)."""
    if len(values) <= width:
        return values
    step = -(-len(values) // width)
    return [sum(values[i : i + step]) / len(values[i : i + step]) for i in range(0, len(values), step)]


PLOT_LIMIT = 1e100
"""Larger values (and inf, NaN: a diverged loss) are left out of the plots: plotext's axes overflow on them."""


def plottable(xs: list[float], ys: list[float]) -> tuple[list[float], list[float]]:
    """The points plotext can draw: finite y below PLOT_LIMIT (the numbers beside still show the rest)."""
    if all(-PLOT_LIMIT < y < PLOT_LIMIT for y in ys):  # the common case: no copy; NaN fails both tests
        return xs, ys
    kept = [(x, y) for x, y in zip(xs, ys, strict=True) if -PLOT_LIMIT < y < PLOT_LIMIT]
    return [x for x, _ in kept], [y for _, y in kept]


class Curves(Vertical):
    """Two plots (loss, accuracy) and the current values in numbers beside them."""

    DEFAULT_CSS = """
    Curves { height: 1fr; }
    Curves Horizontal { height: 1fr; }
    Curves PlotextPlot { width: 1fr; }
    Curves #numbers { width: 26; height: 1fr; padding: 0 1; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.train_loss, self.train_acc = Series(), Series()
        self.val_loss, self.val_acc = Series(), Series()
        self.markers = Markers()
        self._dirty = False
        self._epoch = 0

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield PlotextPlot(id="loss")
            yield PlotextPlot(id="acc")
            yield Static("waiting for the first step...", id="numbers")

    def on_mount(self) -> None:
        self.set_interval(REDRAW_EVERY_S, self._redraw_if_dirty)

    def add_step(self, record: dict) -> None:
        """A step record: one point on each train curve."""
        self.train_loss.append(record["step"], record["loss"])
        if "acc" in record:
            self.train_acc.append(record["step"], record["acc"])
        self._dirty = True

    def add_epoch(self, record: dict) -> None:
        """An epoch record: one validation point on each curve."""
        if "val_loss" in record:
            self.val_loss.append(record["step"], record["val_loss"])
        if "val_acc" in record:  # classification only
            self.val_acc.append(record["step"], record["val_acc"])
        self._epoch = record["epoch"]
        self._dirty = True

    def add_event(self, record: dict) -> None:
        """Mark successful interventions on the curves."""
        kind = record["event"]
        if kind in MARK_COLORS and (record.get("ok", True) or kind == "nonfinite"):
            label = {"lr": f"lr {record.get('new')}", "device": f"→{record.get('new')}"}.get(kind, kind)
            self.markers.add(record["step"], kind, label)
            self._dirty = True

    def _redraw_if_dirty(self) -> None:
        if self._dirty and self.display:
            self._dirty = False
            self.redraw()

    def redraw(self) -> None:
        """Draw both plots and the numbers from the history."""
        self._draw(self.query_one("#loss", PlotextPlot), "loss", self.train_loss, self.val_loss)
        self._draw(self.query_one("#acc", PlotextPlot), "accuracy", self.train_acc, self.val_acc)
        self.query_one("#numbers", Static).update(self._numbers(), layout=False)  # fixed width

    def _draw(self, plot: PlotextPlot, title: str, train: Series, val: Series) -> None:
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(title)
        train_xs, train_ys = plottable(train.xs, train.ys)
        val_xs, val_ys = plottable(val.xs, val.ys)
        if train_xs:
            # Lighter smoothing while there are few points, so the smoothed curve does not lag far behind.
            smoothed = smooth(train_ys, 0.9 if len(train_ys) > 200 else 0.6)
            # A braille plot shows 2 points a column: plotting more only costs time (and plotext is
            # pure Python, sharing the GIL with training).
            width = max(plot.size.width * 2, 20)
            xs, raw, smoothed = fit_width(train_xs, width), fit_width(train_ys, width), fit_width(smoothed, width)
            plt.plot(xs, raw, color="gray", marker="dot")
            plt.plot(xs, smoothed, color="blue", marker="braille", label="train")
        if val_xs:
            plt.plot(val_xs, val_ys, color="red", marker="hd", label="val")
            plt.scatter(val_xs, val_ys, color="red", marker="o")
        for step, kind, _label in self.markers.items:
            plt.vline(step, MARK_COLORS[kind])
        if train_xs:
            lo, hi = train_xs[0], train_xs[-1]
            ticks = [lo + (hi - lo) * i / 4 for i in range(5)]
            plt.xticks(ticks, [f"{t:,.0f}" for t in ticks])  # steps are whole numbers, even averaged
        plt.xlabel("step")
        plot.refresh()

    def _numbers(self) -> Content:
        def fmt(value: float | None, pct: bool = False) -> str:
            if value is None:
                return "-"
            return f"{100 * value:.2f}%" if pct else f"{value:.4f}"

        lines = [
            "[b]train[/b]",
            f" loss {fmt(self.train_loss.last)}",
            f" acc  {fmt(self.train_acc.last, True)}",
            f"[b]val[/b] (epoch {self._epoch})",
            f" loss {fmt(self.val_loss.last)}",
            f" acc  {fmt(self.val_acc.last, True)}",
        ]
        if self.val_acc.ys:
            lines.append(f" best {fmt(max(self.val_acc.ys), True)}")
        labels: dict[str, str] = {}  # marker labels quote records (lr, device): $variables, never markup
        if self.markers.items:
            lines.append("[b]marks[/b]")
            for i, (step, kind, label) in enumerate(self.markers.items[-5:]):
                labels[f"label{i}"] = str(label)
                lines.append(f" [{MARK_COLORS[kind]}]|[/] {step}: $label{i}")
        return Content.from_markup("\n".join(lines), **labels)
