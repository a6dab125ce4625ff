"""tuitrain.fit with a user's own model and datasets (the DataLoader path), and compare-watch."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from tests.helpers import ROOT
from tuitrain.compare_app import CompareApp
from tuitrain.rundir import expand_runs
from tuitrain.widgets.compare_curves import CompareCurves


def _example():
    spec = importlib.util.spec_from_file_location("fit_custom", ROOT / "examples" / "fit_custom.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_example_runs_headless(tmp_path):
    result = _example().main(epochs=3, headless=True, run_dir=str(tmp_path / "run"))
    assert result.status == "done" and result.epochs_done == 3 and result.best_val_acc > 0.8
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert set(ckpt["model"]) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "out.weight", "out.bias"}
    assert list((tmp_path / "run").glob("events.out.tfevents.*"))  # in the run dir: TensorBoard names it "run"


@pytest.mark.slow
def test_fit_resume_is_exact_on_the_dataloader_path(tmp_path):
    example = _example()
    import tuitrain

    def fit(epochs, run_dir, resume=""):
        torch.manual_seed(0)
        return tuitrain.fit(example.SpiralNet(), example.spirals(seed=0), example.spirals(300, seed=1),
                            epochs=epochs, batch_size=64, lr=0.01, headless=True, run_dir=str(tmp_path / run_dir),
                            resume=resume)

    fit(4, "a")
    fit(2, "b")
    fit(4, "c", resume=str(tmp_path / "b" / "checkpoints" / "last.pt"))
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)["model"]
    c = torch.load(tmp_path / "c" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], c[k]) for k in a)


async def test_watch_compares_several_runs(tmp_path):
    from tests.fakes import scripted_run
    from tuitrain.rundir import RunLog

    for name, scale in (("run-a", 1.0), ("run-b", 0.5)):
        log = RunLog(tmp_path / "sweep" / name)
        log.write_config({"dataset": "synthetic"})
        for record in scripted_run():
            if record["type"] == "step":
                record = {**record, "loss": record["loss"] * scale}
            log.write(record)
        log.close()
    runs = expand_runs([str(tmp_path / "sweep")])
    assert [p.name for p in runs] == ["run-a", "run-b"]
    app = CompareApp(runs)
    async with app.run_test(size=(120, 40)) as pilot:
        curves = app.query_one(CompareCurves)
        for _ in range(100):
            await pilot.pause(0.02)
            if all(len(s) for s in curves.train_loss):
                break
        assert [s.ys[0] for s in curves.train_loss] == [2.3 / (1 + 10 / 30), 0.5 * 2.3 / (1 + 10 / 30)]
        assert app.best == [0.85, 0.85]
        curves.redraw()
        await pilot.press("q")
