"""A plotext plot drawn straight from plotext's character matrix: the dashboard's plots.

textual-plotext's ``PlotextPlot`` renders a plot by letting plotext write it as one ANSI string
(a Python loop over every cell), parsing that string back with Rich and turning the Text into
Textual strips: about 9 ms for a 40x24 plot on the 2-core test machine, of which plotext's own
drawing is 3. The dashboard draws in the thread that shares the GIL (and two cores) with training,
so :class:`FastPlot` skips the string: it has plotext fill its matrix (characters and colours),
then makes one strip per row with one segment per run of equal colours (3 ms), and keeps the
strips until the plot is refreshed or resized. It is a ``PlotextPlot`` (same ``plt``, same themes);
should a plotext release change the internals used here, it draws the slow way instead.
"""

from __future__ import annotations

from typing import Any

from plotext import _utility as plotext_utility
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.strip import Strip
from textual_plotext import PlotextPlot

from tuitrain.plotscale import nice_ticks

FRAME_ROWS = 4
"""Rows of a plot that hold no data: the title, the frame's top and bottom, the x tick labels."""

_STYLES: dict[tuple[Style, str], Style] = {}
"""The style of each plotext (foreground, style, background) seen, by its repr, on each widget's
base style (its CSS colours): a plot uses a few."""


def _style(base: Style, foreground, style, background) -> Style:
    """``base`` under what plotext's ANSI codes for these colours mean (decoded once, by Rich itself,
    as PlotextPlot's ``Text.from_ansi`` does)."""
    key = (base, repr((foreground, style, background)))
    found = _STYLES.get(key)
    if found is None:
        ansi = plotext_utility.colors_to_ansi(foreground, style, background)
        spans = Text.from_ansi(f"{ansi}x").spans if ansi else []
        found = _STYLES[key] = base + spans[0].style if spans and isinstance(spans[0].style, Style) else base
    return found


def y_ticks(lo: float, hi: float, height: int, most: int = 5) -> list[float]:
    """Round y tick positions for a plot ``height`` rows tall: at most one per two rows of data, since
    plotext drops a label that shares a row with another, and which one it keeps is not stable."""
    room = max(2, (height - FRAME_ROWS + 1) // 2)
    ticks = nice_ticks(lo, hi, most)
    while len(ticks) > room:
        ticks = ticks[::2]  # every other one: still round, still spread over the range
    return ticks


class FastPlot(PlotextPlot):
    """A ``PlotextPlot`` whose lines come from plotext's matrix, built once per refresh."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._strips: list[Strip] | None = None
        self._built_for: tuple | None = None
        self._slow = False
        """plotext's internals were not as expected: draw through PlotextPlot.render."""

    def refresh(self, *args, **kwargs):
        """Drop the built lines: the figure (or the screen) changed."""
        self._strips = None
        return super().refresh(*args, **kwargs)

    def strips(self) -> list[Strip]:
        """The plot's lines at the current size (built now if the figure changed since)."""
        key = (self.size, self.app.theme, self.visual_style)
        if self._strips is None or key != self._built_for:
            self._strips, self._built_for = self._build(), key
        return self._strips

    def render_line(self, y: int) -> Strip:
        if self._slow:
            return super().render_line(y)
        try:
            lines = self.strips()
        except AttributeError:  # another plotext release: its internals are not as read here
            self._slow = True
            return super().render_line(y)
        return lines[y] if 0 <= y < len(lines) else Strip.blank(self.size.width)

    def _build(self) -> list[Strip]:
        """Lay out and fill plotext's matrix as ``PlotextPlot.render`` does, then one strip per row."""
        width, height = self.size
        plot: Any = self.plt  # plotext's figure: its private steps are not in textual-plotext's stubs
        plot.plotsize(width, height)
        plot._set_size(width, height)  # as PlotextPlot.render: plotsize alone does not always stick
        plot.theme(self._get_plotext_theme_name(self.app.theme))
        plot._set_sizes()  # plotext's build() without its last step, writing the ANSI string
        plot._build_matrix()
        matrix = plot.monitor.matrix
        base = self.visual_style.rich_style  # what Textual puts under a rendered Text: the CSS colours
        lines = []
        for row in reversed(matrix.Rows):  # the matrix's row 0 is the bottom one
            chars, fg, bg, st = matrix.marker[row], matrix.fullground[row], matrix.background[row], matrix.style[row]
            segments, start = [], 0
            for col in range(1, matrix.cols + 1):
                if col == matrix.cols or fg[col] != fg[start] or bg[col] != bg[start] or st[col] != st[start]:
                    segments.append(Segment("".join(chars[start:col]), _style(base, fg[start], st[start], bg[start])))
                    start = col
            lines.append(Strip(segments).adjust_cell_length(width))
        return lines
