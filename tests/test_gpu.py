"""On a CUDA GPU (skipped without one): device switching mid-epoch, the CLI on cuda with bf16 and
torch.compile, and the NVML sampler behind the system panel."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.helpers import ROOT
from tuitrain.commands import Pause, Resume, SetDevice

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_device_switch_cpu_to_cuda_and_back_mid_epoch(small_config):
    from tests.helpers import EngineRun

    # 20 steps an epoch; each switch lands mid-epoch (the epoch's order stays on the old device).
    run = EngineRun(small_config(epochs=3, limit=1000, log_every=2, hist_every=5)).start()
    run.wait_for(lambda r: r.get("type") == "step" and r["step"] >= 4)
    run.send(Pause())
    run.send(SetDevice("cuda", id=1))
    moved = run.wait_event("device", 1)
    assert moved["ok"] is True and moved["new"] == "cuda:0", moved
    run.send(Resume())
    run.wait_for(lambda r: r.get("type") == "step" and r["step"] >= 30)
    run.send(SetDevice("cpu", id=2))
    back = run.wait_event("device", 2)
    assert back["ok"] is True and back["new"] == "cpu", back
    result = run.join(120)
    assert result.status == "done", result.message
    assert all(p.device.type == "cpu" for p in run.engine.model.parameters())
    epochs = [r for r in run.records if r.get("type") == "epoch"]
    assert len(epochs) == 3 and all(r["val_loss"] < 10 for r in epochs)
    assert epochs[-1]["val_acc"] > 0.5  # it learned across both devices


def test_cli_on_cuda_with_bf16_and_compile(tmp_path):
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "tuitrain", "synthetic", "--headless", "--device", "cuda",
                           "--precision", "bf16-mixed", "--compile", "--epochs", "2", "--limit", "2000",
                           "--run-dir", str(run_dir), "--data-dir", str(tmp_path / "data")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    start = next(r for r in records if r.get("event") == "start")
    assert start["device"] == "cuda:0"
    epochs = [r for r in records if r.get("type") == "epoch"]
    assert len(epochs) == 2 and epochs[-1]["val_acc"] > 0.5
    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert not any(k.startswith("_orig_mod") for k in ckpt["model"])
    assert all(t.device.type == "cpu" for t in ckpt["model"].values())  # checkpoints load anywhere


def test_nvml_sampler_sees_the_gpu():
    from tuitrain.system import SystemSampler

    x = torch.ones(1 << 20, device="cuda")  # some memory in use by this process
    sample = SystemSampler().sample()
    assert sample.gpus, "NVML found no GPU although CUDA did"
    gpu = sample.gpus[0]
    assert gpu.name and gpu.mem_total_mb > 0 and 0 < gpu.mem_used_mb <= gpu.mem_total_mb
    assert 0 <= gpu.util_percent <= 100
    del x


async def test_dashboard_on_cuda_shows_the_gpu_and_moves_to_cpu(small_config):
    from tests.helpers import until
    from tuitrain.app import TuiTrainApp
    from tuitrain.backends import LiveBackend
    from tuitrain.session import Session
    from tuitrain.widgets.system import SystemPanel

    session = Session(small_config(epochs=200, limit=2000, device="cuda"))
    session.prepare()
    session.open_run_dir()
    engine = session.engine
    app = TuiTrainApp(LiveBackend(session))
    async with app.run_test(size=(160, 48)) as pilot:
        panel = app.dashboard.query_one(SystemPanel)  # all panels show at 160 columns
        await until(pilot, lambda: engine.state.step >= 20, "training on the GPU")
        await until(pilot, lambda: "GPU0" in str(panel.render()), "the GPU in the system panel")
        await pilot.press("d")
        await pilot.press("enter")  # the only other device: cpu
        await until(pilot, lambda: engine.device.type == "cpu", "the move to the CPU")
        moved = engine.state.step
        await until(pilot, lambda: engine.state.step > moved + 10, "training on the CPU")
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running, "the app to exit")
    assert session.result.status == "stopped"
