"""Run every port briefly, each in its own process, headless, in a temporary run directory,
and print what each does today.

    python examples/ports/run_all.py                  # all ports, short runs (minutes on a CPU)
    python examples/ports/run_all.py --only glue,vae  # some of them
    python examples/ports/run_all.py --keep           # keep the run directories (printed)

Status: ``trained`` (the port's figure is where the original's would be), ``trained wrong`` (it ran
to the end but the figure is not: the reason says why), ``failed before training`` (an exception
before the first optimizer step finished), ``failed during training`` (an exception after it),
``skipped`` (an optional package missing), ``timeout``. The table ends with the MB each run wrote and
is followed by ``tuitrain runs`` over the runs, which is what a user sees of them afterwards.

Ports run single-threaded (OMP_NUM_THREADS=1) unless ``--threads`` says otherwise: on a small shared
machine two threads a process oversubscribe the cores and make the LSTMs several times slower.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULT_PREFIX = "PORT_RESULT "

# (port, variant, extra arguments): a short run each; the order of the README's table.
PLAN: list[tuple[str, str, list[str]]] = [
    ("mnist", "", ["--epochs", "2", "--limit", "2000"]),
    ("mnist", "resume", ["--epochs", "2", "--limit", "1000"]),
    ("mnist_rnn", "", ["--epochs", "2", "--limit", "3841"]),
    ("vae", "", ["--epochs", "3", "--limit", "4000"]),
    ("word_language_model", "", ["--epochs", "2", "--limit", "30000"]),
    ("time_sequence_prediction", "", ["--epochs", "2", "--limit", "100"]),
    ("regression", "", ["--epochs", "20", "--limit", "2000"]),
    ("siamese_network", "", ["--epochs", "3", "--limit", "1280"]),
    ("siamese_network", "naive", ["--epochs", "1", "--limit", "256"]),
    ("super_resolution", "", ["--epochs", "4", "--limit", "1280"]),
    ("unet", "", ["--epochs", "3", "--limit", "40"]),
    ("lstm_classifier", "", ["--epochs", "4", "--limit", "4096"]),
    ("glue", "", ["--epochs", "3", "--limit", "1000"]),
    ("glue", "ce", ["--epochs", "3", "--limit", "1000"]),
    ("glue", "ce-nosched", ["--epochs", "3", "--limit", "1000"]),
    ("multilabel", "", ["--epochs", "5", "--limit", "300"]),
    ("tabular_regression", "", ["--epochs", "10"]),
    ("conv_autoencoder", "", ["--epochs", "15", "--limit", "4000"]),
]


def run_port(port: str, variant: str, args: list[str], run_dir: Path, timeout: float, env: dict) -> dict:
    """Run one port; its PORT_RESULT, or what its failure was, read from the run directory."""
    cmd = [sys.executable, str(HERE / f"{port}.py"), "--headless", "--run-dir", str(run_dir), *args]
    if variant:
        cmd += ["--variant", variant]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=HERE)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "reason": f"still running after {timeout:.0f} s", "seconds": timeout}
    seconds = time.monotonic() - start
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return {**json.loads(line[len(RESULT_PREFIX):]), "seconds": seconds}
    error = next((line for line in reversed(proc.stderr.splitlines()) if line and not line.startswith(" ")),
                 f"exit {proc.returncode}")
    return {**failure(run_dir, error), "seconds": seconds, "rc": proc.returncode}


def failure(run_dir: Path, error: str) -> dict:
    """Before or during training, from the run's error event (no run directory: before)."""
    event = None
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        for line in metrics.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("type") == "event" and record.get("event") == "error":
                event = record
    if event is None or int(event.get("step", 0)) <= 1:
        where = "at step 1, run dir written" if event is not None else (
            "run dir written" if run_dir.exists() else "nothing written")
        return {"status": "failed before training", "reason": f"{error} ({where})"}
    return {"status": "failed during training",
            "reason": f"{error} (epoch {event.get('epoch')}, step {event.get('step')})"}


def size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6 if path.exists() else 0.0


def table(rows: list[dict]) -> str:
    head = ["port", "status", "figure", "should be", "s", "MB", "why (when wrong)"]
    cells = [[r["name"], r["status"], r.get("figure", ""), r.get("expected", ""), f"{r.get('seconds', 0):.0f}",
              f"{r.get('mb', 0):.0f}", r.get("reason", "")] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if i < 6 else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated port names (default: all)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds a port may run (default %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS for each port (default %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the run directories")
    args = parser.parse_args()
    only = {name for name in args.only.split(",") if name}
    unknown = only - {port for port, _, _ in PLAN}
    if unknown:
        parser.error(f"unknown port {', '.join(sorted(unknown))}")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONWARNINGS": "default"}
    root = Path(tempfile.mkdtemp(prefix="tuitrain-ports-"))
    rows = []
    try:
        for port, variant, extra in PLAN:
            if only and port not in only:
                continue
            name = f"{port} --variant {variant}" if variant else port
            run_dir = root / (f"{port}-{variant}" if variant else port)
            print(f"running {name} {' '.join(extra)} ...", file=sys.stderr, flush=True)
            row = {"name": name, **run_port(port, variant, extra, run_dir, args.timeout, env), "mb": size_mb(run_dir)}
            rows.append(row)
            print(f"  {row['status']}: {row.get('figure', '')} {row.get('reason', '')}"[:200], file=sys.stderr)
        print(table(rows))
        counts = {s: sum(r["status"] == s for r in rows) for s in dict.fromkeys(r["status"] for r in rows)}
        print("\n" + ", ".join(f"{n} {s}" for s, n in counts.items()))
        listing = subprocess.run([sys.executable, "-m", "tuitrain", "runs", str(root)], capture_output=True, text=True,
                                 env=env)
        print(f"\n$ tuitrain runs {root}\n{listing.stdout}{listing.stderr}", end="")
    finally:
        if args.keep:
            print(f"\nrun directories kept under {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
