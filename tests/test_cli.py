"""The CLI: exit codes and one-line errors for bad input, --help without torch, end to end runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import ROOT, write_fashion_mnist
from tuitrain import checkpoints
from tuitrain.cli import main
from tuitrain.models import build_model


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
