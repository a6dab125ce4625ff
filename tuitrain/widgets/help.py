"""The help screen (?): every key and what it does."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

HELP_TEXT = """[b]tuitrain keys[/b]

  p      pause / resume (at the next step boundary)
  s      save a checkpoint now (checkpoints/step-N.pt)
  l      load a checkpoint: weights and optimizer state (the newest is first)
  r      set the learning rate (Enter sets, Esc cancels)
  d      switch device (model, optimizer state and data move)
  c      classes view: confusion matrix, per-class accuracy, misclassified samples (c again: back)
  g      loss axis on a log scale (g again: linear)
  v      narrow terminal: cycle the lower panel (histograms, system, model, classes)
  [ ]    previous / next layer in the histograms (also up / down)
  q      quit: the dashboard stops the run and writes last.pt; watch only leaves
  ?      this help

Every command is confirmed or refused in a notification and recorded as an event in
metrics.jsonl; interventions are marked on the curves.

Press Esc, q or ? to close."""


class HelpScreen(ModalScreen[None]):
    """A modal listing the keys."""

    BINDINGS = [("escape", "close", "Close"), ("q", "close", "Close"), ("question_mark", "close", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical { width: 84; height: auto; border: round $accent; padding: 1 2; background: $surface; }
    """

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(HELP_TEXT)

    def action_close(self) -> None:
        self.dismiss(None)
