"""The dashboard for a run without accuracy (regression): the second plot shows the first user
metric, the numbers list the validation values and the best monitored one; no summary is no crash."""

from __future__ import annotations

from tests.fakes import FakeBackend, start_event
from tuitrain.app import TuiTrainApp
from tuitrain.widgets.curves import Curves
from tuitrain.widgets.status import StatusLine
from tuitrain.widgets.summary import SummaryPanel


def _regression_run() -> list[dict]:
    records = [start_event(classification=False, metrics=["mae", "r2"], monitor="val_loss", summary=None,
                           summary_error="TypeError: forward() missing 1 required argument")]
    for step in range(10, 201, 10):
        records.append({"type": "step", "step": step, "epoch": 1 + step // 100, "batch": step % 100,
                        "loss": 1 / step, "lr": 0.001, "samples_per_s": 9000.0, "time": float(step)})
        if step % 100 == 0:
            epoch = step // 100
            records.append({"type": "epoch", "epoch": epoch, "step": step, "train_loss": 1 / step,
                            "val_loss": 0.5 / epoch, "val_mae": 0.3 / epoch, "val_r2": 0.4 * epoch, "lr": 0.001,
                            "train_seconds": 1.0, "paused_seconds": 0.0, "best": True, "monitor": "val_loss",
                            "time": float(step)})
    return records


async def test_regression_run_plots_its_first_metric_and_the_monitored_best():
    app = TuiTrainApp(FakeBackend(_regression_run()))
    async with app.run_test(size=(160, 48)) as pilot:
        curves = app.query_one(Curves)
        for _ in range(50):
            await pilot.pause()
            if app.query_one(StatusLine).state == "RUNNING" and len(curves.val_loss) == 2:
                break
        assert curves.second == "mae" and curves.val_acc.ys == [0.3, 0.15] and not curves.train_acc.ys
        curves.redraw()
        numbers = str(curves.query_one("#numbers").render())
        assert "mae 0.1500" in numbers and "r2 0.8000" in numbers and "acc" not in numbers
        assert "best loss 0.2500 (ep 2)" in numbers
        totals = str(app.query_one(SummaryPanel).query_one("#summary-totals").render())
        assert "no summary: TypeError" in totals
        await pilot.press("q")
