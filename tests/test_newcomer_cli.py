"""The command line as a newcomer meets it (issue 15): hints, watch into a file, the headless log,
and numbers and tables that read the same everywhere."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.fakes import scripted_run
from tests.helpers import record_run
from tuitrain import fmt, progress
from tuitrain.cli import main
from tuitrain.keys import KEYS
from tuitrain.rundir import RunInfo, format_runs


# ------------------------------------------------------------------------------- numbers
def test_one_formatter_per_kind_of_number():
    assert fmt.acc(0.993) == "99.30%" and fmt.acc(None) == "-" and fmt.acc(float("nan")) == "-"
    assert fmt.loss(0.34121) == "0.3412" and fmt.loss(12345.6) == "1.23e+04" and fmt.loss(2e-5) == "2e-05"
    assert fmt.lr(0.001) == "0.001" and fmt.lr(0.000512345) == "0.000512" and fmt.lr(1e-5) == "1e-05"
    assert [fmt.seconds(s) for s in (6.101, 45.9, 200, 3720, None, -1)] == ["6.1s", "45s", "3m20s", "1h02m", "-", "-"]
    assert [fmt.size(b) for b in (771, 3084, 132_000, 1_234_567)] == ["771 B", "3.08 KB", "132 KB", "1.23 MB"]
    assert fmt.count(23926) == "23,926" and fmt.count(9.2) == "9"
    assert fmt.plural(1, "epoch") == "1 epoch" and fmt.plural(2, "epoch") == "2 epochs"


def test_final_line_says_1_epoch_and_accuracy_as_everywhere():
    result = SimpleNamespace(status="done", epochs_done=1, step=100, best_val_acc=0.993, message="")
    assert progress.final_line(result, "runs/x") == \
        "tuitrain: done after 1 epoch (100 steps); best val_acc 99.30%; run dir runs/x"


def test_a_tiny_model_has_a_size_not_0_mb():
    from tuitrain import models

    summary = models.ModelSummary((), 771, 771, 771 * 4 / 1e6)
    assert "Size: 3.08 KB" in models.format_summary(summary)


def test_summary_long_layer_names_keep_the_shape_column():
    from tuitrain import models

    rows = tuple(models.SummaryRow(name, "Linear", 1, (1, 10), 10, "True") for name in
                 ("a_very_long_layer_name_indeed_for_a_head", "fc"))
    text = models.format_summary(models.ModelSummary(rows, 20, 20, 0.0001))
    lines = text.splitlines()
    starts = {line.index(" 10 ") + 1 for line in lines if " 10 " in line}
    assert len(starts) == 1 and lines[0].index("Output shape") == starts.pop()


def test_runs_table_keeps_columns_aligned_with_long_names():
    names = ["short", "sweep-fashion-mnist-20250101-120000-lr=0.001-batch_size=1000-x"]
    runs = [RunInfo(Path("runs") / n, "done", 3, 3, 0.9123, 1_700_000_000.0, "cpu") for n in names]
    lines = format_runs(runs).splitlines()
    assert len({line.index("done") for line in lines[2:]}) == 1
    assert lines[0].index("status") == lines[2].index("done") and "91.23%" in lines[2]


# ------------------------------------------------------------------------------- hints
HINTS = [
    (["train", "synthetic"], "there is no `train` subcommand: train with `tuitrain synthetic`"),
    (["synthetic", "--learning-rate", "0.01"], "did you mean --lr?"),
    (["synthetic", "--batchsize", "10"], "did you mean --batch-size?"),
    (["synthetic", "--epocs", "3"], "did you mean --epochs?"),
    (["synthetic", "--lr", "0.01,0.001"], "`tuitrain sweep DATASET --lr 0.01,0.001` trains one run per"),
    (["synthetic", "--batch-size", "100,1000"], "`tuitrain sweep DATASET ...` trains one run per"),
    (["synthetic", "--limit", "0"], "--limit: must be above 0"),
    (["synthetic", "--lr", "0"], "learning rate must be above 0, got 0"),
]


@pytest.mark.parametrize("argv,needle", HINTS, ids=[" ".join(a) for a, _ in HINTS])
def test_usage_errors_say_what_to_do(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tuitrain: error:") and needle in err[0], err
    assert not (tmp_path / "runs").exists()


def test_no_arguments_prints_a_short_usage_with_an_example(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "tuitrain synthetic --epochs 3" in err and "tuitrain --help" in err and len(err.splitlines()) <= 4


def test_help_lists_every_key_from_the_key_list(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    keys = out[out.index("keys in the dashboard"):out.index("exit codes")]
    for key in KEYS:
        assert f"{key.shown} {key.brief}" in " ".join(keys.split()), key.shown
    assert max(map(len, out.splitlines())) <= 80
    assert "--limit N" in out and "[all]" in out


# ------------------------------------------------------------------------------- headless log
def _step(step: int, when: float) -> dict:
    return {"type": "step", "step": step, "epoch": 1 + step // 100, "loss": 0.5, "acc": 0.8, "lr": 0.001,
            "samples_per_s": 1000.0, "time": when}


def test_headless_log_starts_with_the_run_dir_and_the_watch_command(monkeypatch):
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)
    out = io.StringIO()
    prog = progress.Progress(out, tty=False, run_dir="runs/my run")
    start = {"type": "event", "event": "start", "step": 0, "time": 1000.0, "epochs": 3, "steps_per_epoch": 100,
             "total_steps": 300, "device": "cpu", "start_epoch": 0, "model": "cnn", "dataset": "synthetic",
             "samples": 10000, "batch_size": 100}
    for record in [start, _step(100, 1010.0),
                   {"type": "event", "event": "pause", "step": 100, "time": 1010.0, "ok": True},
                   {"type": "event", "event": "resume", "step": 100, "time": 1050.0, "ok": True},
                   _step(150, 1015.0 + 40.0),
                   {"type": "epoch", "epoch": 1, "step": 100, "train_loss": 0.6, "train_acc": 0.8, "val_loss": 0.5,
                    "val_acc": 0.85, "train_seconds": 6.1, "paused_seconds": 40.0, "best": True, "time": 1011.0}]:
        prog(record)
    lines = out.getvalue().splitlines()
    assert lines[0] == "tuitrain: run dir runs/my run; watch it live with: tuitrain watch 'runs/my run'"
    assert lines[1] == "training cnn on synthetic (10,000 samples) on cpu: 3 epochs x 100 steps"
    assert lines[2].endswith("elapsed 10s ETA 20s")  # 100 steps in 10 s, 200 to go
    assert lines[5].endswith("elapsed 15s ETA 15s")  # the 40 s paused count in neither
    assert lines[6].endswith("val_acc 85.00% (best) [6.1s, paused 40s]")


# ------------------------------------------------------------------------------- watch into a file


def test_watch_a_finished_run_into_a_file_prints_its_status_and_exits(tmp_path, capsys):
    records = scripted_run() + [{"type": "event", "event": "end", "step": 150, "time": 2.0, "status": "done",
                                 "best_val_acc": 0.85}]
    record_run(tmp_path / "run", records, "done").close()
    started = time.monotonic()
    assert main(["watch", str(tmp_path / "run")]) == 0  # stdout is captured: not a terminal
    out = capsys.readouterr().out
    assert time.monotonic() - started < 5 and "\x1b" not in out
    assert out.strip() == f"tuitrain: {tmp_path / 'run'}: done, epoch 1/3, step 150/300, best val_acc 85.00%"


def test_watch_a_live_run_into_a_file_follows_it_until_it_ends(tmp_path, monkeypatch):
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)
    log = record_run(tmp_path / "run", scripted_run(steps=50), "running")
    out = io.StringIO()
    follower = threading.Thread(target=progress.watch_plain, args=(str(tmp_path / "run"), out, 0.02))
    follower.start()
    time.sleep(0.2)
    for step in (60, 70):
        log.write(_step(step, 100.0 + step))
    log.write({"type": "event", "event": "lr", "step": 70, "time": 171.0, "ok": True, "old": 0.001, "new": 0.01})
    log.write({"type": "event", "event": "end", "step": 70, "time": 172.0, "status": "stopped", "best_val_acc": None})
    follower.join(10)
    assert not follower.is_alive()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"tuitrain: {tmp_path / 'run'}: running, epoch 0/3, step 50/300")
    assert "step 60/300" in lines[1] and "step 70/300" in lines[2] and lines[3].startswith("lr:")
    assert lines[4] == f"tuitrain: {tmp_path / 'run'}: stopped at step 70; best val_acc -"
    assert "\x1b" not in out.getvalue()


def test_watch_several_runs_into_a_file_prints_the_runs_table(tmp_path, capsys):
    for name in ("a", "b"):
        record_run(tmp_path / "sweep" / name, scripted_run(), "done").close()
    assert main(["watch", str(tmp_path / "sweep")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["run", "status"] and sorted(line.split()[0] for line in lines[2:]) == ["a", "b"]
    assert main(["watch", str(tmp_path)]) == 2  # neither a run nor a folder of runs


def test_a_divergence_pause_is_not_counted_as_training_time():
    """The engine's divergence pause is a ``nonfinite`` event that is not ok (training diverged), yet
    the run is paused: until resumed, that time is no training time (it counted, ETA and all)."""
    prog = progress.Progress(io.StringIO(), tty=False)
    prog({"type": "event", "event": "start", "step": 0, "time": 0.0, "epochs": 1, "steps_per_epoch": 100,
          "total_steps": 100, "device": "cpu", "start_epoch": 0, "model": "cnn", "dataset": "synthetic",
          "samples": 100, "batch_size": 1})
    prog({"type": "event", "event": "nonfinite", "step": 10, "time": 10.0, "ok": False, "action": "paused",
          "loss": float("nan"), "grad_norm": float("nan")})
    prog({"type": "event", "event": "resume", "step": 10, "time": 110.0, "ok": True})
    assert prog.elapsed(120.0) == 20.0
