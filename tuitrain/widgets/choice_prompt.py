"""A list to choose from (checkpoints to load, devices to move to); Enter picks, Esc cancels."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option


class ChoicePrompt(ModalScreen[str | None]):
    """Returns the chosen value, or None when cancelled. The first choice is highlighted."""

    BINDINGS = [("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    ChoicePrompt { align: center middle; }
    ChoicePrompt > Vertical { width: 80%; max-width: 100; height: auto; max-height: 80%;
                              border: round $accent; padding: 0 1; background: $surface; }
    ChoicePrompt OptionList { height: auto; max-height: 16; }
    """

    def __init__(self, title: str, choices: list[tuple[str, str]]) -> None:
        """``choices``: (value, label) pairs, in the order shown."""
        super().__init__()
        self.title_text = title
        self.choices = choices

    def compose(self) -> ComposeResult:
        with Vertical():
            # Content, not str: titles and labels quote file and device names, shown as text, never markup.
            yield Label(Content(self.title_text))
            yield OptionList(*[Option(Content(label), id=str(i)) for i, (_, label) in enumerate(self.choices)])

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.highlighted = 0
        options.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.choices[int(event.option.id)][0])

    def action_cancel(self) -> None:
        self.dismiss(None)
