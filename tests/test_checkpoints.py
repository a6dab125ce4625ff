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
