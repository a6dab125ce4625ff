"""The engine's commands, applied between steps, each answered by an event."""

from __future__ import annotations

import math
import time

import pytest
import torch

from tests.conftest import EngineRun
from tuitrain.commands import Load, Pause, Resume, Save, SetDevice, SetLR, Stop


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


@pytest.mark.parametrize("accumulate", [1, 3])
def test_step_records_carry_the_real_gradient_norm(small_config, accumulate):
    # The norm is taken before the optimizer step frees the gradients (it once read 0.0 always).
    run = EngineRun(small_config(epochs=1, log_every=4, accumulate=accumulate)).start()
    result = run.join()
    assert result.status == "done"
    norms = [r["grad_norm"] for r in run.records if r.get("type") == "step"]
    assert len(norms) >= 4 and all(math.isfinite(n) and n > 0 for n in norms), norms
    assert max(norms) < 1e3


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
