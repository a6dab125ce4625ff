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
