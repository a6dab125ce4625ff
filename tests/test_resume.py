"""Resume is exact: an interrupted and resumed run ends with bitwise the same weights (CPU)."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import EngineRun
from tuitrain.commands import Save, Stop


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
