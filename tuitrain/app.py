"""The dashboard App: holds the backend and the run state, binds the keys, routes records.

The backend (live engine or watched run directory) runs in a thread worker and posts records;
the App applies them to its :class:`~tuitrain.runstate.RunState` and hands them to the
:class:`~tuitrain.widgets.dashboard.DashboardScreen`, which lays out the panels. The App never
polls the backend and never touches a tensor.
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import uuid
from collections import Counter
from pathlib import Path

from textual import on, work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.driver import Driver
from textual.drivers.linux_driver import LinuxDriver
from textual.notifications import Notify

from tuitrain.commands import Load, Pause, Resume, Save, SetDevice, SetLR
from tuitrain.driver import QuietLinuxDriver
from tuitrain.keys import CONTROL_ACTIONS, ENDED_ACTION, KEYS, PROMPT_ACTIONS, help_lines
from tuitrain.messages import BackendFinished, HungUp, RecordsArrived
from tuitrain.runstate import RunState, checkpoint_choices, notice_for
from tuitrain.signals import hang_up_self
from tuitrain.widgets.choice_prompt import ChoicePrompt
from tuitrain.widgets.curves import Curves
from tuitrain.widgets.dashboard import DashboardScreen
from tuitrain.widgets.help import ENDED_NOTES, NOTES, HelpScreen
from tuitrain.widgets.lr_prompt import LRPrompt

MAX_NOTIFICATIONS = 2
"""Toasts shown at once (newest on top): more would cover the dashboard on an 80x24 terminal."""


def bindings() -> list[BindingType]:
    """The App's bindings, from the one key list (tuitrain.keys) that help and --help also show.

    Each control key has a hidden twin, enabled instead of it once the run takes no commands (see
    check_action): the footer no longer offers the key, and pressing it still says why nothing happens.
    """
    out: list[BindingType] = []
    for key in KEYS:
        for keys, action in key.bindings:
            out.append(Binding(keys, action, key.footer or key.brief, show=bool(key.footer), priority=key.priority))
            if action in CONTROL_ACTIONS:
                out.append(Binding(keys, ENDED_ACTION, key.brief, show=False, priority=key.priority))
    return out


class TerminalOutput:
    """The terminal as Textual's writer thread sees it (the driver's output file), where a write
    that fails is dropped instead of raised. After a hang-up every write to the terminal fails
    (EIO); in Textual the first failure ends the writer thread, its queue (30 writes) fills, and the
    next write of the UI thread (App._shutdown's included) blocks forever: a process that never
    ends. The first failure is taken as the hang-up it is (signals.hang_up_self), in case no SIGHUP
    came."""

    def __init__(self, file) -> None:
        self.file = file
        self.failed = False

    def write(self, text: str) -> int:
        try:
            return self.file.write(text)
        except (OSError, ValueError):
            self._gone()
            return len(text)

    def flush(self) -> None:
        try:
            self.file.flush()
        except (OSError, ValueError):
            self._gone()

    def fileno(self) -> int:
        return self.file.fileno()

    def isatty(self) -> bool:
        return True

    def _gone(self) -> None:
        if not self.failed:
            self.failed = True
            hang_up_self()


class TerminalDriver(QuietLinuxDriver):
    """Textual's Linux/macOS driver writing through :class:`TerminalOutput`, with the input thread
    of driver.QuietLinuxDriver."""

    def __init__(self, app: App, **kwargs) -> None:
        super().__init__(app, **kwargs)
        self._file = TerminalOutput(self._file)  # type: ignore[assignment]  # what its WriterThread writes to


class TuiTrainApp(App[int]):
    """The live dashboard (and, with a watch backend, the viewer of a run directory)."""

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses (tests) find it too
    TITLE = "tuitrain"
    NOTIFICATION_TIMEOUT = 3
    BINDINGS = bindings()

    def __init__(self, backend, watch_mode: bool = False) -> None:
        super().__init__()
        self.backend = backend
        self.watch_mode = watch_mode
        self.run_state = RunState(watch_mode)
        self.counts: Counter[str] = Counter()
        """What woke the UI thread: record messages (and records in them), clock ticks, redraws."""
        self.dashboard = DashboardScreen(backend.run_dir, self.run_state, self.counts)
        """The first screen; prompts open above it while records keep arriving."""
        self._ids = itertools.count(1)

    def get_default_screen(self) -> DashboardScreen:
        return self.dashboard

    def get_driver_class(self) -> type[Driver]:
        """Textual's driver for this platform; on Linux and macOS (not TEXTUAL_DRIVER's, Windows' or
        the web's) :class:`TerminalDriver`: writes to a terminal that went away are dropped, and its
        input thread sleeps while nobody types."""
        driver = super().get_driver_class()
        return TerminalDriver if driver is LinuxDriver else driver

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Keys whose action this App lacks are inert and hidden; prompt keys wait for the dashboard."""
        if (action in PROMPT_ACTIONS or action == ENDED_ACTION) and self.screen is not self.dashboard:
            return False  # a prompt or the help is open: the key goes to it instead
        if action in CONTROL_ACTIONS or action == ENDED_ACTION:
            return (action == ENDED_ACTION) != self._takes_commands()  # out of the footer once it cannot act
        return hasattr(self, f"action_{action}")

    def _takes_commands(self) -> bool:
        """Whether the run can still take a command (not ended, not watched read-only)."""
        return not self.run_state.finished and self.backend.controls

    def notices(self) -> list[str]:
        """The messages of the notifications on screen now, newest first (tests and the help)."""
        return [n.message for n in self._notifications]

    def _on_notify(self, event: Notify) -> None:
        # Textual stacks every toast (textual#5129): keep the newest few, newest on top. The older
        # ones are re-added as copies (same time left) so they are drawn again below the new one.
        kept = list(self._notifications)[: MAX_NOTIFICATIONS - 1]
        self._notifications.clear()
        self._notifications.add(event.notification)
        for older in kept:
            self._notifications.add(dataclasses.replace(older, identity=str(uuid.uuid4())))
        self._refresh_notifications()

    def on_mount(self) -> None:
        # Python's own GIL switch interval (5 ms) is kept: 1 ms made the training thread hand the GIL
        # over five times as often and cost 17% of the samples/s on 2 cores (benchmarks/throughput.py).
        self.sub_title = Path(self.backend.run_dir).name

    def on_ready(self) -> None:
        # Python's full garbage collections walk every object of the process: with torch, the data and
        # the app that is about 400,000, 200 ms of the UI thread holding the GIL, which stops training
        # (Textual's allocations start one every few seconds; headless training allocates too little to).
        # What exists now lives as long as the run: frozen, collections skip it (gc.freeze's purpose).
        gc.collect()
        gc.freeze()
        if getattr(self.backend, "detached", False):  # the terminal went away while the app started
            self.exit()
            return
        # Records go to the dashboard's panels, which exist once the first frame is drawn.
        self.run_backend()

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
        """Apply each record to the run state, show it on the dashboard, notify what deserves it."""
        run = self.run_state
        self.counts["messages"] += 1
        self.counts["records"] += len(message.records)
        before = (run.state, run.note)
        for record in message.records:
            run.apply(record)
            self.dashboard.show(record)
            notice = None if run.replaying else notice_for(record)
            if notice:
                # Record text (reasons, paths) is shown as text, never parsed as markup.
                self.notify(notice.message, title=notice.title, severity=notice.severity, timeout=notice.timeout,
                            markup=False)
        self.dashboard.status_changed(at_once=before != (run.state, run.note))
        if run.finished and before[0] != run.state:
            self.refresh_bindings()  # the footer drops the keys that would command the run

    @on(BackendFinished)
    def backend_finished(self, message: BackendFinished) -> None:
        """The worker returned: show why if it failed; keep the screen until q."""
        if message.error:
            self.run_state.finish("failed", message.error)
            self.dashboard.status_changed(at_once=True)
            self.refresh_bindings()
            self.notify(message.error, title="failed", severity="error", timeout=10, markup=False)
        if self.run_state.quit_requested:
            self.exit(self.run_state.exit_code)

    @on(HungUp)
    def hung_up(self, message: HungUp) -> None:
        """The terminal went away and the run goes on headless (launch.py): leave, the run untouched."""
        self.exit()

    # ----------------------------------------------------------------- keys
    def _can_control(self) -> bool:
        """Whether the run takes commands; says why not when it does not."""
        if not self._takes_commands():
            self.action_ended()
            return False
        return True

    def action_ended(self) -> None:
        """A control key (p s l r d) once the run takes no commands: say why nothing happens."""
        finished = self.run_state.finished
        self.notify(f"the run has ended ({finished or 'read-only'}); nothing to control", severity="warning")

    def _send(self, command_type, *args) -> None:
        """Send a command if the run can take one."""
        if self._can_control():
            self.backend.send(command_type(*args, id=next(self._ids)))

    def action_pause(self) -> None:
        """p: pause, or resume when paused."""
        self._send(Resume if self.run_state.paused else Pause)

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
        mtimes = {path: when for path in found if (when := _mtime(path)) is not None}
        header, choices = checkpoint_choices(found, self.run_state.checkpoints, mtimes)
        self.push_screen(ChoicePrompt("Load which checkpoint? (newest first; Enter loads, Esc cancels)", choices,
                                      header), self._load_chosen)

    def _load_chosen(self, path: str | None) -> None:
        if path:
            self._send(Load, path)

    def action_set_lr(self) -> None:
        """r: prompt for a learning rate, filled with the current one."""
        if self._can_control():
            self.push_screen(LRPrompt(self.run_state.lr), self._lr_chosen)

    def _lr_chosen(self, lr: float | None) -> None:
        if lr is not None:
            self._send(SetLR, lr)

    def action_device(self) -> None:
        """d: choose a device to move the run to."""
        if not self._can_control():
            return
        device = self.run_state.device
        others = [d for d in self.backend.devices() if d != device]
        if not others:
            self.notify(f"only {device or 'a CPU'} here: no other device to switch to", severity="warning",
                        markup=False)
            return
        self.push_screen(ChoicePrompt(f"Move from {device} to:", [(d, d) for d in others]), self._device_chosen)

    def _device_chosen(self, device: str | None) -> None:
        if device:
            self._send(SetDevice, device)

    def action_layer(self, delta: int) -> None:
        """[ / ]: previous or next layer in the histograms."""
        self.dashboard.move_layer(delta)

    def action_cycle_view(self) -> None:
        """v: on a narrow terminal, cycle the lower panel (histograms, system, model, classes)."""
        if not self.dashboard.has_class("narrow"):
            self.notify("v switches the lower panel on terminals under 120 columns; all panels are shown here")
            return
        self.dashboard.cycle_view()

    def action_classes(self) -> None:
        """c: the classes view (confusion matrix, per-class accuracy, misclassified samples), or back."""
        self.dashboard.toggle_classes()

    def action_log_scale(self) -> None:
        """g: the loss axis on a log scale, or back to linear."""
        log = self.dashboard.query_one(Curves).toggle_log()
        self.notify(f"loss axis: {'log' if log else 'linear'}", timeout=2)

    def action_help(self) -> None:
        """?: the key help, from the same key list as the bindings."""
        # Every key this App has, the control keys too: the notes say when they do nothing.
        notes = NOTES if self._takes_commands() else ENDED_NOTES
        self.push_screen(HelpScreen(help_lines(lambda action: hasattr(self, f"action_{action}")), notes))

    def action_quit_run(self) -> None:
        """q: stop the run at the next step (live) and leave once last.pt is written."""
        self._leave("quit")

    def action_interrupt(self) -> None:
        """Ctrl-C: like q, and the process exits 130 (README, Exit codes)."""
        self._leave("interrupt")

    def stop_run(self, reason: str) -> None:
        """SIGTERM or SIGHUP (launch.py): like q, the reason kept for the exit code (143, 129)."""
        self._leave(reason)

    def _leave(self, reason: str) -> None:
        run = self.run_state
        if run.finished or not self.backend.quit_stops_run:
            self.backend.quit(reason)
            code = run.exit_code if not self.watch_mode else 0
            self.exit(130 if reason == "interrupt" and not run.finished else code)
            return
        if run.quit_requested:
            return
        run.request_quit()
        self.dashboard.status_changed(at_once=True)
        self.notify("stopping at the next step; writing last.pt...")
        self.backend.quit(reason)

    def on_unmount(self) -> None:
        # What on_ready froze is collectable again. Left frozen, it outlives the interpreter's last
        # collection, and the extension objects in it are reported at exit: torch.optim imports
        # torch._dynamo, which imports triton, whose nanobind module then prints "nanobind: leaked
        # ..." (30-40 lines, the last without a newline) after tuitrain's own last line.
        gc.unfreeze()
        if not self.run_state.finished:
            # Never leave an engine running behind a closed dashboard (unless the terminal went away
            # and the run goes on headless: a detached backend ignores this).
            self.backend.quit("quit")


def _mtime(path: str) -> float | None:
    """A file's modification time, None when it is gone."""
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return None
