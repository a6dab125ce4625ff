"""Long runs stay bounded in memory: the dashboard's history and the engine over many steps.

1. Feeds 1,000,000 step records (and an epoch every 1,000 steps, an event every 10,000) to the
   structures the dashboard keeps (curves, markers), measuring with tracemalloc.
2. Trains the mlp on tiny batches for many steps (logging every step, histograms every 100) and
   compares the process's RSS early and late: the engine keeps no per-step history.
3. Times `tuitrain --help`.
Usage: python benchmarks/memory.py [--records N] [--engine-steps N]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tuitrain.history import Markers, Series  # noqa: E402


def dashboard_history(n: int) -> None:
    tracemalloc.start()
    series = {name: Series() for name in ("train_loss", "train_acc", "val_loss", "val_acc")}
    markers = Markers()
    peaks = []
    for step in range(1, n + 1):
        series["train_loss"].append(step, 1.0 / step)
        series["train_acc"].append(step, 0.5)
        if step % 1000 == 0:
            series["val_loss"].append(step, 0.3)
            series["val_acc"].append(step, 0.9)
        if step % 10_000 == 0:
            markers.add(step, "lr", "lr 0.001")
        if step in (n // 100, n // 10, n):
            peaks.append((step, tracemalloc.get_traced_memory()[0]))
    tracemalloc.stop()
    print(f"dashboard history after {n:,} step records: points kept "
          f"{sum(len(s) for s in series.values()):,}, markers {len(markers.items)}")
    for step, size in peaks:
        print(f"  at step {step:>9,}: {size / 1024:,.0f} KiB held")


def engine_growth(steps: int) -> None:
    from tuitrain.config import TrainConfig
    from tuitrain.session import Session

    with tempfile.TemporaryDirectory() as tmp:
        epochs = max(2, steps // 1000)
        cfg = TrainConfig(dataset="synthetic", model="mlp", batch_size=10, limit=10_000, epochs=epochs,
                          device="cpu", log_every=1, hist_every=100, run_dir=f"{tmp}/run")
        rss = []

        def on_record(record: dict) -> None:
            if record.get("type") == "epoch":
                rss.append((record["step"], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))

        session = Session(cfg, on_record=on_record)
        session.prepare()
        session.open_run_dir()
        start = time.perf_counter()
        session.run()
        seconds = time.perf_counter() - start
        size = (Path(tmp) / "run" / "metrics.jsonl").stat().st_size
    first, last = rss[0], rss[-1]
    print(f"engine: {last[0]:,} steps in {seconds:.0f} s, a step record per step ({size / 1e6:.1f} MB metrics.jsonl)")
    print(f"  peak RSS at step {first[0]:,}: {first[1]:,.0f} MiB; at step {last[0]:,}: {last[1]:,.0f} MiB")


def help_time() -> None:
    best = min(_timed([sys.executable, "-m", "tuitrain", "--help"]) for _ in range(5))
    print(f"tuitrain --help: {best * 1000:.0f} ms (best of 5; torch not imported)")


def _timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, capture_output=True, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--engine-steps", type=int, default=20_000)
    opts = parser.parse_args()
    dashboard_history(opts.records)
    engine_growth(opts.engine_steps)
    help_time()


if __name__ == "__main__":
    main()
