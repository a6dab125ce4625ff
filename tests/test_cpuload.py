"""The wait policy chosen for the machine a run finds, and the slow event of a busy box (cpuload.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT
from tuitrain import cpuload
from tuitrain.cpuload import SLOW_RECORDS, WARM_UP, WATCH_AFTER_S, SlowWatch, apply_wait_policy, choose_wait_policy
from tuitrain.runstate import RunState, notice_for


def test_a_quiet_box_keeps_libgomps_spinning_defaults():
    choice = choose_wait_policy(0.1, 2, {})
    assert choice.env == {} and choice.reason.startswith("quiet box")


@pytest.mark.parametrize("busy", [0.5, 1.0, 2.0, 7.5])
def test_a_busy_box_makes_the_threads_sleep(busy):
    choice = choose_wait_policy(busy, 2, {"PATH": "/bin"})
    assert choice.env == {"OMP_WAIT_POLICY": "PASSIVE"} and "busy box" in choice.reason
    assert choice.to_record()["wait_policy"] == "PASSIVE"


@pytest.mark.parametrize("env", [{"OMP_WAIT_POLICY": "ACTIVE"}, {"OMP_NUM_THREADS": "2"}, {"GOMP_SPINCOUNT": "0"},
                                 {"TUITRAIN_AUTO_OMP": "0"}])
def test_the_users_own_settings_win(env):
    choice = choose_wait_policy(2.0, 2, env)
    assert choice.env == {}
    assert next(iter(env)) in choice.reason


def test_apply_sets_the_environment_only_without_torch_and_samples_only_when_it_decides():
    samples: list[int] = []

    def busy() -> float:
        samples.append(1)
        return 1.8

    environ: dict[str, str] = {}
    choice = apply_wait_policy(environ, busy, modules={})
    assert environ == {"OMP_WAIT_POLICY": "PASSIVE"} and choice.busy == 1.8 and cpuload.chosen() is choice
    mine = {"OMP_NUM_THREADS": "1"}
    assert apply_wait_policy(mine, busy, modules={}).busy is None and mine == {"OMP_NUM_THREADS": "1"}
    loaded: dict[str, str] = {}
    assert "torch was loaded" in apply_wait_policy(loaded, busy, modules={"torch": object()}).reason
    assert loaded == {} and len(samples) == 1


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def feed(watch: SlowWatch, rates: list[float]) -> list[dict]:
    """The rates as step records a second apart; what the watch said."""
    said = []
    for rate in rates:
        watch.clock.now += 1.0  # type: ignore[attr-defined]
        if found := watch.observe(rate):
            said.append(found)
    return said


def test_slow_is_said_once_when_throughput_collapses_under_load_and_once_when_it_recovers():
    load = [1.0]
    watch = SlowWatch(cores=2, load=lambda: load[0], wait_policy="", clock=Clock())
    assert feed(watch, [100.0] * WARM_UP + [5000.0] * 30) == []
    assert feed(watch, [1000.0] * 10) == []  # slow, but the load is not above the cores: not the box's fault
    load[0] = 4.2
    said = feed(watch, [1000.0] * (SLOW_RECORDS + 10))
    assert len(said) == 1 and said[0]["state"] == "slow" and said[0]["load"] == 4.2 and said[0]["best"] == 5000
    assert "OMP_WAIT_POLICY=PASSIVE" in said[0]["reason"] and said[0]["note"].startswith("SLOW")
    back = feed(watch, [3000.0, 4500.0, 4500.0])
    assert [s["state"] for s in back] == ["recovered"]


def test_a_single_slow_record_is_noise():
    watch = SlowWatch(cores=2, load=lambda: 9.0, wait_policy="PASSIVE", clock=Clock())
    assert feed(watch, [5000.0] * 30 + [1000.0] * (SLOW_RECORDS - 1) + [5000.0] + [1000.0] * (SLOW_RECORDS - 1)) == []
    said = feed(watch, [1000.0])
    assert len(said) == 1 and "OMP_NUM_THREADS=1" in said[0]["reason"]  # PASSIVE already: fewer threads


def test_no_verdict_in_a_runs_first_seconds():
    watch = SlowWatch(cores=2, load=lambda: 9.0, wait_policy="", clock=Clock())
    steps = int(WATCH_AFTER_S) - SLOW_RECORDS - 1  # a record a second: all slow ones before WATCH_AFTER_S
    assert feed(watch, [5000.0] * steps + [1000.0] * SLOW_RECORDS) == []


def test_the_status_line_says_slow_until_it_recovers():
    run = RunState()
    run.apply({"type": "event", "event": "slow", "state": "slow", "step": 5, "note": "SLOW: busy box", "reason": "r"})
    assert run.note == "SLOW: busy box"
    assert notice_for({"type": "event", "event": "slow", "state": "slow", "reason": "why"}).severity == "warning"
    run.apply({"type": "event", "event": "slow", "state": "recovered", "step": 9, "reason": "back"})
    assert run.note == ""


@pytest.mark.slow
def test_the_cli_sets_the_policy_before_torch_loads_and_the_start_event_says_so(tmp_path):
    # A busy box made up (the sampler says 2 cores busy): the choice must come before any import of
    # torch, and the run's start event must carry it.
    code = f"""
import os, sys
from tuitrain import cli, cpuload
seen = []
real = cpuload.apply_wait_policy
def spy(*args, **kwargs):
    seen.append("torch" in sys.modules)
    return real(sample=lambda: 2.0)
cpuload.apply_wait_policy = spy
code = cli.main(["synthetic", "--headless", "--epochs", "1", "--limit", "200", "--run-dir", {str(tmp_path / "run")!r},
                 "--data-dir", {str(tmp_path / "data")!r}])
print(code, seen, os.environ.get("OMP_WAIT_POLICY"))
"""
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env,
                         cwd=tmp_path)
    assert out.stdout.split() == ["0", "[False]", "PASSIVE"], out.stderr
    start = next(r for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
                 if (r := json.loads(line)).get("event") == "start")
    assert start["threads"]["wait_policy"] == "PASSIVE" and start["threads"]["busy_cores"] == 2.0
    assert start["threads"]["torch_threads"] >= 1
    assert "torch threads: OMP_WAIT_POLICY=PASSIVE, busy box" in out.stderr


@pytest.mark.slow
def test_the_policy_is_chosen_before_a_resume_checkpoint_loads_torch(tmp_path):
    """--resume reads the checkpoint's own settings (with torch): the choice must come first."""
    from tuitrain.checkpoints import save_checkpoint

    ckpt = tmp_path / "last.pt"
    save_checkpoint(ckpt, {"model": {}, "config": {"epochs": 3}, "epoch": 1})
    code = f"""
import sys
from tuitrain import cli, cpuload
def choose():
    print("torch loaded:", "torch" in sys.modules)
    raise SystemExit(0)
cpuload.apply_wait_policy = choose
cli.main(["synthetic", "--headless", "--resume", {str(ckpt)!r}, "--run-dir", {str(tmp_path / "run")!r}])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.stdout.strip() == "torch loaded: False", out
