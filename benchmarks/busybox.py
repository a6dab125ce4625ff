"""`tuitrain --headless` on a busy box: the wait policy the CLI chooses against libgomp's default and PASSIVE.

Cases, each its own process, alternating in rounds in one sitting (the order rotates each round), on
the data of benchmarks/throughput.py (Fashion-MNIST-shaped IDX files, the notes' cnn, batch 100):

- quiet: nothing else running (as far as this script controls it)
- busy:  --hogs processes (`python -c 'while True: pass'`, default one per core) started before the
         run and killed after it

and in each, three variants of the same command:

- auto:    `tuitrain fashion-mnist --headless` (the CLI samples the cores and chooses, cpuload.py)
- spin:    the same with TUITRAIN_AUTO_OMP=0 (libgomp's defaults: what the CLI did before choosing)
- passive: the same with OMP_WAIT_POLICY=PASSIVE (set by hand)

Targets: busy auto/passive >= 0.8 (spin/passive was 0.39 on 2 cores), quiet auto/spin >= about 1.
The load average is printed with every figure: other processes only ever slow a run down, so compare
within one sitting. Usage: python benchmarks/busybox.py [--rounds 2] [--epochs 2] [--samples 60000]
[--hogs N] [--loads quiet,busy] [--variants auto,spin,passive]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import ENV, Bench, run_rates, tuitrain_args, write_data  # noqa: E402

VARIANTS = {"auto": {}, "spin": {"TUITRAIN_AUTO_OMP": "0"}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}}
HOG = "while True: pass"


def start_hogs(n: int) -> list[subprocess.Popen]:
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(n)]
    time.sleep(1.0)  # let them take the cores before the run samples them
    return hogs


def stop_hogs(hogs: list[subprocess.Popen]) -> None:
    for hog in hogs:
        hog.kill()
    for hog in hogs:
        hog.wait()


def run_variant(b: Bench, variant: str, run_dir: Path) -> tuple[list[float], dict]:
    """samples/s of each epoch after the first, and the start event's ``threads`` (what was chosen)."""
    env = {k: v for k, v in ENV.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "TUITRAIN_AUTO_OMP")}
    env.update(VARIANTS[variant])
    subprocess.run([sys.executable, "-m", "tuitrain", *tuitrain_args(b, run_dir), "--headless"], env=env,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    start = next((r for r in records if r.get("event") == "start"), {})
    return run_rates(run_dir, b.samples), start.get("threads") or {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (the first is left out as warm-up)")
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 2, help="busy processes in the busy case")
    parser.add_argument("--loads", default="quiet,busy")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    opts = parser.parse_args()
    loads = [x for x in opts.loads.split(",") if x]
    variants = [x for x in opts.variants.split(",") if x]
    if set(loads) - {"quiet", "busy"} or set(variants) - set(VARIANTS):
        sys.exit(f"--loads: quiet,busy; --variants: {','.join(VARIANTS)}")
    rates: dict[tuple[str, str], list[float]] = {}
    load_avgs: dict[tuple[str, str], list[float]] = {}
    begin_load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        b = Bench(Path(tmp) / "data", Path(tmp), "cpu", opts.epochs, opts.samples)
        write_data(b.root, n_train=opts.samples)
        for round_no in range(opts.rounds):
            for load in loads:
                order = variants[round_no % len(variants):] + variants[:round_no % len(variants)]
                hogs = start_hogs(opts.hogs) if load == "busy" else []
                try:
                    for variant in order:
                        found, threads = run_variant(b, variant, Path(tmp) / f"{load}-{variant}-{round_no}")
                        rates.setdefault((load, variant), []).extend(found)
                        avg = os.getloadavg()[0]
                        load_avgs.setdefault((load, variant), []).append(avg)
                        print(f"  round {round_no + 1} {load} {variant}: {', '.join(f'{r:,.0f}' for r in found)} "
                              f"samples/s (load average {avg:.1f}; wait policy "
                              f"{threads.get('wait_policy') or 'default'}, {threads.get('torch_threads')} threads: "
                              f"{threads.get('reason', '')})", file=sys.stderr)
                finally:
                    stop_hogs(hogs)
    print(f"{os.cpu_count()} CPUs; {opts.samples:,} samples, batch 100, cnn; {opts.rounds} alternating rounds of "
          f"{opts.epochs} epochs; busy: {opts.hogs} busy processes; load average {begin_load:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end")
    print(f"{'case':<16}{'samples/s':>11}{'best':>9}{'load avg':>10}")
    median = {key: statistics.median(r) for key, r in rates.items()}
    for key, found in rates.items():
        print(f"{key[0] + ' ' + key[1]:<16}{median[key]:>11,.0f}{max(found):>9,.0f}"
              f"{statistics.mean(load_avgs[key]):>10.1f}")
    for load, a, over, target in (("busy", "auto", "passive", ">= 0.8"), ("busy", "spin", "passive", "was 0.39"),
                                  ("quiet", "auto", "spin", ">= 1.0, noise aside")):
        if (load, a) in median and (load, over) in median:
            print(f"{load}: {a} / {over} = {median[(load, a)] / median[(load, over)]:.2f}x (median; target {target})")


if __name__ == "__main__":
    begin = time.perf_counter()
    main()
    print(f"({time.perf_counter() - begin:.0f} s in all)")
