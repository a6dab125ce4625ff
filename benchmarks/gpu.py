"""The notes' cnn on one GPU: how fast it can train, against the notes' own loop on the same GPU.

Fashion-MNIST-shaped data (60,000 28x28 images, IDX files in torchvision's layout in a temp dir),
the notes' Network, Adam lr 0.01, batch 100 (``--batch-size``). Rows, alternating epoch by epoch in
rounds in one process (the tuitrain command in its own), each row's first epoch left out (warm-up,
compilation):

- notes loop:           torchvision FashionMNIST + ToTensor, DataLoader(shuffle=True), images moved
                        to the GPU per batch, `loss.item()` and the correct count read every step
- GPU tensors, fp32:    the whole data set normalised once and kept on the GPU, batches by index
                        from a GPU randperm, fused Adam, no host sync in the epoch
- + bf16 autocast:      the same under torch.autocast(bfloat16)
- + channels_last:      model and data in NHWC (cuDNN's preferred layout for bf16 convolutions)
- fp32 + compile:       the model through torch.compile(mode="reduce-overhead"): forward and backward
                        replay as CUDA graphs (``--compile``; compiling is in the warm-up epoch)
- fp32, whole step graph: forward, backward and fused Adam (its LR a device tensor) captured in one
                        CUDA graph by hand, batches gathered in the graph by a static index buffer:
                        the ceiling of what --cuda-graphs does
- tuitrain --headless:  `tuitrain fashion-mnist --headless --device cuda` as users run it: fp32, with
                        `--precision bf16-mixed`, with `--batch-size 500`, with `--cuda-graphs` (fp32
                        and bf16-mixed), and (``--compile``) with `--compile`; samples/s of each epoch
                        after the first, from the train_seconds of its metrics.jsonl
- tuitrain dashboard:   `tuitrain fashion-mnist --device cuda --cuda-graphs` in tmux at 160x48 (the
                        live UI, whose Python competes with the launch-bound training thread for the
                        GIL), against the headless row of the same flags: the dashboard's cost on a GPU

Prints one table (median samples/s, vs the notes' loop) and the dashboard's cost. Sized to finish in
about 7 minutes on one H100 (`--rounds`, `--epochs` to change). ``--dry-run`` runs every row it can
on the CPU with 2,000 images, to check the script without a GPU: the hand-made graph row runs its
step without capturing it, and the --cuda-graphs rows (refused on a CPU) are left out.
Usage: python benchmarks/gpu.py [--compile] [--rounds N] [--epochs N] [--batch-size N] [--dry-run]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from throughput import ENV, Bench, run_dashboard, run_rates, write_data  # noqa: E402

from tuitrain.models import Network  # noqa: E402  (the notes' class, attribute for attribute: SPEC)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def notes_epoch(root: Path, device: torch.device, batch_size: int) -> Callable[[], tuple[int, float]]:
    """The notes' loop, one epoch per call: (samples, seconds)."""
    import torchvision
    import torchvision.transforms as transforms

    train_set = torchvision.datasets.FashionMNIST(root=str(root), train=True, download=False,
                                                  transform=transforms.Compose([transforms.ToTensor()]))
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=batch_size, shuffle=True)
    network = Network().to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=0.01)

    def epoch() -> tuple[int, float]:
        sync(device)
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
        sync(device)
        return len(train_set), time.perf_counter() - start

    return epoch


def tensor_epoch(root: Path, device: torch.device, batch_size: int, bf16: bool, channels_last: bool,
                 graphs: bool) -> Callable[[], tuple[int, float]]:
    """Data resident on the device, no per-step host sync; one epoch per call: (samples, seconds)."""
    import torchvision

    raw = torchvision.datasets.FashionMNIST(root=str(root), train=True, download=False)
    x = raw.data.float().div(255).unsqueeze(1)
    x = ((x - x.mean()) / x.std()).to(device)
    y = raw.targets.to(device)
    network = Network().to(device)
    if channels_last:
        network = network.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(network.parameters(), lr=0.01, fused=True)
    model = torch.compile(network, mode="reduce-overhead") if graphs else network
    correct = torch.zeros((), device=device, dtype=torch.long)
    loss_sum = torch.zeros((), device=device)

    def epoch() -> tuple[int, float]:
        sync(device)
        start = time.perf_counter()
        order = torch.randperm(len(x), device=device)
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            images, labels = x[idx], y[idx]
            if graphs:
                torch.compiler.cudagraph_mark_step_begin()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                preds = model(images)
                loss = F.cross_entropy(preds, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum.add_(loss.detach())  # kept on the device: the epoch's totals, read once
            correct.add_((preds.argmax(dim=1) == labels).sum())
        sync(device)
        seconds = time.perf_counter() - start
        loss_sum.zero_()
        correct.zero_()
        return len(x), seconds

    return epoch


def graph_epoch(root: Path, device: torch.device, batch_size: int) -> Callable[[], tuple[int, float]]:
    """The whole step (gather, forward, backward, fused Adam) as one CUDA graph, written by hand as
    PyTorch's whole-network capture recipe does; on the CPU the same step runs without a graph."""
    import torchvision

    raw = torchvision.datasets.FashionMNIST(root=str(root), train=True, download=False)
    x = raw.data.float().div(255).unsqueeze(1)
    x = ((x - x.mean()) / x.std()).to(device)
    y = raw.targets.to(device)
    network = Network().to(device)
    cuda = device.type == "cuda"
    lr = torch.tensor(0.01, device=device) if cuda else 0.01  # read by the graph from device memory
    # capturable: Adam's step refuses a capture otherwise, fused or not
    optimizer = torch.optim.Adam(network.parameters(), lr=lr, fused=True, capturable=cuda)
    idx = torch.zeros(batch_size, dtype=torch.long, device=device)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)

    def step() -> None:
        images, labels = x[idx], y[idx]
        preds = network(images)
        loss = F.cross_entropy(preds, labels)
        loss.backward()
        optimizer.step()
        loss_sum.add_(loss.detach())
        correct.add_((preds.argmax(dim=1) == labels).sum())

    graph = None
    if cuda:
        idx.copy_(torch.randperm(len(x), device=device)[:batch_size])
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):  # warm-up (trains 3 batches), as the recipe says
                optimizer.zero_grad(set_to_none=True)
                step()
        torch.cuda.current_stream().wait_stream(side)
        optimizer.zero_grad(set_to_none=True)  # backward makes the gradients from the graph's pool
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()

    def epoch() -> tuple[int, float]:
        sync(device)
        start = time.perf_counter()
        order = torch.randperm(len(x), device=device)
        for i in range(0, len(x) - batch_size + 1, batch_size):
            idx.copy_(order[i:i + batch_size])
            if graph is not None:
                graph.replay()
            else:
                optimizer.zero_grad(set_to_none=True)
                step()
        sync(device)
        seconds = time.perf_counter() - start
        loss_sum.zero_()
        correct.zero_()
        return len(x) // batch_size * batch_size, seconds

    return epoch


TUITRAIN_ROWS = {
    "tuitrain --headless, fp32": [],
    "tuitrain --headless, bf16-mixed": ["--precision", "bf16-mixed"],
    "tuitrain --headless, fp32, --batch-size 500": ["--batch-size", "500"],
    "tuitrain --headless, fp32, --cuda-graphs": ["--cuda-graphs"],
    "tuitrain --headless, bf16-mixed, --cuda-graphs": ["--precision", "bf16-mixed", "--cuda-graphs"],
}
DASHBOARD_ROW = ("tuitrain dashboard (tmux), fp32, --cuda-graphs", "tuitrain --headless, fp32, --cuda-graphs")
"""The dashboard's row and the headless row it is compared with (the same flags)."""
COMPILE_ROW = ("tuitrain --headless, fp32 + --compile", ["--compile"])


def tuitrain_rates(root: Path, run_dir: Path, device: str, epochs: int, batch_size: int, n_train: int,
                   extra: list[str]) -> list[float]:
    """The real command in its own process; samples/s of each epoch after the first, from metrics.jsonl."""
    args = ["fashion-mnist", "--headless", "--device", device, "--epochs", str(epochs), "--lr", "0.01",
            "--batch-size", str(batch_size), "--data-dir", str(root), "--run-dir", str(run_dir), *extra]
    subprocess.run([sys.executable, "-m", "tuitrain", *args], env=ENV, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return run_rates(run_dir, n_train)


def machine(device: torch.device) -> str:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU (dry run on the CPU)"
    return (f"machine: {gpu}; {os.cpu_count()} CPUs; python {platform.python_version()}, torch {torch.__version__}, "
            f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version() if device.type == 'cuda' else '-'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true", help="add the torch.compile row")
    parser.add_argument("--rounds", type=int, default=3, help="alternate the rows this many times")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per row per round (warm-up: the very first)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--dry-run", action="store_true", help="every row on the CPU with 2,000 images")
    parser.add_argument("--no-dashboard", action="store_true", help="leave out the dashboard row (tmux)")
    opts = parser.parse_args()
    if opts.dry_run:
        device, n_train, rounds, epochs = torch.device("cpu"), 2_000, 1, 2
    elif torch.cuda.is_available():
        device, n_train, rounds, epochs = torch.device("cuda"), 60_000, opts.rounds, opts.epochs
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels once
    else:
        sys.exit("no CUDA GPU here; --dry-run checks the script on the CPU")
    begin = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        write_data(root, n_train=n_train, n_val=min(10_000, n_train // 6))
        rows: dict[str, Callable[[], tuple[int, float]]] = {
            "notes loop (DataLoader, ToTensor, .item())": notes_epoch(root, device, opts.batch_size),
            "GPU tensors, fp32": tensor_epoch(root, device, opts.batch_size, False, False, False),
            "GPU tensors, bf16 autocast": tensor_epoch(root, device, opts.batch_size, True, False, False),
            "GPU tensors, bf16 + channels_last": tensor_epoch(root, device, opts.batch_size, True, True, False),
            "GPU tensors, fp32, whole step graph": graph_epoch(root, device, opts.batch_size),
        }
        if opts.compile:
            rows["GPU tensors, fp32 + compile (CUDA graphs)"] = tensor_epoch(root, device, opts.batch_size, False,
                                                                             False, True)
        commands = dict(TUITRAIN_ROWS)
        if opts.compile:
            commands[COMPILE_ROW[0]] = COMPILE_ROW[1]
        if opts.dry_run:  # refused on a CPU (one line, exit 2): nothing to time there
            commands = {name: extra for name, extra in commands.items() if "--cuda-graphs" not in extra}
        dashboard, dash_row = None, DASHBOARD_ROW[0] if not opts.dry_run else "tuitrain dashboard (tmux), fp32"
        if not opts.no_dashboard and shutil.which("tmux"):
            extra = commands.get(DASHBOARD_ROW[1], [])
            dashboard = Bench(root, Path(tmp), device.type, max(epochs, 2) + 1, n_train,
                              extra=[*extra, "--batch-size", str(opts.batch_size)])
        rates: dict[str, list[float]] = {name: [] for name in [*rows, *commands]}
        if dashboard is not None:
            rates[dash_row] = []
        for round_no in range(rounds):
            for name, epoch in rows.items():
                for e in range(epochs):
                    samples, seconds = epoch()
                    if round_no or e:  # the first epoch of each row: warm-up (cuDNN autotuning, compiling)
                        rates[name].append(samples / seconds)
                print(f"  round {round_no + 1} {name}: {rates[name][-1] if rates[name] else 0:,.0f} samples/s",
                      file=sys.stderr)
            for i, (name, extra) in enumerate(commands.items()):
                found = tuitrain_rates(root, Path(tmp) / f"tuitrain-{round_no}-{i}", device.type, max(epochs, 2) + 1,
                                       opts.batch_size, n_train, extra)
                rates[name] += found
                print(f"  round {round_no + 1} {name}: {[round(r) for r in found]}", file=sys.stderr)
            if dashboard is not None:
                found = run_dashboard(dashboard, Path(tmp) / f"dashboard-{round_no}")
                rates[dash_row] += found
                print(f"  round {round_no + 1} {dash_row}: {[round(r) for r in found]}", file=sys.stderr)
    print(machine(device))
    print(f"{n_train:,} Fashion-MNIST-shaped images, the notes' cnn, Adam lr 0.01, batch {opts.batch_size}; "
          f"{rounds} alternating rounds of {epochs} epochs; median samples/s after warm-up")
    notes = statistics.median(rates["notes loop (DataLoader, ToTensor, .item())"])
    print(f"{'path':<46}{'samples/s':>12}{'vs notes':>10}")
    for name, found in rates.items():
        if found:
            value = statistics.median(found)
            print(f"{name:<46}{value:>12,.0f}{value / notes:>9.2f}x")
    if dashboard is not None and rates[dash_row]:
        headless_row = DASHBOARD_ROW[1] if DASHBOARD_ROW[1] in rates else "tuitrain --headless, fp32"
        ui = statistics.median(rates[dash_row]) / statistics.median(rates[headless_row]) - 1
        cpu = [u / w for u, _, w in dashboard.ui_cpu if w]
        print(f"dashboard vs {headless_row.removeprefix('tuitrain ')}: {ui:+.1%} samples/s (median)"
              + (f"; UI thread {statistics.median(cpu):.1%} of a core" if cpu else ""))
    print(f"({time.perf_counter() - begin:.0f} s in all)")


if __name__ == "__main__":
    main()
