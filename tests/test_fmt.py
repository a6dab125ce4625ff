"""One number, one look: tuitrain/fmt.py's text for each kind of value, and every surface (sweep
table, ``tuitrain runs``, the headless progress lines, the comparison and the dashboard) showing the
same text for the same value."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.fakes import start_event
from tests.helpers import compare_loaded, record_run, until
from tuitrain import fmt, models, progress, sweep
from tuitrain.rundir import format_runs, list_runs

METRICS = [
    ("val_acc", 0.5718, "57.18%"),
    ("best_val_acc", 1.0, "100.00%"),
    ("train_acc", 0.99999, "100.00%"),
    ("acc", 0.1, "10.00%"),
    ("val_subset_acc", 0.25, "25.00%"),
    ("top1_accuracy", 0.5, "50.00%"),
    ("val_acc", None, "-"),
    ("val_acc", float("nan"), "-"),
    ("val_loss", 0.34121, "0.3412"),
    ("val_loss", 2.302585, "2.3026"),
    ("val_loss", 0.007770459409803152, "0.00777"),  # not 0.0078, not 17 digits
    ("loss", 2e-5, "2e-05"),
    ("val_loss", 12345.6, "1.23e+04"),
    ("val_loss", 0.0, "0.0000"),
    ("val_loss", float("inf"), "inf"),
    ("val_mse", 0.05, "0.0500"),
    ("val_ppl", 142.3871, "142.3871"),
    ("val_dice", 0.8123, "0.8123"),
    ("lr", 0.001, "0.001"),
    ("lr", 0.000512345, "0.000512"),
    ("train_seconds", 200.0, "3m20s"),
    ("epochs_done", 1000, "1,000"),
    ("status", "done", "done"),
]


@pytest.mark.parametrize(("name", "value", "text"), METRICS, ids=[f"{n}={v}" for n, v, _ in METRICS])
def test_a_metric_reads_by_its_name(name, value, text):
    assert fmt.metric(name, value) == text


def test_counts_shapes_settings_and_event_fields():
    assert fmt.count(1000) == "1,000" and fmt.count(23926) == "23,926"
    assert fmt.shape([1, 6, 24, 24]) == "6x24x24" and fmt.shape((1, 10)) == "10" and fmt.shape([1]) == "-"
    assert [fmt.param("lr", 0.0012345), fmt.param("momentum", 0.9), fmt.param("weight_decay", 5e-4)] == \
        ["0.00123", "0.9", "0.0005"]
    assert fmt.param("batch_size", 100) == "100" and fmt.param("devices", ["cpu", "cuda:0"]) == "cpu,cuda:0"
    early = {"monitor": "val_loss", "best": 0.007770459409803152, "best_epoch": 3, "patience": 2}
    assert fmt.details(early) == "monitor=val_loss best=0.00777 best_epoch=3 patience=2"
    assert fmt.details({"monitor": "val_acc", "best": 0.5718}) == "monitor=val_acc best=57.18%"
    assert fmt.details({"old": 0.1, "new": 0.00051234}, "lr") == "old=0.1 new=0.000512"


def test_summary_shapes_read_as_in_the_model_panel():
    rows = (models.SummaryRow("conv1", "Conv2d", 1, (1, 6, 24, 24), 156, "True"),)
    text = models.format_summary(models.ModelSummary(rows, 156, 156, 0.0006))
    assert "6x24x24" in text and "[1, 6, 24, 24]" not in text


# ------------------------------------------------------------------ one value on every surface
ACC, LOSS = 0.5718, 0.007770459409803152


def _finished_run(run_dir: Path) -> None:
    epoch = {"type": "epoch", "epoch": 1, "step": 1000, "time": 2.0, "val_acc": ACC, "val_loss": LOSS,
             "train_loss": 0.5, "train_acc": 0.5, "lr": 0.001, "train_seconds": 1.5, "best": True}
    end = {"type": "event", "event": "end", "step": 1000, "epoch": 1, "time": 3.0, "status": "done",
           "best_val_acc": ACC, "best": ACC, "monitor": "val_acc", "epochs_done": 1}
    log = record_run(run_dir, [start_event(epochs=1, steps_per_epoch=1000, total_steps=1000), epoch, end], "done")
    log.write_status({"state": "done", "epoch": 1, "epochs": 1, "best_val_acc": ACC})
    log.close()


def test_the_sweep_table_runs_and_log_lines_show_the_same_text(tmp_path):
    run = tmp_path / "my-sweep" / "01-lr=0.001"
    _finished_run(run)
    shown_acc, shown_loss = fmt.metric("val_acc", ACC), fmt.metric("val_loss", LOSS)
    assert (shown_acc, shown_loss) == ("57.18%", "0.00777")

    table = sweep.format_table([{"lr": 0.001, **sweep.summarize_run(run, "done")}], ["lr"])
    assert shown_acc in table and shown_loss in table and "0.5718" not in table

    assert shown_acc in format_runs(list_runs(tmp_path))

    out = io.StringIO()
    lines = progress.Progress(out, tty=False)
    lines(start_event(epochs=1, steps_per_epoch=1000, total_steps=1000))
    lines({"type": "epoch", "epoch": 1, "step": 1000, "val_acc": ACC, "val_loss": LOSS, "train_seconds": 1.5})
    lines({"type": "event", "event": "early_stop", "step": 1000, "epoch": 1, "ok": True, "monitor": "val_loss",
           "best": LOSS, "best_epoch": 1, "patience": 2})
    text = out.getvalue()
    assert f"val_acc {shown_acc}" in text and f"val_loss {shown_loss}" in text and f"best={shown_loss}" in text
    assert "0.00777046" not in text

    result = SimpleNamespace(status="done", epochs_done=1, step=1000, best_val_acc=ACC, message="", best=LOSS,
                             monitor="val_loss", best_epoch=1)
    assert f"best val_loss {shown_loss}" in progress.final_line(result, str(run))
    assert "step 1,000/1,000" in progress.status_line(str(run), [start_event(total_steps=1000),
                                                                   {"type": "step", "step": 1000}], "done")


async def test_the_comparison_and_the_dashboard_show_the_same_text(tmp_path):
    from tuitrain.app import TuiTrainApp
    from tuitrain.backends import WatchBackend
    from tuitrain.compare_app import CompareApp
    from tuitrain.widgets.curves import Curves
    from tuitrain.widgets.histograms import Histograms
    from tuitrain.widgets.status import StatusLine, first_line

    run = tmp_path / "my-sweep" / "01-lr=0.001"
    _finished_run(run)
    app = CompareApp([run])
    async with app.run_test(size=(160, 48)) as pilot:
        await compare_loaded(pilot, app)
        row = app.query_one("DataTable").get_row_at(0)
        assert "57.18%" in row and "0.00777" in row, row
    dash = TuiTrainApp(WatchBackend(run))
    async with dash.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: dash.run_state.finished, "the run's end")
        await pilot.pause()  # one frame drawn with it
        status = dash.query_one(StatusLine)
        assert "best val_acc 57.18%" in status.run.note
        numbers = dash.query_one(Curves)._numbers().plain
        assert "57.18%" in numbers and "0.00777" in numbers, numbers
        assert "step 1,000/1,000" in first_line(status.run, 160).plain
        assert "step 1,000" in dash.query_one(Histograms).query_one("#hist-title").render().plain or \
            not dash.query_one(Histograms).record  # this run has no histogram record: nothing to compare


def test_notifications_show_steps_and_learning_rates_as_every_other_surface():
    from tuitrain.runstate import notice_for

    def said(**fields) -> str:
        notice = notice_for({"type": "event", "step": 12345, "epoch": 3, "ok": True, **fields})
        assert notice is not None
        return notice.message

    assert said(event="pause") == "paused at step 12,345"
    assert said(event="lr", old=0.000912345678, new=0.0005) == "learning rate 0.000912 → 0.0005"
