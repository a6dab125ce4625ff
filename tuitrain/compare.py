"""``tuitrain watch RUN_A RUN_B ...`` (or a sweep folder): several runs compared, followed live."""

from __future__ import annotations

import threading
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer

from tuitrain.errors import UsageError
from tuitrain.runlog import METRICS, read_history
from tuitrain.runs import is_run_dir, run_state
from tuitrain.widgets.compare import COLORS, CompareCurves

POLL_S = 1.0


def expand_runs(paths: list[str]) -> list[Path]:
    """Run directories from the arguments: a run, or a folder of runs (a sweep); UsageError if none."""
    runs: list[Path] = []
    for text in paths:
        path = Path(text)
        if is_run_dir(path):
            runs.append(path)
        elif path.is_dir() and (found := sorted(p for p in path.iterdir() if is_run_dir(p))):
            runs.extend(found)
        else:
            raise UsageError(f"{path} is not a tuitrain run directory nor a folder of runs")
    return runs


class RunRecords(Message):
    """New records of one run (from the follower thread)."""

    def __init__(self, run: int, records: list[dict]) -> None:
        super().__init__()
        self.run = run
        self.records = records


class CompareApp(App[int]):
    """Overlaid curves and a table of the runs; read-only (control one run with `watch RUN`)."""

    TITLE = "tuitrain compare"
    BINDINGS = [Binding("q", "quit", "Quit")]
    CSS = """
    CompareCurves { height: 2fr; border: round $primary; }
    DataTable { height: 1fr; border: round $primary; }
    """

    def __init__(self, runs: list[Path]) -> None:
        super().__init__()
        self.runs = runs
        self.names = [p.name for p in runs]
        self.best: list[float | None] = [None] * len(runs)
        self.epochs = [0] * len(runs)
        self._stop = threading.Event()

    def compose(self) -> ComposeResult:
        yield CompareCurves(self.names)
        yield DataTable(show_cursor=False, zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("", "run", "status", "epochs", "best val_acc")
        for i, name in enumerate(self.names):
            table.add_row(f"[{COLORS[i % len(COLORS)]}]■[/]", name, run_state(self.runs[i]), "0", "-", key=str(i))
        self.follow()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def follow(self) -> None:
        """Read each run's history, then poll for new records until the app leaves."""
        followers = []
        for i, run in enumerate(self.runs):
            records, follower = read_history(run / METRICS)
            followers.append(follower)
            self.post_message(RunRecords(i, records))
        while not self._stop.wait(POLL_S):
            for i, follower in enumerate(followers):
                records = follower.poll()
                if records:
                    self.post_message(RunRecords(i, records))

    @on(RunRecords)
    def take(self, message: RunRecords) -> None:
        """Route one run's records to the curves and its table row."""
        curves = self.query_one(CompareCurves)
        for record in message.records:
            curves.add(message.run, record)
            if record.get("type") == "epoch":
                self.epochs[message.run] = record["epoch"]
                best = self.best[message.run]
                self.best[message.run] = record["val_acc"] if best is None else max(best, record["val_acc"])
        table = self.query_one(DataTable)
        row = str(message.run)
        best = self.best[message.run]
        table.update_cell(row, table.ordered_columns[2].key, run_state(self.runs[message.run]))
        table.update_cell(row, table.ordered_columns[3].key, str(self.epochs[message.run]))
        table.update_cell(row, table.ordered_columns[4].key, "-" if best is None else f"{best:.4f}")

    def on_unmount(self) -> None:
        self._stop.set()
