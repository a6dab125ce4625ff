"""Checkpoints: atomic, checksummed, read with weights_only=True, with one-line errors."""

from __future__ import annotations

import errno
import io
import os
import pickle
import random
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.helpers import ROOT, EngineRun, same_tree
from tuitrain import checkpoints
from tuitrain.commands import Load, Pause, Save, Stop
from tuitrain.errors import CheckpointError
from tuitrain.models import build_model
from tuitrain.rundir import read_records


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


# Checkpoints against what can go wrong on disk or be planted: failed saves, payload checks, memory bounds, lone-file CRCs.


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real checkpoint of a short run (Adam moments filled), its model and optimizer."""
    from tuitrain.config import TrainConfig

    tmp = tmp_path_factory.mktemp("trained")
    config = TrainConfig(dataset="synthetic", model="cnn", epochs=1, batch_size=50, device="cpu",
                         run_dir=str(tmp / "run"), limit=200, log_every=2, hist_every=1000, data_dir=str(tmp))
    run = EngineRun(config).start()
    assert run.join().status == "done"
    path = tmp / "run" / "checkpoints" / "last.pt"
    return path, run.engine


def _fresh(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def _save(tmp_path: Path, ckpt: dict, name: str = "bad.pt") -> Path:
    out = tmp_path / name
    checkpoints.save_checkpoint(out, ckpt)
    return out


# ----------------------------------------------------------------- failed saves
def test_two_failed_saves_keep_the_good_file_loadable(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    good = {"model": {"w": torch.ones(3)}, "optimizer": {}, "epoch": 1, "step": 5, "config": {}}
    checkpoints.save_checkpoint(path, good)
    real_write = checkpoints.write_atomic

    def full_disk(target, data):
        if target == path:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(target, data)

    monkeypatch.setattr(checkpoints, "write_atomic", full_disk)
    for step in (6, 7, 8):
        with pytest.raises(OSError):
            checkpoints.save_checkpoint(path, {**good, "step": step})
    monkeypatch.undo()
    assert checkpoints.load_checkpoint(path)["step"] == 5
    checkpoints.save_checkpoint(path, {**good, "step": 9})
    assert checkpoints.load_checkpoint(path)["step"] == 9
    assert len(Path(f"{path}.sha256").read_text().split()) == 1


def test_failed_saves_whose_sidecar_restore_fails_too(tmp_path, monkeypatch):
    """The worst case: the sidecar cannot be restored either; the next save hashes the file."""
    path = tmp_path / "last.pt"
    good = {"model": {"w": torch.ones(3)}, "optimizer": {}, "epoch": 1, "step": 5, "config": {}}
    checkpoints.save_checkpoint(path, good)
    real_write = checkpoints.write_atomic
    calls = []

    def flaky(target, data):
        calls.append(target)
        if target == path or len(calls) % 3 == 0:  # every file write, and each sidecar restore
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(target, data)

    monkeypatch.setattr(checkpoints, "write_atomic", flaky)
    for step in (6, 7):
        with pytest.raises(OSError):
            checkpoints.save_checkpoint(path, {**good, "step": step})
    assert len(Path(f"{path}.sha256").read_text().split()) == 2  # the restore did fail
    monkeypatch.undo()
    assert checkpoints.load_checkpoint(path)["step"] == 5


def test_a_failed_save_over_a_lone_file_keeps_it_loadable(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    torch.save({"model": {}, "optimizer": {}, "epoch": 1, "step": 5, "config": {}}, path)  # no sidecar
    monkeypatch.setattr(checkpoints, "write_atomic", _fail_on(path, checkpoints.write_atomic))
    with pytest.raises(OSError):
        checkpoints.save_checkpoint(path, {"model": {}, "optimizer": {}, "epoch": 2, "step": 9, "config": {}})
    monkeypatch.undo()
    assert checkpoints.load_checkpoint(path)["step"] == 5


def _fail_on(path, real):
    def write(target, data):
        if target == path:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(target, data)
    return write


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 1 MiB tmpfs (root only; skipped elsewhere): a disk that really fills."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def test_a_really_full_disk_twice_keeps_last_pt_loadable(tiny_tmpfs):
    path = tiny_tmpfs / "last.pt"
    payload = {"model": {"w": torch.arange(150_000, dtype=torch.float32)}, "optimizer": {}, "epoch": 1,
               "step": 1, "config": {}}  # 600 kB: one fits, two (old + temp) do not
    checkpoints.save_checkpoint(path, payload)
    for step in (2, 3):
        with pytest.raises(OSError) as info:
            checkpoints.save_checkpoint(path, {**payload, "step": step})
        assert info.value.errno == errno.ENOSPC
    assert checkpoints.load_checkpoint(path)["step"] == 1
    assert not [p for p in tiny_tmpfs.iterdir() if p.name.endswith(".tmp")]


# ----------------------------------------------------------------- payload checks
@pytest.mark.slow
def test_wrong_shaped_adam_moment_resume_exits_2(trained, tmp_path):
    ckpt = _fresh(trained[0])
    ckpt["optimizer"]["state"][0]["exp_avg"] = torch.zeros(2)
    bad = _save(tmp_path, ckpt)
    done = subprocess.run([sys.executable, "-m", "tuitrain", "synthetic", "--headless", "--epochs", "3", "--limit",
                           "200", "--batch-size", "50", "--device", "cpu", "--run-dir", str(tmp_path / "r"),
                           "--resume", str(bad)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2, done.stderr[-2000:]  # before the fix: -11 (SIGSEGV) in the fused step
    error = [ln for ln in done.stderr.splitlines() if ln.startswith("tuitrain: error:")]
    assert len(error) == 1 and "exp_avg" in error[0] and "Traceback" not in done.stderr


def test_wrong_shaped_moment_load_is_refused_and_the_run_goes_on(trained, small_config, tmp_path):
    ckpt = _fresh(trained[0])
    ckpt["optimizer"]["state"][0]["exp_avg"] = torch.zeros(2)
    bad = _save(tmp_path, ckpt)
    run = EngineRun(small_config(epochs=200, limit=200, run_dir=str(tmp_path / "live"))).start()
    run.wait_for(lambda r: r.get("type") == "step")
    before = {k: v.clone() for k, v in run.engine.model.state_dict().items()}
    run.send(Load(str(bad), id=7))
    answer = run.wait_event("load", cmd_id=7)
    assert answer["ok"] is False and "exp_avg" in answer["reason"]
    n = len(run.steps())
    run.wait_for(lambda r: r.get("type") == "step" and r["step"] > run.steps()[n - 1] + 2)  # still training
    run.send(Stop(id=8))
    assert run.join().status == "stopped"
    assert before.keys() == run.engine.model.state_dict().keys()


def _mutate(ckpt: dict, what: str) -> dict:
    opt = ckpt["optimizer"]
    if what == "epoch-text":
        ckpt["epoch"] = "x"
    elif what == "step-negative":
        ckpt["step"] = -1
    elif what == "batch-float":
        ckpt["batch"] = 1.5
    elif what == "epoch-bool":
        ckpt["epoch"] = True
    elif what == "config-list":
        ckpt["config"] = ["lr", 0.1]
    elif what == "best-nan":
        ckpt["best_val_acc"] = float("nan")
    elif what == "best-text":
        ckpt["best_val_acc"] = "0.9"
    elif what == "rng-short":
        ckpt["rng"]["torch"] = torch.zeros(10, dtype=torch.uint8)
    elif what == "rng-python":
        ckpt["rng"]["python_state"] = torch.zeros(3, dtype=torch.int64)
    elif what == "rng-missing":
        del ckpt["rng"]["python_gauss"]
    elif what == "rng-list":
        ckpt["rng"] = [1, 2]
    elif what == "weight-dtype":
        ckpt["model"]["fc1.weight"] = ckpt["model"]["fc1.weight"].double()
    elif what == "weight-meta":
        ckpt["model"]["fc1.bias"] = torch.empty(120, device="meta")
    elif what == "moment-dtype":
        opt["state"][1]["exp_avg_sq"] = opt["state"][1]["exp_avg_sq"].half()
    elif what == "moment-missing":
        del opt["state"][2]["exp_avg_sq"]
    elif what == "step-vector":
        opt["state"][0]["step"] = torch.tensor([1.0, 2.0])
    elif what == "step-nan":
        opt["state"][0]["step"] = torch.tensor(float("nan"))
    elif what == "groups-two":
        opt["param_groups"].append(dict(opt["param_groups"][0]))
    elif what == "group-lr-text":
        opt["param_groups"][0]["lr"] = "fast"
    elif what == "group-betas":
        opt["param_groups"][0]["betas"] = (0.9,)
    elif what == "group-params":
        opt["param_groups"][0]["params"] = opt["param_groups"][0]["params"][:-1]
    elif what == "state-unknown-id":
        opt["state"][999] = {}
    elif what == "state-not-dict":
        opt["state"] = [1]
    return ckpt


MUTATIONS = ["epoch-text", "step-negative", "batch-float", "epoch-bool", "config-list", "best-nan", "best-text",
             "rng-short", "rng-python", "rng-missing", "rng-list", "weight-dtype", "weight-meta", "moment-dtype",
             "moment-missing", "step-vector", "step-nan", "groups-two", "group-lr-text", "group-betas",
             "group-params", "state-unknown-id", "state-not-dict"]


@pytest.mark.parametrize("what", MUTATIONS)
def test_check_payload_refuses_in_one_line(trained, what):
    path, engine = trained
    ckpt = _mutate(_fresh(path), what)
    with pytest.raises(CheckpointError) as info:
        checkpoints.check_payload(path, ckpt, engine.model, engine.optimizer)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_check_payload_accepts_what_the_engine_writes(trained):
    path, engine = trained
    checkpoints.check_payload(path, checkpoints.load_checkpoint(path), engine.model, engine.optimizer)
    checkpoints.check_payload(path, checkpoints.capture(engine.parts()), engine.model, engine.optimizer)


@pytest.mark.parametrize("what", MUTATIONS)
def test_bad_payload_resume_is_refused_before_training(trained, small_config, tmp_path, what):
    """What the CLI runs for --resume (Engine.setup); its UsageError is the one line, exit 2."""
    from tuitrain.engine import Engine

    bad = _save(tmp_path, _mutate(_fresh(trained[0]), what))
    engine = Engine(small_config(epochs=3, limit=200, resume=str(bad)))
    with pytest.raises(CheckpointError):
        engine.setup()


# ----------------------------------------------------------------- memory bounds
def _bomb(path: Path, unpacked: int) -> None:
    """A torch-looking zip whose one record deflates from ``unpacked`` zero bytes."""
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"model": {}}, protocol=2))
        with zf.open("archive/data/0", "w", force_zip64=True) as fh:
            for _ in range(unpacked // len(chunk)):
                fh.write(chunk)


def test_a_deflate_bomb_is_refused_before_it_is_unpacked(tmp_path):
    path = tmp_path / "bomb.pt"
    _bomb(path, 128 << 20)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(CheckpointError, match=r"unpack to 134 MB"):
        checkpoints.load_checkpoint(path, max_bytes=checkpoints.size_bound(build_model("cnn", (1, 28, 28))))


def test_a_huge_sparse_file_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "sparse.pt"
    with open(path, "wb") as fh:
        fh.truncate(5 << 30)  # 5 GiB, no blocks on disk
    with pytest.raises(CheckpointError, match="more than a checkpoint of this model can hold"):
        checkpoints.load_checkpoint(path, max_bytes=checkpoints.size_bound(build_model("cnn", (1, 28, 28))))
    with pytest.raises(CheckpointError, match="more than"):
        checkpoints.load_checkpoint(path)  # the default bound too


def test_load_of_a_bomb_or_a_huge_file_is_refused_at_once_and_the_run_goes_on(small_config, tmp_path):
    bomb, sparse = tmp_path / "bomb.pt", tmp_path / "sparse.pt"
    _bomb(bomb, 128 << 20)
    with open(sparse, "wb") as fh:
        fh.truncate(5 << 30)
    run = EngineRun(small_config(epochs=200, limit=200, run_dir=str(tmp_path / "live"))).start()
    run.wait_for(lambda r: r.get("type") == "step")
    for i, path in enumerate((bomb, sparse), start=1):
        run.send(Load(str(path), id=i))
        answer = run.wait_event("load", cmd_id=i)
        assert answer["ok"] is False and "more than a checkpoint of this model can hold" in answer["reason"]
    last = run.steps()[-1]
    run.wait_for(lambda r: r.get("type") == "step" and r["step"] > last + 2)
    run.send(Stop(id=9))
    assert run.join().status == "stopped"


def test_the_bound_leaves_room_for_a_real_checkpoint(trained):
    path, engine = trained
    bound = checkpoints.size_bound(engine.model)
    assert path.stat().st_size < bound
    checkpoints.load_checkpoint(path, max_bytes=bound)


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_a_device_or_fifo_is_refused_without_blocking(tmp_path, special):
    path = Path(special) if special.startswith("/") else tmp_path / special
    if special == "fifo":
        os.mkfifo(path)
    with pytest.raises(CheckpointError, match="is not a file"):
        checkpoints.load_checkpoint(path)


# ----------------------------------------------------------------- lone files
def test_a_flipped_byte_in_a_lone_file_is_caught_by_its_crc(trained, tmp_path):
    lone = tmp_path / "lone.pt"
    lone.write_bytes(trained[0].read_bytes())  # copied without its .sha256
    with zipfile.ZipFile(lone) as zf:
        info = zf.getinfo(next(n for n in zf.namelist() if n.endswith("/data/0")))
    data = bytearray(lone.read_bytes())
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)  # the local header's own
    data[info.header_offset + 30 + name_len + extra_len + 5] ^= 0x01  # inside the record's bytes
    lone.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="CRC-32"):
        checkpoints.load_checkpoint(lone)


def test_random_flips_in_a_lone_file_are_refused_or_harmless(trained, tmp_path):
    """100 single-byte flips anywhere in a lone last.pt: each one is refused, or (a flip in zip
    padding or a header field nothing reads) loads exactly the original values."""
    original = trained[0].read_bytes()
    reference = checkpoints.load_checkpoint(trained[0])
    rng = random.Random(12)
    lone = tmp_path / "lone.pt"
    refused = 0
    for _ in range(100):
        data = bytearray(original)
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        lone.write_bytes(bytes(data))
        try:
            loaded = checkpoints.load_checkpoint(lone)
        except CheckpointError:
            refused += 1
            continue
        assert same_tree(loaded, reference)
    assert refused >= 90


# ----------------------------------------------------------------- minor: a raw pickle
def test_a_raw_pickle_says_what_it_is(tmp_path):
    path = tmp_path / "raw.pt"
    path.write_bytes(pickle.dumps({"model": {}, "optimizer": {}, "epoch": 0, "step": 0, "config": {}}))
    with pytest.raises(CheckpointError, match="raw pickle file") as info:
        checkpoints.load_checkpoint(path)
    assert "file an issue" not in str(info.value)
    legacy = tmp_path / "legacy.pt"
    buf = io.BytesIO()
    torch.save({"model": {}}, buf, _use_new_zipfile_serialization=False)
    legacy.write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match="raw pickle file"):
        checkpoints.load_checkpoint(legacy)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_load_on_the_gpu_passes_the_checks(small_config, tmp_path):
    """`load` maps every tensor to the run's device (random states included): the checks must
    accept the run's own checkpoint there, and still refuse a wrong-shaped moment."""
    run = EngineRun(small_config(epochs=200, limit=200, device="cuda", run_dir=str(tmp_path / "gpu"))).start()
    run.wait_for(lambda r: r.get("type") == "step")
    run.send(Save("mine.pt", id=1))
    path = run.wait_event("save", cmd_id=1)["path"]
    run.send(Load(path, id=2))
    assert run.wait_event("load", cmd_id=2)["ok"] is True
    ckpt = torch.load(path, weights_only=True)
    ckpt["optimizer"]["state"][0]["exp_avg"] = torch.zeros(2)
    bad = _save(tmp_path, ckpt)
    run.send(Load(str(bad), id=3))
    assert run.wait_event("load", cmd_id=3)["ok"] is False
    run.send(Stop(id=4))
    assert run.join().status == "stopped"


# ----------------------------------------------------------------- crafted values
# Values no run's own optimizer could produce: each used to pass the checks and then end the live
# run at its next step (or, maximize=True, quietly turn it into ascent).
NONFINITE = st.sampled_from([float("nan"), float("inf"), float("-inf")])
NEGATIVE = st.floats(max_value=-1e-30, min_value=-1e30)
FLAG_NAMES = ["maximize", "amsgrad", "foreach", "fused", "differentiable"]  # capturable: test_graphstep
CRAFTED = st.one_of(
    st.tuples(st.just("weight"), NONFINITE | st.floats(min_value=2e19, max_value=3.4e38)
              | st.floats(min_value=-3.4e38, max_value=-2e19)),
    st.tuples(st.just("exp_avg_sq"), NEGATIVE | NONFINITE),
    st.tuples(st.just("exp_avg"), NONFINITE),
    st.tuples(st.just("eps"), NEGATIVE | NONFINITE),
    st.tuples(st.just("beta1"), st.floats(min_value=1.0, max_value=1e6) | NEGATIVE),
    st.tuples(st.just("beta2"), st.floats(min_value=1.0, max_value=1e6) | NEGATIVE),
    st.tuples(st.just("weight_decay"), NEGATIVE),
    st.tuples(st.just("lr"), NEGATIVE | NONFINITE),
    st.tuples(st.just("flag"), st.sampled_from(FLAG_NAMES)),
)


def _craft(ckpt: dict, what: str, value, where: int) -> dict:
    opt = ckpt["optimizer"]
    group = opt["param_groups"][0]
    if what == "weight":
        flat = ckpt["model"]["fc1.weight"].view(-1)
        flat[where % flat.numel()] = value
    elif what in ("exp_avg_sq", "exp_avg"):
        entry = opt["state"][where % len(opt["state"])]
        flat = entry[what].view(-1)
        flat[where % flat.numel()] = value
    elif what in ("beta1", "beta2"):
        betas = list(group["betas"])
        betas[int(what[-1]) - 1] = value
        group["betas"] = tuple(betas)
    elif what == "flag":
        group[value] = True if group[value] is None else not group[value]
    else:
        group[what] = value
    return ckpt


@given(crafted=CRAFTED, where=st.integers(0, 10_000))
@example(crafted=("weight", float("nan")), where=0)
@example(crafted=("weight", 3e38), where=0)
@example(crafted=("exp_avg_sq", -1.0), where=0)
@example(crafted=("exp_avg", float("nan")), where=0)
@example(crafted=("beta2", 3.0), where=0)
@example(crafted=("eps", -1.0), where=0)
@example(crafted=("flag", "maximize"), where=0)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
def test_crafted_values_are_refused_in_one_line(trained, crafted, where):
    path, engine = trained
    what, value = crafted
    ckpt = _craft(_fresh(path), what, value, where)
    with pytest.raises(CheckpointError) as info:
        checkpoints.check_payload(path, ckpt, engine.model, engine.optimizer)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


VALID = st.one_of(
    st.tuples(st.just("weight"), st.floats(min_value=-1e18, max_value=1e18)),
    st.tuples(st.just("exp_avg_sq"), st.floats(min_value=0, max_value=1e30)),
    st.tuples(st.just("exp_avg"), st.floats(min_value=-1e30, max_value=1e30)),
    st.tuples(st.just("eps"), st.floats(min_value=0, max_value=1)),
    st.tuples(st.just("beta1"), st.floats(min_value=0, max_value=0.999999)),
    st.tuples(st.just("beta2"), st.floats(min_value=0, max_value=0.999999)),
    st.tuples(st.just("weight_decay"), st.floats(min_value=0, max_value=10)),
    st.tuples(st.just("lr"), st.floats(min_value=0, max_value=10)),
)


@given(valid=VALID, where=st.integers(0, 10_000))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
def test_values_the_optimizer_could_produce_are_accepted(trained, valid, where):
    path, engine = trained
    what, value = valid
    checkpoints.check_payload(path, _craft(_fresh(path), what, value, where), engine.model, engine.optimizer)


@pytest.mark.slow
@pytest.mark.parametrize("crafted", [("weight", float("nan")), ("weight", 3e38), ("exp_avg_sq", -1.0),
                                     ("beta2", 3.0), ("eps", -1.0), ("flag", "maximize")])
def test_a_crafted_load_is_refused_and_the_live_run_goes_on_unchanged(trained, small_config, tmp_path, crafted):
    bad = _save(tmp_path, _craft(_fresh(trained[0]), *crafted, 0))
    run = EngineRun(small_config(epochs=200, limit=200, run_dir=str(tmp_path / "live"))).start()
    run.wait_for(lambda r: r.get("type") == "step")
    run.send(Load(str(bad), id=7))
    answer = run.wait_event("load", cmd_id=7)
    assert answer["ok"] is False and "\n" not in answer["reason"], answer  # before: ok, then the run failed
    n = len(run.steps())
    run.wait_for(lambda r: r.get("type") == "step" and r["step"] > run.steps()[n - 1] + 2)  # still training
    group = run.engine.optimizer.param_groups[0]
    assert group["maximize"] is False and group["betas"] == (0.9, 0.999) and group["eps"] == 1e-8
    run.send(Stop(id=8))
    assert run.join().status == "stopped"


@pytest.mark.slow
def test_resume_from_a_nan_checkpoint_exits_2_before_any_run_dir(trained, tmp_path):
    bad = _save(tmp_path, _craft(_fresh(trained[0]), "weight", float("nan"), 0), "nan.pt")
    run_dir = tmp_path / "r"
    done = subprocess.run([sys.executable, "-m", "tuitrain", "synthetic", "--headless", "--epochs", "3", "--limit",
                           "200", "--batch-size", "50", "--device", "cpu", "--run-dir", str(run_dir),
                           "--resume", str(bad)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2, done.stderr[-2000:]  # before: 1, after creating the run dir
    error = [ln for ln in done.stderr.splitlines() if ln.startswith("tuitrain: error:")]
    assert len(error) == 1 and "non-finite" in error[0] and "Traceback" not in done.stderr
    assert not run_dir.exists()


# Nothing lost, nothing let in: failed saves and loads, kill -9 during saves and writes, leftover temp files.


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
