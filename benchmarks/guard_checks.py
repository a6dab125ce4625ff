"""The figures of README's "What tuitrain guarantees" for lone checkpoint files and memory bounds.

    python benchmarks/guard_checks.py [--flips 1000] [--bomb-gib 4]

1. Lone files: a checkpoint of the notes' cnn (Adam moments filled) copied without its .sha256;
   N single-bit flips at random places. Each is refused, or loads exactly the original values (a
   flip in zip padding or in a header field nothing reads); "loaded different" must be 0.
2. The cost of the checks: load_checkpoint against a bare torch.load of the same bytes.
3. A deflate bomb (a few MB unpacking to --bomb-gib GiB) given to `tuitrain --resume`, run as a
   user does, in a subprocess: exit code, seconds and peak RSS.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tuitrain import checkpoints  # noqa: E402
from tuitrain.errors import CheckpointError  # noqa: E402
from tuitrain.models import build_model  # noqa: E402


def cnn_checkpoint() -> dict:
    model = build_model("cnn", (1, 28, 28))
    optimizer = torch.optim.Adam(model.parameters(), fused=True)
    torch.nn.functional.cross_entropy(model(torch.randn(8, 1, 28, 28)), torch.randint(0, 10, (8,))).backward()
    optimizer.step()
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 1, "batch": 0, "step": 1,
            "config": {}, "best_val_acc": 0.5, "rng": checkpoints.rng_state()}


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def flips(folder: Path, n: int) -> None:
    payload = cnn_checkpoint()
    buf = io.BytesIO()
    torch.save(payload, buf)
    original = buf.getvalue()
    reference = torch.load(io.BytesIO(original), weights_only=True)
    lone = folder / "last.pt"
    rng = random.Random(0)
    outcome = {"refused": 0, "loaded identical": 0, "loaded different": 0}
    reasons: dict[str, int] = {}
    for _ in range(n):
        data = bytearray(original)
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        lone.write_bytes(bytes(data))
        try:
            loaded = checkpoints.load_checkpoint(lone)
        except CheckpointError as exc:
            outcome["refused"] += 1
            text = str(exc)
            key = ("CRC-32" if "CRC-32" in text else "sizes disagree" if "sizes" in text
                   else "zip structure / torch parse")
            reasons[key] = reasons.get(key, 0) + 1
            continue
        outcome["loaded identical" if same(loaded, reference) else "loaded different"] += 1
    print(f"lone cnn checkpoint ({len(original):,} bytes), {n} single-bit flips: "
          + ", ".join(f"{k} {v}" for k, v in outcome.items()))
    print("  refused by: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())))


def load_cost(folder: Path) -> None:
    for label, payload in (("cnn", cnn_checkpoint()),
                           ("256 MB", {"model": {"w": torch.randn(64 << 20)}, "optimizer": {}, "epoch": 0,
                                       "step": 0, "config": {}})):
        path = folder / "cost.pt"
        checkpoints.save_checkpoint(path, payload)
        data = path.read_bytes()
        bare, before, checked = [], [], []
        for _ in range(5):
            t0 = time.perf_counter()
            torch.load(io.BytesIO(data), weights_only=True)
            t1 = time.perf_counter()
            hashlib.sha256(data).hexdigest()  # what a load did before: the sha256, then torch.load
            torch.load(io.BytesIO(data), weights_only=True)
            t2 = time.perf_counter()
            checkpoints.load_checkpoint(path)
            t3 = time.perf_counter()
            bare.append(t1 - t0)
            before.append(t2 - t1)
            checked.append(t3 - t2)
        print(f"load {label} ({len(data) / 1e6:,.1f} MB): torch.load {min(bare) * 1e3:,.1f} ms; sha256 + torch.load "
              f"{min(before) * 1e3:,.1f} ms; load_checkpoint (bounds, sha256, CRC-32s, torch.load) "
              f"{min(checked) * 1e3:,.1f} ms")


# Runs tuitrain as the CLI does and prints the process's own peak RSS (VmHWM: this process image's
# high-water mark; ru_maxrss would include the benchmark's pages from before the exec).
PEAK = ("import atexit, runpy, sys\n"
        "atexit.register(lambda: print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')),"
        " file=sys.stderr))\n"
        "sys.argv = ['tuitrain', *sys.argv[1:]]\n"
        "runpy.run_module('tuitrain', run_name='__main__')\n")


def resume_peak(folder: Path, checkpoint: Path) -> tuple[int, float, int, str]:
    """Exit code, seconds, peak RSS (MiB) and the error line of `tuitrain ... --resume checkpoint`."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PEAK, "synthetic", "--headless", "--limit", "200", "--epochs", "2",
                           "--device", "cpu", "--run-dir", str(folder / f"run-{checkpoint.name}"), "--resume",
                           str(checkpoint)], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    seconds = time.perf_counter() - t0
    lines = done.stderr.strip().splitlines()
    peak = int(next(line.split()[1] for line in lines if line.startswith("VmHWM"))) // 1024
    error = next((line for line in lines if line.startswith("tuitrain: error")), "")
    return done.returncode, seconds, peak, error


def bomb(folder: Path, gib: int) -> None:
    path = folder / "bomb.pt"
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        with zf.open("archive/data/0", "w", force_zip64=True) as fh:
            for _ in range(gib << 10):
                fh.write(chunk)
    sparse = folder / "sparse.pt"
    with open(sparse, "wb") as fh:
        fh.truncate(5 << 30)
    rc, seconds, peak, _ = resume_peak(folder, folder / "missing.pt")
    print(f"--resume of a missing file (the start-up cost alone): exit {rc} in {seconds:.1f} s, peak RSS {peak:,} MiB")
    for label, checkpoint in ((f"a {path.stat().st_size / 1e6:.1f} MB file unpacking to {gib} GiB", path),
                              ("a 5 GiB sparse file", sparse)):
        rc, seconds, peak, error = resume_peak(folder, checkpoint)
        print(f"--resume of {label}: exit {rc} in {seconds:.1f} s, peak RSS {peak:,} MiB")
        print(f"  {error[:220]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flips", type=int, default=1000)
    parser.add_argument("--bomb-gib", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bomb(folder, args.bomb_gib)
        flips(folder, args.flips)
        load_cost(folder)


if __name__ == "__main__":
    main()
