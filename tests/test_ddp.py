"""Two CPU processes with gloo under torchrun: both ranks end with the same weights, and a command
sent to rank 0's control channel reaches both at the same step."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tuitrain.rundir import read_records


def _start_two_ranks(run_dir: Path, port: int, limit: int) -> tuple[subprocess.Popen, Path]:
    """torchrun with 2 CPU ranks on synthetic data; returns once the first epoch record is written."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(port),
         "-m", "tuitrain", "synthetic", "--headless", "--epochs", "400", "--limit", str(limit), "--log-every", "5",
         "--device", "cpu", "--run-dir", str(run_dir)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (metrics.exists() and any(r["type"] == "epoch" for r in read_records(metrics))):
        time.sleep(0.2)
    return proc, metrics


@pytest.mark.slow
def test_two_process_gloo_ddp_with_a_command(tmp_path):
    run_dir = tmp_path / "run"
    proc, metrics = _start_two_ranks(run_dir, port=29517, limit=2000)
    ctl = [sys.executable, "-m", "tuitrain", "ctl", str(run_dir)]
    lr = subprocess.run([*ctl, "lr", "0.004"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert lr.returncode == 0, lr.stdout + lr.stderr
    assert subprocess.run([*ctl, "stop"], capture_output=True, timeout=60, cwd=ROOT).returncode == 0
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    end = [r for r in read_records(metrics) if r.get("event") == "end"][-1]
    assert end["world_size"] == 2 and end["ranks_in_sync"] is True  # the LR reached both ranks together
    steps = [r for r in read_records(metrics) if r["type"] == "step"]
    assert steps[-1]["lr"] == 0.004
    assert (run_dir / "checkpoints" / "last.pt").is_file()


@pytest.mark.slow
def test_session_run_leaves_no_thread_holding_the_model(small_config, monkeypatch):
    """The system sampler's bound method holds the session (and a DDP model with it); a daemon thread
    that dropped it during interpreter shutdown aborted rank 1. run() joins it."""
    import threading

    from tuitrain import session as session_module
    from tuitrain.session import Session
    from tuitrain.system import SystemSampler

    real_sample = SystemSampler.sample

    def slow_sample(self):
        time.sleep(0.3)  # the sampler is mid-sample when training ends
        return real_sample(self)

    monkeypatch.setattr(SystemSampler, "sample", slow_sample)
    monkeypatch.setattr(session_module, "SYSTEM_EVERY_S", 0.01)

    session = Session(small_config(epochs=1, limit=200), on_record=lambda record: None)
    session.prepare()
    session.open_run_dir()
    assert session.run().status == "done"
    assert not [t for t in threading.enumerate() if t.name == "tuitrain-system"]


@pytest.mark.slow
def test_sigterm_to_torchrun_stops_every_rank_at_one_step(tmp_path):
    """torchrun passes SIGTERM to each rank: rank 0 stops them all through its broadcast (the
    others leave the signal to it), so last.pt is saved and the ranks end in sync."""
    import signal

    import torch

    run_dir = tmp_path / "run"
    proc, metrics = _start_two_ranks(run_dir, port=29518, limit=1000)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    records = read_records(metrics)
    stop = [r for r in records if r.get("event") == "stop"][-1]
    end = [r for r in records if r.get("event") == "end"][-1]
    assert stop["reason"] == "sigterm", out
    assert end["status"] == "interrupted" and end["world_size"] == 2 and end["ranks_in_sync"] is True, out
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["step"] == stop["step"]
    assert "Signal 6" not in out and "SIGABRT" not in out
