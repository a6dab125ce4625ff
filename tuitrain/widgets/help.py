"""The help screen (?): every key and what it does, drawn from the one key list (tuitrain.keys)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Static

NOTES = """Commands act at the next step boundary; each is confirmed or refused."""


class HelpScreen(ModalScreen[None]):
    """A modal listing the keys; fits an 80x24 terminal."""

    BINDINGS = [("escape", "close", "Close"), ("q", "close", "Close"), ("question_mark", "close", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical { width: 74; max-width: 100%; height: auto; border: round $accent; padding: 0 2;
                            background: $surface; }
    """

    def __init__(self, lines: list[str]) -> None:
        """``lines``: the key table, one line per key (tuitrain.keys.help_lines)."""
        super().__init__()
        self.lines = lines

    def compose(self) -> ComposeResult:
        keys = escape("\n".join(self.lines))
        with Vertical():
            yield Static(f"[b]tuitrain keys[/b]\n\n{keys}\n\n{NOTES}\n\nEsc, q or ? closes this help.")

    def action_close(self) -> None:
        self.dismiss(None)
