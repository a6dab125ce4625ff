"""The help screen (?): every key and what it does, drawn from the one key list (tuitrain.keys)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Static

NOTES = """Commands act at the next step boundary; each is confirmed or refused."""
COMPARE_NOTES = """Each run has one colour: its curves, legend line and table square."""
ENDED_NOTES = """This run has ended or is read-only: p, s, l, r and d do nothing."""


class HelpScreen(ModalScreen[None]):
    """A modal listing the keys; fits an 80x24 terminal."""

    BINDINGS = [("escape", "close", "Close"), ("q", "close", "Close"), ("question_mark", "close", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical { width: 74; max-width: 100%; height: auto; border: round $accent; padding: 0 2;
                            background: $surface; }
    """

    def __init__(self, lines: list[str], notes: str = NOTES, title: str = "tuitrain keys") -> None:
        """``lines``: the key table, one line per key (tuitrain.keys.help_lines); ``notes`` below it."""
        super().__init__()
        self.lines = lines
        self.notes = notes
        self.heading = title

    def compose(self) -> ComposeResult:
        keys = escape("\n".join(self.lines))
        with Vertical():
            yield Static(f"[b]{escape(self.heading)}[/b]\n\n{keys}\n\n{escape(self.notes)}\n\nEsc, q or ? closes this help.")

    def action_close(self) -> None:
        self.dismiss(None)
