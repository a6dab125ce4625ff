"""The status line: state, epoch and step with a progress bar and ETA, samples/s, LR, device, run dir.

Fitted to the width: the note (why a run failed, its best result, ``(q to leave)``) comes first on the
second line and is never cut while anything else can give way: the run dir shrinks to its name, then
the least telling parts are dropped.
"""

from __future__ import annotations

from pathlib import Path

from textual.content import Content
from textual.widgets import Static

from tuitrain import fmt
from tuitrain.runstate import LEAVE_HINT, RunState
from tuitrain.widgets.system import bar

STATE_STYLE = {"RUNNING": "green", "PAUSED": "yellow", "DONE": "cyan", "FAILED": "red", "STOPPING": "yellow",
               "STOPPED": "yellow", "STARTING": "white", "DEAD": "red", "INTERRUPTED": "yellow"}
BAR_WIDTH = 20
"""The progress bar's width when the line has room (it shrinks to BAR_MIN on a narrow terminal)."""
BAR_MIN = 6
GAP = "  "


def first_line(run: RunState, width: int) -> Content:
    """``RUNNING  epoch 1/3  step 150/300 ███░░ 50.0%  ETA 12s``, the bar as wide as ``width`` allows."""
    frac = run.step / run.total if run.total else 0.0
    head = Content.assemble((run.state, f"bold {STATE_STYLE.get(run.state, 'white')}"),
                            f"{GAP}epoch {run.epoch}/{run.epochs}{GAP}step {fmt.count(run.step)}/{fmt.count(run.total)} ")
    tail = f" {100 * frac:5.1f}%" + ("" if run.finished else f"{GAP}ETA {fmt.seconds(run.eta_seconds())}")
    room = width - head.cell_length - len(tail) if width > 0 else BAR_WIDTH
    return head + bar(frac, max(BAR_MIN, min(BAR_WIDTH, room))) + tail


def second_line(run: RunState, run_dir: str, width: int) -> Content:
    """The note first (in bold, never cut while the rest can give way), then samples/s, lr, device, run dir.

    Throughput only counts while the run runs: paused it is ``-`` and the first part to go, ended it is
    left out (as the ETA is).
    """
    note = run.note
    hint = LEAVE_HINT if note.endswith(LEAVE_HINT) else ""
    note = note.removesuffix(hint).rstrip()
    running = run.state == "RUNNING"
    parts = {"rate": f"{fmt.rate(run.samples_per_s if running else None)} samples/s", "lr": f"lr {fmt.lr(run.lr)}",
             "device": f"device {run.device or '-'}", "run": f"run {run_dir}"}
    if run.finished:
        del parts["rate"]
    # What gives way first when the line is too long, in order (the run dir first shrinks to its name).
    drop = (["rate"] if not running else []) + ["run", "device", "rate", "lr"]

    def line() -> Content:
        said = GAP.join(p for p in (note, hint) if p)
        return Content(GAP).join([Content.styled(said, "bold")] * bool(said) + [Content(p) for p in parts.values()])

    if width <= 0 or line().cell_length <= width:
        return line()
    name = Path(run_dir).name or run_dir
    parts["run"] = f"run {run.host}:{name}" if run.host and run_dir.startswith(f"{run.host}:") else f"run {name}"
    for key in drop:
        if line().cell_length <= width:
            return line()
        parts.pop(key, None)
    if line().cell_length > width:  # the note alone is too long: cut it, keep how to leave
        keep = width - (len(GAP + hint) if hint else 0)
        note = Content(note).truncate(max(keep, 1), ellipsis=True).plain
    return line()


class StatusLine(Static):
    """Two lines of run status, drawn from the App's :class:`~tuitrain.runstate.RunState`."""

    DEFAULT_CSS = "StatusLine { height: 2; }"

    def __init__(self, run_dir: str = "", run: RunState | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.run_dir = run_dir
        self.run = run or RunState()
        """The state shown; applied to by the App, only read here."""

    # What the line shows, read from the run state (one place holds lr, device, state...).
    @property
    def state(self) -> str:
        """RUNNING, PAUSED, DONE, FAILED, STOPPING..."""
        return self.run.state

    @property
    def note(self) -> str:
        """The remark after the state."""
        return self.run.note

    @property
    def lr(self) -> float | None:
        """The learning rate shown."""
        return self.run.lr

    @property
    def device(self) -> str:
        """The device shown."""
        return self.run.device

    @property
    def step(self) -> int:
        """The step shown."""
        return self.run.step

    @property
    def total(self) -> int:
        """The run's total steps."""
        return self.run.total

    def on_resize(self) -> None:
        self.refresh_text()  # fitted to the width

    def refresh_text(self) -> None:
        """Rebuild both lines (record text goes in as text, never as markup)."""
        width = self.content_size.width
        first, second = first_line(self.run, width), second_line(self.run, self.run_dir, width)
        self.update(Content("\n").join([first, second]), layout=False)  # fixed height: no relayout
