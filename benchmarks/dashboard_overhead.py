"""How much the live dashboard costs training throughput, against headless on the same settings.

Runs `tuitrain synthetic` headless and then with the dashboard in a real terminal (tmux, 160x48),
same seed and settings, and compares the epochs' training seconds from metrics.jsonl (evaluation
and start-up excluded). Needs tmux. Usage: python benchmarks/dashboard_overhead.py [--epochs N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def epoch_seconds(run_dir: Path) -> list[float]:
    """train_seconds of every epoch record of a finished run."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r["train_seconds"] for r in map(json.loads, lines) if r.get("type") == "epoch"]


def run_headless(run_dir: Path, args: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "tuitrain", *args, "--headless", "--run-dir", str(run_dir)],
                   check=True, stderr=subprocess.DEVNULL)


def thread_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of the process's main thread (the Textual UI) and of the whole process."""
    tick = os.sysconf("SC_CLK_TCK")

    def cpu(stat: str) -> float:
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick  # utime + stime

    main = cpu(Path(f"/proc/{pid}/task/{pid}/stat").read_text())
    return main, cpu(Path(f"/proc/{pid}/stat").read_text())


def dashboard_pid(session: str) -> int | None:
    """The python process running in the tmux pane (a child of the pane's shell, or the pane itself)."""
    pane = subprocess.run(["tmux", "list-panes", "-t", session, "-F", "#{pane_pid}"], capture_output=True,
                          text=True).stdout.split()
    if not pane:
        return None
    children = subprocess.run(["pgrep", "-P", pane[0]], capture_output=True, text=True).stdout.split()
    return int(children[0]) if children else int(pane[0])


UI_SHARES: list[float] = []


def run_dashboard(run_dir: Path, args: list[str], size: tuple[int, int]) -> None:
    """Start the dashboard in a detached tmux session; leave it with q once DONE shows."""
    session = f"tuitrain-bench-{os.getpid()}"
    cmd = " ".join([sys.executable, "-m", "tuitrain", *args, "--run-dir", str(run_dir)])
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", str(size[0]), "-y", str(size[1]), cmd],
                   check=True)
    start = None  # CPU times when training started: start-up (imports, data) runs on the main thread
    try:
        while True:
            time.sleep(0.2)
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                                    text=True).stdout
            if start is None and "RUNNING" in screen and (pid := dashboard_pid(session)):
                start = thread_cpu(pid)
            if "DONE" in screen or "FAILED" in screen:
                pid = dashboard_pid(session)
                if pid and start:
                    ui, total = (a - b for a, b in zip(thread_cpu(pid), start, strict=True))
                    UI_SHARES.append(ui / max(total, 1e-9))
                    print(f"  dashboard run: UI thread {ui:.2f} CPU s of {total:.2f} while training",
                          file=sys.stderr)
                break
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        time.sleep(2)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2, help="alternate headless/dashboard this many times")
    opts = parser.parse_args()
    if not shutil.which("tmux"):
        sys.exit("this benchmark needs tmux")
    args = ["synthetic", "--epochs", str(opts.epochs), "--device", "cpu"]
    results: dict[str, list[float]] = {"headless": [], "dashboard": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(opts.rounds):
            for mode in ("headless", "dashboard"):
                run_dir = Path(tmp) / f"{mode}-{i}"
                run_headless(run_dir, args) if mode == "headless" else run_dashboard(run_dir, args, (160, 48))
                results[mode] += epoch_seconds(run_dir)[1:]  # the first epoch includes warm-up
    samples = 10_000
    head = statistics.median(results["headless"])
    dash = statistics.median(results["dashboard"])
    print(f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    print(f"{'mode':<10} {'median s/epoch':>15} {'samples/s':>10}")
    for mode, value in (("headless", head), ("dashboard", dash)):
        print(f"{mode:<10} {value:>15.3f} {samples / value:>10,.0f}")
    print(f"dashboard cost: {100 * (dash / head - 1):+.1f}% time per epoch (this VM's run-to-run noise is larger)")
    if UI_SHARES:
        print(f"UI thread's share of the dashboard process's CPU time: {100 * statistics.median(UI_SHARES):.1f}% "
              f"(the work the dashboard adds; the rest is training)")


if __name__ == "__main__":
    main()
