"""Checkpoints: atomic, checksummed, read with weights_only=True, with one-line errors."""

from __future__ import annotations

import os

import pytest
import torch

from tuitrain import checkpoints
from tuitrain.errors import CheckpointError
from tuitrain.models import build_model


def _payload(model=None):
    model = model or build_model("cnn", (1, 28, 28))
    return {"model": model.state_dict(), "optimizer": {}, "epoch": 1, "step": 10, "config": {"lr": 0.001},
            "rng": checkpoints.rng_state()}


def test_round_trip_and_plain_torch_load(tmp_path):
    path = tmp_path / "ck.pt"
    checkpoints.save_checkpoint(path, _payload())
    plain = torch.load(path, weights_only=True)
    assert set(plain) >= {"model", "optimizer", "epoch", "step", "config"}
    assert checkpoints.load_checkpoint(path)["step"] == 10
    assert not list(tmp_path.glob("*.tmp"))


def test_rng_state_round_trip():
    import random

    state = checkpoints.rng_state()
    a = (torch.rand(3), random.random())
    checkpoints.set_rng_state(state)
    b = (torch.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and a[1] == b[1]


def _write(path, kind):
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("hello, I am not a checkpoint\n")
    elif kind == "truncated":
        checkpoints.save_checkpoint(path, _payload())
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        os.remove(f"{path}.sha256")
    elif kind == "not-a-dict":
        torch.save([1, 2, 3], path)
    elif kind == "foreign-dict":
        torch.save({"state_dict": build_model("cnn", (1, 28, 28)).state_dict()}, path)


@pytest.mark.parametrize("kind,needle", [
    ("missing", "does not exist"), ("empty", "is empty"), ("text", "truncated or not a PyTorch file"),
    ("truncated", "truncated or not a PyTorch file"), ("not-a-dict", "not a tuitrain checkpoint dict"),
    ("foreign-dict", "missing model"),
])
def test_load_errors_are_one_line_naming_the_file(tmp_path, kind, needle):
    path = tmp_path / f"{kind}.pt"
    _write(path, kind)
    with pytest.raises(CheckpointError) as info:
        checkpoints.load_checkpoint(path)
    message = str(info.value)
    assert needle in message and str(path) in message and "\n" not in message


def test_wrong_architecture_names_keys_and_shapes(tmp_path):
    path = tmp_path / "lenet.pt"
    checkpoints.save_checkpoint(path, _payload(build_model("lenet", (1, 28, 28))))
    ckpt = checkpoints.load_checkpoint(path)
    with pytest.raises(CheckpointError) as info:
        checkpoints.check_state_dict(path, build_model("cnn", (1, 28, 28)), ckpt["model"])
    message = str(info.value)
    assert "does not fit this model" in message and "fc3.weight" in message and "shape conv2.weight" in message


def test_flipped_byte_is_reported(tmp_path):
    path = tmp_path / "ck.pt"
    checkpoints.save_checkpoint(path, _payload())
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):
        checkpoints.load_checkpoint(path)


class _Canary:
    def __reduce__(self):
        return (os.system, (f"touch {_Canary.target}",))


@pytest.mark.parametrize("force_unsafe", [False, True])
def test_malicious_pickle_never_runs(tmp_path, monkeypatch, force_unsafe):
    if force_unsafe:
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    target = tmp_path / "pwned"
    _Canary.target = target
    path = tmp_path / "evil.pt"
    torch.save({"model": _Canary(), "optimizer": {}, "epoch": 0, "step": 0, "config": {}}, path)
    with pytest.raises(CheckpointError, match="refused"):
        checkpoints.load_checkpoint(path)
    assert not target.exists()


def test_cleanup_temp(tmp_path):
    (tmp_path / ".last.pt.123.tmp").write_bytes(b"partial")
    (tmp_path / "keep.pt").write_bytes(b"x")
    removed = checkpoints.cleanup_temp(tmp_path)
    assert [p.name for p in removed] == [".last.pt.123.tmp"]
    assert (tmp_path / "keep.pt").exists()


# ----------------------------------------------------------------- capture / restore over parts
def _parts(seed: int, monitor: str = "val_loss") -> checkpoints.Parts:
    """Model, optimizer (moments filled), scheduler and a TrainState: no engine anywhere."""
    from tuitrain.trainstate import TrainState

    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    for _ in range(seed + 1):
        model(torch.randn(5, 4)).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()
    state = TrainState(epoch=seed, batch=1, step=10 * seed + 1, best=0.1 * seed, best_epoch=seed, stale_epochs=1,
                       best_val_acc=0.5, data_order=torch.Generator().manual_seed(seed).get_state())
    return checkpoints.Parts(model, optimizer, state, scheduler, config={"lr": 0.01}, monitor=monitor)


def _same(a: dict, b: dict) -> bool:
    """Two state_dicts hold equal values (tensors compared exactly)."""
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, dict):
            if not isinstance(y, dict) or not _same(x, y):
                return False
        elif isinstance(x, torch.Tensor):
            if not (isinstance(y, torch.Tensor) and torch.equal(x, y)):
                return False
        elif x != y:
            return False
    return True


def test_capture_and_restore_round_trip_parts_through_a_file(tmp_path):
    saved = _parts(3)
    path = tmp_path / "parts.pt"
    checkpoints.save_checkpoint(path, checkpoints.capture(saved))
    after_capture = torch.rand(4)  # what the captured random state draws next
    ckpt = checkpoints.load_checkpoint(path)
    target = _parts(1)
    checkpoints.check_payload(path, ckpt, target.model, target.optimizer)
    checkpoints.restore(ckpt, target, resume=True, path=path)
    assert _same(target.model.state_dict(), saved.model.state_dict())
    assert _same(target.optimizer.state_dict(), saved.optimizer.state_dict())
    assert target.scheduler.state_dict() == saved.scheduler.state_dict()
    for name in ("epoch", "batch", "step", "best", "best_epoch", "stale_epochs", "best_val_acc"):
        assert getattr(target.state, name) == getattr(saved.state, name), name
    assert torch.equal(target.state.data_order, saved.state.data_order)
    assert torch.equal(torch.rand(4), after_capture)  # the random states came back too


def test_a_load_without_resume_restores_weights_and_moments_only():
    saved, target = _parts(3), _parts(1)
    position = (target.state.epoch, target.state.step, target.state.best)
    schedule_before = target.scheduler.state_dict()
    checkpoints.restore(checkpoints.capture(saved), target)
    assert _same(target.model.state_dict(), saved.model.state_dict())
    assert _same(target.optimizer.state_dict(), saved.optimizer.state_dict())
    assert (target.state.epoch, target.state.step, target.state.best) == position
    assert target.scheduler.state_dict() == schedule_before


def test_a_best_value_carries_over_only_to_the_same_monitor():
    ckpt = checkpoints.capture(_parts(3, monitor="val_loss"))
    same, other = _parts(1, monitor="val_loss"), _parts(1, monitor="val_acc")
    checkpoints.restore(ckpt, same, resume=True)
    checkpoints.restore(ckpt, other, resume=True)
    assert same.state.best == ckpt["best"] and other.state.best is None
    old = {k: v for k, v in ckpt.items() if k not in ("best", "monitor")}  # before --monitor: val_acc, no best
    checkpoints.restore(old, acc := _parts(1, monitor="val_acc"), resume=True)
    assert acc.state.best == ckpt["best_val_acc"]


def test_a_snapshot_is_a_copy_that_puts_everything_back():
    parts = _parts(2)
    before = checkpoints.snapshot(parts)
    weights = {k: v.clone() for k, v in parts.model.state_dict().items()}
    with torch.no_grad():
        for p in parts.model.parameters():
            p.add_(1.0)
    parts.model(torch.randn(5, 4)).sum().backward()
    parts.optimizer.step()
    parts.scheduler.step()
    parts.state.step += 5
    checkpoints.restore(before, parts, resume=True)
    assert _same(parts.model.state_dict(), weights)
    assert _same(parts.optimizer.state_dict(), before["optimizer"])
    assert parts.scheduler.state_dict() == before["scheduler"] and parts.state.step == before["step"]


def test_capture_never_needs_an_engine():
    import ast
    from pathlib import Path

    tree = ast.parse(Path(checkpoints.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {"tuitrain.engine", "tuitrain.steering"} & imported
