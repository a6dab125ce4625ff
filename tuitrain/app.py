"""The dashboard App: composes the panels, binds the keys, routes records to the panels.

The backend (live engine or watched run directory) runs in a thread worker and posts records;
the App never polls it and never touches a tensor.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.events import Resize
from textual.widgets import Footer

from tuitrain.commands import Load, Pause, Resume, Save, SetDevice, SetLR
from tuitrain.messages import BackendFinished, RecordsArrived
from tuitrain.widgets.choice_prompt import ChoicePrompt
from tuitrain.widgets.curves import Curves
from tuitrain.widgets.help import HelpScreen
from tuitrain.widgets.histograms import Histograms
from tuitrain.widgets.lr_prompt import LRPrompt
from tuitrain.widgets.status import StatusLine
from tuitrain.widgets.summary import SummaryPanel
from tuitrain.widgets.system import SystemPanel

NARROW_BELOW = 120
GIL_SWITCH_S = 0.001
STATUS_EVERY_S = 0.5
VIEWS = ("view-hist", "view-system", "view-summary")
END_STATES = {"done": "DONE", "failed": "FAILED", "stopped": "STOPPED", "interrupted": "INTERRUPTED",
              "dead": "DEAD"}
EXIT_CODES = {"DONE": 0, "STOPPED": 0, "FAILED": 1, "INTERRUPTED": 130}


class TuiTrainApp(App[int]):
    """The live dashboard (and, with a watch backend, the viewer of a run directory)."""

    CSS_PATH = "app.tcss"
    TITLE = "tuitrain"
    BINDINGS = [
        Binding("p", "pause", "Pause/Resume"),
        Binding("s", "save", "Save"),
        Binding("l", "load", "Load"),
        Binding("r", "set_lr", "LR"),
        Binding("d", "device", "Device"),
        Binding("v", "cycle_view", "View"),
        Binding("left_square_bracket,up", "layer(-1)", "Layer", show=False),
        Binding("right_square_bracket,down", "layer(1)", "Layer", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit_run", "Quit"),
        Binding("ctrl+c", "interrupt", "Interrupt", show=False, priority=True),
    ]

    def __init__(self, backend, watch_mode: bool = False) -> None:
        super().__init__()
        self.backend = backend
        self.watch_mode = watch_mode
        self.paused = False
        self.finished = ""  # DONE, FAILED, STOPPED... once the run ended
        self.lr: float | None = None
        self.device = ""
        self._ids = itertools.count(1)
        self._view = 0
        self._quit_requested = False
        # Panels are held by reference, not queried: while a prompt is open the App's queries search
        # the prompt's screen, and records keep arriving.
        self.status_line = StatusLine(backend.run_dir, id="status")
        self.curves = Curves(id="curves")
        self.histograms = Histograms(id="histograms")
        self.system_panel = SystemPanel("waiting for the first sample...", id="system")
        self.summary_panel = SummaryPanel(id="summary")
        self._status_dirty = False
        self._replaying = False  # watch: history being loaded, so no notifications for old events

    # ----------------------------------------------------------------- layout
    def compose(self) -> ComposeResult:
        yield self.status_line
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield self.curves
                yield self.histograms
            with Vertical(id="right"):
                yield self.system_panel
                yield self.summary_panel
        yield Footer()

    def on_mount(self) -> None:
        # The UI thread shares the GIL with the training thread; a shorter switch interval makes the
        # UI hand the GIL back sooner when training wants it (UI latency stays far below a frame).
        sys.setswitchinterval(GIL_SWITCH_S)
        self.sub_title = Path(self.backend.run_dir).name
        for widget_id, title in (("curves", "loss / accuracy"), ("histograms", "weights / gradients"),
                                 ("system", "system"), ("summary", "model")):
            self.query_one(f"#{widget_id}").border_title = title
        self.screen.add_class(VIEWS[0])
        self.set_interval(STATUS_EVERY_S, self._refresh_status)
        self.run_backend()

    def _refresh_status(self) -> None:
        if self._status_dirty:
            self._status_dirty = False
            self.status_line.refresh_text()

    def on_resize(self, event: Resize) -> None:
        self.screen.set_class(event.size.width < NARROW_BELOW, "narrow")

    # ----------------------------------------------------------------- backend
    @work(thread=True, exclusive=True, exit_on_error=False)
    def run_backend(self) -> None:
        """Run the backend (training, or following a run dir) off the UI thread."""
        try:
            self.backend.run(self._emit)
        except Exception as exc:  # shown on screen; the run dir keeps what was written
            self.post_message(BackendFinished(f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(BackendFinished())

    def _emit(self, records: list[dict]) -> None:
        # Called from the backend thread: post_message is thread-safe and never blocks.
        self.post_message(RecordsArrived(records))

    @on(RecordsArrived)
    def route_records(self, message: RecordsArrived) -> None:
        """Hand each record to the panels that show it."""
        status, curves = self.status_line, self.curves
        for record in message.records:
            kind = record.get("type")
            if kind == "step":
                curves.add_step(record)
                self.lr = record.get("lr", self.lr)
            elif kind == "epoch":
                curves.add_epoch(record)
            elif kind == "hist":
                self.histograms.update_record(record)
            elif kind == "system":
                self.system_panel.update_record(record)
            elif kind == "event":
                self._on_event(record)
            elif kind == "replay":
                self._replaying = record["begin"]
                if not self._replaying:
                    curves.redraw()
            status.update_record(record)
        self._status_dirty = True  # redrawn by a timer, a few times a second, not per record

    @on(BackendFinished)
    def backend_finished(self, message: BackendFinished) -> None:
        """The worker returned: show why if it failed; keep the screen until q."""
        if message.error:
            self._finish("FAILED", message.error)
            self.notify(message.error, title="failed", severity="error", timeout=30, markup=False)
        if self._quit_requested:
            self.exit(EXIT_CODES.get(self.finished, 0))

    def _on_event(self, record: dict) -> None:
        event, ok = record["event"], record.get("ok", True)
        self.curves.add_event(record)
        if event == "start":
            self.lr, self.device = record.get("lr"), record["device"]
            if record.get("summary"):  # None when the summary could not be taken (summary_error says why)
                self.summary_panel.update_summary(record["summary"], self.device)
            self.status_line.state = "RUNNING"
        elif event == "pause" and ok:
            self.paused = True
            self.status_line.state = "PAUSED"
        elif event == "resume" and ok:
            self.paused = False
            self.status_line.state = "RUNNING"
            self.status_line.note = ""
        elif event == "device" and ok:
            self.device = record["new"]
            self.summary_panel.set_device(self.device)
        elif event == "lr" and ok:
            self.lr = record["new"]
        elif event == "nonfinite":
            if record.get("action") == "paused":
                self.paused = True
                self.status_line.state = "PAUSED"
                self.status_line.note = "diverged: lower the LR (r) or load a checkpoint (l), then p"
        elif event == "end":
            best = record.get("best_val_acc")
            note = f"best val_acc {best:.4f}" if best is not None else ""
            self._finish(END_STATES.get(record.get("status", ""), "DONE"), note)
        self._notify_event(record)

    def _finish(self, state: str, note: str) -> None:
        self.finished = state
        status = self.status_line
        status.state = state
        if self.watch_mode:
            note = f"{note}  read-only: the run has ended" if state != "DEAD" else "read-only: its process is gone"
        status.note = note + ("  (q to leave)" if not self._quit_requested else "")

    def _notify_event(self, record: dict) -> None:
        if self._replaying:
            return
        event, ok = record["event"], record.get("ok", True)
        if event == "nonfinite":
            self.notify(str(record.get("reason", "")), title="training diverged", severity="error", timeout=30,
                        markup=False)  # record text is shown as text, never parsed as markup
            return
        if not ok:
            self.notify(f"{event} refused: {record.get('reason', '')}", severity="error", timeout=8, markup=False)
            return
        if record.get("auto") or event in ("start", "stop"):
            return
        messages = {
            "pause": f"paused at step {record['step']}",
            "resume": f"resumed at step {record['step']}",
            "save": f"saved {record.get('path')}",
            "load": f"loaded {record.get('path')} (weights of step {record.get('from_step')})",
            "lr": f"learning rate {record.get('old')} → {record.get('new')}",
            "device": f"moved to {record.get('new')}",
            "end": f"run {record.get('status')}",
            "error": f"error: {record.get('reason')}",
        }
        if event in messages:
            severity = "error" if event == "error" or record.get("status") == "failed" else "information"
            self.notify(messages[event], severity=severity, markup=False)

    # ----------------------------------------------------------------- keys
    def _can_control(self) -> bool:
        """Whether the run takes commands; says why not when it does not."""
        if self.finished or not self.backend.controls:
            self.notify(f"the run has ended ({self.finished or 'read-only'}); nothing to control",
                        severity="warning")
            return False
        return True

    def _send(self, command_type, *args) -> None:
        """Send a command if the run can take one."""
        if self._can_control():
            self.backend.send(command_type(*args, id=next(self._ids)))

    def action_pause(self) -> None:
        """p: pause, or resume when paused."""
        self._send(Resume if self.paused else Pause)

    def action_save(self) -> None:
        """s: save a checkpoint now."""
        self._send(Save)

    def action_load(self) -> None:
        """l: choose a checkpoint (newest first) and load it."""
        if not self._can_control():
            return
        found = self.backend.checkpoints()
        if not found:
            self.notify("no checkpoints in this run yet (s saves one)", severity="warning")
            return
        choices = [(path, Path(path).name) for path in found]
        self.push_screen(ChoicePrompt("Load which checkpoint? (newest first)", choices),
                         lambda path: path and self._send(Load, path))

    def action_set_lr(self) -> None:
        """r: prompt for a learning rate, filled with the current one."""
        if not self._can_control():
            return
        self.push_screen(LRPrompt(self.lr), lambda lr: lr is not None and self._send(SetLR, lr))

    def action_device(self) -> None:
        """d: choose a device to move the run to."""
        if not self._can_control():
            return
        others = [d for d in self.backend.devices() if d != self.device]
        if not others:
            self.notify(f"only {self.device or 'a CPU'} here: no other device to switch to", severity="warning",
                        markup=False)
            return
        self.push_screen(ChoicePrompt(f"Move from {self.device} to:", [(d, d) for d in others]),
                         lambda device: device and self._send(SetDevice, device))

    def action_layer(self, delta: int) -> None:
        """[ / ]: previous or next layer in the histograms."""
        self.histograms.move(delta)

    def action_cycle_view(self) -> None:
        """v: on a narrow terminal, cycle the lower panel (histograms, system, model)."""
        self.screen.remove_class(VIEWS[self._view])
        self._view = (self._view + 1) % len(VIEWS)
        self.screen.add_class(VIEWS[self._view])

    def action_help(self) -> None:
        """?: the key help."""
        self.push_screen(HelpScreen())

    def action_quit_run(self) -> None:
        """q: stop the run at the next step (live) and leave once last.pt is written."""
        self._leave("quit")

    def action_interrupt(self) -> None:
        """Ctrl-C: like q, and the process exits 130 (SPEC)."""
        self._leave("interrupt")

    def stop_run(self, reason: str) -> None:
        """SIGTERM or SIGHUP (launch.py): like q, the reason kept for the exit code (143, 129)."""
        self._leave(reason)

    def _leave(self, reason: str) -> None:
        if self.finished or not self.backend.quit_stops_run:
            self.backend.quit(reason)
            code = EXIT_CODES.get(self.finished, 0) if not self.watch_mode else 0
            self.exit(130 if reason == "interrupt" and not self.finished else code)
            return
        if self._quit_requested:
            return
        self._quit_requested = True
        self.status_line.state = "STOPPING"
        self.notify("stopping at the next step; writing last.pt...")
        self.backend.quit(reason)

    def on_unmount(self) -> None:
        if not self.finished:
            self.backend.quit("quit")  # never leave an engine running behind a closed dashboard
