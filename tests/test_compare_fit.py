"""The comparison view of a sweep of 8 runs at 80x24 and 160x48 (issue 24): every run in the table, a
legend that wraps between runs only, the same colour for a run everywhere, and ? for its keys."""

from __future__ import annotations

import pytest

from tests.helpers import COMPARE_SWEEP, compare_loaded, compare_sweep
from tuitrain.keys import COMPARE_KEYS
from tuitrain.widgets.compare_curves import Legend
from tuitrain.widgets.help import HelpScreen


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_every_run_of_a_sweep_of_8_is_in_the_table(tmp_path, size):
    app = compare_sweep(tmp_path)
    async with app.run_test(size=size) as pilot:
        await compare_loaded(pilot, app)
        await pilot.pause()
        table = app.query_one("DataTable")
        assert table.row_count == 8
        assert table.scrollable_content_region.height >= 1 + 8  # the header and every row, no scrolling needed
        assert "↑↓ choose" in table.border_subtitle


@pytest.mark.parametrize("width", [20, 78, 158])
def test_the_legend_wraps_between_runs_only(width):
    labels = [f"lr={lr} bs={bs}" for lr, bs in COMPARE_SWEEP]
    lines = [line.plain for line in Legend(labels).lines(width)]
    assert all(len(line) <= width for line in lines)
    for label in labels:
        assert sum(f"━━ {label}" in line for line in lines) == 1, (label, lines)  # whole, on one line
    assert len(lines) == {20: 8, 78: 3, 158: 2}[width]


async def test_the_legend_gives_way_to_the_plots_on_a_short_terminal(tmp_path):
    app = compare_sweep(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await compare_loaded(pilot, app)
        assert not app.query_one(Legend).display  # the table's squares are the legend here
        await pilot.resize_terminal(160, 48)
        await pilot.pause()
        await pilot.pause()
        assert app.query_one(Legend).display


async def test_question_mark_shows_the_comparison_keys(tmp_path):
    app = compare_sweep(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await compare_loaded(pilot, app)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one("Static").render())
        for key in COMPARE_KEYS:
            assert f"{key.shown:<8}{key.does}" in text
        await pilot.press("question_mark")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("down", "enter")
    assert app.return_value is not None  # the keys work again once the help is closed


def test_every_run_of_8_has_its_own_colour_in_the_default_theme():
    from textual._ansi_theme import MONOKAI

    from tuitrain.widgets.compare_curves import PALETTE

    assert len({MONOKAI.ansi_colors[n] for n in PALETTE}) == len(PALETTE)  # red and magenta are one colour there
