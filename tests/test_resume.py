"""Resume is exact: an interrupted and resumed run ends with bitwise the same weights (CPU); and it
goes on with the checkpoint's own settings, optimizer and best checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import tuitrain
from tests.helpers import EngineRun
from tuitrain.cli import main
from tuitrain.commands import Save, Stop
from tuitrain.errors import CheckpointError
from tuitrain.progress import resumed_at


def _weights(run_dir):
    return torch.load(f"{run_dir}/checkpoints/last.pt", weights_only=True)["model"]


@pytest.mark.slow
def test_four_straight_equals_two_plus_two(small_config, tmp_path):
    straight = EngineRun(small_config(epochs=4, run_dir=str(tmp_path / "a"))).start()
    straight.join()
    first = EngineRun(small_config(epochs=2, run_dir=str(tmp_path / "b"))).start()
    first.join()
    second = EngineRun(small_config(epochs=4, run_dir=str(tmp_path / "c"),
                                    resume=str(tmp_path / "b" / "checkpoints" / "last.pt"))).start()
    assert second.join().epochs_done == 4
    a, c = _weights(tmp_path / "a"), _weights(tmp_path / "c")
    assert a.keys() == c.keys()
    assert all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.slow
def test_mid_epoch_resume_is_exact(small_config, tmp_path):
    straight = EngineRun(small_config(epochs=2, run_dir=str(tmp_path / "a"))).start()
    straight.join()
    cut = EngineRun(small_config(epochs=2, run_dir=str(tmp_path / "b")))
    cut.start()
    cut.wait_for(lambda r: r["type"] == "step" and r["step"] >= 25)  # epoch 2 of 20 steps each
    cut.send(Save("mid.pt", id=1))
    saved = cut.wait_event("save", 1)
    cut.send(Stop())
    cut.join()
    mid = torch.load(saved["path"], weights_only=True)
    assert mid["epoch"] == 1 and 0 < mid["batch"] < 20
    resumed = EngineRun(small_config(epochs=2, run_dir=str(tmp_path / "c"), resume=saved["path"])).start()
    resumed.join()
    a, c = _weights(tmp_path / "a"), _weights(tmp_path / "c")
    assert all(torch.equal(a[k], c[k]) for k in a)


# ----------------------------------------------------------------- after a kill
def _claiming_best(run_dir, best_epoch: int) -> str:
    """A run of 2 epochs whose last.pt names ``best_epoch`` as best and whose best.pt is gone: what a
    kill during the best.pt save leaves (last.pt is written first)."""
    from tuitrain import checkpoints

    last = run_dir / "checkpoints" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    ckpt["best_epoch"] = best_epoch
    checkpoints.save_checkpoint(last, ckpt)
    for name in ("best.pt", "best.pt.sha256"):
        (run_dir / "checkpoints" / name).unlink(missing_ok=True)
    return str(last)


def test_resume_rewrites_a_missing_best_pt_from_the_state_it_loads(small_config, tmp_path):
    run_dir = tmp_path / "run"
    EngineRun(small_config(epochs=2, run_dir=str(run_dir))).start().join()
    last = _claiming_best(run_dir, 2)
    resumed = EngineRun(small_config(epochs=3, run_dir=str(run_dir), resume=last)).start()
    saved = resumed.wait_event("save")
    assert saved["ok"] and saved["path"].endswith("best.pt") and saved["step"] == 40  # before any step
    resumed.join()
    assert torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["epoch"] >= 2


def test_resume_drops_a_best_claim_it_cannot_back_and_the_next_epoch_is_best(small_config, tmp_path):
    run_dir = tmp_path / "run"
    EngineRun(small_config(epochs=2, run_dir=str(run_dir))).start().join()
    last = _claiming_best(run_dir, 1)  # best.pt of epoch 1 lost; last.pt is epoch 2's
    resumed = EngineRun(small_config(epochs=3, run_dir=str(run_dir), resume=last)).start()
    said = resumed.wait_event("save")
    assert said["ok"] is False and "best.pt of epoch 1" in said["reason"]  # before: nothing said
    result = resumed.join()
    assert result.best_epoch == 3 and result.best_checkpoint  # before: best.pt stayed missing
    assert torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["epoch"] == 3


def test_a_kill_between_the_epoch_record_and_last_pt_records_the_epoch_once(small_config, tmp_path):
    """The epoch's record is written, then last.pt: a kill in between and a resume retrain that
    epoch exactly; its record (and confusion) must not be written a second time."""
    import shutil

    from tuitrain.rundir import read_records
    from tuitrain.session import Session

    def session(**changes):
        s = Session(small_config(run_dir=str(run_dir), **changes), on_record=lambda record: None)
        s.prepare()
        s.open_run_dir()
        return s.run()

    run_dir = tmp_path / "run"
    ckpts = run_dir / "checkpoints"
    session(epochs=1)
    for name in ("last.pt", "last.pt.sha256"):
        shutil.copy(ckpts / name, tmp_path / name)
    session(epochs=2, resume=str(ckpts / "last.pt"))
    for name in ("last.pt", "last.pt.sha256"):  # last.pt as it was when the kill came
        shutil.copy(tmp_path / name, ckpts / name)
    assert session(epochs=2, resume=str(ckpts / "last.pt")).status == "done"
    found = read_records(run_dir / "metrics.jsonl")
    assert [r["epoch"] for r in found if r["type"] == "epoch"] == [1, 2]  # before: [1, 2, 2]
    assert [r["epoch"] for r in found if r["type"] == "confusion"] == [1, 2]
    assert [r["event"] for r in found if r["type"] == "event"].count("start") == 3


# ------------------------------------------------------------------ resuming under tuitrain.fit and the CLI


def _classifier_data(n: int = 240, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=gen)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()


def _fit(run_dir, **kwargs):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    kwargs.setdefault("epochs", 3)
    return model, tuitrain.fit(model, _classifier_data(), _classifier_data(60, 1), headless=True, device="cpu",
                               run_dir=str(run_dir), batch_size=32, **kwargs)


def test_resuming_into_a_new_run_dir_brings_its_best_checkpoint(tmp_path):
    """Before: best/best_epoch reported the old run while best_checkpoint was None and restore_best
    was skipped. Now best.pt comes along, and the model ends with the best epoch's weights."""
    _, first = _fit(tmp_path / "a", epochs=3, monitor="val_loss")
    best_epoch = first.best_epoch
    model, second = _fit(tmp_path / "b", epochs=4, monitor="val_loss", lr=3.0,  # overshoots: no better
                         resume=first.last_checkpoint)
    assert second.epochs_done == 4 and second.best_epoch == best_epoch and second.best == first.best
    assert second.best_checkpoint is not None and str(tmp_path / "b") in second.best_checkpoint
    best = torch.load(second.best_checkpoint, weights_only=True)
    assert best["best_epoch"] == best_epoch
    assert all(torch.equal(v, best["model"][k]) for k, v in model.state_dict().items())  # restore_best ran


def test_resuming_without_epochs_trains_the_checkpoints_own_number(tmp_path):
    """A 5-epoch run stopped after 2 (its last.pt holds epochs=5): resumed without epochs=, it goes to 5,
    not to fit's default of 10; epochs= given anew wins (and other settings are fit's arguments as given)."""
    _, first = _fit(tmp_path / "a", epochs=5, early_stopping=1, lr=10.0)  # diverging: stops early
    assert first.epochs_done < 5
    _, second = _fit(tmp_path / "b", epochs=10, resume=first.last_checkpoint, lr=0.001)  # 10: fit's default
    assert second.epochs_done == 5, second.epochs_done
    _, third = _fit(tmp_path / "c", epochs=7, resume=first.last_checkpoint)
    assert third.epochs_done == 7 and third.stop_reason == ""  # early_stopping=1 is not carried over


def test_cli_resume_takes_the_checkpoints_settings_unless_given(tmp_path, fmnist_dir, capsys):
    common = ["fashion-mnist", "--model", "mlp", "--data-dir", str(fmnist_dir), "--limit", "200", "--headless"]
    assert main([*common, "--epochs", "3", "--batch-size", "50", "--optimizer", "sgd", "--run-dir",
                 str(tmp_path / "a")]) == 0
    # last.pt's own settings: 3 epochs, sgd, batch 50; resumed with --epochs 4 alone
    ckpt = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["config"]["epochs"] == 3 and ckpt["epoch"] == 3
    capsys.readouterr()
    code = main([*common, "--epochs", "4", "--run-dir", str(tmp_path / "b"),
                 "--resume", str(tmp_path / "a" / "checkpoints" / "last.pt")])
    assert code == 0
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["optimizer"] == "sgd" and config["batch_size"] == 50 and config["epochs"] == 4
    assert "resumed at epoch 4" in capsys.readouterr().err
    code = main([*common, "--epochs", "5", "--optimizer", "adam", "--run-dir", str(tmp_path / "c"),
                 "--resume", str(tmp_path / "a" / "checkpoints" / "last.pt")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "trained with optimizer sgd, this run uses adam" in err and "--optimizer sgd" in err, err
    assert "lacks" not in err


def test_another_optimizer_on_load_is_named(tmp_path):
    _, first = _fit(tmp_path / "a", epochs=1, optimizer="sgd")
    with pytest.raises(CheckpointError, match="trained with optimizer sgd, this run uses adam"):
        _fit(tmp_path / "b", epochs=2, optimizer="adam", resume=first.last_checkpoint)


def test_a_mid_epoch_one_checkpoint_says_epoch_one():
    assert resumed_at({"start_epoch": 0, "start_batch": 7}) == ", resumed at epoch 1 batch 8"
    assert resumed_at({"start_epoch": 3, "start_batch": 0}) == ", resumed at epoch 4"
    assert resumed_at({"start_epoch": 2}) == ", resumed at epoch 3"
