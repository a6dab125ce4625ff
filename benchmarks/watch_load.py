"""How fast `tuitrain watch` shows its first screen on a long run, and what it keeps in memory.

Two cases, each a finished run directory in /tmp (deleted afterwards):

- 50,000 step records of 20 metrics each (plus epochs, events, histograms and system samples):
  read_history, then the viewer from start to the curves drawn (Textual's headless Pilot, 160x48).
  Reference: W&B's LEET terminal viewer loads 20 metrics x 50k steps in about 0.5 s.
- a 1 GB metrics.jsonl (about 2 million step records), as RunLog writes it (with index.jsonl):
  read_history in a fresh process (time, peak RSS), also without the index (a run from before it);
  then the real `tuitrain watch RUN_DIR` in tmux at 160x48: seconds from launching the command to
  the first screen (the run's end state and the curves on screen), and the viewer's peak RSS.
  Targets: first screen under 1.5 s, viewer RSS under 300 MB.
- a metrics.jsonl another program wrote (json.dumps' default separators, ``"type": "step"``, no
  index.jsonl), --foreign-mb MB: read_history in a fresh process (time, records found, peak RSS),
  then `tuitrain watch` in tmux (seconds to the first screen).
- the same 1 GB run watched from "another machine": `tuitrain watch HOST:RUN_DIR` in tmux, through the
  system's ssh to an SSH server on localhost (the tests' SshBox: sshd, or asyncssh's server), from
  launching the command to the first screen. Target: under 3 s.

Usage: python benchmarks/watch_load.py [--steps N (0: skip)] [--gigabytes G (0: skip the large cases)]
       [--foreign-mb M (0: skip the foreign case)] [--remote-only]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tuitrain.app import TuiTrainApp  # noqa: E402
from tuitrain.backends import WatchBackend  # noqa: E402
from tuitrain.rundir import INDEX, METRICS, read_history  # noqa: E402
from tuitrain.widgets.curves import Curves  # noqa: E402
from tuitrain.widgets.status import StatusLine  # noqa: E402

SUMMARY = {"rows": [["fc1", "Linear", 1, [1, 10], 7850, "True"]], "total_params": 7850,
           "trainable_params": 7850, "size_mb": 0.03}


def start_dir(run_dir: Path) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"dataset": "synthetic", "devices": ["cpu"]}))
    (run_dir / "status.json").write_text(json.dumps({"state": "done"}))


def write_run(run_dir: Path, steps: int) -> int:
    """A finished run of ``steps`` step records with 20 metrics each; returns metrics.jsonl's size."""
    from tuitrain.rundir import RunLog

    start_dir(run_dir)
    rng = random.Random(0)
    log = RunLog(run_dir)
    log.write({"type": "event", "event": "start", "step": 0, "time": 0.0, "epochs": 100,
               "steps_per_epoch": steps // 100, "total_steps": steps, "device": "cpu", "lr": 0.001,
               "summary": SUMMARY, "batch_size": 100})
    for step in range(1, steps + 1):
        record = {"type": "step", "step": step, "epoch": 1 + step // 500,
                  "loss": 2.3 / (1 + step / 500) + rng.random() * 0.1,
                  "acc": min(0.99, step / steps + rng.random() * 0.05), "lr": 0.001, "time": float(step)}
        record.update({f"metric_{i}": rng.random() for i in range(16)})  # 20 metrics a record in all
        log.write(record)
        if step % 500 == 0:
            log.write({"type": "epoch", "epoch": step // 500, "step": step, "train_loss": 0.5, "train_acc": 0.8,
                       "val_loss": 0.45, "val_acc": 0.82, "lr": 0.001, "train_seconds": 3.0, "time": float(step)})
    log.write({"type": "event", "event": "end", "step": steps, "time": 0.0, "status": "done", "best_val_acc": 0.82})
    log.close()
    return (run_dir / METRICS).stat().st_size


def write_large_run(run_dir: Path, size: int) -> tuple[int, int]:
    """A finished run whose metrics.jsonl is about ``size`` bytes, in RunLog's format (index.jsonl
    included), written in bulk (RunLog flushes every line: hours for 1 GB). Returns (bytes, steps)."""
    start_dir(run_dir)
    rng = random.Random(0)
    pool = [f"{rng.random():.6f}" for _ in range(997)]
    metrics = open(run_dir / METRICS, "wb")
    index = open(run_dir / INDEX, "wb")
    pos = 0

    def put(line: bytes, indexed: bool) -> None:
        nonlocal pos
        if indexed:
            index.write(b'{"at":%d,"record":%s}\n' % (pos, line))
        metrics.write(line + b"\n")
        pos += len(line) + 1

    steps = int(size / 330)  # about the size of a step line
    put(json.dumps({"type": "event", "event": "start", "step": 0, "time": 0.0, "epochs": steps // 2000 + 1,
                    "steps_per_epoch": 2000, "total_steps": steps, "device": "cpu", "lr": 0.001, "summary": SUMMARY,
                    "batch_size": 100}, separators=(",", ":")).encode(), True)
    step = 0
    while pos < size:
        step += 1
        values = ",".join(f'"metric_{i}":{pool[(step * 7 + i * 13) % 997]}' for i in range(16))
        put((f'{{"type":"step","step":{step},"epoch":{1 + step // 2000},"loss":{2.3 / (1 + step / 5000):.6f},'
             f'"acc":{min(0.99, step / 2e6):.6f},"lr":0.001,"time":{step}.0,{values}}}').encode(), False)
        if step % 2000 == 0:
            put(json.dumps({"type": "epoch", "epoch": step // 2000, "step": step, "train_loss": 0.5,
                            "train_acc": 0.8, "val_loss": 0.45, "val_acc": 0.82, "lr": 0.001, "train_seconds": 3.0,
                            "time": float(step)}, separators=(",", ":")).encode(), True)
    put(json.dumps({"type": "event", "event": "end", "step": step, "time": float(step), "status": "done",
                    "best_val_acc": 0.82}, separators=(",", ":")).encode(), True)
    metrics.close()
    index.close()
    return pos, step


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


READ = r"""
import json, resource, sys, time
from tuitrain.rundir import read_history
t = time.perf_counter()
records, _ = read_history(sys.argv[1])
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "records": len(records), "epochs": sum(r["type"] == "epoch" for r in records),
                  "steps": sum(r["type"] == "step" for r in records),
                  "events": sum(r["type"] == "event" for r in records),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_foreign_run(run_dir: Path, size: int) -> tuple[int, int, int]:
    """A finished run whose metrics.jsonl (about ``size`` bytes) another program wrote: json.dumps
    with its default separators, no index.jsonl. Returns (bytes, steps, epochs)."""
    start_dir(run_dir)
    rng = random.Random(0)
    pool = [round(rng.random(), 6) for _ in range(997)]
    pos = step = epochs = 0
    with open(run_dir / METRICS, "w") as fh:
        def put(record: dict) -> None:
            nonlocal pos
            line = json.dumps(record) + "\n"
            fh.write(line)
            pos += len(line)

        planned = size // 420  # about the size of a step line here
        put({"type": "event", "event": "start", "step": 0, "time": 0.0, "epochs": planned // 2000 + 1,
             "steps_per_epoch": 2000, "total_steps": planned, "device": "cpu", "lr": 0.001, "summary": SUMMARY,
             "batch_size": 100})
        while pos < size:
            step += 1
            record = {"type": "step", "step": step, "epoch": 1 + step // 2000, "loss": 2.3 / (1 + step / 5000),
                      "acc": min(0.99, step / 2e6), "lr": 0.001, "time": float(step)}
            record.update({f"metric_{i}": pool[(step * 7 + i * 13) % 997] for i in range(16)})
            put(record)
            if step % 2000 == 0:
                epochs += 1
                put({"type": "epoch", "epoch": epochs, "step": step, "train_loss": 0.5, "train_acc": 0.8,
                     "val_loss": 0.45, "val_acc": 0.82, "lr": 0.001, "train_seconds": 3.0, "time": float(step)})
        put({"type": "event", "event": "end", "step": step, "time": float(step), "status": "done",
             "best_val_acc": 0.82})
    return pos, step, epochs


def foreign_case(megabytes: float) -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        run_dir = Path(tmp) / "run"
        t0 = time.perf_counter()
        size, steps, epochs = write_foreign_run(run_dir, int(megabytes * 1e6))
        print(f"\nrun written by another program (json.dumps' default separators, no index.jsonl): metrics.jsonl "
              f"{size / 1e6:.0f} MB, {steps:,} step records, {epochs:,} epochs (written in {time.perf_counter() - t0:.0f} s)")
        found = read_in_process(run_dir / METRICS)
        print(f"read_history: {found['seconds'] * 1000:.0f} ms, {found['steps']:,} step records sampled, "
              f"{found['epochs']:,} of {epochs:,} epochs, {found['events']} events, peak RSS {found['rss_mb']:.0f} MB")
        if not shutil.which("tmux"):
            print("tuitrain watch: skipped (needs tmux)")
            return
        elapsed, rss = watch_in_tmux(run_dir)
        print(f"tuitrain watch (tmux 160x48): first screen {elapsed:.2f} s after the command started, "
              f"viewer peak RSS {rss:.0f} MB")


def read_in_process(path: Path) -> dict:
    """read_history in a fresh interpreter: its time, records and the process's peak RSS."""
    out = subprocess.run([sys.executable, "-c", READ, str(path)], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(out.stdout)


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's peak resident set so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def watch_in_tmux(run_dir: Path | str, env: str = "") -> tuple[float, float]:
    """The real `tuitrain watch RUN_DIR` in tmux: seconds to the first screen, and peak RSS (MB).
    ``env``: assignments for the command's shell (``TUITRAIN_SSH='ssh -F ...'``)."""
    session = f"tuitrain-watch-{os.getpid()}"
    tmux = ["tmux", "-L", session]  # a server of its own: another one's window-size settings cannot shrink it
    cmd = f"{env} PYTHONPATH={ROOT} exec {sys.executable} -m tuitrain watch {run_dir}"
    start = time.perf_counter()
    subprocess.run([*tmux, "new-session", "-d", "-s", session, "-x", "160", "-y", "48", cmd], check=True)
    try:
        while time.perf_counter() - start < 60:
            screen = subprocess.run([*tmux, "capture-pane", "-p", "-t", session], capture_output=True,
                                    text=True).stdout
            # The end state is set by the last replayed record; the curves are drawn with it.
            if "DONE" in screen and re.search("└─*┬", screen):
                elapsed = time.perf_counter() - start
                break
            time.sleep(0.01)
        else:
            raise RuntimeError(f"watch showed no first screen in 60 s; the screen:\n{screen}")
        pid = int(subprocess.run([*tmux, "list-panes", "-t", session, "-F", "#{pane_pid}"], capture_output=True,
                                 text=True).stdout.split()[0])
        time.sleep(1.0)  # let it settle (follower, timers), then read its peak memory
        rss = peak_rss_mb(pid)
        subprocess.run([*tmux, "send-keys", "-t", session, "q"], check=True)
        return elapsed, rss
    finally:
        time.sleep(0.3)
        subprocess.run([*tmux, "kill-server"], stderr=subprocess.DEVNULL)


def small_case(steps: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        size = write_run(run_dir, steps)
        t0 = time.perf_counter()
        records, _ = read_history(run_dir / METRICS)
        read_s = time.perf_counter() - t0
        elapsed, kept = asyncio.run(first_screen(run_dir))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"run: {steps:,} step records x 20 metrics, metrics.jsonl {size / 1e6:.1f} MB")
    print(f"read_history: {read_s * 1000:.0f} ms ({len(records):,} records parsed for drawing)")
    print(f"watch first screen (Pilot: viewer start to curves drawn): {elapsed * 1000:.0f} ms")
    print(f"points kept by the curves: {kept:,} (bounded; decimated for drawing); peak RSS {rss:.0f} MiB")
    print("reference: W&B LEET, about 500 ms for 20 metrics x 50k steps")


def large_case(gigabytes: float) -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        run_dir = Path(tmp) / "run"
        t0 = time.perf_counter()
        size, steps = write_large_run(run_dir, int(gigabytes * 1e9))
        print(f"\nrun: metrics.jsonl {size / 1e9:.2f} GB, {steps:,} step records x 20 metrics, "
              f"index.jsonl {(run_dir / INDEX).stat().st_size / 1e3:.0f} kB (written in {time.perf_counter() - t0:.0f} s)")
        indexed = read_in_process(run_dir / METRICS)
        print(f"read_history with index.jsonl: {indexed['seconds'] * 1000:.0f} ms, {indexed['records']:,} records "
              f"({indexed['epochs']:,} epochs), peak RSS of that process {indexed['rss_mb']:.0f} MB")
        shutil.move(run_dir / INDEX, run_dir / "index.away")
        scanned = read_in_process(run_dir / METRICS)
        shutil.move(run_dir / "index.away", run_dir / INDEX)
        print(f"read_history without it (an older run): {scanned['seconds'] * 1000:.0f} ms, "
              f"{scanned['records']:,} records ({scanned['epochs']:,} epochs), peak RSS {scanned['rss_mb']:.0f} MB")
        if not shutil.which("tmux"):
            print("tuitrain watch: skipped (needs tmux)")
            return
        for label in ("first", "second"):
            elapsed, rss = watch_in_tmux(run_dir)
            print(f"tuitrain watch (tmux 160x48, {label} launch): first screen {elapsed:.2f} s after the command "
                  f"started, viewer peak RSS {rss:.0f} MB (targets: < 1.5 s, < 300 MB)")


def remote_case(gigabytes: float) -> None:
    """`tuitrain watch HOST:RUN_DIR` on a large run, through ssh to an SSH server on localhost."""
    import shlex

    from tests.helpers import SshBox

    if not shutil.which("tmux") or not shutil.which("ssh"):
        print("tuitrain watch HOST:RUN_DIR: skipped (needs tmux and ssh)")
        return
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        run_dir = Path(tmp) / "run"
        size, steps = write_large_run(run_dir, int(gigabytes * 1e9))
        print(f"\nrun: metrics.jsonl {size / 1e9:.2f} GB, {steps:,} step records x 20 metrics")
        box = SshBox(Path(tmp) / "ssh")
        try:
            env = f"TUITRAIN_SSH={shlex.quote(box.env['TUITRAIN_SSH'])} PATH={shlex.quote(box.env['PATH'])}"
            for label in ("first", "second"):
                elapsed, rss = watch_in_tmux(f"{box.host}:{run_dir}", env)
                print(f"tuitrain watch {box.host}:RUN_DIR (ssh to localhost, tmux 160x48, {label} launch): first "
                      f"screen {elapsed:.2f} s after the command started, viewer peak RSS {rss:.0f} MB (target: < 3 s)")
        finally:
            box.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--gigabytes", type=float, default=1.0, help="size of the large case (0: skip it)")
    parser.add_argument("--foreign-mb", type=float, default=200.0,
                        help="size of the case written by another program (0: skip it)")
    parser.add_argument("--remote-only", action="store_true", help="only the case through ssh")
    opts = parser.parse_args()
    if not opts.remote_only:
        if opts.steps > 0:
            small_case(opts.steps)
        if opts.gigabytes > 0:
            large_case(opts.gigabytes)
        if opts.foreign_mb > 0:
            foreign_case(opts.foreign_mb)
    if opts.gigabytes > 0:
        remote_case(opts.gigabytes)


if __name__ == "__main__":
    main()
