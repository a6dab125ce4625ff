"""Property-based tests (Hypothesis) of the surfaces that take outside input: the control protocol,
checkpoint files and the status/config files `tuitrain runs` and `ctl` read.

Each property is the guarantee itself: whatever arrives, the answer is one line / a CheckpointError /
a typed row, never a crash, and only what passed the checks is ever applied. Examples are few and
small so the whole file runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import socket
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.helpers import Recorder, raw, same_tree
from tuitrain import checkpoints, control
from tuitrain.commands import Load, Pause, Resume, Save, SetDevice, SetLR, Stop
from tuitrain.control import ControlServer
from tuitrain.errors import CheckpointError, UsageError
from tuitrain.rundir import STATES, UNREADABLE, format_runs, list_runs, run_state

FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_leaves = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
               | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20))
json_values = st.recursive(json_leaves, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)


# ----------------------------------------------------------------- the control protocol
RUN = "<the run's identity>"
arg_texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["0.01", "1e-3", "nan", "inf", "-1", "0", "1e999", " 0.5 ", "1_0", "cpu", "cuda", "cuda:0",
                     "cpu\n", "mps", "auto", "tpu", "x.pt", "a/b.pt", ".pt", "..pt", "/abs/last.pt", "last.pt",
                     "a\x00b.pt", "\ud800.pt", "x" * 5000]),
)
messages = st.fixed_dictionaries({}, optional={
    "cmd": st.sampled_from(control.COMMANDS) | json_values,
    "arg": arg_texts | json_values,
    "run": st.just(RUN) | json_values,
    "extra": json_values,
})


@pytest.fixture(scope="module")
def live_server():
    run_dir = Path(tempfile.mkdtemp(prefix="tt-", dir="/tmp"))
    recorder = Recorder()
    srv = ControlServer(run_dir, recorder)
    recorder.server = srv
    srv.start()
    yield srv, recorder, control.run_identity(run_dir)
    srv.close()
    for child in run_dir.iterdir():
        child.unlink()
    run_dir.rmdir()


def _well_formed(command) -> bool:
    """What the engine may receive: typed commands whose fields passed every check."""
    if isinstance(command, (Pause, Resume, Stop)):
        return True
    if isinstance(command, SetLR):
        return type(command.lr) is float and math.isfinite(command.lr) and command.lr > 0
    if isinstance(command, SetDevice):
        return re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", command.device) is not None
    if isinstance(command, Save):
        return command.name == "" or (control.save_name_problem(command.name) == ""
                                      and command.name.isprintable() and "\x00" not in command.name)
    if isinstance(command, Load):
        return command.path == "" or (os.path.isabs(command.path) and command.path.isprintable())
    return False


def _check_exchange(live_server, payload: bytes) -> None:
    srv, recorder, _ = live_server
    before = len(recorder.commands)
    answer = raw(srv.path, payload)  # asserts exactly one line
    assert isinstance(answer, dict) and isinstance(answer.get("ok"), bool)
    new = recorder.commands[before:]
    if answer["ok"]:
        assert len(new) == 1 and _well_formed(new[0]), new
    else:
        assert new == [] and isinstance(answer.get("reason"), str) and answer["reason"]


@FAST
@given(message=messages)
def test_any_json_message_gets_one_answer_and_only_good_commands_pass(live_server, message):
    identity = live_server[2]
    if message.get("run") == RUN:
        message = {**message, "run": identity}
    try:
        payload = json.dumps(message).encode("utf-8", "surrogatepass") + b"\n"
    except ValueError:  # nan and friends are valid to Python's json, so this is only the surrogates
        return
    _check_exchange(live_server, payload)


@FAST
@given(payload=st.binary(max_size=400) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_any_bytes_get_one_answer_and_reach_nothing(live_server, payload):
    _check_exchange(live_server, payload)


# ----------------------------------------------------------------- checkpoints
def _tiny():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    return model, torch.optim.Adam(model.parameters(), lr=0.01, fused=True)  # the engine's optimizer


def _train_step(model, optimizer) -> None:
    model(torch.randn(5, 3)).sum().backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


class Valid(tuple):
    """(model, optimizer, payload, file bytes), with a short repr for Hypothesis' failure reports."""

    def __repr__(self) -> str:
        return "<a valid checkpoint of a tiny model>"


@pytest.fixture(scope="module")
def valid():
    """A tiny model, its optimizer after a step, and its checkpoint dict and file bytes."""
    model, optimizer = _tiny()
    _train_step(model, optimizer)
    rng = checkpoints.rng_state()
    rng["data"] = torch.Generator().manual_seed(1).get_state()
    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 1, "batch": 0,
               "step": 1, "config": {"lr": 0.01}, "best_val_acc": 0.5, "rng": rng}
    buf = io.BytesIO()
    torch.save(payload, buf)
    return Valid((model, optimizer, payload, buf.getvalue()))


LOCATIONS = [("epoch",), ("step",), ("batch",), ("config",), ("best_val_acc",), ("rng",), ("rng", "torch"),
             ("rng", "data"), ("rng", "python_state"), ("rng", "python_version"), ("rng", "python_gauss"),
             ("rng", "cuda"), ("model",), ("model", "0.weight"), ("model", "2.bias"), ("optimizer",),
             ("optimizer", "state"), ("optimizer", "param_groups"), ("optimizer", "state", 0),
             ("optimizer", "state", 0, "exp_avg"), ("optimizer", "state", 1, "exp_avg_sq"),
             ("optimizer", "state", 2, "step"), ("optimizer", "state", 7), ("optimizer", "param_groups", 0),
             ("optimizer", "param_groups", 0, "lr"), ("optimizer", "param_groups", 0, "betas"),
             ("optimizer", "param_groups", 0, "params"), ("optimizer", "param_groups", 0, "fused"),
             ("optimizer", "param_groups", 0, "amsgrad"), ("optimizer", "param_groups", 0, "capturable")]
DELETE = object()

tensors = st.builds(
    lambda shape, dtype, device, fill: torch.full(shape, fill, dtype=dtype, device=device),
    st.lists(st.integers(0, 4), max_size=3).map(tuple),
    st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64, torch.uint8, torch.bool]),
    st.sampled_from(["cpu", "cpu", "cpu", "meta"]),
    st.sampled_from([0, 1, 3]),
)
replacements = st.one_of(json_values, tensors, st.just(DELETE), st.lists(tensors, max_size=2),
                         st.tuples(st.floats(0, 1), st.floats(0, 1)))


def _copy(value):
    """A deep copy: a restore that passes trains on the optimizer state in place (fused Adam does
    not copy it), which must not change the fixture."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.clone()
    return value


def _apply_mutation(payload: dict, location: tuple, value) -> None:
    node = payload
    for key in location[:-1]:
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
        else:
            return
    last = location[-1]
    if isinstance(node, dict):
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value
    elif isinstance(node, list) and isinstance(last, int) and last < len(node) and value is not DELETE:
        node[last] = value


def _restore_fits(model, optimizer, ckpt: dict) -> None:
    """What the engine does after check_payload passes, on fresh objects: it must all work."""
    fresh_model, fresh_opt = _tiny()
    fresh_model.load_state_dict(ckpt["model"])
    fresh_opt.load_state_dict(ckpt["optimizer"])
    _train_step(fresh_model, fresh_opt)
    _ = int(ckpt["epoch"]), int(ckpt.get("batch", 0)), int(ckpt["step"]), ckpt["config"].get("lr")
    rng = ckpt.get("rng") or {}
    if "data" in rng:
        torch.Generator().set_state(rng["data"])
    if "torch" in rng:
        saved = checkpoints.rng_state()
        try:
            checkpoints.set_rng_state(rng)
        finally:
            checkpoints.set_rng_state(saved)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations=st.lists(st.tuples(st.sampled_from(LOCATIONS), replacements), min_size=1, max_size=3))
def test_any_mutated_checkpoint_dict_is_refused_or_restores_cleanly(valid, mutations):
    model, optimizer, payload, _ = valid
    ckpt = _copy(payload)
    for location, value in mutations:
        _apply_mutation(ckpt, location, value)
    try:
        checkpoints.check_payload("ck.pt", ckpt, model, optimizer)
    except CheckpointError as exc:
        assert "\n" not in str(exc)
        return
    _restore_fits(model, optimizer, ckpt)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations=st.lists(st.tuples(st.sampled_from(LOCATIONS), replacements), min_size=1, max_size=2))
def test_any_mutated_checkpoint_file_loads_or_is_refused(valid, mutations):
    model, optimizer, payload, _ = valid
    ckpt = _copy(payload)
    for location, value in mutations:
        _apply_mutation(ckpt, location, value)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ck.pt"
        checkpoints.save_checkpoint(path, ckpt)
        try:
            loaded = checkpoints.load_checkpoint(path, max_bytes=checkpoints.size_bound(model))
            checkpoints.check_payload(path, loaded, model, optimizer)
        except CheckpointError as exc:
            assert "\n" not in str(exc)
            return
    _restore_fits(model, optimizer, loaded)


byte_edits = st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=4)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=byte_edits, cut=st.none() | st.floats(0, 1), insert=st.none() | st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=8)))
# Found by Hypothesis: the ZIP64 end-of-central-directory locator's "total number of disks" byte set
# to 2 made zipfile.is_zipfile raise BadZipFile instead of answering False (torch 2.15's file layout).
@example(edits=[(0.9988503155996393, 2)], cut=None, insert=None)
def test_a_damaged_lone_file_is_refused_or_loads_exactly_the_original(valid, edits, cut, insert):
    """No .sha256 beside it: the CRC-32s, the sizes and torch's own parse must catch every change
    that matters; a change that passes must be one that changed nothing loaded."""
    model, optimizer, payload, original = valid
    data = bytearray(original)
    for where, value in edits:
        data[int(where * len(data))] = value
    if insert is not None:
        at = int(insert[0] * len(data))
        data[at:at] = insert[1]
    if cut is not None:
        del data[int(cut * len(data)):]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "lone.pt"
        path.write_bytes(bytes(data))
        try:
            loaded = checkpoints.load_checkpoint(path, max_bytes=checkpoints.size_bound(model))
        except CheckpointError as exc:
            assert "\n" not in str(exc)
            return
    assert same_tree(loaded, payload)


def test_a_zip64_locator_naming_several_disks_is_refused(valid):
    """The Hypothesis example above, found by position rather than by fraction (file layouts change
    with torch versions): zipfile raises BadZipFile there, which must become a CheckpointError."""
    model, _, _, original = valid
    data = bytearray(original)
    locator = data.rfind(b"PK\x06\x07")
    assert locator > 0
    data[locator + 16] = 2  # total number of disks
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "disks.pt"
        path.write_bytes(bytes(data))
        with pytest.raises(CheckpointError, match="truncated or not a PyTorch file"):
            checkpoints.load_checkpoint(path, max_bytes=checkpoints.size_bound(model))


# ----------------------------------------------------------------- status.json / config.json
file_contents = st.one_of(json_values.map(json.dumps), st.binary(max_size=60),
                          st.fixed_dictionaries({}, optional={
                              "state": st.sampled_from([*STATES, "exploded"]) | json_values,
                              "pid": st.sampled_from([0, -1, 1, os.getpid(), 2**31, 2**63]) | json_values,
                              "host": st.just(socket.gethostname()) | json_values,
                              "epoch": json_values, "epochs": json_values, "best_val_acc": json_values,
                              "device": json_values, "control": json_values,
                          }).map(lambda d: json.dumps(d)))


@pytest.mark.slow
@FAST
@given(status=st.none() | file_contents, config=file_contents)
def test_runs_and_ctl_read_any_status_and_config(status, config):
    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder) / "run"
        run.mkdir()
        for name, content in (("status.json", status), ("config.json", config)):
            if content is not None:
                (run / name).write_bytes(content if isinstance(content, bytes) else content.encode())
        (row,) = list_runs(folder)
        assert row.status in (*STATES, UNREADABLE) and row.status == run_state(run)
        assert type(row.epoch) is int and type(row.epochs) is int and type(row.updated) is float
        assert row.best_val_acc is None or (type(row.best_val_acc) is float and math.isfinite(row.best_val_acc))
        assert isinstance(row.device, str) and (row.device == "" or row.device.isprintable())
        format_runs([row])
        try:
            control.send_command(run, "pause", timeout=5)
        except UsageError as exc:  # ChannelError: not alive, not reachable, not ours
            assert "\n" not in str(exc)
        else:
            raise AssertionError("a run without a live server answered")
