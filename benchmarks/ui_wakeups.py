"""How often the live dashboard wakes: counted, not timed, so a loaded machine gives the same figures.

Runs the real dashboard (TuiTrainApp over LiveBackend, Textual's real terminal driver) in a detached
tmux session at 160x48, fed by a fake engine that reports ``--rate`` step records a second (and a
system record every 40), and counts for ``--seconds`` after a 3 s settle: the input thread's
``select`` returns, the batches of records handed to the UI (each one wakes its event loop), and the
callbacks the UI thread's asyncio loop runs. No torch.

Usage: python benchmarks/ui_wakeups.py [--rate 4,20] [--seconds 10] [--code DIR]
(``--code``: the checkout whose tuitrain to count, e.g. an older one to compare with; default this one)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r'''
import asyncio, collections, selectors, sys, threading, time
code, out, rate, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
sys.path[:0] = [code]
from tuitrain.app import TuiTrainApp
from tuitrain.backends import LiveBackend

counts = collections.Counter()
run_handle = asyncio.events.Handle._run
def counted_run(self):
    counts["loop callbacks"] += 1
    return run_handle(self)
asyncio.events.Handle._run = counted_run
real_select = selectors.SelectSelector.select  # Textual's Linux input thread waits in this one
def counted_select(self, timeout=None):
    counts["input thread wake-ups"] += 1
    return real_select(self, timeout)
selectors.SelectSelector.select = counted_select

START = {"type": "event", "event": "start", "step": 0, "epoch": 0, "time": 0.0, "epochs": 3,
         "steps_per_epoch": 10**8, "total_steps": 3 * 10**8, "device": "cpu", "start_epoch": 0, "lr": 0.001,
         "dataset": "synthetic", "model": "cnn", "samples": 10000, "batch_size": 100}

class Session:
    def __init__(self):
        self.config = type("Config", (), {"run_dir": "runs/ui-wakeups"})()
        self.on_record = None
        self.stop = threading.Event()
    def run(self):
        self.on_record(START)
        n = 0
        while not self.stop.wait(1 / rate):
            n += 1
            self.on_record({"type": "step", "step": n, "epoch": 1, "batch": n, "loss": 1 / n, "acc": 0.5,
                            "lr": 0.001, "samples_per_s": 8000.0, "time": float(n)})
            if n % 40 == 0:
                self.on_record({"type": "system", "time": 1.0, "cpu_percent": [55.0, 61.0], "rss_mb": 812.0,
                                "ram_used_mb": 4096.0, "ram_total_mb": 16384.0, "gpus": [], "gpu_note": ""})
    def send(self, command):
        self.stop.set()

app = TuiTrainApp(LiveBackend(Session()))
emit = app._emit  # what the backend's records go through: one message to the UI per call
def counted_emit(records):
    counts["record batches to the UI"] += 1
    emit(records)
app._emit = counted_emit

def measure():
    time.sleep(3)
    before, begin = dict(counts), time.monotonic()
    time.sleep(seconds)
    took = time.monotonic() - begin
    with open(out, "w") as fh:
        for name in ("input thread wake-ups", "record batches to the UI", "loop callbacks"):
            fh.write(f"{name}\t{(counts[name] - before.get(name, 0)) / took:.1f}\n")
    app.call_from_thread(app.exit)
threading.Thread(target=measure, daemon=True).start()
app.run()
'''


def count(code: Path, rate: float, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        script, out = Path(tmp) / "child.py", Path(tmp) / "out.tsv"
        script.write_text(CHILD)
        session = f"tuitrain-wakeups-{os.getpid()}"
        cmd = " ".join([sys.executable, str(script), str(code), str(out), str(rate), str(seconds), "2>/dev/null"])
        subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "48", cmd], check=True)
        try:
            deadline = time.monotonic() + seconds + 60
            while not out.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(0.2)  # written in one go; let it close
            if not out.exists():
                raise RuntimeError("the dashboard did not report (is tmux working?)")
            return {name: float(v) for name, v in (line.split("\t") for line in out.read_text().splitlines())}
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session], stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", default="4,20", help="step records a second (comma-separated: several runs)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--code", default=str(ROOT), help="the checkout whose tuitrain is counted")
    opts = parser.parse_args()
    if not shutil.which("tmux"):
        sys.exit("needs tmux (the real terminal driver)")
    for rate in (float(r) for r in opts.rate.split(",")):
        found = count(Path(opts.code).resolve(), rate, opts.seconds)
        print(f"{rate:g} records/s ({opts.code}; load average {os.getloadavg()[0]:.1f}): "
              + ", ".join(f"{name} {value:.1f}/s" for name, value in found.items()))


if __name__ == "__main__":
    main()
