"""Several runs' curves overlaid, one colour each, with a legend (``tuitrain watch A B ...``)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual_plotext import PlotextPlot

from tuitrain.history import Series, smooth
from tuitrain.widgets.curves import fit_width

COLORS = ["blue", "red", "green", "orange", "magenta", "cyan", "yellow", "gray"]


class CompareCurves(Horizontal):
    """Train loss against step and validation accuracy against step, every run at once."""

    DEFAULT_CSS = """
    CompareCurves { height: 1fr; }
    CompareCurves PlotextPlot { width: 1fr; }
    """

    def __init__(self, names: list[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.names = names
        self.train_loss = [Series() for _ in names]
        self.val_acc = [Series() for _ in names]
        self._dirty = True

    def compose(self) -> ComposeResult:
        yield PlotextPlot(id="cmp-loss")
        yield PlotextPlot(id="cmp-acc")

    def on_mount(self) -> None:
        self.set_interval(1.0, self._redraw_if_dirty)

    def add(self, run: int, record: dict) -> None:
        """One record of run number ``run``."""
        if record.get("type") == "step":
            self.train_loss[run].append(record["step"], record["loss"])
            self._dirty = True
        elif record.get("type") == "epoch":
            self.val_acc[run].append(record["step"], record["val_acc"])
            self._dirty = True

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
        for i, (name, s) in enumerate(zip(self.names, series, strict=True)):
            if not s.xs:
                continue
            ys = smooth(s.ys, 0.9 if len(s.ys) > 200 else 0.6) if smoothed else s.ys
            plt.plot(fit_width(s.xs, width), fit_width(ys, width), color=COLORS[i % len(COLORS)],
                     marker="braille" if smoothed else "hd", label=name[-28:])
        plt.xlabel("step")
        plot.refresh()
