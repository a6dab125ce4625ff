"""The status line: state, epoch and step with a progress bar and ETA, samples/s, LR, device, run dir."""

from __future__ import annotations

from textual.markup import escape
from textual.widgets import Static

from tuitrain import fmt
from tuitrain.runstate import RunState
from tuitrain.widgets.system import bar

STATE_STYLE = {"RUNNING": "green", "PAUSED": "yellow", "DONE": "cyan", "FAILED": "red", "STOPPING": "yellow",
               "STOPPED": "yellow", "STARTING": "white", "DEAD": "red", "INTERRUPTED": "yellow"}


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

    def refresh_text(self) -> None:
        """Rebuild both lines."""
        run = self.run
        color = STATE_STYLE.get(run.state, "white")
        frac = run.step / run.total if run.total else 0.0
        # Throughput and ETA only while it runs: paused (or ended) the last ones would be stale.
        running = run.state == "RUNNING"
        first = (f"[b {color}]{run.state}[/]  epoch {run.epoch}/{run.epochs}  step {run.step}/{run.total} "
                 f"{bar(frac, 20)} {100 * frac:5.1f}%  ETA {fmt.seconds(run.eta_seconds())}")
        second = (f"{fmt.rate(run.samples_per_s if running else None)} samples/s  lr {fmt.lr(run.lr)}  "
                  f"device {escape(str(run.device or '-'))}  run {escape(self.run_dir)}"
                  + (f"  [b]{escape(run.note)}[/b]" if run.note else ""))
        self.update(f"{first}\n{second}", layout=False)  # fixed height: no relayout
