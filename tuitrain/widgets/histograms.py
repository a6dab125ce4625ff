"""Per-layer weight and gradient distributions; the layer is picked with [ and ] (or up/down)."""

from __future__ import annotations

import math

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.reactive import reactive
from textual.widgets import Static

from tuitrain import fmt
from tuitrain.widgets.plot import FastPlot

REDRAW_EVERY_S = 2.0
"""Histograms change slowly (one record every --hist-every steps): drawn at most this often
(on the dashboard, its clock calls :meth:`Histograms.redraw_if_dirty`)."""


def count_ticks(top: float, most: int = 4) -> list[int]:
    """Whole ticks 0, s, 2s... up to at least ``top``, s in 1, 2, 5, 10, 20, 50...: at most ``most`` steps."""
    top = max(math.ceil(top), 1)
    step = 1
    while math.ceil(top / step) > most:
        step = step * 5 // 2 if str(step)[0] == "2" else step * 2
    return list(range(0, step * math.ceil(top / step) + 1, step))


class Histograms(Vertical):
    """The newest histogram record, one layer at a time, with its weight and gradient norms."""

    DEFAULT_CSS = """
    Histograms { height: 1fr; }
    Histograms #hist-title { height: 1; }
    Histograms Horizontal { height: 1fr; }
    Histograms PlotextPlot { width: 1fr; }
    """

    layer_index: reactive[int] = reactive(0)
    """Which layer (parameter) of the newest record is shown."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.record: dict | None = None
        self._dirty = False

    def compose(self) -> ComposeResult:
        yield Static("histograms: waiting for the first record...", id="hist-title")
        with Horizontal():
            yield FastPlot(id="hist-w")
            yield FastPlot(id="hist-g")

    @property
    def layer_list(self) -> list[dict]:
        """The layers of the newest record."""
        return self.record["layers"] if self.record else []

    def on_resize(self) -> None:
        self.redraw()  # the count ticks depend on the height

    def update_record(self, record: dict) -> None:
        """Take a new ``hist`` record (the chosen layer stays chosen); drawn by the timer."""
        first = self.record is None
        self.record = record
        self.layer_index = min(self.layer_index, max(len(self.layer_list) - 1, 0))
        self._dirty = True
        if first:
            self.redraw()

    def redraw_if_dirty(self) -> None:
        """Redraw if a record came since the last draw (the dashboard's clock calls this)."""
        # Hidden (narrow terminal, other view) or unchanged: nothing to draw.
        if self._dirty and self.display:
            self._dirty = False
            self.redraw()

    def move(self, delta: int) -> None:
        """Pick the previous (-1) or next (+1) layer, wrapping around."""
        if self.layer_list:
            self.layer_index = (self.layer_index + delta) % len(self.layer_list)

    def watch_layer_index(self) -> None:
        self.redraw()

    def redraw(self) -> None:
        """Draw the chosen layer's two histograms."""
        record = self.record
        if not self.is_mounted or record is None or not self.layer_list:
            return
        layer = self.layer_list[self.layer_index]
        w, g = layer.get("w"), layer.get("g")
        title = (f"[b]$name[/b] ({self.layer_index + 1}/{len(self.layer_list)}, [ ] to change) "
                 f"step {fmt.count(record['step'])}  |w| {fmt.loss(w['norm'])}" if w else "$name")
        if g:
            title += f"  |grad| {fmt.loss(g['norm'])}"
        # The layer name comes from a record: inserted as $name, text and never markup.
        self.query_one("#hist-title", Static).update(Content.from_markup(title, name=str(layer["name"])),
                                                     layout=False)  # one line
        self._draw(self.query_one("#hist-w", FastPlot), "weights", w, "blue")
        self._draw(self.query_one("#hist-g", FastPlot), "gradients", g, "orange")

    @staticmethod
    def _draw(plot: FastPlot, title: str, hist: dict | None, color: str) -> None:
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(title)
        if hist:
            counts = hist["counts"]
            width = (hist["hi"] - hist["lo"]) / len(counts) or 1e-12
            centers = [hist["lo"] + (i + 0.5) * width for i in range(len(counts))]
            plt.bar(centers, counts, color=color, width=1.0, marker="sd")
            ticks = [hist["lo"], (hist["lo"] + hist["hi"]) / 2, hist["hi"]]
            plt.xticks(ticks, [f"{t:.3g}" for t in ticks])
            # One tick per two rows at most: plotext drops labels that share a row, and which one it
            # keeps is not stable. (Title, frame and x labels take 4 rows.)
            counts_ticks = count_ticks(max(counts, default=0), most=max(1, (plot.size.height - 4) // 2))
            plt.ylim(0, counts_ticks[-1])
            plt.yticks([float(t) for t in counts_ticks], [fmt.count(t) for t in counts_ticks])  # counts are whole numbers
        plot.refresh()
