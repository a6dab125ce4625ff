"""On a CUDA GPU (skipped without one): device switching mid-epoch, the CLI on cuda with bf16 and
torch.compile, the NVML sampler behind the system panel, and --cuda-graphs (graphstep.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.helpers import ROOT, train_to_the_end
from tuitrain.commands import Pause, Resume, SetDevice, Stop

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


def _cli_on_cuda(tmp_path, *flags: str) -> list[dict]:
    """The records of `tuitrain synthetic --headless --device cuda FLAGS` for 2 epochs (exit 0 asserted)."""
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "tuitrain", "synthetic", "--headless", "--device", "cuda", *flags,
                           "--epochs", "2", "--limit", "2000", "--run-dir", str(run_dir),
                           "--data-dir", str(tmp_path / "data")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_cli_on_cuda_with_bf16_and_compile(tmp_path):
    run_dir = tmp_path / "run"
    records = _cli_on_cuda(tmp_path, "--precision", "bf16-mixed", "--compile")
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


# ----------------------------------------------------------------- --cuda-graphs: the step as one CUDA graph
def _notices(records: list[dict]) -> list[str]:
    return [r["reason"] for r in records if r.get("type") == "event" and r["event"] == "notice"]


@pytest.mark.parametrize("changes", [
    pytest.param({}, id="fused-adam"),
    pytest.param({"precision": "bf16-mixed"}, id="bf16"),
    pytest.param({"optimizer": "rmsprop", "scheduler": "cosine", "scheduler_interval": "step"},
                 id="capturable-rmsprop-per-step-schedule"),
    pytest.param({"optimizer": "sgd", "grad_clip": 1.0, "model": "cnn-bn"}, id="fused-sgd-clip-batchnorm"),
])
def test_cuda_graphs_train_as_the_usual_path_does(small_config, changes):
    # 1000 samples at 64: 15 full batches and an odd one of 40 (run as usual) an epoch.
    config = small_config(**{"epochs": 2, "limit": 1000, "batch_size": 64, "device": "cuda", **changes})
    usual, usual_records = train_to_the_end(config)
    graphs, graph_records = train_to_the_end(config.replace(cuda_graphs=True, run_dir=config.run_dir + "-graphs"))
    ws = graphs.whole_step
    assert ws is not None and ws.captures == 1 and not ws.failed
    assert ws.replays == 2 * 15 - 3  # every full batch after the 3 warm-up steps
    assert any("replays as one CUDA graph from step 4" in n for n in _notices(graph_records))
    tolerance = 5e-3 if changes.get("precision") else 1e-3  # the same math; GPU reductions are not ordered
    for (name, a), b in zip(usual.model.state_dict().items(), graphs.model.state_dict().values(), strict=True):
        if a.is_floating_point():
            assert torch.allclose(a, b, atol=tolerance, rtol=tolerance), (name, (a - b).abs().max())
    last = [r for r in usual_records if r.get("type") == "epoch"][-1]
    found = [r for r in graph_records if r.get("type") == "epoch"][-1]
    assert abs(last["val_acc"] - found["val_acc"]) < 0.05 and abs(last["train_loss"] - found["train_loss"]) < 0.05
    # The schedule's last LR is what the graph reads (a float32 copy in device memory).
    assert ws.lrs[0].item() == pytest.approx(graphs.optimizer.param_groups[0]["lr"], rel=1e-6)


def _params(engine) -> list[torch.Tensor]:
    return [p.detach().clone() for p in engine.model.parameters()]


def _moved(before: list[torch.Tensor], engine) -> float:
    return max((a - b).abs().max().item() for a, b in zip(before, engine.model.parameters(), strict=True))


def test_an_lr_set_while_replaying_reaches_the_graph(small_config):
    from tests.helpers import EngineRun
    from tuitrain.commands import SetLR

    run = EngineRun(small_config(epochs=100, limit=2000, batch_size=50, device="cuda", cuda_graphs=True)).start()
    run.wait_for(lambda r: r.get("type") == "step" and r["step"] >= 15)  # replaying since step 4
    run.send(Pause(id=1))
    run.wait_event("pause", 1)
    run.send(SetLR(1e-12, id=2))
    assert run.wait_event("lr", 2)["ok"] is True
    before, at = _params(run.engine), run.engine.state.step
    run.send(Resume(id=3))
    run.wait_for(lambda r: r.get("type") == "step" and r["step"] >= at + 20)
    run.send(Pause(id=4))
    run.wait_event("pause", 4)
    assert _moved(before, run.engine) < 1e-7  # at 1e-3 (baked into the graph) Adam moves ~1e-3 a step
    run.send(SetLR(1e-2, id=5))
    assert run.wait_event("lr", 5)["ok"] is True
    before, at = _params(run.engine), run.engine.state.step
    run.send(Resume(id=6))
    run.wait_for(lambda r: r.get("type") == "step" and r["step"] >= at + 20)
    run.send(Pause(id=7))
    run.wait_event("pause", 7)
    assert _moved(before, run.engine) > 1e-3
    assert run.engine.whole_step.captures == 1  # the same graph, another LR
    run.send(Stop(id=8))
    assert run.join(60).status == "stopped"


def test_a_load_and_device_switches_capture_again(small_config, tmp_path):
    from tests.helpers import EngineRun
    from tuitrain.commands import Load, Save

    run = EngineRun(small_config(epochs=100, limit=2000, batch_size=50, device="cuda", cuda_graphs=True)).start()
    run.wait_for(lambda r: r.get("type") == "step" and r["step"] >= 10)
    run.send(Save("mid.pt", id=1))
    saved = run.wait_event("save", 1)
    assert saved["ok"] is True
    run.send(Load(saved["path"], id=2))
    assert run.wait_event("load", 2)["ok"] is True
    at = run.engine.state.step
    run.wait_for(lambda r: r.get("type") == "step" and r["step"] >= at + 10)
    assert run.engine.whole_step.captures == 2  # new optimizer tensors: captured anew
    run.send(SetDevice("cpu", id=3))
    assert run.wait_event("device", 3)["ok"] is True
    assert run.engine.whole_step is None
    at = run.engine.state.step
    run.wait_for(lambda r: r.get("type") == "step" and r["step"] >= at + 10)  # on the CPU, as usual
    run.send(SetDevice("cuda", id=4))
    assert run.wait_event("device", 4)["ok"] is True
    at = run.engine.state.step
    run.wait_for(lambda r: r.get("type") == "step" and r["step"] >= at + 10)
    ws = run.engine.whole_step
    assert ws is not None and ws.captures == 1 and ws.replays > 0
    run.send(Stop(id=5))
    assert run.join(60).status == "stopped"
    assert all(torch.isfinite(p).all() for p in run.engine.model.parameters())
    notices = _notices(run.records)
    assert any("steps on cpu run without CUDA graphs" in n for n in notices)
    assert not any("could not be captured" in n for n in notices)
    assert torch.load(run.engine.checkpoint_dir / "last.pt", weights_only=True)["step"] == run.engine.state.step


def test_divergence_inside_the_graph_is_caught_and_the_weights_stay_finite(small_config):
    from tests.helpers import EngineRun
    from tuitrain.commands import SetLR

    run = EngineRun(small_config(epochs=100, limit=2000, batch_size=50, device="cuda", cuda_graphs=True)).start()
    run.wait_for(lambda r: r.get("type") == "step" and r["step"] >= 15)
    run.send(SetLR(1e30, id=1))  # read by the graph from device memory: the next replays diverge
    result = run.join(60)
    assert result.status == "failed" and "non-finite" in result.message
    assert all(torch.isfinite(p).all() for p in run.engine.model.parameters())
    last = torch.load(run.engine.checkpoint_dir / "last.pt", weights_only=True)["model"]
    assert all(torch.isfinite(t).all() for t in last.values())


def test_a_model_that_cannot_be_captured_trains_without_graphs(tmp_path):
    import tuitrain

    class ReadsBack(torch.nn.Module):
        """Reads a value back to Python each forward: legal eagerly, forbidden while capturing."""

        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(20, 3)

        def forward(self, x):
            if x.abs().max().item() > 1e9:
                x = x.clamp(-1e9, 1e9)
            return self.fc(x)

    x, y = torch.randn(400, 20), torch.randint(0, 3, (400,))
    result = tuitrain.fit(ReadsBack(), (x, y), epochs=2, batch_size=50, device="cuda", cuda_graphs=True,
                          headless=True, run_dir=str(tmp_path / "run"))
    assert result.status == "done"
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("could not be captured as a CUDA graph" in n for n in _notices(records))
    assert len([r for r in records if r.get("type") == "epoch"]) == 2


def test_a_resumed_graph_run_ends_close_to_an_uninterrupted_one(small_config, tmp_path):
    from tests.helpers import EngineRun
    from tuitrain.engine import Engine

    config = small_config(epochs=2, limit=2000, batch_size=50, device="cuda", cuda_graphs=True)
    whole, _ = train_to_the_end(config.replace(run_dir=str(tmp_path / "whole")))
    cut = EngineRun(config.replace(run_dir=str(tmp_path / "cut"))).start()
    cut.wait_for(lambda r: r.get("type") == "step" and r["step"] >= 50)  # mid-epoch 2
    cut.send(Stop(id=1))
    assert cut.join(60).status == "stopped"
    again = Engine(config.replace(run_dir=str(tmp_path / "cut"), resume=str(tmp_path / "cut/checkpoints/last.pt")))
    again.setup()
    assert again.run().status == "done"
    for (name, a), b in zip(whole.model.state_dict().items(), again.model.state_dict().values(), strict=True):
        if a.is_floating_point():
            assert torch.allclose(a, b, atol=1e-3, rtol=1e-3), (name, (a - b).abs().max())


def test_cli_with_cuda_graphs_and_bf16(tmp_path):
    run_dir = tmp_path / "run"
    records = _cli_on_cuda(tmp_path, "--cuda-graphs", "--precision", "bf16-mixed")
    assert any("replays as one CUDA graph" in n for n in _notices(records))
    epochs = [r for r in records if r.get("type") == "epoch"]
    assert len(epochs) == 2 and epochs[-1]["val_acc"] > 0.5
    assert json.loads((run_dir / "config.json").read_text())["cuda_graphs"] is True
