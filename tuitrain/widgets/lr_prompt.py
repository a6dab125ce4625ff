"""The learning-rate prompt: filled with the current value; a bad value is refused in place."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from tuitrain.config import parse_lr
from tuitrain.errors import UsageError


class LRPrompt(ModalScreen[float | None]):
    """Returns the new learning rate, or None when cancelled (Escape)."""

    BINDINGS = [("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    LRPrompt { align: center middle; }
    LRPrompt > Vertical { width: 50; height: auto; border: round $accent; padding: 0 1; background: $surface; }
    LRPrompt #lr-error { color: $error; height: auto; }
    """

    def __init__(self, current: float | None) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("New learning rate (Enter to set, Esc to cancel):")
            yield Input(value="" if self.current is None else f"{self.current:g}", id="lr-input")
            yield Label("", id="lr-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        try:
            value = parse_lr(event.value.strip())
        except UsageError as exc:
            self.query_one("#lr-error", Label).update(f"refused: {exc}")
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)
