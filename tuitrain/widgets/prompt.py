"""A modal prompt that keeps the keys typed before it could take them (type-ahead).

A prompt opens on a key (r, l, d); mounting it takes a moment, and keys typed meanwhile reach the
prompt screen before its input has focus. They are applied in order, as if typed afterwards, so
``r 0.0005 Enter`` typed at once sets 0.0005: never half of it, never the pre-filled value.
"""

from __future__ import annotations

from typing import TypeVar

from textual import events
from textual.screen import ModalScreen
from textual.widget import Widget

T = TypeVar("T")


class TypeAheadPrompt(ModalScreen[T]):
    """Subclasses name the widget that takes the keys and apply early keys in :meth:`type_ahead`."""

    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self) -> None:
        super().__init__()
        self._early: list[tuple[str, str | None]] = []
        self._ready = False

    def target(self) -> Widget:
        """The widget that has focus once the prompt is ready."""
        raise NotImplementedError

    def type_ahead(self, key: str, character: str | None) -> None:
        """Apply one key typed before the target had focus."""
        raise NotImplementedError

    def on_mount(self) -> None:
        self.set_focus(self.target())  # at once: later keys go straight to the target
        self._ready = True
        for key, character in self._early:
            self.type_ahead(key, character)
        self._early.clear()

    def on_key(self, event: events.Key) -> None:
        # Why a key handler (STYLE says bindings): keys typed right after the key that opened the
        # prompt arrive here, not at the focused widget. Printable ones reach the screen only then
        # (a focused Input consumes them); others, once the target has focus, go on to the bindings
        # (the Input's Enter and Backspace, the screen's Escape), which is what typing them later does.
        if self.focused is not None and not event.is_printable:
            return
        event.stop()
        event.prevent_default()
        if self._ready:
            self.type_ahead(event.key, event.character)
        else:
            self._early.append((event.key, event.character))

    def action_cancel(self) -> None:
        self.dismiss(None)
