"""How fast `tuitrain watch` shows its first screen on a long run, and what it keeps in memory.

Writes a run directory with 50,000 step records of 20 metrics each (plus epochs, events,
histograms and system samples), then measures (1) reading the history and (2) the whole way from
starting the viewer to a first screen with the curves drawn (Textual's headless Pilot, 160x48).
Reference: W&B's LEET terminal viewer loads 20 metrics x 50k steps in about 0.5 s.
Usage: python benchmarks/watch_load.py [--steps N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tuitrain.app import TuiTrainApp  # noqa: E402
from tuitrain.backends import WatchBackend  # noqa: E402
from tuitrain.runlog import read_history  # noqa: E402
from tuitrain.widgets.curves import Curves  # noqa: E402
from tuitrain.widgets.status import StatusLine  # noqa: E402


def write_run(run_dir: Path, steps: int) -> int:
    """A finished run of ``steps`` step records with 20 metrics each; returns metrics.jsonl's size."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"dataset": "synthetic", "devices": ["cpu"]}))
    (run_dir / "status.json").write_text(json.dumps({"state": "done"}))
    rng = random.Random(0)
    summary = {"rows": [["fc1", "Linear", 1, [1, 10], 7850, "True"]], "total_params": 7850,
               "trainable_params": 7850, "size_mb": 0.03}
    lines = [json.dumps({"type": "event", "event": "start", "step": 0, "time": 0.0, "epochs": 100,
                         "steps_per_epoch": steps // 100, "total_steps": steps, "device": "cpu", "lr": 0.001,
                         "summary": summary, "batch_size": 100})]
    for step in range(1, steps + 1):
        record = {"type": "step", "step": step, "epoch": 1 + step // 500, "loss": 2.3 / (1 + step / 500) + rng.random() * 0.1,
                  "acc": min(0.99, step / steps + rng.random() * 0.05), "lr": 0.001, "time": float(step)}
        record.update({f"metric_{i}": rng.random() for i in range(16)})  # 20 metrics a record in all
        lines.append(json.dumps(record, separators=(",", ":")))
        if step % 500 == 0:
            lines.append(json.dumps({"type": "epoch", "epoch": step // 500, "step": step, "train_loss": 0.5,
                                     "train_acc": 0.8, "val_loss": 0.45, "val_acc": 0.82, "lr": 0.001,
                                     "train_seconds": 3.0, "time": float(step)}, separators=(",", ":")))
    lines.append(json.dumps({"type": "event", "event": "end", "step": steps, "time": 0.0, "status": "done",
                             "best_val_acc": 0.82}))
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return (run_dir / "metrics.jsonl").stat().st_size


async def first_screen(run_dir: Path) -> tuple[float, int]:
    """Seconds from creating the viewer to the curves drawn, and the points it keeps."""
    start = time.perf_counter()
    app = TuiTrainApp(WatchBackend(run_dir), watch_mode=True)
    async with app.run_test(size=(160, 48)) as pilot:
        curves = app.query_one(Curves)
        while app.query_one(StatusLine).state != "DONE":
            await pilot.pause(0.001)
        await pilot.pause()
        elapsed = time.perf_counter() - start
        kept = len(curves.train_loss) + len(curves.train_acc)
        await pilot.press("q")
    return elapsed, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50_000)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        size = write_run(run_dir, opts.steps)
        t0 = time.perf_counter()
        records, _ = read_history(run_dir / "metrics.jsonl")
        read_s = time.perf_counter() - t0
        elapsed, kept = asyncio.run(first_screen(run_dir))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"run: {opts.steps:,} step records x 20 metrics, metrics.jsonl {size / 1e6:.1f} MB")
    print(f"read_history: {read_s * 1000:.0f} ms ({len(records):,} records parsed for drawing)")
    print(f"watch first screen (viewer start to curves drawn): {elapsed * 1000:.0f} ms")
    print(f"points kept by the curves: {kept:,} (bounded; decimated for drawing); peak RSS {rss:.0f} MiB")
    print("reference: W&B LEET, about 500 ms for 20 metrics x 50k steps")


if __name__ == "__main__":
    main()
