"""The engine's commands, applied between steps, each answered by an event."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from tests.helpers import ROOT, EngineRun
from tuitrain.commands import Load, Pause, Resume, Save, SetDevice, SetLR, Stop
from tuitrain.rundir import read_records


@pytest.mark.slow
def test_full_run_reports_epochs_and_saves(small_config):
    run = EngineRun(small_config()).start()
    result = run.join()
    assert result.status == "done" and result.epochs_done == 2 and result.step == 40
    epochs = [r for r in run.records if r["type"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert epochs[-1]["val_acc"] > 0.3  # well above chance (0.1) after 40 steps
    ckpt_dir = run.engine.checkpoint_dir
    assert (ckpt_dir / "last.pt").is_file() and (ckpt_dir / "best.pt").is_file()
    assert any(r["type"] == "hist" for r in run.records)


@pytest.mark.slow
def test_pause_blocks_steps_and_resume_restarts(small_config):
    run = EngineRun(small_config(epochs=50))
    run.send(Pause(id=1))
    run.start()
    run.wait_event("pause", 1)
    time.sleep(0.5)
    assert run.engine.state.step == 0
    run.send(Resume(id=2))
    run.wait_event("resume", 2)
    run.wait_for(lambda r: r["type"] == "step" and r["step"] >= 10)
    run.send(Pause(id=3))
    run.wait_event("pause", 3)
    frozen = run.engine.state.step
    time.sleep(0.5)
    assert run.engine.state.step == frozen
    run.send(Stop(id=4))
    assert run.join().status == "stopped"


@pytest.mark.slow
def test_set_lr_reaches_optimizer_and_bad_values_are_refused(small_config):
    run = EngineRun(small_config(epochs=50))
    run.send(Pause())
    run.start()
    run.send(SetLR(0.05, id=1))
    done = run.wait_event("lr", 1)
    assert done["ok"] and done["old"] == 0.001 and done["new"] == 0.05
    assert all(g["lr"] == 0.05 for g in run.engine.optimizer.param_groups)
    for i, bad in enumerate([0.0, -1.0, float("nan"), float("inf")], start=2):
        run.send(SetLR(bad, id=i))
        refused = run.wait_event("lr", i)
        assert refused["ok"] is False and "learning rate" in refused["reason"]
    assert run.engine.optimizer.param_groups[0]["lr"] == 0.05
    run.send(Stop())
    run.join()


@pytest.mark.slow
def test_save_and_load_round_trip(small_config):
    run = EngineRun(small_config(epochs=50))
    run.start()
    run.wait_for(lambda r: r["type"] == "step" and r["step"] >= 5)
    run.send(Pause(id=1))
    run.wait_event("pause", 1)
    run.send(Save(id=2))
    saved = run.wait_event("save", 2)
    assert saved["ok"] and saved["path"].endswith(f"step-{run.engine.state.step}.pt")
    weights = {k: v.clone() for k, v in run.engine.model.state_dict().items()}
    run.send(Resume(id=3))
    run.wait_for(lambda r: r["type"] == "step" and r["step"] >= saved["step"] + 10)
    run.send(Pause(id=4))
    run.wait_event("pause", 4)
    changed = run.engine.model.state_dict()
    assert not all(torch.equal(weights[k], changed[k]) for k in weights)
    run.send(SetLR(0.02, id=5))
    run.send(Load(saved["path"], id=6))
    loaded = run.wait_event("load", 6)
    assert loaded["ok"] and loaded["from_step"] == saved["step"]
    now = run.engine.model.state_dict()
    assert all(torch.equal(weights[k], now[k]) for k in weights)
    assert run.engine.lr == 0.02  # the LR the person set survives a load
    run.send(Load("/nonexistent.pt", id=7))
    refused = run.wait_event("load", 7)
    assert refused["ok"] is False and "does not exist" in refused["reason"]
    run.send(Stop())
    run.join()


@pytest.mark.slow
def test_device_switch_to_missing_device_is_refused(small_config):
    run = EngineRun(small_config(epochs=50))
    run.send(Pause())
    run.start()
    run.send(SetDevice("cpu", id=1))
    assert "already on cpu" in run.wait_event("device", 1)["reason"]
    if not torch.cuda.is_available():
        run.send(SetDevice("cuda", id=2))
        refused = run.wait_event("device", 2)
        assert refused["ok"] is False and "not available" in refused["reason"]
    run.send(Stop())
    run.join()


@pytest.mark.slow
def test_stop_writes_last_checkpoint(small_config):
    run = EngineRun(small_config(epochs=50))
    run.start()
    run.wait_for(lambda r: r["type"] == "step" and r["step"] >= 5)
    run.send(Stop(id=1))
    result = run.join()
    assert result.status == "stopped"
    ckpt = torch.load(run.engine.checkpoint_dir / "last.pt", weights_only=True)
    assert ckpt["step"] == result.step and ckpt["epoch"] == result.epochs_done
    assert run.records[-1]["event"] == "end"


@pytest.mark.slow
@pytest.mark.parametrize("accumulate", [1, 3])
def test_step_records_carry_the_real_gradient_norm(small_config, accumulate):
    # The norm is taken before the optimizer step frees the gradients (it once read 0.0 always).
    run = EngineRun(small_config(epochs=1, log_every=4, accumulate=accumulate)).start()
    result = run.join()
    assert result.status == "done"
    norms = [r["grad_norm"] for r in run.records if r.get("type") == "step"]
    assert len(norms) >= 4 and all(math.isfinite(n) and n > 0 for n in norms), norms
    assert max(norms) < 1e3


@pytest.mark.slow
def test_compile_on_cpu_drops_only_the_cuda_home_warning_and_only_while_it_trains(small_config, monkeypatch,
                                                                                   capsys):
    import logging

    from tuitrain.launch import run

    loader = logging.getLogger("torch.utils.cpp_extension")
    seen = []

    def compiling(model, **kwargs):  # compiles lazily, as torch.compile does: the loader logs at first calls
        def forward(*args, **kw):
            loader.warning("No CUDA runtime is found, using CUDA_HOME='%s'", "/usr/local")
            loader.warning("another loader warning")
            seen.append(1)
            return model(*args, **kw)
        return forward

    monkeypatch.setattr(torch, "compile", compiling)
    result = run(small_config(compile=True, epochs=1, limit=200), ui="headless")
    assert result.status == "done" and seen
    err = capsys.readouterr().err
    assert "CUDA_HOME" not in err and "another loader warning" in err
    loader.warning("No CUDA runtime is found, using CUDA_HOME='%s'", "/usr/local")  # the run is over
    assert "CUDA_HOME='/usr/local'" in capsys.readouterr().err


@pytest.mark.slow
def test_a_compile_failure_is_one_line_that_names_compile(small_config, monkeypatch, capsys):
    from tuitrain.launch import run

    class InvalidCxxCompiler(RuntimeError):
        """As torch._inductor raises it when no C++ compiler works."""

    InvalidCxxCompiler.__module__ = "torch._inductor.exc"

    def broken(model, **kwargs):
        def forward(*args, **kw):
            raise InvalidCxxCompiler("No working C++ compiler found\n\nSet TORCHDYNAMO_VERBOSE=1 for more")
        return forward

    monkeypatch.setattr(torch, "compile", broken)
    result = run(small_config(compile=True), ui="headless", show_traceback=True)
    assert result.status == "failed" and result.exit_code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "TORCHDYNAMO" not in err
    assert "--compile failed (InvalidCxxCompiler: No working C++ compiler found); run without --compile" in err


class Odd(Exception):
    """An exception type no load path names: a load must refuse it all the same."""


def _engine(small_config, **changes):
    from tuitrain.engine import Engine

    records: list[dict] = []
    engine = Engine(small_config(**changes), records.append)
    engine.setup()
    return engine, records


def _changed_since(engine, path):
    """Move the live state away from the checkpoint at ``path``: weights, moments, position, RNG."""
    with torch.no_grad():
        for p in engine.model.parameters():
            p.add_(0.5)
    inputs, targets = engine.task.split(engine.data.peek(4))
    engine.task.loss(engine.model(inputs), targets).backward()
    engine.optimizer.step()
    engine.optimizer.zero_grad()
    engine.state.epoch, engine.state.step = 1, 20
    torch.rand(3)
    assert not torch.equal(next(engine.model.parameters()), torch.load(path, weights_only=True)["model"]["conv1.weight"])


def _live(engine) -> tuple:
    return ({k: v.clone() for k, v in engine.model.state_dict().items()}, str(engine.optimizer.state_dict()),
            engine.scheduler.state_dict() if engine.scheduler else None, dict(vars(engine.state)),
            torch.get_rng_state(), engine.lr)


def _same_live(a: tuple, b: tuple) -> bool:
    weights = a[0].keys() == b[0].keys() and all(torch.equal(a[0][k], b[0][k]) for k in a[0])
    state_a, state_b = ({k: v for k, v in s.items() if k != "data_order"} for s in (a[3], b[3]))
    order = torch.equal(a[3]["data_order"], b[3]["data_order"])
    return weights and a[1] == b[1] and a[2] == b[2] and state_a == state_b and order and torch.equal(a[4], b[4]) \
        and a[5] == b[5]


@pytest.mark.slow
@pytest.mark.parametrize("resume", [False, True])
def test_load_rolls_back_on_an_unexpected_exception(small_config, monkeypatch, resume):
    """A failure after the checkpoint was partly applied, of a type nothing catches by name: the
    load is refused as one line, and everything it touched is as before."""
    from tuitrain import schedule
    from tuitrain.errors import CheckpointError

    engine, _ = _engine(small_config, epochs=3, scheduler="cosine", lr=0.002)
    path = engine.save("good.pt")
    _changed_since(engine, path)
    engine.set_lr(0.004)
    before = _live(engine)

    def fail(*args):
        raise Odd("half-way\nsecond line")

    monkeypatch.setattr(schedule, "set_lr", fail)  # called after the weights and moments were applied
    if resume:
        engine.config = engine.config.replace(lr=0.003)  # --lr given anew: the resume sets it last
    with pytest.raises(CheckpointError) as info:
        engine.load(path, resume=resume)
    assert str(info.value) == f"checkpoint {path} cannot be loaded (Odd: half-way)"
    assert _same_live(_live(engine), before)
    monkeypatch.undo()
    assert engine.load(path) == 0  # and the same file loads once nothing breaks
    assert not _same_live(_live(engine), before)


@pytest.mark.slow
def test_a_load_that_fails_half_way_is_refused_and_the_run_goes_on(small_config, monkeypatch):
    from tuitrain import checkpoints

    real, calls = checkpoints.restore, []

    def restore_then_fail(ckpt, parts, resume=False, path="the checkpoint"):
        calls.append(path)
        real(ckpt, parts, resume, path)
        if len(calls) == 1:  # the load; the rollback after it restores from the snapshot
            raise ZeroDivisionError("not a type a load names")

    monkeypatch.setattr(checkpoints, "restore", restore_then_fail)
    run = EngineRun(small_config(epochs=50))
    run.send(Pause(id=1))
    run.start()
    run.wait_event("pause", 1)
    run.send(Save("good.pt", id=2))
    path = run.wait_event("save", 2)["path"]
    run.send(Resume(id=3))
    run.wait_for(lambda r: r["type"] == "step" and r["step"] >= 10)
    run.send(Pause(id=4))
    run.wait_event("pause", 4)
    before = {k: v.clone() for k, v in run.engine.model.state_dict().items()}
    run.send(Load(path, id=5))
    answer = run.wait_event("load", 5)
    assert answer["ok"] is False and "ZeroDivisionError: not a type a load names" in answer["reason"]
    assert len(calls) == 2
    after = run.engine.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    run.send(Resume(id=6))
    step = run.engine.state.step
    run.wait_for(lambda r: r["type"] == "step" and r["step"] >= step + 5)  # still training
    run.send(Stop(id=7))
    assert run.join().status == "stopped"


# The divergence guard: a run whose loss turns NaN stops (headless, CLI exit 1) or pauses (dashboard),
# and never saves the diverged weights.


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


def test_a_divergence_keeps_the_last_epochs_checkpoint_it_points_to(small_config):
    # An LR of 1e30: the guard skips the non-finite updates, so the weights stay finite but wrecked
    # (about 1e30). Before, the stop saved them over last.pt and then said to resume from it.
    run = EngineRun(small_config(epochs=100, limit=500, batch_size=50)).start()
    run.wait_event("save")  # last.pt of epoch 1
    run.send(Pause(id=1))
    run.wait_event("pause", 1)  # no save between reading last.pt and the divergence
    good = (run.engine.checkpoint_dir / "last.pt").read_bytes()
    run.send(SetLR(1e30, id=2))
    run.send(Resume(id=3))
    result = run.join()
    assert result.status == "failed" and "resume from checkpoints/last.pt (saved before it)" in result.message
    assert (run.engine.checkpoint_dir / "last.pt").read_bytes() == good
    assert max(p.abs().max().item() for p in run.engine.model.parameters()) > 1e20  # what was not saved


def test_a_divergence_before_any_checkpoint_says_to_start_again(small_config, nan_model):
    run = EngineRun(small_config(model=nan_model, epochs=5, limit=2000)).start()  # NaN at step 31 of 40
    result = run.join()
    assert result.status == "failed" and result.message.endswith("lower the learning rate and start again")
    assert not (run.engine.checkpoint_dir / "last.pt").exists()


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
