"""SIGTERM and SIGHUP (with --on-hangup stop) stop a headless run like Ctrl-C (last.pt at the stop
step, status interrupted, exit 143 / 129); SIGUSR1 saves a checkpoint and training goes on. The real
CLI in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import Pane, slow_model, wait
from tuitrain.rundir import read_records, read_status, run_state

ROOT = Path(__file__).resolve().parent.parent


def _start(run_dir: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tuitrain", "synthetic", "--headless", "--epochs", "50", "--limit", "10000",
         "--batch-size", "5", "--log-every", "10", "--model", "mlp", "--device", "cpu", "--run-dir", str(run_dir),
         *extra],
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
    proc = _start(run_dir, "--on-hangup", "stop")  # SIGHUP stops (the default goes on: test_hangup.py)
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
    # One word for one state: the end event's, in status.json and so in `tuitrain runs` too.
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


# ------------------------------------------------------------------ signals before a run exists
SLOW_MODEL = """
import os, time
import torch.nn as nn

def make(num_classes=10, in_channels=1, image_size=28):
    # Each build says so (one line in MARKER), then waits for MARKER.goN: the test signals the
    # process while it is here, loading, before the run exists.
    marker = os.environ["TUITRAIN_TEST_MARKER"]
    with open(marker, "a") as fh:
        fh.write("building\\n")
    with open(marker) as fh:
        n = len(fh.read().splitlines())
    deadline = time.monotonic() + 120
    while not os.path.exists(f"{marker}.go{n}") and time.monotonic() < deadline:
        time.sleep(0.05)
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size * image_size, num_classes))
"""


class Loading:
    """``tuitrain ARGS`` (a model that waits while it is built) in a subprocess."""

    def __init__(self, tmp_path: Path, args: list[str]):
        (tmp_path / "slow.py").write_text(SLOW_MODEL)
        self.marker = tmp_path / "marker"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TUITRAIN_TEST_MARKER": str(self.marker),
               "TUITRAIN_DATA": str(tmp_path / "data")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tuitrain", *args, "--model", f"{tmp_path / 'slow.py'}:make", "--epochs", "1",
             "--limit", "200", "--batch-size", "50", "--device", "cpu"],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def building(self, n: int) -> None:
        """Wait until the n-th model build waits (the process is loading)."""
        wait(lambda: self.marker.exists() and len(self.marker.read_text().splitlines()) >= n or
             self.proc.poll() is not None, f"build {n} of the model", 120)
        assert self.proc.poll() is None, self.proc.communicate()

    def go(self, n: int) -> None:
        Path(f"{self.marker}.go{n}").touch()

    def finish(self) -> tuple[int, str, str]:
        try:
            out, err = self.proc.communicate(timeout=180)
        finally:
            self.proc.kill()
        return self.proc.returncode, out, err


@pytest.mark.slow
def test_sigusr1_while_loading_says_nothing_is_trained_and_the_run_goes_on(tmp_path):
    run = Loading(tmp_path, ["synthetic", "--headless", "--run-dir", str(tmp_path / "run")])
    run.building(1)
    run.proc.send_signal(signal.SIGUSR1)  # before: the default action, the process killed (exit 138)
    run.go(1)
    code, out, err = run.finish()
    assert code == 0, err
    assert "tuitrain: SIGUSR1: nothing is trained yet, so there is no checkpoint to save" in err
    assert "tuitrain: done after 1 epoch" in err


@pytest.mark.slow
def test_sigterm_while_loading_exits_143_with_one_line(tmp_path):
    run = Loading(tmp_path, ["synthetic", "--headless", "--run-dir", str(tmp_path / "run")])
    run.building(1)
    run.proc.send_signal(signal.SIGTERM)  # before: killed by the signal, no line
    code, out, err = run.finish()
    assert code == 143, err
    assert err.splitlines()[-1] == "tuitrain: SIGTERM: no run is training; exiting", err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing was written


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGUSR1, 0)])
def test_a_signal_while_a_sweeps_next_run_loads(tmp_path, signum, code):
    """Between two runs of a sweep: SIGTERM and SIGINT end the sweep with the table of the runs done,
    SIGUSR1 is answered and the sweep goes on."""
    run = Loading(tmp_path, ["sweep", "synthetic", "--lr", "0.01,0.001", "--sweep-dir", str(tmp_path / "sweep")])
    run.building(1)
    run.go(1)
    run.building(2)
    run.proc.send_signal(signum)
    run.go(2)
    got, out, err = run.finish()
    assert got == code, err
    assert "Traceback" not in err
    status = [word for line in out.splitlines() for word in line.split() if word in ("done", "interrupted")]
    if signum == signal.SIGUSR1:
        assert status == ["done", "done"], out
    else:  # the table, with the run that was loading
        assert "tuitrain sweep: interrupted after 1 complete runs of 2" in err
        assert sorted(status) == ["done", "interrupted"], out


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_sigint_to_the_dashboard_exits_130_like_ctrl_c(tmp_path):
    run_dir = tmp_path / "run"
    pane = Pane(tmp_path, ["synthetic", "--epochs", "2", "--limit", "1000", "--batch-size", "50", "--model",
                           slow_model(tmp_path), "--device", "cpu", "--run-dir", str(run_dir)])
    try:
        wait(lambda: (run_dir / "metrics.jsonl").exists() and '"type":"step"' in (run_dir / "metrics.jsonl").read_text()
             and run_state(run_dir) == "running", "the run to train", 120)
        os.kill(read_status(run_dir)["pid"], signal.SIGINT)  # before: exit 0, stop reason quit
        assert pane.exit_code(60) == 130
    finally:
        pane.kill()
    assert _events(run_dir, "stop")[-1]["reason"] == "interrupt"
    assert run_state(run_dir) == "interrupted"
    assert (run_dir / "checkpoints" / "last.pt").is_file()
