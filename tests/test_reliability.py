"""Nothing lost, nothing let in: the divergence guard, failed saves, kill -9 during saves and writes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import ROOT, EngineRun
from tuitrain import checkpoints
from tuitrain.commands import Load, Pause, Save, Stop
from tuitrain.rundir import read_records

NAN_MODEL = textwrap.dedent("""
    import torch
    import torch.nn as nn

    class NanAfter(nn.Module):
        '''An MLP whose output turns to NaN after 30 training forwards: a run that diverges.'''
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(784, 10)
            self.calls = 0
        def forward(self, x):
            out = self.fc(x.flatten(1))
            if self.training:
                self.calls += 1
                if self.calls > 30:
                    out = out * float("nan")
            return out
""")


@pytest.fixture
def nan_model(tmp_path) -> str:
    path = tmp_path / "nan_model.py"
    path.write_text(NAN_MODEL)
    return f"{path}:NanAfter"


def _all_finite(path) -> bool:
    state = torch.load(path, weights_only=True)["model"]
    return all(torch.isfinite(t).all() for t in state.values())


@pytest.mark.slow
def test_headless_divergence_stops_and_keeps_finite_checkpoints(small_config, nan_model):
    run = EngineRun(small_config(model=nan_model, epochs=5)).start()
    result = run.join()
    assert result.status == "failed" and "non-finite" in result.message
    event = run.wait_event("nonfinite")
    assert event["action"] == "stopped" and 30 < event["step"] <= 35  # read with the next step record
    assert all(torch.isfinite(p).all() for p in run.engine.model.parameters())  # updates were skipped
    for name in ("last.pt", "best.pt"):
        assert _all_finite(run.engine.checkpoint_dir / name)


@pytest.mark.slow
def test_cli_divergence_exits_1(tmp_path, nan_model):
    proc = subprocess.run([sys.executable, "-m", "tuitrain", "synthetic", "--model", nan_model, "--headless",
                           "--limit", "1000", "--batch-size", "50", "--run-dir", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 1
    assert "non-finite" in proc.stderr.splitlines()[-1] and "Traceback" not in proc.stderr
    events = [r["event"] for r in read_records(tmp_path / "run" / "metrics.jsonl") if r["type"] == "event"]
    assert "nonfinite" in events


@pytest.mark.slow
def test_dashboard_mode_pauses_on_divergence(small_config, nan_model):
    run = EngineRun(small_config(model=nan_model, epochs=5, on_nonfinite="pause")).start()
    event = run.wait_event("nonfinite")
    assert event["action"] == "paused"
    time.sleep(0.3)
    assert run.engine.paused and run.engine.state.step == event["step"]
    assert all(torch.isfinite(p).all() for p in run.engine.model.parameters())
    run.send(Stop())
    assert run.join().status == "stopped"


@pytest.mark.slow
def test_a_diverged_model_is_never_saved(small_config):
    """Whatever makes the weights non-finite, no checkpoint is written with them."""
    run = EngineRun(small_config(epochs=50))
    run.start()
    run.wait_for(lambda r: r["type"] == "epoch")
    run.send(Pause(id=1))
    run.wait_event("pause", 1)
    with torch.no_grad():
        run.engine.model.fc1.weight[0, 0] = float("nan")
    run.send(Save(id=2))
    refused = run.wait_event("save", 2)
    assert refused["ok"] is False and "not finite" in refused["reason"]
    run.send(Stop(id=3))
    run.join()
    saves = [r for r in run.records if r.get("event") == "save"]
    assert saves[-1]["ok"] is False  # the save at stop was refused too
    assert _all_finite(run.engine.checkpoint_dir / "last.pt")


@pytest.mark.slow
def test_failed_save_is_reported_and_training_goes_on(small_config, monkeypatch):
    def no_space(path, payload):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoints, "save_checkpoint", no_space)
    run = EngineRun(small_config(epochs=2))
    run.send(Save(id=1))
    run.start()
    refused = run.wait_event("save", 1)
    assert refused["ok"] is False and "No space left" in refused["reason"]
    assert run.join().status == "done"
    auto = [r for r in run.records if r.get("event") == "save" and r.get("auto")]
    assert auto and all(r["ok"] is False for r in auto)


@pytest.mark.slow
def test_failed_load_leaves_the_live_model_untouched(small_config, tmp_path):
    wrong = tmp_path / "lenet.pt"
    from tuitrain.models import build_model

    checkpoints.save_checkpoint(wrong, {"model": build_model("lenet", (1, 28, 28)).state_dict(), "optimizer": {},
                                        "epoch": 0, "step": 0, "config": {}})
    flipped = tmp_path / "flipped.pt"
    run = EngineRun(small_config(epochs=50))
    run.send(Pause(id=1))
    run.start()
    run.wait_event("pause", 1)
    run.send(Save("good.pt", id=2))
    good = Path(run.wait_event("save", 2)["path"])
    data = bytearray(good.read_bytes())
    data[len(data) // 3] ^= 0x01
    flipped.write_bytes(bytes(data))
    (tmp_path / "flipped.pt.sha256").write_text((good.parent / "good.pt.sha256").read_text())
    before = {k: v.clone() for k, v in run.engine.model.state_dict().items()}
    opt_before = str(run.engine.optimizer.state_dict())
    for i, path in enumerate([wrong, flipped], start=3):
        run.send(Load(str(path), id=i))
        answer = run.wait_event("load", i)
        assert answer["ok"] is False
    assert "does not fit" in run.wait_event("load", 3)["reason"]
    assert "corrupted" in run.wait_event("load", 4)["reason"]
    after = run.engine.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert str(run.engine.optimizer.state_dict()) == opt_before
    run.send(Stop())
    run.join()


SAVER = textwrap.dedent("""
    import os, sys, time, torch
    sys.path.insert(0, {root!r})
    from tuitrain import checkpoints
    from tuitrain.rundir import RunLog
    real_fsync = os.fsync
    def slow_fsync(fd):
        time.sleep(0.02)   # widen the window in which a kill lands mid-save
        real_fsync(fd)
    os.fsync = slow_fsync
    log = RunLog({run!r})
    i = 0
    while True:
        i += 1
        checkpoints.save_checkpoint({path!r}, {{"model": {{"w": torch.full((20000,), float(i))}},
                                    "optimizer": {{}}, "epoch": i, "step": i, "config": {{}}}})
        log.write({{"type": "step", "step": i, "loss": 1.0 / i, "pad": "x" * 3000}})
""")


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_kill_9_during_saves_leaves_last_pt_loadable(tmp_path, seed):
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    script = SAVER.format(root=str(ROOT), run=str(tmp_path / "run"), path=str(path))
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 60
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(random.Random(seed).uniform(0.1, 0.6))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    ckpt = checkpoints.load_checkpoint(path)  # the old or the new one, verified by its checksum
    assert torch.equal(ckpt["model"]["w"], torch.full((20000,), float(ckpt["epoch"])))
    records = read_records(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, len(records) + 1))
    checkpoints.cleanup_temp(path.parent)
    assert not list(path.parent.glob("*.tmp"))


@pytest.mark.slow
def test_leftover_temp_files_are_cleaned_at_the_next_start(small_config, tmp_path):
    from tuitrain.session import Session

    ckpt_dir = tmp_path / "run" / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    (ckpt_dir / ".last.pt.4242.tmp").write_bytes(b"half a checkpoint")
    session = Session(small_config(epochs=1))
    session.prepare()
    session.open_run_dir()
    assert not list(ckpt_dir.glob("*.tmp"))
    session.run()
