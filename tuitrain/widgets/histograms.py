"""Per-layer weight and gradient distributions; the layer is picked with [ and ] (or up/down)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.reactive import reactive
from textual.widgets import Static
from textual_plotext import PlotextPlot

REDRAW_EVERY_S = 2.0
"""Histograms change slowly (one record every --hist-every steps): drawn at most this often."""


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
            yield PlotextPlot(id="hist-w")
            yield PlotextPlot(id="hist-g")

    @property
    def layer_list(self) -> list[dict]:
        """The layers of the newest record."""
        return self.record["layers"] if self.record else []

    def on_mount(self) -> None:
        self.set_interval(REDRAW_EVERY_S, self._redraw_if_dirty)

    def update_record(self, record: dict) -> None:
        """Take a new ``hist`` record (the chosen layer stays chosen); drawn by the timer."""
        first = self.record is None
        self.record = record
        self.layer_index = min(self.layer_index, max(len(self.layer_list) - 1, 0))
        self._dirty = True
        if first:
            self.redraw()

    def _redraw_if_dirty(self) -> None:
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
        if not self.is_mounted or not self.layer_list:
            return
        layer = self.layer_list[self.layer_index]
        w, g = layer.get("w"), layer.get("g")
        title = (f"[b]$name[/b] ({self.layer_index + 1}/{len(self.layer_list)}, [ ] to change) "
                 f"step {self.record['step']}  |w| {w['norm']:.3f}" if w else "$name")
        if g:
            title += f"  |grad| {g['norm']:.3g}"
        # The layer name comes from a record: inserted as $name, text and never markup.
        self.query_one("#hist-title", Static).update(Content.from_markup(title, name=str(layer["name"])),
                                                     layout=False)  # one line
        self._draw(self.query_one("#hist-w", PlotextPlot), "weights", w, "blue")
        self._draw(self.query_one("#hist-g", PlotextPlot), "gradients", g, "orange")

    @staticmethod
    def _draw(plot: PlotextPlot, title: str, hist: dict | None, color: str) -> None:
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
        plot.refresh()
