"""``tuitrain sweep``: every combination of comma-separated option values, one run each.

The notes' RunBuilder (the cartesian product of values) and RunManager (a results table saved
as CSV and JSON), built in: runs go one after another, headless, each in its own run directory
under the sweep folder; results.csv and results.json are rewritten after every run, so Ctrl-C
(or a crash) keeps what is done.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import sys
from pathlib import Path

from tuitrain import fmt
from tuitrain.errors import UsageError
from tuitrain.records import EXIT_SIGNALS
from tuitrain.rundir import METRICS, read_records
from tuitrain.rundir.files import write_atomic

RESULT_FIELDS = ["status", "best_val_acc", "final_val_acc", "best_val_loss", "final_val_loss", "epochs_done",
                 "train_seconds", "run_dir"]


def combinations(grid: dict[str, list]) -> list[dict]:
    """The cartesian product of the grid, in the order the options were given (RunBuilder)."""
    names = list(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*grid.values())]


def run_name(index: int, params: dict) -> str:
    """A folder name that says what the run is, e.g. ``03-lr=0.01-batch_size=100``."""
    text = "-".join(f"{k}={Path(str(v)).stem if k == 'model' else v}" for k, v in params.items())
    return f"{index:02d}-" + re.sub(r"[^A-Za-z0-9=._-]", "_", text)


def summarize_run(run_dir: Path, status: str) -> dict:
    """The results row of one finished (or stopped) run, from its metrics.jsonl."""
    epochs = [r for r in read_records(run_dir / METRICS) if r.get("type") == "epoch"]
    accs = [e["val_acc"] for e in epochs]
    losses = [e["val_loss"] for e in epochs]
    return {
        "status": status,
        "best_val_acc": max(accs) if accs else None,
        "final_val_acc": accs[-1] if accs else None,
        "best_val_loss": min(losses) if losses else None,
        "final_val_loss": losses[-1] if losses else None,
        "epochs_done": len(epochs),
        "train_seconds": round(sum(e["train_seconds"] for e in epochs), 3),
        "run_dir": str(run_dir),
    }


def write_results(sweep_dir: Path, rows: list[dict]) -> None:
    """results.csv and results.json: one row per run, its parameters first."""
    if not rows:
        return
    fields = [k for k in rows[0] if k not in RESULT_FIELDS] + RESULT_FIELDS
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(sweep_dir / "results.csv", table.getvalue())  # never through a planted link, never half
    write_atomic(sweep_dir / "results.json", json.dumps(rows, indent=1))


def format_table(rows: list[dict], params: list[str]) -> str:
    """The runs sorted by best val_acc, best first."""
    ordered = sorted(rows, key=lambda r: -(r["best_val_acc"] or -1))
    cols = params + ["status", "best_val_acc", "final_val_loss", "train_seconds"]

    def cell(row: dict, col: str) -> str:
        # As every other surface shows it, by the column's name (results.csv and .json keep raw values).
        return fmt.metric(col, row[col]) if col in RESULT_FIELDS else fmt.param(col, row[col])

    widths = {c: max(len(c), *(len(cell(r, c)) for r in ordered)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    lines.append("  ".join("-" * widths[c] for c in cols))
    lines += ["  ".join(cell(r, c).ljust(widths[c]) for c in cols) for r in ordered]
    return "\n".join(lines)


def run_sweep(base, grid: dict[str, list], sweep_dir: Path, train) -> int:
    """Run every combination with ``train(cfg) -> (exit_code, result)``; return the exit code."""
    from tuitrain.config import validate

    runs = combinations(grid)
    configs = [validate(base.replace(**params, run_dir=str(sweep_dir / run_name(i, params))))
               for i, params in enumerate(runs, start=1)]  # every combination checked before the first run
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create sweep dir {sweep_dir}: {exc.strerror or exc}") from None
    rows: list[dict] = []
    code = 0
    for i, (params, cfg) in enumerate(zip(runs, configs, strict=True), start=1):
        label = " ".join(f"{k}={v}" for k, v in params.items())
        print(f"tuitrain sweep: run {i}/{len(runs)}: {label}", file=sys.stderr)
        try:
            code, result = train(cfg)
            status = result.status if result else "failed"
        except KeyboardInterrupt as exc:  # Ctrl-C or a stop signal while this run loaded (signals.Stopped)
            code, result, status = getattr(exc, "exit_code", EXIT_SIGNALS["interrupt"]), None, "interrupted"
        rows.append({**params, **summarize_run(Path(cfg.run_dir), status)})
        try:
            write_results(sweep_dir, rows)
        except OSError as exc:  # a full disk: the runs' own folders hold their results; the table follows
            print(f"tuitrain sweep: cannot write results.csv: {exc.strerror or exc}", file=sys.stderr)
        if code in EXIT_SIGNALS.values():  # Ctrl-C, SIGTERM, SIGHUP end the sweep, not just this run
            print(f"tuitrain sweep: interrupted after {i - 1} complete runs of {len(runs)}", file=sys.stderr)
            break
    print(format_table(rows, list(grid)))
    print(f"results: {sweep_dir / 'results.csv'} and results.json", file=sys.stderr)
    return code if code in EXIT_SIGNALS.values() else 0
