"""--cuda-graphs without a GPU: the settings it refuses (before anything loads or is written), the
step it captures run as written on the CPU (the same weights and records, bitwise, as the usual
path), and checkpoints of a capturable optimizer loading on the CPU. On a GPU, tests/test_gpu.py
captures and replays it."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from tests.helpers import ROOT, train_to_the_end
from tuitrain.config import validate
from tuitrain.errors import UsageError


def _records_without_time(records: list[dict]) -> list[dict]:
    clock = ("time", "samples_per_s", "train_seconds", "paused_seconds")
    return [{k: v for k, v in r.items() if k not in clock} for r in records if r.get("type") in ("step", "hist", "epoch")]


@pytest.mark.parametrize("changes", [
    pytest.param({}, id="fused-adam-odd-last-batch"),
    pytest.param({"batch_size": 50, "optimizer": "sgd", "grad_clip": 0.5}, id="fused-sgd-clip-even"),
    pytest.param({"optimizer": "rmsprop", "scheduler": "onecycle", "model": "cnn-bn"}, id="rmsprop-onecycle-bn"),
])
def test_the_captured_step_run_as_written_trains_bitwise_as_the_usual_path(small_config, changes):
    # The graph replays what WholeStep._step records: the same calls as the usual path, with the batch
    # gathered by an index buffer and gradients kept (zeroed in place) instead of set to None.
    config = small_config(**{"batch_size": 64, "epochs": 2, "limit": 600, "log_every": 3, "hist_every": 4, **changes})
    usual, usual_records = train_to_the_end(config, whole_step=False)
    stepped, stepped_records = train_to_the_end(config.replace(run_dir=config.run_dir + "-ws"), whole_step=True)
    for (name, a), b in zip(usual.model.state_dict().items(), stepped.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert _records_without_time(usual_records) == _records_without_time(stepped_records)
    assert any(r.get("type") == "hist" and r["layers"] for r in stepped_records)  # gradients were there to draw


@pytest.mark.parametrize(("changes", "says"), [
    ({"device": "cpu"}, "needs a CUDA device, not --device cpu"),
    ({"device": "mps"}, "needs a CUDA device, not --device mps"),
    ({"device": "cuda", "compile": True}, "--cuda-graphs and --compile do not go together"),
    ({"device": "cuda", "accumulate": 2}, "cannot accumulate batches"),
    ({"device": "cuda", "precision": "16-mixed"}, "use bf16-mixed"),
    ({"device": "cuda", "scheduler": "onecycle"}, "cycles the optimizer's momentum every step"),
])
def test_settings_it_cannot_go_with_are_refused_before_anything_loads(small_config, changes, says):
    with pytest.raises(UsageError, match=says.replace("-", r"\-").replace("+", r"\+")):
        validate(small_config(cuda_graphs=True, **changes))
    validate(small_config(**changes))  # without --cuda-graphs, each is fine


def _engine_like(**changes):
    """What graphstep.refusal reads of an engine, for a run that can be captured unless changed."""
    from tuitrain.config import TrainConfig

    class Resident:
        def gather(self, idx):
            return idx

        def train_device(self):
            return torch.device("cuda", 0)

    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], fused=True, capturable=True)
    base = dict(config=TrainConfig(dataset="synthetic", cuda_graphs=True, device="cuda"), optimizer=opt,
                device=torch.device("cuda", 0), dist=None, closure=False, data=Resident())
    return SimpleNamespace(**{**base, **changes})


@pytest.mark.parametrize(("changes", "says"), [
    ({"device": torch.device("cpu")}, "needs a CUDA device; this run is on cpu"),
    ({"dist": object()}, "is for one process"),
    ({"closure": True, "optimizer": torch.optim.LBFGS([torch.zeros(1, requires_grad=True)])},
     "cannot capture LBFGS: its step evaluates the loss several times"),
    ({"optimizer": torch.optim.RMSprop([torch.zeros(1, requires_grad=True)])},
     "RMSprop was built without capturable=True"),
    ({"optimizer": torch.optim.Adam([torch.zeros(1, requires_grad=True)], fused=True)},
     "Adam was built without capturable=True"),  # fused is not enough: Adam's step refuses a capture
    ({"optimizer": torch.optim.SGD([torch.zeros(1, requires_grad=True)])}, "SGD was built without fused=True"),
    ({"data": SimpleNamespace()}, "needs the training data on the GPU"),
    ({"data": SimpleNamespace(gather=lambda idx: idx, train_device=lambda: torch.device("cpu"))},
     "tensors of under a GiB"),
])
def test_what_only_a_loaded_run_shows_is_refused_in_one_line(changes, says):
    from tuitrain.graphstep import refusal

    assert refusal(_engine_like()) is None
    assert says in refusal(_engine_like(**changes))


def test_named_optimizers_are_built_so_a_graph_can_capture_them():
    from tuitrain.config import OPTIMIZERS
    from tuitrain.graphstep import capturable
    from tuitrain.task import Task

    for name in OPTIMIZERS:
        opt = Task().build_optimizer(name, [torch.nn.Parameter(torch.zeros(2))], 0.1, 0.0, capturable=True)
        assert capturable(opt) is (name != "adagrad"), name  # Adagrad has no such switch: refused
    plain = Task().build_optimizer("rmsprop", [torch.nn.Parameter(torch.zeros(2))], 0.1, 0.0)
    assert not plain.defaults.get("capturable")  # only where graphs are asked for


@pytest.mark.slow
def test_the_cli_refuses_cuda_graphs_on_the_cpu_in_one_line_and_writes_nothing(tmp_path):
    for extra in (["--device", "cpu"], ["--device", "auto"] if not torch.cuda.is_available() else ["--compile"]):
        run_dir = tmp_path / f"run{extra[-1]}"
        done = subprocess.run([sys.executable, "-m", "tuitrain", "synthetic", "--headless", "--cuda-graphs", *extra,
                               "--limit", "200", "--run-dir", str(run_dir), "--data-dir", str(tmp_path / "data")],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "--cuda-graphs" in lines[0] and "Traceback" not in done.stderr, done.stderr
        assert "loading" not in done.stderr  # refused before the data loads
        assert not run_dir.exists()


def test_a_checkpoint_of_a_capturable_optimizer_resumes_on_the_cpu(small_config, tmp_path):
    # A checkpoint saved by a --cuda-graphs run holds capturable=True in its optimizer groups (and the
    # step counts as device tensors): loaded as it is, a CPU step fails ("params and state_steps must
    # be on supported devices"). The run's own setting wins.
    from tuitrain.checkpoints import save_checkpoint
    from tuitrain.engine import Engine

    config = small_config(optimizer="rmsprop", epochs=1, limit=200)
    first, _ = train_to_the_end(config, whole_step=False)
    payload = torch.load(first.checkpoint_dir / "last.pt", weights_only=True)
    for group in payload["optimizer"]["param_groups"]:
        group["capturable"] = True
    path = tmp_path / "from-a-gpu.pt"
    save_checkpoint(path, payload)
    engine = Engine(config.replace(epochs=2, resume=str(path), run_dir=str(tmp_path / "again")))
    engine.setup()
    assert not any(g["capturable"] for g in engine.optimizer.param_groups)
    result = engine.run()
    assert result.status == "done", result.message
    assert result.epochs_done == 2


class Alternating(torch.nn.Module):
    """Its second layer gets a gradient every other training step: None the other times."""

    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(784, 10), torch.nn.Linear(10, 10)
        self.calls = 0

    def forward(self, x):
        out = self.a(x.flatten(1))
        if self.training:
            self.calls += 1
            if self.calls % 2:
                out = self.b(out)
        return out


def test_a_parameter_a_batch_does_not_reach_is_not_updated_as_on_the_usual_path(small_config):
    # Gradients zeroed in place instead of None: AdamW's decay and moments moved the unused layer.
    from tuitrain.engine import Engine
    from tuitrain.graphstep import WholeStep

    config = small_config(optimizer="adamw", weight_decay=0.1, epochs=1, limit=500, batch_size=64)
    weights = []
    for graph_step in (False, True):
        torch.manual_seed(0)
        engine = Engine(config.replace(run_dir=f"{config.run_dir}-{graph_step}"), model=Alternating())
        engine.setup()
        if graph_step:
            engine.whole_step = WholeStep(engine, capture=False)
        assert engine.run().status == "done"
        weights.append(engine.model.state_dict())
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), name


class FailingCapture:
    """torch.cuda.graph where capturing fails (a model that reads a value back, say)."""

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        raise RuntimeError("operation not permitted when stream is capturing")

    def __exit__(self, *exc):
        return False


def test_a_failed_capture_trains_that_batch_once_and_goes_on_as_usual(small_config, monkeypatch):
    # Before: the failed batch was stepped by the fallback and again by optimizer_step (17 steps for 16).
    from tuitrain import graphstep
    from tuitrain.engine import Engine

    monkeypatch.setattr(graphstep, "WARMUP_STEPS", 0)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: object())
    monkeypatch.setattr(torch.cuda, "graph", FailingCapture)
    config = small_config(epochs=1, limit=1000, batch_size=50)
    usual, _ = train_to_the_end(config, whole_step=False)
    records: list[dict] = []
    engine = Engine(config.replace(run_dir=config.run_dir + "-failed"), records.append)
    engine.setup()
    ws = graphstep.WholeStep(engine, capture=False)
    ws.capture = True  # capture on the CPU: the fake graph above refuses at once
    engine.whole_step = ws
    steps = []
    step = engine.optimizer.step
    monkeypatch.setattr(engine.optimizer, "step", lambda *a, **k: steps.append(1) or step(*a, **k))
    assert engine.run().status == "done"
    assert len(steps) == 20 and engine.whole_step is None
    notices = [r["reason"] for r in records if r.get("type") == "event" and r["event"] == "notice"]
    assert notices == ["--cuda-graphs: the training step could not be captured as a CUDA graph (RuntimeError: "
                       "operation not permitted when stream is capturing); training goes on without CUDA graphs"]
    for (name, a), b in zip(usual.model.state_dict().items(), engine.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_a_hyperparameter_changed_after_the_capture_ends_the_graphs(small_config):
    from tuitrain.engine import Engine
    from tuitrain.graphstep import WholeStep

    engine = Engine(small_config(epochs=1, limit=200))
    engine.setup()
    ws = WholeStep(engine, capture=False)
    ws.hyper = ws._constants()
    ws._check_constants()
    assert not ws.failed
    engine.optimizer.param_groups[0]["betas"] = (0.85, 0.999)  # what OneCycleLR's cycled momentum does
    ws._check_constants()
    assert "betas changed after the capture" in ws.failed
