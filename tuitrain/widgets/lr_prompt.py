"""The learning-rate prompt: filled with the current value; a bad value is refused in place."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Input, Label

from tuitrain import fmt
from tuitrain.config import parse_lr
from tuitrain.errors import UsageError
from tuitrain.widgets.prompt import TypeAheadPrompt


class LRInput(Input):
    """An Input that applies its own keys (Enter, Backspace, arrows...) in the order they come.

    Textual runs a widget's bindings only once the key has bubbled up to the App, so in
    ``0.5<Backspace>3<Enter>`` typed at once, the 3 would be inserted before the Backspace acted.
    """

    KEY_ACTIONS = {key.strip(): b.action for b in Binding.make_bindings(Input.BINDINGS) for key in b.key.split(",")}

    async def _on_key(self, event: events.Key) -> None:
        action = self.KEY_ACTIONS.get(event.key)
        if action is None:
            await super()._on_key(event)
            return
        event.stop()
        event.prevent_default()
        await self.run_action(action)


class LRPrompt(TypeAheadPrompt[float | None]):
    """Returns the new learning rate, or None when cancelled (Escape)."""

    DEFAULT_CSS = """
    LRPrompt { align: center middle; }
    LRPrompt > Vertical { width: 60; max-width: 100%; height: auto; border: round $accent; padding: 0 1;
                          background: $surface; }
    LRPrompt #lr-error { color: $error; height: auto; width: 100%; }
    """

    def __init__(self, current: float | None) -> None:
        super().__init__()
        self.current = current
        self._typed = False

    def compose(self) -> ComposeResult:
        now = "" if self.current is None else f" (now {fmt.lr(self.current)})"
        with Vertical():
            yield Label(f"New learning rate{now}", id="lr-title")
            # The current value is selected (below), so what is typed replaces it; selecting on focus
            # instead would come later, asynchronously, and could swallow keys typed right after r.
            yield LRInput(value="" if self.current is None else repr(self.current), id="lr-input",
                        select_on_focus=False)
            yield Label("Enter sets it, Esc cancels", id="lr-error")

    def target(self) -> Widget:
        field = self.query_one(Input)
        field.select_all()
        return field

    def type_ahead(self, key: str, character: str | None) -> None:
        """Keys typed before the field had focus: the same as typing them in it."""
        field = self.query_one(Input)
        if character and character.isprintable():
            selection = field.selection
            if selection.is_empty:
                field.insert_text_at_cursor(character)
            else:
                field.replace(character, *selection)
        elif key == "backspace":
            field.action_delete_left()
        elif key == "enter":
            self._submit(field.value)
        elif key == "escape":
            self.action_cancel()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._submit(event.value)

    def _submit(self, text: str) -> None:
        try:
            value = parse_lr(text.strip())
        except UsageError as exc:
            self.query_one("#lr-error", Label).update(f"refused: {exc}")
            return
        self.dismiss(value)
