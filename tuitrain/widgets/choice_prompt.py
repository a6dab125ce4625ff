"""A list to choose from (checkpoints to load, devices to move to); Enter picks, Esc cancels."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from tuitrain.widgets.prompt import TypeAheadPrompt


class ChoicePrompt(TypeAheadPrompt[str | None]):
    """Returns the chosen value, or None when cancelled. The first choice is highlighted."""

    DEFAULT_CSS = """
    ChoicePrompt { align: center middle; }
    ChoicePrompt > Vertical { width: 90%; max-width: 110; height: auto; max-height: 80%;
                              border: round $accent; padding: 0 1; background: $surface; }
    ChoicePrompt OptionList { height: auto; max-height: 16; }
    """

    def __init__(self, title: str, choices: list[tuple[str, str]], header: str = "") -> None:
        """``choices``: (value, label) pairs, in the order shown; ``header`` labels the columns."""
        super().__init__()
        self.title_text = title
        self.header = header
        self.choices = choices

    def compose(self) -> ComposeResult:
        with Vertical():
            # Content, not str: titles and labels quote file and device names, shown as text, never markup.
            yield Label(Content(self.title_text))
            if self.header:
                yield Label(Content(self.header), id="choice-header")
            yield OptionList(*[Option(Content(label), id=str(i)) for i, (_, label) in enumerate(self.choices)])

    def target(self) -> Widget:
        options = self.query_one(OptionList)
        options.highlighted = 0
        return options

    def type_ahead(self, key: str, character: str | None) -> None:
        """Keys typed before the list had focus: move, pick or cancel as they would after."""
        options = self.query_one(OptionList)
        if key == "down":
            options.action_cursor_down()
        elif key == "up":
            options.action_cursor_up()
        elif key == "enter" and options.highlighted is not None:
            self.dismiss(self.choices[options.highlighted][0])
        elif key == "escape":
            self.action_cancel()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.choices[int(event.option.id or 0)][0])
