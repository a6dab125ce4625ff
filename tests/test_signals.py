"""SIGTERM and SIGHUP stop a headless run like Ctrl-C (last.pt at the stop step, status interrupted,
exit 143 / 129); SIGUSR1 saves a checkpoint and training goes on. The real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tuitrain.rundir import read_records

ROOT = Path(__file__).resolve().parent.parent


def _start(run_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tuitrain", "synthetic", "--headless", "--epochs", "50", "--limit", "10000",
         "--batch-size", "5", "--log-every", "10", "--model", "mlp", "--device", "cpu", "--run-dir", str(run_dir)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(run_dir: Path, predicate, proc: subprocess.Popen, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (run_dir / "metrics.jsonl").exists():
            found = [r for r in read_records(run_dir / "metrics.jsonl") if predicate(r)]
            if found:
                return found[0]
        assert proc.poll() is None, proc.communicate()[0]
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("timed out waiting for a record")


def _events(run_dir: Path, name: str) -> list[dict]:
    return [r for r in read_records(run_dir / "metrics.jsonl") if r.get("event") == name]


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "reason", "code"), [(signal.SIGTERM, "sigterm", 143), (signal.SIGHUP, "sighup", 129)])
def test_stop_signal_saves_the_step_in_progress(tmp_path, signum, reason, code):
    run_dir = tmp_path / "run"
    proc = _start(run_dir)
    # 2000 steps an epoch: the signal lands in the middle of the first one.
    _wait_for(run_dir, lambda r: r["type"] == "step" and r["step"] >= 60, proc)
    if signum == signal.SIGTERM:  # SIGUSR1 first: a checkpoint now, and training goes on
        proc.send_signal(signal.SIGUSR1)
        saved = _wait_for(run_dir, lambda r: r.get("event") == "save" and not r.get("auto"), proc)
        assert saved["ok"] and Path(saved["path"]).is_file()
        _wait_for(run_dir, lambda r: r["type"] == "step" and r["step"] > saved["step"] + 20, proc)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == code, out
    assert "Traceback" not in out
    stop = _events(run_dir, "stop")[-1]
    assert stop["reason"] == reason
    assert _events(run_dir, "end")[-1]["status"] == "interrupted"
    # One word for one state (issue 24): the end event's, in status.json and so in `tuitrain runs` too.
    assert json.loads((run_dir / "status.json").read_text())["state"] == "interrupted"
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert last["step"] == stop["step"] and last["epoch"] == 0 and last["batch"] == stop["step"]  # mid-epoch


@pytest.mark.parametrize("code", [130, 143, 129])
def test_a_signal_ends_the_whole_sweep(tmp_path, code, capsys):
    from tuitrain.config import TrainConfig
    from tuitrain.sweep import run_sweep

    trained = []

    def train(cfg):
        trained.append(cfg)
        return code, None

    base = TrainConfig(dataset="synthetic", run_dir="unused", headless=True)
    assert run_sweep(base, {"lr": [0.1, 0.01, 0.001]}, tmp_path / "sweep", train) == code
    assert len(trained) == 1


def test_the_relay_calls_back_from_its_thread_and_restores_the_handlers():
    import threading

    from tuitrain.signals import SignalRelay

    got: list[str] = []
    done = threading.Event()

    def on_stop(reason: str) -> None:
        got.append(reason)
        done.set()

    before = signal.getsignal(signal.SIGTERM)
    with SignalRelay(on_stop=on_stop, on_save=lambda: got.append("save")):
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert done.wait(10)
    assert got == ["save", "sigterm"]
    assert signal.getsignal(signal.SIGTERM) is before
    assert not [t for t in threading.enumerate() if t.name == "tuitrain-signals"]


@pytest.mark.slow
async def test_a_stop_signal_leaves_the_dashboard_like_q():
    from tests.fakes import FakeBackend
    from tuitrain.app import TuiTrainApp

    backend = FakeBackend()
    app = TuiTrainApp(backend)
    async with app.run_test() as pilot:
        await pilot.pause()
        app.stop_run("sigterm")
        for _ in range(20):
            await pilot.pause()
            if app.return_code is not None:
                break
        assert backend.quits == ["sigterm"]
        assert app.return_code is not None  # left once the run ended, without a key
