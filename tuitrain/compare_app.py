"""``tuitrain watch RUN_A RUN_B ...`` (or a sweep folder): several runs compared, followed live.

The runs are told apart by what differs between them (``lr=0.01 bs=100``, from each config.json), the
table is sorted by the monitored value (config.json's ``monitor``, default val_acc) with the best run
marked, and Enter opens the selected run in the single-run view (q there comes back here).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer

from tuitrain import fmt
from tuitrain.keys import COMPARE_KEYS, help_lines
from tuitrain.remote import RemoteRun, split_remote
from tuitrain.rundir import CONFIG, METRICS, Follow, expand_runs, read_json, run_state
from tuitrain.widgets.compare_curves import AXES, CompareCurves, swatch
from tuitrain.widgets.help import COMPARE_NOTES, HelpScreen

POLL_S = 1.0
NOT_PARAMETERS = {"run_dir", "data_dir", "resume", "headless", "device_resolved", "devices", "versions", "host", "pid",
                  "started", "data", "on_nonfinite", "log_every", "hist_every", "monitor"}
"""config.json keys that never tell runs apart in a legend (paths, machine facts, logging cadence)."""
SHORT = {"batch_size": "bs", "weight_decay": "wd", "optimizer": "opt", "scheduler": "sched", "epochs": "ep",
         "grad_clip": "clip", "accumulate": "accum", "precision": "prec", "early_stopping": "patience",
         "model_arg": "arg", "dataset": "data"}
"""Short names for the legend and the table columns."""


def varied_params(configs: list[dict]) -> list[str]:
    """The settings whose values differ between the runs, in config order."""
    keys = [k for k in dict.fromkeys(k for c in configs for k in c) if k not in NOT_PARAMETERS]
    return [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]


def legend_labels(configs: list[dict], names: list[str]) -> list[str]:
    """``lr=0.01 bs=100`` for each run: the varied settings; the run's folder name when none varies."""
    params = varied_params(configs)
    labels = [" ".join(f"{SHORT.get(k, k)}={fmt.param(k, c.get(k, '-'))}" for k in params) or name
              for c, name in zip(configs, names, strict=True)]
    return [f"{label} #{i + 1}" if labels.count(label) > 1 else label for i, label in enumerate(labels)]


def lower_is_better(monitor: str) -> bool:
    """Losses are minimised; accuracies and other metrics maximised."""
    return "loss" in monitor


@dataclass
class RunRow:
    """What the table shows of one run, updated from its epoch records."""

    index: int
    label: str
    monitor: str = "val_acc"
    epochs: int = 0
    best: dict[str, float] = field(default_factory=dict)
    """The best value so far of each val_* metric (lowest for losses)."""

    def add_epoch(self, record: dict) -> None:
        """Take one epoch record's validation values."""
        self.epochs = record.get("epoch", self.epochs)
        for key, value in record.items():
            if key.startswith("val_") and isinstance(value, int | float) and math.isfinite(value):
                old = self.best.get(key)
                better = min if lower_is_better(key) else max
                self.best[key] = value if old is None else better(old, value)

    def sort_key(self) -> tuple[int, float]:
        """Best run first; runs without the monitored value last."""
        value = self.best.get(self.monitor)
        if value is None:
            return (1, 0.0)
        return (0, value if lower_is_better(self.monitor) else -value)


def sorted_rows(rows: list[RunRow]) -> list[RunRow]:
    """The rows ordered by the monitored value, best first (ties keep the runs' order)."""
    return sorted(rows, key=lambda r: (*r.sort_key(), r.index))


class RunRecords(Message):
    """New records of one run (from the follower thread)."""

    def __init__(self, run: int, records: list[dict]) -> None:
        super().__init__()
        self.run = run
        self.records = records


class CompareApp(App[str]):
    """Overlaid curves and a table of the runs; Enter leaves with the selected run to open it alone."""

    TITLE = "tuitrain compare"
    BINDINGS = [Binding(keys, action, key.footer) for key in COMPARE_KEYS for keys, action in key.bindings]
    CSS = """
    CompareCurves { height: 1fr; min-height: 10; border: round $primary; border-title-color: $accent; }
    DataTable { height: auto; max-height: 60%; border: round $primary; }
    """

    def __init__(self, runs: list[Path | RemoteRun], selected: str | None = None, axis: str = "epoch") -> None:
        super().__init__()
        self.runs = runs
        self.axis = axis
        """The curves' x axis (``x`` moves it on); kept when a run opened alone comes back here."""
        self.configs = [p.config if isinstance(p, RemoteRun) else read_json(p / CONFIG) or {} for p in runs]
        self.labels = legend_labels(self.configs, [p.name for p in runs])
        self.params = varied_params(self.configs)
        monitor = str(self.configs[0].get("monitor") or "val_acc") if self.configs else "val_acc"
        self.rows = [RunRow(i, label, monitor) for i, label in enumerate(self.labels)]
        self.metrics = list(dict.fromkeys([monitor, "val_acc", "val_loss"]))
        """The table's best-value columns: the monitored one first."""
        self._selected = selected
        self._loaded: set[int] = set()
        """Runs whose history has arrived (the cursor follows its run only once all have)."""
        self._stop = threading.Event()

    @property
    def best(self) -> list[float | None]:
        """Each run's best val_acc so far (None before its first epoch)."""
        return [row.best.get("val_acc") for row in self.rows]

    def compose(self) -> ComposeResult:
        curves = CompareCurves(self.labels, self.configs)
        curves.axis = self.axis
        yield curves
        yield DataTable(cursor_type="row", zebra_stripes=True)
        yield Footer(show_command_palette=False)  # the keys fit 80 columns

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        monitor = self.metrics[0]
        table.border_title = f"runs by {monitor} ({'lowest' if lower_is_better(monitor) else 'highest'} first)"
        table.border_subtitle = "↑↓ choose, Enter opens it (q there comes back), ? keys"
        table.add_column("", key="mark")
        for key in self.params:
            table.add_column(SHORT.get(key, key), key=key)
        for key in self.metrics:
            table.add_column(f"best {key}", key=key)
        for key in ("epochs", "status", "run"):
            table.add_column(key, key=key)
        self._fill_table()
        self.follow()

    def _fill_table(self) -> None:
        """(Re)write the table in monitored order, keeping the cursor on the same run."""
        table = self.query_one(DataTable)
        current = self._selected  # while the histories load: the run we came back from, else the best
        if table.row_count and len(self._loaded) == len(self.runs):
            current = str(self._cursor_run())
        table.clear()
        ordered = sorted_rows(self.rows)
        for rank, row in enumerate(ordered):
            star = " [b yellow]★[/]" if rank == 0 and row.sort_key()[0] == 0 else "  "
            cells = [f"{swatch(row.index)}{star}"]
            cells += [fmt.param(k, self.configs[row.index].get(k, "-")) for k in self.params]
            cells += [fmt.metric(key, row.best.get(key)) for key in self.metrics]
            run = self.runs[row.index]
            state = run.state() if isinstance(run, RemoteRun) else run_state(run)
            cells += [str(row.epochs), state, str(run) if isinstance(run, RemoteRun) else run.name]
            table.add_row(*cells, key=str(row.index))
        for i, row in enumerate(ordered):
            if str(self.runs[row.index]) == current:
                table.move_cursor(row=i)

    @work(thread=True, exclusive=True, exit_on_error=False)
    def follow(self) -> None:
        """Read each run's history, then poll for new records until the app leaves (rundir.Follow:
        a record that does not fit is skipped)."""
        follows = [_Local(run) if isinstance(run, Path) else run for run in self.runs]
        for follow in follows:
            follow.start()
        try:
            for i, follow in enumerate(follows):
                self.post_message(RunRecords(i, follow.history()))
            while not self._stop.wait(POLL_S):
                for i, follow in enumerate(follows):
                    records = follow.poll()
                    if records:
                        self.post_message(RunRecords(i, records))
        finally:
            for follow in follows:
                follow.stop()

    @on(RunRecords)
    def take(self, message: RunRecords) -> None:
        """Route one run's records to the curves and its table row."""
        curves = self.query_one(CompareCurves)
        for record in message.records:
            curves.add(message.run, record)
            if record.get("type") == "epoch":
                self.rows[message.run].add_epoch(record)
        self._fill_table()
        self._loaded.add(message.run)

    def action_next_axis(self) -> None:
        """x: plot against the next of epoch, step, samples seen and wall time."""
        curves = self.query_one(CompareCurves)
        curves.set_axis(AXES[(AXES.index(curves.axis) + 1) % len(AXES)])
        self.axis = curves.axis
        self.notify(f"x axis: {curves.axis}", timeout=2)

    def action_help(self) -> None:
        """?: the keys of the comparison."""
        self.push_screen(HelpScreen(help_lines(keys=COMPARE_KEYS), COMPARE_NOTES, "tuitrain compare: keys"))

    def action_open_run(self) -> None:
        """Enter: leave the comparison with the selected run, to open it in the single-run view."""
        if self.query_one(DataTable).row_count:
            self.exit(str(self._cursor_run()))

    def _cursor_run(self) -> Path | RemoteRun:
        """The run on the table's cursor row (rows are keyed by the run's index)."""
        table = self.query_one(DataTable)
        return self.runs[int(str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value))]

    def on_data_table_row_selected(self) -> None:
        self.action_open_run()  # Enter on the focused table arrives as a row selection

    def on_unmount(self) -> None:
        self._stop.set()


class _Local:
    """A local run followed as a RemoteRun is (metrics.jsonl only; rundir.Follow skips what does not fit)."""

    def __init__(self, run: Path):
        self.follow = Follow(run, files=(METRICS,))

    def start(self) -> None:
        pass

    def history(self) -> list[dict]:
        return self.follow.history()

    def poll(self) -> list[dict]:
        return [read.record for read in self.follow.poll()]

    def stop(self) -> None:
        pass


def run_compare(paths: list[str], remote: str | None = None) -> int:
    """The comparison; Enter opens a run in the watch view and q there comes back; q here leaves.

    ``HOST:RUN_DIR`` arguments are runs on other machines (tuitrain.remote; each a run directory,
    not a folder of runs); ``remote`` is the tuitrain command there."""
    runs: list[Path | RemoteRun] = []
    for path in paths:
        where = split_remote(path)
        runs += [RemoteRun(*where, remote)] if where else list(expand_runs([path]))
    selected: str | None = None
    axis = "epoch"
    while True:
        app = CompareApp(runs, selected, axis)
        selected, axis = app.run(), app.axis
        if not selected:
            return 0
        from tuitrain.app import TuiTrainApp
        from tuitrain.backends import WatchBackend
        from tuitrain.remote import RemoteBackend

        chosen = next((run for run in runs if str(run) == selected), None)
        backend = (RemoteBackend(chosen.host, chosen.path, chosen.remote) if isinstance(chosen, RemoteRun)
                   else WatchBackend(selected))
        TuiTrainApp(backend, watch_mode=True).run()
