"""The control channel and `tuitrain ctl` against a live headless run; `runs`; refusals."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, wait
from tuitrain.cli import main
from tuitrain.rundir import read_records


def _ctl(run_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuitrain", "ctl", str(run_dir), *args], capture_output=True,
                          text=True, timeout=90, cwd=ROOT)


def _steps(run_dir: Path) -> list[dict]:
    return [r for r in read_records(run_dir / "metrics.jsonl") if r["type"] == "step"]




@pytest.fixture
def live_run(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "tuitrain", "synthetic", "--headless", "--epochs", "500",
                             "--limit", "2000", "--log-every", "2", "--run-dir", str(run_dir)], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True)
    wait(lambda: (run_dir / "metrics.jsonl").exists() and _steps(run_dir), "the first step")
    yield run_dir, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_ctl_controls_a_live_headless_run(live_run):
    run_dir, proc = live_run
    assert stat.S_IMODE(os.stat(run_dir / "control.sock").st_mode) == 0o600
    paused = _ctl(run_dir, "pause")
    assert paused.returncode == 0 and paused.stdout.startswith("done: pause"), paused
    n = len(_steps(run_dir))
    time.sleep(1.0)
    assert len(_steps(run_dir)) == n
    assert json.loads((run_dir / "status.json").read_text())["state"] == "paused"
    again = _ctl(run_dir, "pause")
    assert again.returncode == 1 and "already paused" in again.stdout
    lr = _ctl(run_dir, "lr", "0.0042")
    assert lr.returncode == 0 and "new=0.0042" in lr.stdout
    saved = _ctl(run_dir, "save")
    assert saved.returncode == 0
    assert list((run_dir / "checkpoints").glob("step-*.pt"))
    bad = _ctl(run_dir, "lr", "-1")
    assert bad.returncode == 2 and "learning rate" in bad.stderr
    assert _ctl(run_dir, "device", "cuda:9").returncode == 1
    assert _ctl(run_dir, "resume").returncode == 0
    wait(lambda: len(_steps(run_dir)) > n + 3, "steps after resume")
    assert _steps(run_dir)[-1]["lr"] == 0.0042  # the optimizer took the new LR
    stopped = _ctl(run_dir, "stop")
    assert stopped.returncode == 0
    assert proc.wait(timeout=60) == 0
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    events = [r["event"] for r in read_records(run_dir / "metrics.jsonl") if r["type"] == "event"]
    assert {"pause", "lr", "save", "device", "resume", "stop", "end"} <= set(events)
    dead = _ctl(run_dir, "pause")
    assert dead.returncode == 2 and "not alive" in dead.stderr
    assert not (run_dir / "control.sock").exists()


def test_ctl_refuses_a_dead_run_with_a_stale_channel(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (run_dir / "status.json").write_text(json.dumps({"state": "running", "pid": gone.pid,
                                                     "host": os.uname().nodename}))
    (run_dir / "control.sock").write_text("")  # a stale leftover, not a live socket
    assert main(["ctl", str(run_dir), "pause"]) == 2
    assert "not alive (dead)" in capsys.readouterr().err
    assert main(["runs", str(tmp_path)]) == 0
    assert "dead" in capsys.readouterr().out


@pytest.mark.parametrize("args", [["pause", "now"], ["jump"], ["lr"], ["lr", "fast"], ["device", "tpu"]])
def test_ctl_bad_input_exit_2(tmp_path, capsys, args):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    assert main(["ctl", str(run_dir), *args]) == 2
    assert capsys.readouterr().err.startswith("tuitrain: error:")


@pytest.mark.parametrize("command", [["watch"], ["ctl"]])
def test_watch_and_ctl_refuse_a_folder_that_is_not_a_run(tmp_path, capsys, command):
    args = [*command, str(tmp_path)] + (["pause"] if command == ["ctl"] else [])
    assert main(args) == 2
    assert "not a tuitrain run directory" in capsys.readouterr().err


def test_save_without_a_suffix_gets_pt_and_a_missing_value_names_its_own_example():
    from tuitrain.commands import Save
    from tuitrain.control import build_command
    from tuitrain.errors import UsageError

    save = build_command("save", "mine", 1)
    assert isinstance(save, Save) and save.name == "mine.pt"  # README: `save [NAME]`
    assert build_command("save", "mine.pt", 2).name == "mine.pt"
    with pytest.raises(UsageError, match="must end in .pt"):
        build_command("save", "mine.ckpt", 3)
    for name, sample in (("lr", "'lr 0.01'"), ("device", "'device cpu'")):
        with pytest.raises(UsageError) as refused:
            build_command(name, None, 4)
        assert str(refused.value) == f"{name} needs a value, e.g. {sample}"


# ----------------------------------------------------------------- save names that fit the file system
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@given(stem=st.text(st.sampled_from("ab-_9é€"), min_size=1, max_size=254))
@example(stem="a" * 237)  # 240 bytes: passed validation, then "File name too long"
@example(stem="a" * 252)  # 255 bytes
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
def test_a_save_name_that_passes_validation_can_be_saved(tmp_path, monkeypatch, stem):
    """Either the name is refused up front, or the checkpoint, its sidecar and their temp files
    (named with the largest pid) all fit: never a name that passes and then always fails."""
    import torch

    from tuitrain import checkpoints
    from tuitrain.control import save_name_problem

    name = stem + ".pt"
    if save_name_problem(name):
        assert len(name.encode()) > 232
        return
    monkeypatch.setattr(os, "getpid", lambda: 4294967295)  # the temp files' names carry the pid
    checkpoints.save_checkpoint(tmp_path / name, {"model": {"w": torch.ones(1)}})
    assert (tmp_path / name).is_file() and (tmp_path / (name + ".sha256")).is_file()
    (tmp_path / name).unlink()
    (tmp_path / (name + ".sha256")).unlink()
