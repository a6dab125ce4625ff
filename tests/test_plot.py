"""FastPlot draws exactly what textual-plotext's PlotextPlot draws, from plotext's matrix, once per refresh."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.containers import Horizontal
from textual.geometry import Region
from textual_plotext import PlotextPlot

from tuitrain.widgets.plot import FastPlot


class TwoPlots(App[None]):
    def compose(self) -> ComposeResult:
        with Horizontal():
            yield PlotextPlot(id="slow")
            yield FastPlot(id="fast")


def _figure(plot: PlotextPlot) -> None:
    """Lines, braille, markers, bars, colours by name and number, ticks: what the dashboard draws."""
    plt = plot.plt
    plt.clear_data()
    plt.clear_figure()
    plt.title("loss")
    xs = list(range(0, 400, 5))
    plt.plot(xs, [2 / (1 + x / 50) for x in xs], color="gray", marker="dot")
    plt.plot(xs, [1.8 / (1 + x / 60) for x in xs], color="blue", marker="braille")
    plt.scatter([100, 200, 300], [0.6, 0.4, 0.3], color="red", marker="o")
    plt.bar([50, 150, 250], [1.0, 1.5, 0.5], color=208, width=0.5, marker="sd")
    plt.vline(120, "magenta")
    plt.xticks([0, 200, 400], ["0", "200", "400"])
    plt.xlabel("step")
    plot.refresh()


def _cells(plot: PlotextPlot) -> list[list[tuple[str, object]]]:
    """(character, style) of every cell as the compositor gets them (after the widget's CSS)."""
    lines = plot.render_lines(Region(0, 0, plot.size.width, plot.size.height))
    # Textual adds the mouse offset of each cell to PlotextPlot's styles (meta): not part of the picture.
    return [[(char, seg.style.clear_meta_and_links() if seg.style else None) for seg in strip for char in seg.text]
            for strip in lines]


async def test_fast_plot_draws_what_plotext_plot_draws():
    app = TwoPlots()
    async with app.run_test(size=(120, 30)) as pilot:
        slow, fast = app.query_one("#slow", PlotextPlot), app.query_one("#fast", FastPlot)
        for plot in (slow, fast):
            _figure(plot)
        await pilot.pause()
        assert slow.size == fast.size
        drawn = _cells(fast)
        assert drawn == _cells(slow)
        assert any(char == "•" for line in drawn for char, _ in line)  # the figure is really there
        assert any(char not in " •" and ord(char) >= 0x2800 for line in drawn for char, _ in line)  # braille


async def test_fast_plot_builds_once_per_refresh_and_again_on_resize():
    app = TwoPlots()
    async with app.run_test(size=(120, 30)) as pilot:
        fast = app.query_one("#fast", FastPlot)
        _figure(fast)
        await pilot.pause()
        built = fast.strips()
        assert fast.strips() is built  # nothing changed: the lines are kept, plotext is not run
        fast.refresh()
        assert fast.strips() is not built
        kept = fast.strips()
        await pilot.resize_terminal(100, 24)
        await pilot.pause()
        assert len(fast.strips()) == fast.size.height and fast.strips() is not kept


async def test_fast_plot_falls_back_to_plotext_plot_when_plotext_changed(monkeypatch):
    """A plotext release without the internals read here: drawn the slow way, the same picture."""
    app = TwoPlots()
    async with app.run_test(size=(120, 30)) as pilot:
        slow, fast = app.query_one("#slow", PlotextPlot), app.query_one("#fast", FastPlot)
        for plot in (slow, fast):
            _figure(plot)
        await pilot.pause()
        expected = _cells(slow)

        def gone() -> list:
            raise AttributeError("'_figure_class' object has no attribute '_build_matrix'")

        monkeypatch.setattr(fast, "_build", gone)
        fast.refresh()
        await pilot.pause()
        assert _cells(fast) == expected
