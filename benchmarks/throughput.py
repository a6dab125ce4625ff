"""Training throughput where users run it: the CLI, the dashboard and fit, against two plain loops.

Writes 60,000 Fashion-MNIST-shaped training images (plus 10,000 for validation) as IDX files in
torchvision's FashionMNIST layout in a temp dir, then runs, each in its own process, alternating
in rounds in one sitting (the order rotates each round), all with the notes' `cnn`, batch 100,
Adam, lr 0.01, seed 0:

- notes:     the classic Fashion-MNIST notes' loop: torchvision FashionMNIST with ToTensor,
             DataLoader(batch_size=100, shuffle=True), `loss.item()` and the correct count per step
- bare:      one normalised in-memory float tensor, batches by index from randperm, plain
             `torch.optim.Adam`, nothing else: the fastest loop one writes by hand
- headless:  `tuitrain fashion-mnist --headless` (the real command: engine thread, run dir,
             TensorBoard, histograms, divergence guard, control socket, system sampler)
- dashboard: `tuitrain fashion-mnist` in tmux at 160x48 (the live UI); the UI thread's CPU is
             read from /proc/PID/task/PID/stat while training
- fit:       `tuitrain.fit(Network(), (x, y), (val_x, val_y), headless=True)` on in-memory tensors

Loops time their epochs; tuitrain paths are read from the run's metrics.jsonl (epoch records'
train_seconds: the training steps, without evaluation and start-up). Each run's first epoch is
warm-up and left out when there are more; the table shows the median over the rest and the best.
Usage: python benchmarks/throughput.py [--epochs N] [--rounds N] [--paths notes,bare,...] [--device cpu]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's tuitrain, in every subprocess
TRAIN, VAL = 60_000, 10_000
PATHS = ("notes", "bare", "headless", "dashboard", "fit")
LABELS = {"notes": "notes loop (DataLoader, ToTensor)", "bare": "bare tensor loop",
          "headless": "tuitrain --headless", "dashboard": "tuitrain dashboard (tmux)",
          "fit": "tuitrain.fit (TensorDataset)"}

NETWORK = r'''
import torch.nn as nn, torch.nn.functional as F
class Network(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels=1, out_channels=6, kernel_size=5)
        self.conv2 = nn.Conv2d(in_channels=6, out_channels=12, kernel_size=5)
        self.fc1 = nn.Linear(in_features=12 * 4 * 4, out_features=120)
        self.fc2 = nn.Linear(in_features=120, out_features=60)
        self.out = nn.Linear(in_features=60, out_features=10)
    def forward(self, t):
        t = F.max_pool2d(F.relu(self.conv1(t)), kernel_size=2, stride=2)
        t = F.max_pool2d(F.relu(self.conv2(t)), kernel_size=2, stride=2)
        t = F.relu(self.fc1(t.reshape(-1, 12 * 4 * 4)))
        return self.out(F.relu(self.fc2(t)))
'''

NOTES = NETWORK + r'''
import json, sys, time, torch, torchvision, torchvision.transforms as transforms
root, device, epochs = sys.argv[1], torch.device(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
train_set = torchvision.datasets.FashionMNIST(root=root, train=True, download=False,
                                              transform=transforms.Compose([transforms.ToTensor()]))
train_loader = torch.utils.data.DataLoader(train_set, batch_size=100, shuffle=True)
network = Network().to(device)
optimizer = torch.optim.Adam(network.parameters(), lr=0.01)
seconds = []
for epoch in range(epochs):
    start = time.perf_counter()
    total_loss = total_correct = 0
    for images, labels in train_loader:
        images, labels = images.to(device), labels.to(device)
        preds = network(images)
        loss = F.cross_entropy(preds, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total_loss += loss.item()
        total_correct += preds.argmax(dim=1).eq(labels).sum().item()
    seconds.append(time.perf_counter() - start)
print(json.dumps({"samples": len(train_set), "seconds": seconds}))
'''

BARE = NETWORK + r'''
import json, sys, time, torch, torchvision
root, device, epochs = sys.argv[1], torch.device(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
raw = torchvision.datasets.FashionMNIST(root=root, train=True, download=False)
x = raw.data.float().div(255).unsqueeze(1)
x = ((x - x.mean()) / x.std()).to(device)
y = raw.targets.to(device)
network = Network().to(device)
optimizer = torch.optim.Adam(network.parameters(), lr=0.01)
seconds = []
for epoch in range(epochs):
    start = time.perf_counter()
    order = torch.randperm(len(x), device=device)
    for i in range(0, len(x), 100):
        idx = order[i:i + 100]
        loss = F.cross_entropy(network(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if device.type == "cuda": torch.cuda.synchronize()
    seconds.append(time.perf_counter() - start)
print(json.dumps({"samples": len(x), "seconds": seconds}))
'''

FIT = NETWORK + r'''
import sys, torch, torchvision, tuitrain
root, device, epochs, run_dir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def tensors(train):
    raw = torchvision.datasets.FashionMNIST(root=root, train=train, download=False)
    return raw.data.float().div(255).unsqueeze(1), raw.targets
(x, y), (vx, vy) = tensors(True), tensors(False)
mean, std = x.mean(), x.std()
result = tuitrain.fit(Network(), ((x - mean) / std, y), ((vx - mean) / std, vy), epochs=epochs,
                      batch_size=100, lr=0.01, device=device, seed=0, run_dir=run_dir, headless=True)
sys.exit(0 if result.status == "done" else 1)
'''


@dataclass
class Bench:
    """Where the data is and what the runs found."""

    root: Path
    tmp: Path
    device: str
    epochs: int
    samples: int
    rates: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PATHS})
    ui_cpu: list[tuple[float, float, float]] = field(default_factory=list)
    """Per dashboard run: (UI thread CPU s, process CPU s, wall s) while training."""
    wakes: list[tuple[int, int, float]] = field(default_factory=list)
    """Per dashboard run: (UI thread's context switches, all threads', wall s) while training."""
    extra: list[str] = field(default_factory=list)
    """More tuitrain options for the headless and dashboard paths (benchmarks/gpu.py: --cuda-graphs)."""


def write_data(root: Path, n_train: int = TRAIN, n_val: int = VAL) -> None:
    """60,000 + 10,000 learnable 28x28 images in torchvision's FashionMNIST layout (raw and .gz)."""
    import torch

    from tests.helpers import write_idx
    from tuitrain.data import synthetic

    gen = torch.Generator().manual_seed(0)
    base = synthetic()
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, x, y, n in (("train", base.train_x, base.train_y, n_train), ("t10k", base.val_x, base.val_y, n_val)):
        pick = torch.randint(0, len(x), (n,), generator=gen)
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", x[pick, 0])
        write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", y[pick].to(torch.uint8))
    for gz in raw.glob("*.gz"):  # torchvision's dataset reads the unpacked files; tuitrain either
        gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))


def warm(rates: list[float]) -> list[float]:
    """Leave out the first epoch (warm-up) when there are more."""
    return rates[1:] if len(rates) > 1 else rates


def run_loop(code: str, b: Bench) -> list[float]:
    out = subprocess.run([sys.executable, "-c", code, str(b.root), b.device, str(b.epochs)], env=ENV,
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return warm([result["samples"] / s for s in result["seconds"]])


def run_rates(run_dir: Path, samples: int) -> list[float]:
    """samples/s of each epoch of a tuitrain run of ``samples`` a epoch, from its metrics.jsonl."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    return warm([samples / r["train_seconds"] for r in records if r.get("type") == "epoch"])


def tuitrain_args(b: Bench, run_dir: Path) -> list[str]:
    return ["fashion-mnist", "--epochs", str(b.epochs), "--lr", "0.01", "--batch-size", "100", "--seed", "0",
            "--device", b.device, "--data-dir", str(b.root), "--run-dir", str(run_dir), *b.extra]


def run_headless(b: Bench, run_dir: Path) -> list[float]:
    subprocess.run([sys.executable, "-m", "tuitrain", *tuitrain_args(b, run_dir), "--headless"], env=ENV,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return run_rates(run_dir, b.samples)


def run_fit(b: Bench, run_dir: Path) -> list[float]:
    subprocess.run([sys.executable, "-c", FIT, str(b.root), b.device, str(b.epochs), str(run_dir)], env=ENV,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return run_rates(run_dir, b.samples)


def thread_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) of the process's main thread (the Textual UI), and of the process."""
    tick = os.sysconf("SC_CLK_TCK")

    def cpu(stat: str) -> float:
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    return cpu(Path(f"/proc/{pid}/task/{pid}/stat").read_text()), cpu(Path(f"/proc/{pid}/stat").read_text())


def switches(pid: int) -> tuple[int, int]:
    """Context switches (voluntary and not) of the process's main thread (the Textual UI) and of all its
    threads: each is a wake-up, and on a box whose cores the torch threads keep busy each wake-up of
    another thread stalls a parallel region. A count, not a timing: comparable across sittings."""
    def count(tid: str) -> int:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except OSError:  # the thread just ended
            return 0
        return sum(int(line.split()[1]) for line in text.splitlines() if line.endswith(tuple("0123456789"))
                   and line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")))

    return count(str(pid)), sum(count(tid) for tid in os.listdir(f"/proc/{pid}/task"))


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True).stdout


def run_dashboard(b: Bench, run_dir: Path) -> list[float]:
    """The dashboard in a detached tmux session; q once DONE shows. Measures the UI thread's CPU."""
    session = f"tuitrain-bench-{os.getpid()}"
    # The tmux server runs commands in its own environment: pass this benchmark's settings explicitly.
    settings = [f"{k}={ENV[k]}" for k in ("PYTHONPATH", "OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in ENV]
    cmd = " ".join(["env", *settings, sys.executable, "-m", "tuitrain", *tuitrain_args(b, run_dir)])
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "48", cmd], check=True)
    pid, start = None, None
    try:
        deadline = time.monotonic() + 60 + 60 * b.epochs
        while time.monotonic() < deadline:
            time.sleep(0.1)
            if pid is None:
                pane = tmux("list-panes", "-t", session, "-F", "#{pane_pid}").split()
                found = subprocess.run(["pgrep", "-f", "-P", pane[0], "tuitrain"], capture_output=True,
                                       text=True).stdout.split() if pane else []
                pid = int(found[0]) if found else (int(pane[0]) if pane else None)
            # CPU from the first step record on: start-up (imports, data) runs on the main thread too.
            if start is None and pid and (run_dir / "metrics.jsonl").exists() and \
                    '"type":"step"' in (run_dir / "metrics.jsonl").read_text():
                start = (*thread_cpu(pid), time.monotonic(), *switches(pid))
            screen = tmux("capture-pane", "-p", "-t", session)
            if "DONE" in screen or "FAILED" in screen:
                if pid and start:
                    ui, total = thread_cpu(pid)
                    main, every = switches(pid)
                    b.ui_cpu.append((ui - start[0], total - start[1], time.monotonic() - start[2]))
                    b.wakes.append((main - start[3], every - start[4], time.monotonic() - start[2]))
                break
        else:
            raise RuntimeError("the dashboard did not finish in time")
        tmux("send-keys", "-t", session, "q")
        for _ in range(50):
            if not tmux("list-panes", "-t", session, "-F", "#{pane_pid}").strip():
                break
            time.sleep(0.1)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], stderr=subprocess.DEVNULL)
    return run_rates(run_dir, b.samples)


def run_path(path: str, b: Bench, round_no: int) -> list[float]:
    run_dir = b.tmp / f"{path}-{round_no}"
    if path == "notes":
        return run_loop(NOTES, b)
    if path == "bare":
        return run_loop(BARE, b)
    return {"headless": run_headless, "dashboard": run_dashboard, "fit": run_fit}[path](b, run_dir)


def machine(device: str) -> str:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    gpu = f", {torch.cuda.get_device_name()}" if device.startswith("cuda") and torch.cuda.is_available() else ""
    return (f"machine: {platform.machine()} {cpu}, {os.cpu_count()} CPUs{gpu}; python {platform.python_version()}, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads); device {device}")


def report(b: Bench, opts: argparse.Namespace, loads: tuple[float, float]) -> None:
    done = {p: r for p, r in b.rates.items() if r}
    median = {p: statistics.median(r) for p, r in done.items()}
    print(machine(b.device) + (f"; OMP_NUM_THREADS={opts.threads} in every run" if opts.threads else ""))
    print(f"{opts.samples:,} samples, batch 100, cnn, Adam lr 0.01; {opts.rounds} alternating rounds of {b.epochs} epochs; "
          f"median of the epochs after each run's first; load average {loads[0]:.1f} at the start, "
          f"{loads[1]:.1f} at the end")
    best = {p: max(r) for p, r in done.items()}
    print(f"{'path':<36}{'samples/s':>10}{'vs bare':>9}{'vs notes':>9}   {'best':>7}{'vs bare':>9}{'vs notes':>9}")
    for path in done:
        row = f"{LABELS[path]:<36}"
        for stat in (median, best):
            row += f"{stat[path]:>10,.0f}" if stat is median else f"   {stat[path]:>7,.0f}"
            row += f"{stat[path] / stat['bare']:>8.2f}x" if "bare" in stat else f"{'-':>9}"
            row += f"{stat[path] / stat['notes']:>8.2f}x" if "notes" in stat else f"{'-':>9}"
        print(row)
    print("(median: over every measured epoch; best: the fastest epoch, what a quiet machine gives: load from "
          "other processes only ever slows a run down)")
    if "dashboard" in median and "headless" in median:
        print(f"dashboard vs headless: {100 * (median['dashboard'] / median['headless'] - 1):+.1f}% samples/s "
              f"(median), {100 * (best['dashboard'] / best['headless'] - 1):+.1f}% (best)")
    if b.ui_cpu:
        ui, total, wall = (sum(x) for x in zip(*b.ui_cpu, strict=True))
        print(f"dashboard UI thread while training: {ui:.2f} CPU s in {wall:.1f} s ({100 * ui / wall:.1f}% of one "
              f"core, {100 * ui / max(total, 1e-9):.1f}% of the process's CPU time)")
    if b.wakes:
        main, every, wall = (sum(x) for x in zip(*b.wakes, strict=True))
        print(f"dashboard context switches while training: UI thread {main / wall:.1f}/s, all threads "
              f"{every / wall:.1f}/s (torch's workers included; a count, comparable across sittings)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (the first is left out as warm-up)")
    parser.add_argument("--rounds", type=int, default=4, help="alternate the paths this many times")
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated subset of {','.join(PATHS)}")
    parser.add_argument("--samples", type=int, default=TRAIN, help="training images written (and trained on)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads in every run (OMP_NUM_THREADS; 0: torch's default, one per core)")
    opts = parser.parse_args()
    if opts.threads:
        ENV.update(OMP_NUM_THREADS=str(opts.threads), MKL_NUM_THREADS=str(opts.threads))
    paths = [p for p in opts.paths.split(",") if p]
    unknown = set(paths) - set(PATHS)
    if unknown:
        sys.exit(f"unknown paths: {', '.join(sorted(unknown))}")
    if "dashboard" in paths and not shutil.which("tmux"):
        sys.exit("the dashboard path needs tmux (or leave it out with --paths)")
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        b = Bench(Path(tmp) / "data", Path(tmp), opts.device, opts.epochs, opts.samples)
        write_data(b.root, n_train=opts.samples)
        for round_no in range(opts.rounds):
            order = paths[round_no % len(paths):] + paths[:round_no % len(paths)]  # rotate: no path always first
            for path in order:
                rates = run_path(path, b, round_no)
                b.rates[path] += rates
                print(f"  round {round_no + 1} {path}: {', '.join(f'{r:,.0f}' for r in rates)} samples/s "
                      f"(load average {os.getloadavg()[0]:.1f})", file=sys.stderr)
    report(b, opts, (load_start, os.getloadavg()[0]))


if __name__ == "__main__":
    begin = time.perf_counter()
    main()
    print(f"({time.perf_counter() - begin:.0f} s in all)")
