"""The CLI: exit codes and one-line errors for bad input, --help without torch, end to end runs."""

from __future__ import annotations

import functools
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.fakes import scripted_run
from tests.helpers import ROOT, EngineRun, record_run, wait, write_fashion_mnist
from tuitrain import checkpoints, config, fmt, progress
from tuitrain.cli import main
from tuitrain.commands import Save, Stop
from tuitrain.keys import KEYS
from tuitrain.models import build_model
from tuitrain.options import Flag
from tuitrain.rundir import RunInfo, format_runs


def _cli(*args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuitrain", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


def _bad_checkpoint(tmp_path: Path, kind: str) -> str:
    path = tmp_path / f"{kind}.pt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("not a checkpoint")
    elif kind == "truncated":
        torch.save({"model": build_model("cnn", (1, 28, 28)).state_dict()}, path)
        path.write_bytes(path.read_bytes()[:500])
    elif kind == "wrong-arch":
        checkpoints.save_checkpoint(path, {"model": build_model("mlp", (1, 28, 28)).state_dict(), "optimizer": {},
                                           "epoch": 1, "step": 1, "config": {}})
    elif kind == "partial":
        torch.save({"model": build_model("cnn", (1, 28, 28)).state_dict()}, path)
    elif kind == "foreign":
        torch.save(build_model("cnn", (1, 28, 28)).state_dict(), path)
    return str(path)


BAD_INPUTS = [
    (["imagenet"], "unknown data set"),
    (["synthetic", "--model", "resnet9000"], "unknown model"),
    (["synthetic", "--lr", "-0.1"], "learning rate"),
    (["synthetic", "--lr", "0"], "learning rate"),
    (["synthetic", "--lr", "nan"], "learning rate"),
    (["synthetic", "--lr", "fast"], "learning rate"),
    (["synthetic", "--epochs", "0"], "--epochs"),
    (["synthetic", "--epochs", "-3"], "--epochs"),
    (["synthetic", "--batch-size", "0"], "--batch-size"),
    (["synthetic", "--optimizer", "lbfgs"], "--optimizer"),
    (["synthetic", "--device", "tpu"], "unknown device"),
    (["synthetic", "--device", "cuda:7"], "not available"),
    (["synthetic", "--device", "mps"], "not available"),
    *([(["synthetic", "--device", "cuda"], "not available")] if not torch.cuda.is_available() else []),
    (["synthetic", "--model", "nothere.py:Net"], "does not exist"),
    (["fashion-mnist", "--data-dir", "{tmp}/empty"], "could not be downloaded"),
    (["synthetic", "--resume", "{tmp}/missing.pt"], "does not exist"),
    *[(["synthetic", "--resume", f"@{kind}"], needle) for kind, needle in [
        ("empty", "is empty"), ("text", "not a PyTorch file"), ("truncated", "not a PyTorch file"),
        ("wrong-arch", "does not fit this model"), ("partial", "missing optimizer"),
        ("foreign", "missing model")]],
]


@pytest.mark.slow
@pytest.mark.parametrize("args,needle", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(args, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [_bad_checkpoint(tmp_path, a[1:]) if a.startswith("@") else a.format(tmp=tmp_path) for a in args]
    run_dir = tmp_path / "run"
    code = main([*args, "--headless", "--run-dir", str(run_dir), "--data-dir", str(tmp_path / "data")]
                if "--data-dir" not in args else [*args, "--headless", "--run-dir", str(run_dir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("tuitrain: error:") and needle in err[-1]
    assert not any("Traceback" in line for line in err)
    assert not run_dir.exists()


def test_help_is_fast_and_does_not_import_torch():
    code = ("import sys, contextlib, io\nfrom tuitrain.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    try: main(['--help'])\n    except SystemExit: pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'\nassert 'textual' not in sys.modules\n"
            "assert 'watch' in out.getvalue() or 'summary' in out.getvalue()\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)
    start = time.perf_counter()
    assert _cli("--help").returncode == 0
    assert time.perf_counter() - start < 5  # generous for a loaded CI box; benchmarks measure it properly


@pytest.mark.slow
def test_end_to_end_headless_on_idx_files(tmp_path):
    fmnist_dir = write_fashion_mnist(tmp_path / "data", n_train=6000, n_test=1000)
    run_dir = tmp_path / "run"
    proc = _cli("fashion-mnist", "--headless", "--data-dir", str(fmnist_dir), "--epochs", "2",
                "--run-dir", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    assert "best val_acc" in proc.stderr.splitlines()[-1] and str(run_dir) in proc.stderr
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
              if '"type":"epoch"' in line]
    assert epochs[-1]["val_acc"] > 0.9

    class Network(torch.nn.Module):  # the notes' Network, written with plain PyTorch
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, 6, 5)
            self.conv2 = torch.nn.Conv2d(6, 12, 5)
            self.fc1 = torch.nn.Linear(12 * 4 * 4, 120)
            self.fc2 = torch.nn.Linear(120, 60)
            self.out = torch.nn.Linear(60, 10)

    ckpt = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    Network().load_state_dict(ckpt["model"], strict=True)
    assert ckpt["epoch"] == 2


@pytest.mark.slow
def test_ctrl_c_saves_last_and_exits_130(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "tuitrain", "synthetic", "--headless", "--epochs", "100",
                             "--run-dir", str(run_dir)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and '"type":"step"' not in (metrics.read_text() if metrics.exists() else ""):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    ckpt = checkpoints.load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert ckpt["step"] > 0
    assert "interrupted" in err.splitlines()[-1]


def test_summary_command(capsys):
    assert main(["summary", "--model", "cnn"]) == 0
    out = capsys.readouterr().out
    assert "fc1" in out and "32,998" in out


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupted_data_files_exit_2(fmnist_dir, tmp_path, capsys, damage):
    path = fmnist_dir / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x00" * 64)
    code = main(["fashion-mnist", "--headless", "--data-dir", str(fmnist_dir), "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "t10k-labels-idx1-ubyte.gz" in err[-1] and not (tmp_path / "run").exists()


def test_a_fresh_run_is_not_mixed_into_an_old_run_dir(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["synthetic", "--headless", "--epochs", "1", "--limit", "500", "--run-dir", str(run_dir),
            "--data-dir", str(tmp_path)]
    assert main(args) == 0
    before = (run_dir / "metrics.jsonl").read_text()
    assert main(args) == 2
    assert "already holds a run" in capsys.readouterr().err.strip().splitlines()[-1]
    assert (run_dir / "metrics.jsonl").read_text() == before
    resumed = main([*args[:3], "2", *args[4:], "--resume", str(run_dir / "checkpoints" / "last.pt")])
    assert resumed == 0


def _held_run_dir(tmp_path: Path) -> Path:
    held = tmp_path / "held"
    held.mkdir()
    (held / "metrics.jsonl").write_text("")
    return held


EARLY = [
    (lambda tmp: ["--run-dir", str(_held_run_dir(tmp))], "already holds a run"),
    (lambda tmp: ["--model", str(tmp / "nofile.py") + ":Net"], "nofile.py does not exist"),
    (lambda tmp: ["--resume", str(tmp / "nope.pt")], "nope.pt does not exist"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("extra", "needle"), EARLY, ids=["run-dir-held", "model-file", "resume-file"])
def test_what_can_be_checked_without_data_is_refused_before_loading_it(tmp_path, extra, needle):
    started = time.monotonic()
    proc = _cli("synthetic", "--headless", "--epochs", "1", "--data-dir", str(tmp_path), *extra(tmp_path))
    assert proc.returncode == 2 and needle in proc.stderr.strip().splitlines()[-1], proc.stderr
    assert "loading synthetic" not in proc.stderr  # said before any data was loaded or model built
    assert time.monotonic() - started < 60  # loosely: interpreter and torch import, no data


@pytest.mark.slow
def test_a_model_failing_before_the_run_dir_exists_prints_its_whole_traceback(tmp_path):
    (tmp_path / "fwd.py").write_text("import torch.nn as nn\n\n\nclass Net(nn.Module):\n"
                                     "    def forward(self, x):\n        return helper(x)\n\n\n"
                                     "def helper(x):\n    return 1 / 0\n")
    run_dir = tmp_path / "run"
    proc = _cli("synthetic", "--headless", "--epochs", "1", "--limit", "200", "--data-dir", str(tmp_path),
                "--model", f"{tmp_path / 'fwd.py'}:Net", "--run-dir", str(run_dir))
    assert proc.returncode == 1 and not run_dir.exists(), proc.stderr
    assert "metrics.jsonl" not in proc.stderr  # no run dir holds an error event
    assert "kept nowhere else" in proc.stderr and "in helper" in proc.stderr and "1 / 0" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == \
        "tuitrain: run failed before training: ZeroDivisionError: division by zero"


def test_a_file_model_with_the_wrong_outputs_is_told_what_the_cli_can_do(tmp_path, capsys, monkeypatch):
    """``--model file.py:NAME`` returning one number per sample: the refusal must not say
    ``pass loss_fn=``, which the command line has no flag for."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.py").write_text("import torch.nn as nn\nclass One(nn.Module):\n"
                                     "    def __init__(self, **kw):\n        super().__init__()\n"
                                     "        self.fc = nn.Linear(784, 1)\n"
                                     "    def forward(self, x):\n        return self.fc(x.flatten(1))\n")
    code = main(["synthetic", "--model", "net.py:One", "--headless", "--run-dir", str(tmp_path / "run"),
                 "--data-dir", str(tmp_path / "data")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and err.startswith("tuitrain: error: net.py:One:"), err
    assert "loss_fn=" not in err.replace("tuitrain.fit(model, data, loss_fn=...)", ""), err
    assert "cross-entropy" in err and "(N, 1)" in err and "tuitrain.fit" in err
    assert not (tmp_path / "run").exists()


# The command line as a newcomer meets it: hints, watch into a file, the headless log,
# and numbers and tables that read the same everywhere.


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
    wait(lambda: out.getvalue(), "the status line of the history so far", timeout=10)
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


# CLI values that used to crash: one line on stderr, exit 2, nothing written.
# A Hypothesis test throws text, integers and floats at every training option.


FAST = ["--headless", "--epochs", "1", "--limit", "100", "--model", "mlp", "--device", "cpu"]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("tuitrain: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def _everything_under(root: Path) -> set[Path]:
    return set(root.rglob("*"))


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh current folder with one plain file in it (to put a run dir under)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a folder")
    return tmp_path


BAD_VALUES = [
    (["--seed", str(10**30)], "--seed"),
    (["--seed", "-1"], "--seed"),
    (["--seed", str(2**63)], "--seed"),
    (["--run-dir", "d" * 300], "longer than 255 bytes"),
    (["--run-dir", "a/b/" + "d" * 300], "longer than 255 bytes"),
    (["--run-dir", "afile/run"], "is a file"),
    (["--run-dir", "afile/deeper/run"], "is a file"),
    (["--run-dir", "/proc/tuitrain-test/run"], "cannot create run dir"),
    (["--run-dir", "new/sub/\udcff\udcfe"], "UTF-8"),  # bytes ff fe on the command line
    (["--data-dir", "\udcff"], "UTF-8"),
    (["--run-dir", "run\nname"], "control characters"),
    (["--device", "cpu\n"], "control characters"),
    (["--device", "cuda:\u0661"], "unknown device"),  # an Arabic-Indic digit is \d, not a device
    (["--monitor", "val_acc\n"], "control characters"),
    (["--accumulate", str(10**23)], "--accumulate"),  # used to overflow in the first step
    (["--resume", "9" * 5000], "longer than 4096 bytes"),
    (["--model-arg", "x=("], "not a Python literal"),
    (["--model", "net.py:Net", "--model-arg", "x=three"], "quote it: --model-arg \"x='three'\""),  # a bare word is not a Python literal
    (["--model-arg", "x=1"], "built-in mlp takes none"),
    (["--model-arg", "1x=2"], "KEY=VALUE"),
    (["--model", "net.py:Net", "--model-arg", "x={(1, 2): 3}"], "config.json"),
]


@pytest.mark.parametrize(("args", "message"), BAD_VALUES, ids=[" ".join(a)[:40] for a, _ in BAD_VALUES])
def test_bad_values_are_one_line_exit_2_and_write_nothing(workdir, capsys, args, message):
    (workdir / "net.py").write_text("import torch\nclass Net(torch.nn.Linear):\n"
                                    "    def __init__(self, x=0):\n        super().__init__(784, 10)\n")
    before = _everything_under(workdir)
    assert main(["synthetic", *FAST, *args]) == 2
    assert message in _one_error_line(capsys)
    assert _everything_under(workdir) == before


def test_sweep_dir_that_cannot_be_made(workdir, capsys):
    before = _everything_under(workdir)
    code = main(["sweep", "synthetic", "--lr", "0.01", "--epochs", "1", "--limit", "100", "--device", "cpu",
                 "--sweep-dir", "/proc/x"])
    assert code == 2 and "cannot create sweep dir" in _one_error_line(capsys)
    code = main(["sweep", "synthetic", "--lr", "0.01", "--sweep-dir", "afile/sweep"])
    assert code == 2 and "is a file" in _one_error_line(capsys)
    assert _everything_under(workdir) == before


def test_mid_epoch_resume_with_another_batch_size_is_refused(small_config, capsys):
    run = EngineRun(small_config(epochs=2, limit=1000, batch_size=50)).start()
    run.wait_for(lambda r: r.get("type") == "step" and r["step"] >= 5)
    run.send(Save("mid.pt", id=1))
    saved = run.wait_event("save", cmd_id=1)
    run.send(Stop())
    run.join()
    path = saved["path"]
    resume = ["synthetic", "--headless", "--device", "cpu", "--limit", "1000", "--epochs", "2", "--resume", path,
              "--run-dir", str(Path(path).parent.parent.parent / "resumed")]
    assert main([*resume, "--batch-size", "25"]) == 2
    line = _one_error_line(capsys)
    assert "mid-epoch with batch size 50" in line and "--batch-size 50" in line
    assert not (Path(path).parent.parent.parent / "resumed").exists()


# ---------------------------------------------------------------- Hypothesis over every option
OPTIONS = [o.flag for o in config.OPTIONS.values() if o.cli and o.flag.startswith("-") and not isinstance(o, Flag)]
"""Every option of `tuitrain DATASET` that takes a value, as the TrainConfig fields declare them."""
VALUES = st.one_of(
    st.text(max_size=40),
    st.integers().map(str),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["0", "-1", "1e309", "nan", "cpu", "cuda:0", "val_x", "x=1", "a/b", "../", "/proc/x", "\x00",
                     "\udcff", "9" * 5000]),
)


@functools.cache
def _synthetic_tensors():
    from tuitrain.data import synthetic  # the real one: imported at the first call, before the patch

    ds = synthetic()
    return ds.train_x[:500], ds.train_y[:500], ds.val_x[:100], ds.val_y[:100]


def _setup_only(config, *args, **kwargs):
    """launch.run without training: build everything the run would (engine.setup), write nothing."""
    from tuitrain.engine import Engine, Result

    Engine(config).setup()
    return Result("done", 0, 0, None)


@pytest.fixture
def setup_only(monkeypatch, tmp_path):
    from tuitrain import data

    _synthetic_tensors()

    def cached_synthetic(seed: int = 1234):
        return data.DataSet("synthetic", *_synthetic_tensors(), [], [], [f"class {i}" for i in range(10)])

    monkeypatch.setattr(data, "synthetic", cached_synthetic)
    monkeypatch.setattr("tuitrain.launch.run", _setup_only)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(OPTIONS), value=VALUES)
def test_any_option_value_is_taken_or_refused_in_one_line(setup_only, capsys, option, value):
    args = ["synthetic", "--headless", "--device", "cpu", "--model", "mlp", "--limit", "100", "--run-dir", "run"]
    code = main([*args, option, value])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code in (0, 2), err
    event(f"exit {code}")
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("tuitrain: error:"), err
    assert not os.listdir(setup_only), "nothing is written before training"


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
