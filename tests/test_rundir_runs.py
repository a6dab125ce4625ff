"""`tuitrain runs` against what it can find: tampered status/config files, bad pids, sweep folders."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from tuitrain.cli import main
from tuitrain.rundir import STATES, UNREADABLE, format_runs, list_runs, run_state

HOST = socket.gethostname()


def _run(folder: Path, status=None, config=None) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(config if isinstance(config, str) else json.dumps(config or {}))
    if status is not None:
        (folder / "status.json").write_text(status if isinstance(status, str) else json.dumps(status))
    return folder


@pytest.mark.parametrize("pid", [None, 0, -1, 10**30, 2**31, "abc", "123", True, 1.5, [1], {"pid": 1}])
def test_a_bad_pid_is_a_dead_run_not_running_forever(tmp_path, pid):
    status = {"state": "running", "host": HOST, **({} if pid is None else {"pid": pid})}
    run = _run(tmp_path / "r", status)
    assert run_state(run) == "dead"


def test_a_bad_pid_is_dead_even_from_another_host(tmp_path):
    assert run_state(_run(tmp_path / "r", {"state": "running", "pid": "abc", "host": "elsewhere"})) == "dead"
    assert run_state(_run(tmp_path / "s", {"state": "running", "pid": 77, "host": "elsewhere"})) == "running"


def test_a_live_pid_on_this_host_is_running(tmp_path):
    assert run_state(_run(tmp_path / "r", {"state": "paused", "pid": os.getpid(), "host": HOST})) == "paused"


TAMPERED = [
    {"state": "running", "pid": "abc", "host": HOST, "epoch": "x", "epochs": [1], "best_val_acc": "0.9"},
    {"state": 5, "control": 5, "device": {"a": 1}},
    {"state": "done", "epoch": -3, "epochs": 1e300, "best_val_acc": float("inf"), "device": "cpu\x1b[2J"},
    {"state": "exploded"},
    [1, 2, 3],
    "not json at all",
    "\x00\xff binary",
    {},
]


@pytest.mark.parametrize("status", TAMPERED)
@pytest.mark.parametrize("config", [{}, [], "garbage", {"epochs": "ten", "device_resolved": 7}])
def test_runs_lists_tampered_runs_without_crashing(tmp_path, capsys, status, config):
    _run(tmp_path / "bad", status, config)
    _run(tmp_path / "good", {"state": "done", "epoch": 2, "epochs": 2, "best_val_acc": 0.5, "device": "cpu"})
    runs = {r.name: r for r in list_runs(tmp_path)}
    assert set(runs) == {"bad", "good"}
    assert runs["good"].status == "done" and runs["good"].best_val_acc == 0.5 and runs["good"].epoch == 2
    bad = runs["bad"]
    assert bad.status in (*STATES, UNREADABLE)
    assert isinstance(bad.epoch, int) and isinstance(bad.epochs, int) and isinstance(bad.device, str)
    assert bad.best_val_acc is None or isinstance(bad.best_val_acc, float)
    assert bad.device.isprintable()
    assert main(["runs", str(tmp_path)]) == 0
    assert "good" in capsys.readouterr().out


def test_garbage_status_is_shown_unreadable(tmp_path):
    _run(tmp_path / "a", "not json")
    _run(tmp_path / "b", {"state": ["running"]})
    _run(tmp_path / "c")  # no status.json at all: it never started, or died before writing one
    states = {r.name: r.status for r in list_runs(tmp_path)}
    assert states == {"a": UNREADABLE, "b": UNREADABLE, "c": "dead"}


def test_a_folder_that_is_not_a_run_does_not_break_the_listing(tmp_path):
    _run(tmp_path / "ok", {"state": "done"})
    (tmp_path / "cfgdir" / "config.json").mkdir(parents=True)  # config.json that is a folder
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert [r.name for r in list_runs(tmp_path)] == ["ok"]


def test_runs_inside_sweep_folders_are_listed_as_sweep_slash_run(tmp_path, capsys):
    _run(tmp_path / "solo", {"state": "done"})
    for name in ("lr=0.01", "lr=0.001"):
        _run(tmp_path / "sweep1" / name, {"state": "done"})
    (tmp_path / "sweep1" / "results.csv").write_text("a,b\n")
    (tmp_path / "empty").mkdir()
    names = sorted(r.name for r in list_runs(tmp_path))
    assert names == ["solo", "sweep1/lr=0.001", "sweep1/lr=0.01"]
    # the sweep folder itself lists its runs by their own names
    assert sorted(r.name for r in list_runs(tmp_path / "sweep1")) == ["lr=0.001", "lr=0.01"]
    capsys.readouterr()
    assert main(["runs", str(tmp_path)]) == 0
    # the printed table names them the same way, so two sweeps' runs can be told apart
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()[2:]}
    assert listed == {"solo", "sweep1/lr=0.001", "sweep1/lr=0.01"}


def test_a_run_name_with_terminal_escapes_is_printable(tmp_path):
    _run(tmp_path / "evil\x1b[2J\x07", {"state": "done"})
    (run,) = list_runs(tmp_path)
    assert run.name == "evil?[2J?"  # what a table should print (format_runs: r.name)
    assert "\x1b" not in format_runs([run]) and "evil?[2J?" in format_runs([run])
