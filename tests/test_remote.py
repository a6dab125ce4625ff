"""Runs on another machine through the system's ssh: ``tuitrain stream``, the RemoteBackend, and
``watch``/``ctl``/``runs`` with HOST:PATH, against a real SSH server on a loopback port (tests/helpers.py
SshBox: OpenSSH's sshd where installed, else asyncssh's server; the client is always the system's ssh)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, record_run, until, wait
from tuitrain.remote import RemoteBackend, StreamError, split_remote, ssh_argv
from tuitrain.rundir import read_records

START = {"type": "event", "event": "start", "step": 0, "time": 1.0, "epochs": 2, "steps_per_epoch": 500,
         "total_steps": 1000, "device": "cpu", "lr": 0.001, "batch_size": 10, "model": "mlp", "dataset": "synthetic",
         "samples": 100}


def step(n: int) -> dict:
    return {"type": "step", "step": n, "epoch": 1 + n // 500, "loss": 2.0 / n, "lr": 0.001, "time": 1.0 + n}


def tuitrain(env: dict, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """The CLI in a subprocess, stdout a pipe (never a terminal)."""
    return subprocess.run([sys.executable, "-m", "tuitrain", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=timeout)


@pytest.fixture
def remote_env(ssh_box, monkeypatch):
    """This process's environment pointed at the test's SSH server (for in-process backends)."""
    monkeypatch.setenv("TUITRAIN_SSH", ssh_box.env["TUITRAIN_SSH"])
    monkeypatch.delenv("TUITRAIN_REMOTE", raising=False)
    return ssh_box


def _steps(run_dir: Path) -> list[dict]:
    return [r for r in read_records(run_dir / "metrics.jsonl") if r["type"] == "step"]


@pytest.fixture
def live_run(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "tuitrain", "synthetic", "--headless", "--epochs", "500",
                             "--limit", "2000", "--log-every", "2", "--run-dir", str(run_dir)], cwd=ROOT,
                            stderr=subprocess.DEVNULL)
    wait(lambda: (run_dir / "metrics.jsonl").exists() and _steps(run_dir), "the first step")
    yield run_dir, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


# ----------------------------------------------------------------------------- HOST:PATH, fast


@pytest.mark.parametrize("text, expected", [
    ("gpu:runs/x", ("gpu", "runs/x")),
    ("user@gpu.example.org:/abs/run", ("user@gpu.example.org", "/abs/run")),
    ("gpu:", ("gpu", "")),
    ("runs/x", None),
    ("./a:b", None),
    ("runs/a:b", None),
    (":runs/x", None),
])
def test_split_remote(text, expected):
    assert split_remote(text) == expected


def test_an_existing_local_path_with_a_colon_is_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("box:run").mkdir()
    assert split_remote("box:run") is None
    assert split_remote("box:other") == ("box", "other")


def test_ssh_argv_quotes_the_path_and_takes_the_environment(monkeypatch):
    monkeypatch.setenv("TUITRAIN_SSH", "ssh -F '/my cfg'")
    monkeypatch.setenv("TUITRAIN_REMOTE", "~/venv/bin/tuitrain")
    argv = ssh_argv("gpu", ["stream", "--", "runs/a b; rm -rf x"])
    assert argv[:3] == ["ssh", "-F", "/my cfg"] and "BatchMode=yes" in argv
    assert argv[-2:] == ["gpu", "~/venv/bin/tuitrain stream -- 'runs/a b; rm -rf x'"]
    with pytest.raises(Exception, match="cannot start with"):
        ssh_argv("-oProxyCommand=x", ["stream", "r"])


# ----------------------------------------------------------------------------- through a real ssh


@pytest.mark.slow
async def test_watch_draws_a_remote_run_and_its_keys_steer_it(remote_env, live_run):
    from tuitrain.app import TuiTrainApp
    from tuitrain.widgets.curves import Curves
    from tuitrain.widgets.status import second_line

    run_dir, proc = live_run
    backend = RemoteBackend("testbox", str(run_dir))
    assert backend.controls and backend.run_dir == f"testbox:{run_dir}"
    app = TuiTrainApp(backend, watch_mode=True)
    async with app.run_test(size=(160, 48)) as pilot:
        curves = app.query_one(Curves)
        await until(pilot, lambda: len(curves.train_loss) >= 3 and app.run_state.state == "RUNNING",
                    "curves drawn from the remote run", tries=600)
        assert "testbox" in second_line(app.run_state, backend.run_dir, 160).plain
        assert "testbox:" in second_line(app.run_state, backend.run_dir, 60).plain  # shortened, host kept
        await pilot.press("p")
        await until(pilot, lambda: app.run_state.state == "PAUSED", "the pause event through the stream", tries=600)
        assert json.loads((run_dir / "status.json").read_text())["state"] == "paused"
        await pilot.press("s")
        await until(pilot, lambda: any("step-" in path for path in backend.checkpoints()),
                    "the saved checkpoint in the load list", tries=600)
        await pilot.press("q")
    assert proc.poll() is None  # leaving the viewer leaves the run training
    env = remote_env.env
    resumed = tuitrain(env, "ctl", f"testbox:{run_dir}", "resume")
    assert resumed.returncode == 0 and resumed.stdout.startswith("done: resume"), resumed
    again = tuitrain(env, "ctl", f"testbox:{run_dir}", "resume")
    assert again.returncode == 1 and again.stdout.startswith("refused: resume"), again
    bad = tuitrain(env, "ctl", f"testbox:{run_dir}", "lr", "-1")
    assert bad.returncode == 2 and "learning rate" in bad.stderr
    listed = tuitrain(env, "runs", f"testbox:{run_dir.parent}")
    assert listed.returncode == 0 and "run " in listed.stdout and "running" in listed.stdout, listed
    assert tuitrain(env, "ctl", f"testbox:{run_dir}", "stop").returncode == 0
    assert proc.wait(timeout=60) == 0
    dead = tuitrain(env, "ctl", f"testbox:{run_dir}", "pause")
    assert dead.returncode == 2 and "not alive" in dead.stderr and len(dead.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_killed_ssh_reconnects_without_losing_or_doubling_records(remote_env, tmp_path):
    run_dir = tmp_path / "run"
    log = record_run(run_dir, [START, *(step(n) for n in range(1, 51))], "running")
    backend = RemoteBackend("testbox", str(run_dir))
    backend.keep = True
    links: list[dict] = []
    backend_done = threading.Event()

    def emit(records: list[dict]) -> None:
        links.extend(r for r in records if r.get("type") == "link")

    def follow() -> None:
        backend.run(emit)
        backend_done.set()

    threading.Thread(target=follow, daemon=True).start()
    written = 50
    for kill in range(3):
        wait(lambda n=written: len(backend.received) >= n + 1, f"the records before kill {kill}")
        for _ in range(30):  # records written while the connection is down are read after it
            written += 1
            log.write(step(written))
        backend.link.proc.kill()
        for _ in range(30):
            written += 1
            log.write(step(written))
        wait(lambda k=kill: backend.connects == k + 2, f"reconnection {kill + 1}")
    wait(lambda: len(backend.received) >= written + 1, "the records after the last reconnection")
    log.write({"type": "event", "event": "end", "step": written, "time": 9.0, "status": "done"})
    log.write_status({"state": "done"})
    log.close()
    wait(backend_done.is_set, "the end of the stream")
    assert backend.received == read_records(run_dir / "metrics.jsonl")
    states = [link["state"] for link in links]
    assert states.count("reconnecting") >= 3 and states[-1] == "connected"
    assert backend.controls is False


@pytest.mark.slow
def test_one_line_errors(remote_env, tmp_path):
    env = remote_env.env
    with open(remote_env.folder / "config", "a") as cfg:
        cfg.write("Host deadbox\n  HostName 127.0.0.1\n  Port 1\n  BatchMode yes\n")
    unreachable = tuitrain(env, "ctl", "deadbox:/x", "pause")
    assert unreachable.returncode == 2, unreachable
    assert unreachable.stderr.startswith("tuitrain: error: cannot reach deadbox through ssh: ")
    assert "refused" in unreachable.stderr and len(unreachable.stderr.strip().splitlines()) == 1
    with pytest.raises(StreamError, match="cannot reach deadbox through ssh"):
        RemoteBackend("deadbox", "/x")

    missing = tuitrain(env, "runs", "testbox:", "--remote-tuitrain", "/no/such/tuitrain")
    assert missing.returncode == 2 and "--remote-tuitrain" in missing.stderr and "TUITRAIN_REMOTE" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    with pytest.raises(StreamError, match="--remote-tuitrain PATH or TUITRAIN_REMOTE"):
        RemoteBackend("testbox", "/x", remote="/no/such/tuitrain")

    old = tmp_path / "old-tuitrain"
    old.write_text('#!/bin/sh\necho \'{"k": "hello", "protocol": 99, "version": "9.0.0", "ok": true}\'\n')
    old.chmod(0o755)
    with pytest.raises(StreamError, match=r"version 9\.0\.0 .*install the same version on both sides"):
        RemoteBackend("testbox", "/x", remote=str(old))

    with pytest.raises(StreamError, match=f"testbox: {tmp_path} is not a tuitrain run directory"):
        RemoteBackend("testbox", str(tmp_path))
    plain = tuitrain(env, "watch", f"testbox:{tmp_path / 'nothing'}")
    assert plain.returncode == 2 and "is not a tuitrain run directory" in plain.stderr


@pytest.mark.slow
def test_records_that_do_not_fit_are_skipped_and_nothing_is_run(remote_env, tmp_path):
    marker = tmp_path / "ran"
    bad = [{"type": "step", "step": "1; touch " + str(marker)}, {"type": "epoch"}, "not a record", 7,
           {"type": "event", "event": "end", "step": 3, "time": 1.0, "status": "done"}]
    good = [START, step(1), step(2)]
    lines = [{"k": "hello", "protocol": 1, "version": "x", "ok": True, "run_dir": "/r", "state": "running",
              "config": {"devices": "$(touch x)"}, "checkpoints": [1, 2]},
             {"k": "history", "records": [*good, *bad[:4]], "pos": {"/etc/passwd": 3}},
             "garbage line", {"k": "unknown"}, {"k": "batch", "records": [bad[4]], "pos": {"metrics.jsonl": 99}},
             {"k": "done", "ended": "end"}]
    fake = tmp_path / "fake-tuitrain"
    fake.write_text("#!/bin/sh\ncat <<'EOF'\n" + "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines)
                    + "\nEOF\n")
    fake.chmod(0o755)
    backend = RemoteBackend("testbox", "/r", remote=str(fake))
    backend.keep = True
    seen: list[dict] = []
    backend.run(seen.extend)
    assert backend.received == [*good, bad[4]]
    assert backend.skipped == 4
    assert backend.position == {"metrics.jsonl": 99}  # the bad position was never kept
    assert backend.devices() == ["cpu"] and backend.checkpoints() == []
    assert not marker.exists()


@pytest.mark.slow
def test_watch_into_a_file_and_the_stream_of_a_finished_run(remote_env, tmp_path):
    run_dir = tmp_path / "run"
    log = record_run(run_dir, [START, step(1), step(2),
                               {"type": "event", "event": "end", "step": 2, "time": 3.0, "status": "done"}], "done")
    log.close()
    plain = tuitrain(remote_env.env, "watch", f"testbox:{run_dir}")
    assert plain.returncode == 0 and plain.stdout.startswith(f"tuitrain: {run_dir}: done"), plain
    backend = RemoteBackend("testbox", str(run_dir))
    assert not backend.controls
    got: list[dict] = []
    started = time.monotonic()
    backend.run(got.extend)
    assert time.monotonic() - started < 30
    assert [r.get("type") for r in got] == ["link", "replay", "event", "step", "step", "event", "replay"]


def _finished(run_dir: Path, val_acc: float, lr: float) -> None:
    epoch = {"type": "epoch", "epoch": 1, "step": 2, "train_loss": 0.5, "train_acc": 0.8, "val_loss": 0.4,
             "val_acc": val_acc, "lr": lr, "train_seconds": 1.0, "time": 3.0}
    log = record_run(run_dir, [START, step(1), step(2), epoch,
                               {"type": "event", "event": "end", "step": 2, "time": 3.0, "status": "done"}], "done")
    log.write_config({"dataset": "synthetic", "devices": ["cpu"], "lr": lr})
    log.close()


@pytest.mark.slow
async def test_compare_a_remote_run_with_a_local_one(remote_env, tmp_path):
    from textual.widgets import DataTable

    from tuitrain.compare_app import CompareApp
    from tuitrain.remote import RemoteRun

    _finished(tmp_path / "far", 0.9, 0.01)
    _finished(tmp_path / "near", 0.7, 0.001)
    far = RemoteRun("testbox", str(tmp_path / "far"))
    app = CompareApp([far, tmp_path / "near"])
    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: app.best == [0.9, 0.7], "both runs' epochs", tries=600)
        assert app.labels == ["lr=0.01", "lr=0.001"]
        table = app.query_one(DataTable)
        assert f"testbox:{tmp_path / 'far'}" in [str(cell) for cell in table.get_row_at(0)]
        await pilot.press("q")
    wait(lambda: far.backend.link.proc.poll() is not None, "ssh ended with the comparison")
    # Back from a run opened alone, the comparison is a new app over the same runs: the remote one
    # connects again and its curves and best value come back (they stayed empty).
    again = CompareApp([far, tmp_path / "near"])
    async with again.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: again.best == [0.9, 0.7], "both runs' epochs, a second time", tries=600)
        await pilot.press("q")


def test_the_status_line_says_reconnecting_until_the_link_is_back():
    from tuitrain.remote import link_record
    from tuitrain.runstate import RunState
    from tuitrain.widgets.status import second_line

    run = RunState(watch_mode=True)
    for record in (link_record("gpu", "connected"), START, step(1)):
        run.apply(record)
    assert run.host == "gpu" and run.note == ""
    run.apply(link_record("gpu", "reconnecting", "ssh exited 255; again in 2 s"))
    line = second_line(run, "gpu:/home/me/runs/x", 80).plain
    assert line.startswith("reconnecting to gpu: ssh exited 255; again in 2 s")
    run.apply(link_record("gpu", "connected"))
    assert run.note == "" and run.state == "RUNNING"
    assert "run gpu:x" in second_line(run, "gpu:/home/me/runs/x", 50).plain  # shortened, the host kept
