"""tuitrain.fit for any supervised training: losses, metrics, batch shapes, schedules, errors."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import tuitrain
from tuitrain.errors import UsageError
from tuitrain.rundir import read_records
from tuitrain.task import TargetError


def _regression(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=gen)
    y = x @ torch.linspace(-1, 1, 8).unsqueeze(1) + 0.05 * torch.randn(n, 1, generator=gen)
    return x, y


def _fit(model, train, val=None, tmp_path=None, name="run", **kwargs):
    kwargs.setdefault("epochs", 3)
    kwargs.setdefault("lr", 0.02)
    kwargs.setdefault("batch_size", 32)
    return tuitrain.fit(model, train, val, headless=True, run_dir=str(tmp_path / name), device="cpu", **kwargs)


@pytest.mark.slow
def test_regression_with_mse_early_stopping_and_best_weights(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(8, 1)
    # A learning rate that overshoots after a few epochs: val_loss stops improving, early stopping fires.
    result = _fit(model, _regression(512, 0), _regression(128, 1), tmp_path, loss_fn=nn.MSELoss(),
                  optimizer=lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9), epochs=60,
                  early_stopping=3, metrics={"mae": lambda out, y: (out - y).abs().mean()})
    assert result.status == "done" and result.monitor == "val_loss"
    losses = [e["val_loss"] for e in result.history]
    assert losses[-1] < losses[0] / 10 and "val_acc" not in result.history[0] and "val_mae" in result.history[0]
    records = read_records(tmp_path / "run" / "metrics.jsonl")
    early = [r for r in records if r.get("event") == "early_stop"]
    assert len(early) == 1 and early[0]["best"] == min(losses) and result.epochs_done < 60
    assert result.best == min(losses) and result.best_epoch == 1 + losses.index(min(losses))
    best = torch.load(result.best_checkpoint, weights_only=True)["model"]
    assert torch.equal(model.weight, best["weight"]) and not model.training  # best weights, eval mode
    assert not any(r["type"] == "confusion" for r in records)


@pytest.mark.parametrize("targets", [torch.randn(64, 1), torch.randint(0, 2, (64, 1)), torch.rand(64)])
def test_default_loss_refuses_targets_it_cannot_mean(tmp_path, targets):
    with pytest.raises(ValueError, match="Pass loss_fn=") as info:
        _fit(nn.Linear(4, 1 if targets.dim() == 2 else 3), (torch.randn(64, 4), targets), tmp_path=tmp_path)
    assert isinstance(info.value, TargetError)
    expected = "targets of shape (N, 1)" if targets.dim() == 2 else "targets of shape (N,) float32"
    assert expected in str(info.value)
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.slow
def test_single_logit_binary_model_never_reports_accuracy_of_eleven(tmp_path):
    x = torch.randn(200, 4)
    y = (x[:, :1] > 0).float()
    result = _fit(nn.Linear(4, 1), (x, y), tmp_path=tmp_path, loss_fn=nn.BCEWithLogitsLoss(),
                  metrics={"acc": None} if False else {"bin_acc": lambda out, t: ((out > 0).float() == t).float().mean()})
    assert result.status == "done" and result.best_val_acc is None
    assert 0 <= result.history[-1]["val_bin_acc"] <= 1 and result.monitor == "val_loss"


class TupleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(16, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        features = torch.relu(self.body(x))
        return self.head(features), features


def _classes(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=gen)
    x = torch.randn(n, 16, generator=gen) * 0.3 + nn.functional.one_hot(y, 16).float() * 2
    return x, y


@pytest.mark.slow
def test_tuple_output_model_and_torchmetrics(tmp_path):
    import torchmetrics

    torch.manual_seed(0)
    result = _fit(TupleNet(), _classes(300), _classes(90, 1), tmp_path,
                  metrics={"f1": torchmetrics.F1Score(task="multiclass", num_classes=3, average="macro")})
    assert result.status == "done" and result.best_val_acc > 0.9
    assert 0.9 < result.history[-1]["val_f1"] <= 1.0 and result.monitor == "val_acc"
    preds = tuitrain.predict(result_model := TupleNet(), _classes(10)[0])
    assert preds.shape == (10, 3) and result_model is not None


class DictData(torch.utils.data.Dataset):
    def __init__(self, n: int, triple: bool = False):
        self.x, self.y = _classes(n)
        self.triple = triple

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        if self.triple:
            return self.x[i], self.y[i], {"id": i}
        return {"pixel_values": self.x[i], "label": self.y[i], "meta": i}


@pytest.mark.slow
@pytest.mark.parametrize("triple", [False, True])
def test_dict_and_triple_datasets(tmp_path, triple):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 3))
    result = _fit(net, DictData(300, triple), DictData(60, triple), tmp_path, epochs=2)
    assert result.status == "done" and result.best_val_acc > 0.8


class Bag(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 8)
        self.out = nn.Linear(8, 2)

    def forward(self, tokens):
        return self.out(self.emb(tokens).mean(dim=1))


@pytest.mark.slow
def test_embedding_model_on_integer_inputs_with_a_real_summary(tmp_path):
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 50, (200, 6), generator=gen)
    labels = (tokens < 25).sum(dim=1).gt(3).long()
    torch.manual_seed(0)
    result = _fit(Bag(), (tokens, labels), tmp_path=tmp_path, epochs=2, drop_last=True)
    assert result.status == "done"
    start = next(r for r in read_records(tmp_path / "run" / "metrics.jsonl") if r.get("event") == "start")
    assert start["summary"]["rows"][0][1] == "Embedding" and not start["summary_error"]


def test_user_exception_is_reraised_with_its_traceback_recorded(tmp_path):
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16, 3)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            if self.calls > 3:
                raise RuntimeError("boom in forward")
            return self.fc(x)

    with pytest.raises(RuntimeError, match="boom in forward") as info:
        _fit(Broken(), _classes(300), tmp_path=tmp_path)
    assert any(frame.name == "forward" for frame in __import__("traceback").extract_tb(info.value.__traceback__))
    records = read_records(tmp_path / "run" / "metrics.jsonl")
    error = next(r for r in records if r.get("event") == "error")
    assert "boom in forward" in error["traceback"] and "in forward" in error["traceback"]
    assert records[-1]["event"] == "end" and records[-1]["status"] == "failed"


@pytest.mark.slow
def test_failing_sample_names_its_index(tmp_path):
    class Bad(DictData):
        def __getitem__(self, i):
            if i == 7:
                raise KeyError("no such field")
            return super().__getitem__(i)

    with pytest.raises(KeyError) as info:
        _fit(nn.Linear(16, 3), Bad(100, triple=True), DictData(20, True), tmp_path=tmp_path, batch_size=10)
    assert "sample 7 of train_data" in "".join(getattr(info.value, "__notes__", []))


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["onecycle", "plateau",
                                       lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)])
def test_scheduler_resume_mid_epoch_is_bitwise_exact(tmp_path, scheduler):
    from tuitrain.commands import Save, Stop
    from tuitrain.config import TrainConfig
    from tuitrain.data import TensorData
    from tuitrain.engine import Engine
    from tuitrain.task import Task

    def engine(run_dir, resume="", epochs=3):
        torch.manual_seed(0)
        cfg = TrainConfig(dataset="toy", model="custom:TupleNet", epochs=epochs, batch_size=30, lr=0.01,
                          device="cpu", run_dir=str(tmp_path / run_dir), resume=resume, log_every=3,
                          scheduler=scheduler if isinstance(scheduler, str) else "custom:StepLR", accumulate=2,
                          grad_clip=1.0)
        eng = Engine(cfg, model=TupleNet(), dataset=TensorData("toy", _classes(300), _classes(60, 1), []),
                     task=Task(scheduler=None if isinstance(scheduler, str) else scheduler))
        eng.setup()
        return eng

    full = engine("a")
    assert full.run().status == "done"
    part = engine("b")
    stop_at = {"n": 0}
    original = part.poll_commands

    def poll():  # stop in the middle of epoch 2, at an optimizer-step boundary
        if part.state.epoch == 1 and part.state.batch == 4 and not stop_at["n"]:
            stop_at["n"] = 1
            part.commands.put(Save("mid.pt"))
            part.commands.put(Stop())
        original()

    part.poll_commands = poll
    assert part.run().status == "stopped"
    rest = engine("c", resume=str(tmp_path / "b" / "checkpoints" / "mid.pt"))
    assert rest.state.batch == 4 and rest.run().status == "done"
    a, c = full.model.state_dict(), rest.model.state_dict()
    assert all(torch.equal(a[k], c[k]) for k in a)
    assert full.lr == rest.lr


def test_manual_lr_change_rescales_the_schedule(tmp_path):
    from tuitrain.config import TrainConfig
    from tuitrain.data import TensorData
    from tuitrain.engine import Engine

    engines = []
    for name in ("changed", "reference"):
        cfg = TrainConfig(dataset="toy", model="custom", epochs=2, batch_size=30, lr=0.01, device="cpu",
                          run_dir=str(tmp_path / name), scheduler="cosine")
        eng = Engine(cfg, model=TupleNet(), dataset=TensorData("toy", _classes(300), _classes(60, 1), []))
        eng.setup()
        engines.append(eng)
    changed, reference = engines
    for step in range(12):
        if step == 5:
            changed.set_lr(changed.lr * 2)
        for eng in engines:
            eng.optimizer.step()
            eng.scheduler.step()
        if step >= 5:  # cosine goes on from the new value: twice the untouched schedule
            assert changed.lr == pytest.approx(2 * reference.lr, rel=1e-9)


def test_predict_keeps_data_order(tmp_path):
    model = nn.Linear(3, 1)
    x = torch.randn(103, 3)
    out = tuitrain.predict(model, torch.utils.data.TensorDataset(x, torch.zeros(103)), batch_size=10)
    assert torch.allclose(out, model(x).detach()) and out.shape == (103, 1)
    assert torch.allclose(tuitrain.predict(model, x.numpy(), batch_size=7), out)


def test_bf16_mixed_on_cpu_trains(tmp_path):
    torch.manual_seed(0)
    result = _fit(TupleNet(), _classes(300), _classes(60, 1), tmp_path, precision="bf16-mixed", epochs=2)
    assert result.status == "done" and result.best_val_acc > 0.8
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["precision"] == "bf16-mixed"


@pytest.mark.slow
def test_dataloader_and_numpy_arrays_and_collate(tmp_path):
    x, y = _classes(200)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=25, drop_last=True)
    torch.manual_seed(0)
    result = _fit(nn.Linear(16, 3), loader, (x[:50].numpy(), y[:50].numpy()), tmp_path, epochs=1)
    assert result.status == "done" and result.history[0]["step"] == 8  # 200 / 25 with the loader's size


@pytest.mark.slow
def test_fit_in_a_loop_never_collides(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dirs = []
    for _ in range(3):
        torch.manual_seed(0)
        dirs.append(tuitrain.fit(nn.Linear(16, 3), _classes(60), epochs=1, headless=True, device="cpu").run_dir)
    assert len(set(dirs)) == 3


@pytest.mark.slow
def test_fit_twice_gives_the_same_result(tmp_path):
    results = []
    for name in ("a", "b"):
        torch.manual_seed(0)
        results.append(_fit(TupleNet(), _classes(300), tmp_path=tmp_path, name=name, epochs=2).history[-1]["val_loss"])
    assert results[0] == results[1]


def test_model_file_factory_arguments_and_sibling_import(tmp_path):
    from tuitrain.models import build_model

    (tmp_path / "blocks.py").write_text("import torch.nn as nn\nclass Block(nn.Sequential):\n"
                                        "    def __init__(self, n):\n        super().__init__(nn.Flatten(), nn.Linear(784, n))\n")
    (tmp_path / "net.py").write_text(
        "import torch.nn as nn\nfrom blocks import Block\n"
        "class Net(nn.Module):\n    def __init__(self, num_classes, width=32):\n        super().__init__()\n"
        "        self.body = Block(width)\n        self.out = nn.Linear(width, num_classes)\n"
        "    def forward(self, x):\n        return self.out(self.body(x))\n"
        "def make(in_channels, hidden=16):\n    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 784, hidden),"
        " nn.Linear(hidden, 10))\n")
    net = build_model(f"{tmp_path / 'net.py'}:Net", (1, 28, 28), 7, {"width": 5})
    assert net.out.out_features == 7 and net.body[1].out_features == 5
    made = build_model(f"{tmp_path / 'net.py'}:make", (1, 28, 28), 10, {"hidden": 4})
    assert made[1].out_features == 4


@pytest.mark.slow
def test_regression_example_writes_predictions(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / "regression.py"
    spec = importlib.util.spec_from_file_location("regression_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(epochs=4, headless=True, run_dir=str(tmp_path / "run"))
    assert result.status == "done" and result.monitor == "val_loss" and result.history[-1]["val_loss"] < 1.0
    lines = (tmp_path / "run" / "predictions.csv").read_text().splitlines()  # in the run, not the current folder
    assert lines[0] == "prediction,target" and len(lines) == 501
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    assert {"val/loss", "val/mae", "epoch/train_loss"} <= set(events.Tags()["scalars"])
    assert len(events.Scalars("val/mae")) == 4


def test_weights_overflowing_on_an_epochs_last_step_fail_the_run(tmp_path):
    # One step an epoch with an absurd LR: the gradients were finite, the update was not.
    x, y = _classes(40)
    torch.manual_seed(0)
    result = tuitrain.fit(nn.Linear(16, 3), (x, y), (x[:10], y[:10]), optimizer="sgd", lr=1e308, batch_size=40,
                          epochs=3, headless=True, run_dir=str(tmp_path / "run"), device="cpu")
    assert result.status == "failed" and "non-finite" in result.message and result.exit_code == 1
    records = read_records(tmp_path / "run" / "metrics.jsonl")
    assert any(r.get("event") == "nonfinite" for r in records)
    assert not (tmp_path / "run" / "checkpoints" / "best.pt").exists()  # never a diverged best model


@pytest.mark.slow
def test_compile_trains_and_saves_the_plain_models_weights(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    keys = set(model.state_dict())
    result = _fit(model, _regression(256, 0), _regression(64, 1), tmp_path, loss_fn=nn.functional.mse_loss,
                  compile=True, epochs=4)
    assert result.status == "done", result.message
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"] / 2
    saved = torch.load(result.last_checkpoint, weights_only=True)["model"]
    assert set(saved) == keys  # the compiled wrapper's `_orig_mod.` names never reach a checkpoint
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["compile"] is True


def test_lbfgs_gets_a_closure_and_trains(tmp_path):
    """An optimizer whose step needs a closure (LBFGS evaluates the loss several times a step):
    before, ``LBFGS.step() missing 1 required positional argument: 'closure'`` at step 1."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    calls = []
    loss = nn.MSELoss()
    result = _fit(model, _regression(256, 0), _regression(64, 1), tmp_path, epochs=2, batch_size=256,
                  loss_fn=lambda out, y: calls.append(1) or loss(out, y),
                  optimizer=lambda params: torch.optim.LBFGS(params, lr=0.5, max_iter=10))
    assert result.status == "done" and result.epochs_done == 2
    assert len(calls) > 2 * 2  # a forward per evaluation, beyond one per step (and validation)
    assert result.history[-1]["val_loss"] < 0.05


def test_lbfgs_cannot_accumulate(tmp_path):
    with pytest.raises(UsageError, match="closure"):
        _fit(nn.Linear(8, 1), _regression(64, 0), tmp_path=tmp_path, loss_fn=nn.MSELoss(), accumulate=2,
             optimizer=lambda params: torch.optim.LBFGS(params))
    assert not (tmp_path / "run").exists()


def test_a_one_sample_last_batch_under_batchnorm_is_dropped_and_said(tmp_path, capsys):
    """129 samples in batches of 64 leave one: BatchNorm1d cannot train on it (torch's error came at
    the end of epoch 1). Known before training: the batch is left out, with a notice."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    x, y = torch.randn(129, 8), torch.randint(0, 3, (129,))
    result = _fit(model, (x, y), (x[:32], y[:32]), tmp_path, epochs=2, batch_size=64)
    assert result.status == "done" and result.step == 4  # 2 batches an epoch, not 3
    records = read_records(tmp_path / "run" / "metrics.jsonl")
    notices = [r for r in records if r.get("event") == "notice"]
    assert len(notices) == 1 and "BatchNorm" in notices[0]["reason"] and "drop_last=True" in notices[0]["reason"]
    assert "drop_last=True" in capsys.readouterr().err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["drop_last"] is True


def test_three_element_samples_for_a_two_input_model_name_batch_fn(tmp_path):
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 2), nn.Linear(4, 2)

        def forward(self, x1, x2):
            return self.a(x1) + self.b(x2)

    data = (torch.randn(64, 4), torch.randn(64, 4), torch.randint(0, 2, (64,)))
    with pytest.raises(UsageError, match=r"batch_fn=.*\(\(b\[0\], b\[1\]\), b\[2\]\)") as info:
        _fit(TwoInputs(), data, tmp_path=tmp_path)
    assert "missing 1 required positional argument: 'x2'" in str(info.value)
    assert not (tmp_path / "run").exists()
    result = _fit(TwoInputs(), data, tmp_path=tmp_path, epochs=1, batch_fn=lambda b: ((b[0], b[1]), b[2]))
    assert result.status == "done"


def test_a_validation_loader_keeps_its_batch_size_and_collate_fn(tmp_path):
    """Before: val_data's DataLoader was taken apart and only its dataset used."""
    seen = []

    def collate(samples):
        seen.append(len(samples))
        x, y = zip(*samples, strict=True)
        return torch.stack(x) * 0 + torch.stack(x), torch.stack(y)

    x, y = torch.randn(160, 4), torch.randint(0, 3, (160,))
    val = torch.utils.data.DataLoader(list(zip(x[:70], y[:70], strict=True)), batch_size=25, collate_fn=collate)
    train = torch.utils.data.DataLoader(list(zip(x, y, strict=True)), batch_size=32)
    result = _fit(nn.Linear(4, 3), train, val, tmp_path, epochs=1)
    assert result.status == "done"
    assert seen[:3] == [25, 25, 20]  # validation in the loader's own batches, through its collate_fn
    assert json.loads((tmp_path / "run" / "config.json").read_text())["val_batch_size"] == 25


def test_shuffle_false_keeps_the_data_order(tmp_path):
    """Stateful sequence training: batches in order, every epoch (the default shuffles, seeded)."""
    order = []

    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(1, 2)

        def forward(self, x):
            if self.training:
                order.extend(x[:, 0].long().tolist())
            return self.fc(x)

    x = torch.arange(64).float().unsqueeze(1)
    y = torch.randint(0, 2, (64,))
    _fit(Recorder(), (x, y), (x[:8], y[:8]), tmp_path, name="a", epochs=2, batch_size=16, shuffle=False)
    assert order == list(range(64)) * 2
    order.clear()
    _fit(Recorder(), (x, y), (x[:8], y[:8]), tmp_path, name="b", epochs=1, batch_size=16)
    assert sorted(order) == list(range(64)) and order != list(range(64))
    assert json.loads((tmp_path / "a" / "config.json").read_text())["shuffle"] is False
