"""The dashboard's keys: one list that the App's BINDINGS, the help screen (?) and ``--help`` are
all drawn from. Plain data, no Textual, so the CLI prints its key line without importing the UI."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Key:
    """One key (or pair of keys) of the dashboard."""

    shown: str
    """How people read the key: ``p``, ``[ ]``, ``Ctrl-C``."""
    does: str
    """What it does, one line of the help screen (at most HELP_TEXT_WIDTH characters)."""
    brief: str
    """What it does in two or three words, for ``--help``'s key line."""
    bindings: tuple[tuple[str, str], ...]
    """(Textual key names, action) pairs, e.g. ``("left_square_bracket,up", "layer(-1)")``."""
    footer: str = ""
    """The footer's label; empty: not in the footer (it must fit 80 columns)."""
    priority: bool = False
    """Handled before the focused widget sees the key: the prompt keys, so what is typed right after
    them reaches the prompt in order, and Ctrl-C."""


KEYS: tuple[Key, ...] = (
    Key("p", "pause / resume (at the next step boundary)", "pause/resume", (("p", "pause"),), "Pause"),
    Key("s", "save a checkpoint now (checkpoints/step-N.pt)", "save", (("s", "save"),), "Save"),
    Key("l", "load a checkpoint: weights and optimizer state", "load", (("l", "load"),), "Load", priority=True),
    Key("r", "set the learning rate (Enter sets, Esc cancels)", "learning rate", (("r", "set_lr"),), "LR",
        priority=True),
    Key("d", "switch device (model, optimizer state and data move)", "device", (("d", "device"),), "Device",
        priority=True),
    Key("c", "classes: confusion matrix, per-class accuracy, mistakes", "classes", (("c", "classes"),), "Classes"),
    Key("g", "loss axis: log scale, or back to linear", "log loss", (("g", "log_scale"),)),
    Key("v", "next lower panel (terminals under 120 columns)", "view", (("v", "cycle_view"),), "View"),
    Key("[ ]", "previous / next layer in the histograms (or up / down)", "layer",
        (("left_square_bracket,up", "layer(-1)"), ("right_square_bracket,down", "layer(1)"))),
    Key("q", "quit: stop the run, write last.pt (watch: only leave)", "quit", (("q", "quit_run"),), "Quit"),
    Key("Ctrl-C", "like q; the dashboard then exits 130", "interrupt", (("ctrl+c", "interrupt"),), priority=True),
    Key("?", "this help", "help", (("question_mark", "help"),), "Help"),
)
"""Every key, in the order the help lists them."""

COMPARE_KEYS: tuple[Key, ...] = (
    Key("x", "x axis: epoch, step, samples seen, wall time", "x axis", (("x", "next_axis"),), "X axis"),
    Key("↑ ↓", "choose a run in the table (or PageUp / PageDown)", "choose", ()),
    Key("Enter", "open the chosen run alone (q there comes back here)", "open", (("enter", "open_run"),),
        "Open run"),
    Key("q", "leave (the runs go on)", "quit", (("q", "quit"),), "Quit"),
    Key("?", "this help", "help", (("question_mark", "help"),), "Help"),
)
"""The keys of the comparison view (``tuitrain watch A B ...``), in the order its help lists them."""

PROMPT_ACTIONS = frozenset({"load", "set_lr", "device"})
"""Actions that open a prompt: not run while another prompt (or the help) is open."""
CONTROL_ACTIONS = frozenset({"pause", "save", "load", "set_lr", "device"})
"""Actions that send the run a command: out of the footer once the run has ended or is read-only."""
ENDED_ACTION = "ended"
"""A hidden binding under each control key, run instead of it when the run takes no commands (says so)."""

HELP_KEY_WIDTH = 8
HELP_TEXT_WIDTH = 58
"""The help screen's two columns: it fits an 80x24 terminal with its border and padding."""


def action_name(action: str) -> str:
    """``layer(-1)`` -> ``layer``."""
    return action.split("(", 1)[0]


def help_lines(available: Callable[[str], bool] | None = None, keys: tuple[Key, ...] = KEYS) -> list[str]:
    """The key table of the help screen, one line per key whose action is ``available``."""
    return [f"{key.shown:<{HELP_KEY_WIDTH}}{key.does}" for key in keys
            if available is None or any(available(action_name(action)) for _, action in key.bindings)]


def key_line(width: int = 78) -> str:
    """``keys in the dashboard: p pause/resume, s save, ...``, wrapped to ``width`` for ``--help``."""
    text = "keys in the dashboard: " + ", ".join(f"{key.shown} {key.brief}" for key in KEYS)
    return "\n".join(textwrap.wrap(text, width, subsequent_indent="  ", break_on_hyphens=False))
