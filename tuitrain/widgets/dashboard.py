"""The dashboard screen: lays out the panels, hands each record to the panels that show it, and
switches views on narrow terminals. Holds no run state of its own (that is the App's RunState)."""

from __future__ import annotations

from collections import Counter

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer

from tuitrain.runstate import RunState
from tuitrain.widgets import curves, histograms
from tuitrain.widgets.classes import ClassesPanel
from tuitrain.widgets.curves import Curves
from tuitrain.widgets.gallery import Gallery
from tuitrain.widgets.histograms import Histograms
from tuitrain.widgets.status import StatusLine
from tuitrain.widgets.summary import SummaryPanel
from tuitrain.widgets.system import SystemPanel

NARROW_BELOW = 120
"""Terminals narrower than this get the stacked layout: curves on top, one lower panel at a time."""
STATUS_EVERY_S = 1.0
"""The dashboard's clock: the status line is redrawn at most this often from metrics (state changes are
drawn at once), the plots on the same ticks. Once a second is what a progress display needs (top and
htop refresh as slowly); each frame wakes the UI thread, which on a machine whose cores the torch
threads keep busy stalls a parallel region of training."""
AFTER_SAMPLES = frozenset({"step", "epoch", "event", "hist"})
"""Records the engine writes after an epoch's samples (system records come from another thread)."""
VIEWS = ("view-hist", "view-system", "view-summary", "view-classes")
"""The lower panel shown on a narrow terminal, cycled with v (a class on the screen; see app.tcss);
the last is the classes view, which takes the whole screen (as c does on any terminal)."""
TITLES = {"curves": "loss / accuracy by step", "histograms": "weights / gradients", "system": "system", "summary": "model",
          "confusion": "classes: confusion (rows true, columns predicted)", "gallery": "misclassified samples"}


class DashboardScreen(Screen[None]):
    """The panels of one run. The App applies records to the RunState, then calls :meth:`show`."""

    # Textual sets the class from the width on every resize: "narrow" below NARROW_BELOW columns.
    HORIZONTAL_BREAKPOINTS = [(0, "narrow"), (NARROW_BELOW, "wide")]

    def __init__(self, run_dir: str, run: RunState, counts: Counter[str] | None = None) -> None:
        super().__init__(classes=VIEWS[0])
        self.counts: Counter[str] = Counter() if counts is None else counts
        """What woke the UI: clock ticks, status line and plot redraws (tests and benchmarks read it)."""
        self.run_dir = run_dir
        self.run = run
        self.view = 0
        """Index in VIEWS of the lower panel shown on a narrow terminal."""
        self._status_dirty = False
        self._ticks = 0
        self._samples_due: int | None = None
        """The epoch of a confusion record whose samples record (it comes right after) has not come."""

    def compose(self) -> ComposeResult:
        yield StatusLine(self.run_dir, self.run, id="status")
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield Curves(id="curves")
                yield Histograms(id="histograms")
            with Vertical(id="right"):
                yield SystemPanel("waiting for the first sample...", id="system")
                yield SummaryPanel(id="summary")
        with VerticalScroll(id="classes"):
            yield ClassesPanel(id="confusion")
            yield Gallery(id="gallery")
        # The keys must fit 80 columns: the command palette (Ctrl-P) still opens, unlisted.
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        for widget_id, title in TITLES.items():
            self.query_one(f"#{widget_id}").border_title = title
        # One clock for all panels, so the status line, the curves and the histograms that change are
        # drawn in one frame: each frame costs the UI thread (which shares the GIL and the cores with
        # training) a few ms beyond its panels' own drawing.
        self.set_interval(STATUS_EVERY_S, self.tick)

    def show(self, record: dict) -> None:
        """Hand one record to the panels that show it (call :meth:`status_changed` after a batch)."""
        kind = record.get("type")
        if self._samples_due is not None and kind in AFTER_SAMPLES:
            # The engine writes an epoch's samples right after its confusion: none came, none will.
            self.query_one(Gallery).no_samples(self._samples_due, self.query_one(ClassesPanel).confusion)
            self._samples_due = None
        if kind == "step":
            self.query_one(Curves).add_step(record)
        elif kind == "epoch":
            self.query_one(Curves).add_epoch(record)
        elif kind == "hist":
            self.query_one(Histograms).update_record(record)
        elif kind == "system":
            self.query_one(SystemPanel).update_record(record)
        elif kind == "confusion":
            if self.query_one(ClassesPanel).update_record(record):
                self._samples_due = record.get("epoch", 0)
        elif kind == "samples":
            self._samples_due = None
            self.query_one(Gallery).update_record(record)
        elif kind == "event":
            self._show_event(record)
        elif kind == "replay" and not record["begin"]:
            self.query_one(Curves).redraw()  # the whole history is in: draw it once now

    def _show_event(self, record: dict) -> None:
        self.query_one(Curves).add_event(record)
        event, ok = record["event"], record.get("ok", True)
        if event == "start":
            self.query_one(SummaryPanel).update_summary(record.get("summary"), record.get("device", ""),
                                                        error=record.get("summary_error") or "")
            self.query_one(Curves).configure(record)
        elif event == "device" and ok:
            self.query_one(SummaryPanel).set_device(record["new"])
        elif event == "end":
            self.query_one(SystemPanel).run_ended()

    def status_changed(self, at_once: bool = False) -> None:
        """The run state changed: redraw the status line now, or with the next timer tick."""
        if at_once:
            self._status_dirty = False
            self.counts["status"] += 1
            self.query_one(StatusLine).refresh_text()
        else:
            self._status_dirty = True  # metrics arrive many times a second; drawn a few times a second

    def tick(self) -> None:
        """One beat of the panels' clock: the status line if it changed, the curves every second,
        the histograms every two (tests call it to drive the clock instead of waiting for it)."""
        self._ticks += 1
        self.counts["ticks"] += 1
        if self._status_dirty:
            self.status_changed(at_once=True)
        if self._ticks % round(curves.REDRAW_EVERY_S / STATUS_EVERY_S) == 0:
            self.query_one(Curves).redraw_if_dirty()
        if self._ticks % round(histograms.REDRAW_EVERY_S / STATUS_EVERY_S) == 0:
            self.query_one(Histograms).redraw_if_dirty()

    def cycle_view(self) -> None:
        """Show the next lower panel (on a narrow terminal; a wide one shows them all)."""
        self.remove_class("show-classes", VIEWS[self.view])
        self.view = (self.view + 1) % len(VIEWS)
        self.add_class(VIEWS[self.view])
        self._focus_classes(self.has_class("narrow") and VIEWS[self.view] == "view-classes")

    def toggle_classes(self) -> bool:
        """Show the classes view instead of the panels, or the panels again; True when it is shown now."""
        shown = self.has_class("show-classes") or (self.has_class("narrow") and VIEWS[self.view] == "view-classes")
        if self.has_class("narrow"):
            self.remove_class(VIEWS[self.view])
            self.view = 0 if shown else VIEWS.index("view-classes")
            self.add_class(VIEWS[self.view])
        self.set_class(not shown, "show-classes")
        self._focus_classes(not shown)
        return not shown

    def _focus_classes(self, shown: bool) -> None:
        # Focused, the classes view takes up/down/page keys to scroll (the gallery is below the matrix).
        if shown:
            self.query_one("#classes").focus()
        elif self.focused is not None and self.focused.id == "classes":
            self.set_focus(None)

    def move_layer(self, delta: int) -> None:
        """The previous (-1) or next (+1) layer in the histograms."""
        self.query_one(Histograms).move(delta)
