"""What the run directory's writer does with what it finds there: links planted where its files go,
lines torn by a kill or a full disk, an index.jsonl that does not match metrics.jsonl, a disk too
full to hold config.json."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tuitrain.errors import UsageError
from tuitrain.rundir import INDEX, LOCK, METRICS, RECORD_FILES, RunLock, RunLog, read_history, read_records
from tuitrain.rundir.files import write_atomic
from tuitrain.rundir.lock import WRITTEN
from tuitrain.rundir.read import checked_entries

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = [HealthCheck.function_scoped_fixture]


def _record(kind: str, i: int) -> dict:
    if kind == "step":
        return {"type": "step", "step": i, "epoch": 1, "loss": 1.0 / (i + 1), "time": float(i)}
    if kind == "epoch":
        return {"type": "epoch", "epoch": i, "step": i, "val_acc": 0.5, "time": float(i)}
    if kind == "start":
        return {"type": "event", "event": "start", "step": i, "time": float(i)}
    if kind in ("hist", "system", "samples"):
        return {"type": kind, "step": i, "time": float(i)}
    return {"type": "event", "event": "save", "step": i, "time": float(i), "reason": 'a "quoted" text'}


def _not_steps(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("type") != "step"]


# --- planted links -------------------------------------------------------------------------------

@settings(max_examples=30, deadline=None, suppress_health_check=FIXTURES)
@given(name=st.sampled_from(WRITTEN), dangling=st.booleans())
@example(name=LOCK, dangling=False)  # the lock's pid was written into the link's target
@example(name=METRICS, dangling=True)  # every record went outside the run dir
def test_a_planted_link_is_refused_before_anything_is_written(tmp_path_factory, name, dangling):
    base = tmp_path_factory.mktemp("links")
    run, target = base / "run", base / "outside.txt"
    run.mkdir()
    if not dangling:
        target.write_text("precious\n")
    (run / name).symlink_to(target)
    lock = RunLock(run)
    with pytest.raises(UsageError) as refused:
        lock.acquire()
    assert "symbolic link" in str(refused.value) and "\n" not in str(refused.value)
    assert (target.read_text() == "precious\n") if not dangling else not target.exists()
    assert sorted(p.name for p in run.iterdir()) == [name]  # nothing else written


def test_a_planted_checkpoints_link_is_refused_before_anything_is_written(tmp_path):
    """O_NOFOLLOW guards a path's last part only: checkpoints/ as a link sent last.pt and best.pt
    into the folder it names."""
    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    run.mkdir()
    elsewhere.mkdir()
    (run / "checkpoints").symlink_to(elsewhere)
    with pytest.raises(UsageError) as refused:
        RunLock(run).acquire()
    assert "checkpoints" in str(refused.value) and "symbolic link" in str(refused.value)
    assert list(elsewhere.iterdir()) == [] and sorted(p.name for p in run.iterdir()) == ["checkpoints"]
    (run / "checkpoints").unlink()
    (run / "checkpoints").write_text("")
    with pytest.raises(UsageError, match="checkpoints is not a folder"):
        RunLock(run).acquire()


@settings(max_examples=20, deadline=None, suppress_health_check=FIXTURES)
@given(name=st.sampled_from([*RECORD_FILES, INDEX]), dangling=st.booleans())
def test_a_link_planted_while_the_run_writes_is_never_written_through(tmp_path_factory, name, dangling):
    base = tmp_path_factory.mktemp("links")
    run, target = base / "run", base / "outside.txt"
    problems = []
    log = RunLog(run, on_problem=lambda t, exc, lost: problems.append((t, exc and exc.errno)))
    log.write(_record("start", 0))
    log.close()  # files are reopened by the next write: a link planted now is found then
    if not dangling:
        target.write_text("precious\n")
    (run / name).unlink(missing_ok=True)
    (run / name).symlink_to(target)
    for i, kind in enumerate(["epoch", "hist", "system", "samples", "event"], 1):
        log.write(_record(kind, i))
    log.close()
    assert (target.read_text() == "precious\n") if not dangling else not target.exists()
    if name != INDEX:  # the index is dropped instead (readers scan metrics.jsonl)
        assert (name, errno.ELOOP) in problems


def test_the_atomic_writer_never_writes_through_a_planted_temp_file(tmp_path):
    target = tmp_path / "outside.txt"
    target.write_text("precious\n")
    tmp = tmp_path / f".status.json.{os.getpid()}.tmp"
    tmp.symlink_to(target)
    write_atomic(tmp_path / "status.json", b"{}")
    assert target.read_text() == "precious\n"
    assert (tmp_path / "status.json").read_bytes() == b"{}" and not (tmp_path / "status.json").is_symlink()
    assert not tmp.exists() and not tmp.is_symlink()
    (tmp_path / "status.json").unlink()
    (tmp_path / "status.json").symlink_to(target)  # a link at the name itself is replaced, not followed
    write_atomic(tmp_path / "status.json", b"{}")
    assert target.read_text() == "precious\n" and not (tmp_path / "status.json").is_symlink()


@pytest.mark.slow
def test_the_cli_refuses_a_planted_lock_link_with_one_line(tmp_path):
    run, target = tmp_path / "run", tmp_path / "outside.txt"
    run.mkdir()
    target.write_text("precious\n")
    (run / LOCK).symlink_to(target)
    out = subprocess.run([sys.executable, "-m", "tuitrain", "synthetic", "--headless", "--epochs", "1", "--limit",
                          "100", "--device", "cpu", "--run-dir", str(run)], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    errors = [line for line in out.stderr.splitlines() if "error" in line]
    assert out.returncode == 2, out.stderr
    assert len(errors) == 1 and ".lock is a symbolic link" in errors[0], out.stderr
    assert "Traceback" not in out.stderr
    assert target.read_text() == "precious\n"
    assert sorted(p.name for p in run.iterdir()) == [LOCK]


# --- torn lines ----------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURES)
@given(before=st.lists(st.sampled_from(["step", "epoch", "event", "hist", "system", "samples"]), max_size=8),
       torn=st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
       which=st.sampled_from(RECORD_FILES))
@example(before=["epoch"], torn=b'{"type":"epoch","epo', which=METRICS)  # the start event was lost in it
def test_every_append_starts_on_a_fresh_line(tmp_path_factory, before, torn, which):
    run = tmp_path_factory.mktemp("torn")
    log = RunLog(run)
    for i, kind in enumerate(before):
        log.write(_record(kind, i))
    log.close()
    with open(run / which, "ab") as fh:  # what a kill or a full disk leaves: part of a line
        fh.write(torn)
    after = [_record(kind, 100 + i) for i, kind in enumerate(["start", "hist", "system", "samples", "epoch"])]
    log = RunLog(run)  # a resume: another process, another RunLog
    for record in after:
        log.write(record)
    log.close()
    for name in RECORD_FILES:
        mine = [r for r in after if name == {"hist": "histograms.jsonl", "system": "system.jsonl",
                                             "samples": "samples.jsonl"}.get(r["type"], METRICS)]
        assert read_records(run / name)[-len(mine):] == mine


# --- index.jsonl against metrics.jsonl -----------------------------------------------------------

def _write(run: Path, kinds: list[str], first: int = 0) -> None:
    log = RunLog(run)
    for i, kind in enumerate(kinds, first):
        log.write(_record(kind, i))
    log.close()


def _index_matches(run: Path) -> bool:
    """Every index entry points at exactly its line, and every non-step line has one."""
    data, index = (run / METRICS).read_bytes(), (run / INDEX).read_bytes()
    entries, used, _ = checked_entries(index, lambda at, n: data[at:at + n], data.rfind(b"\n") + 1)
    lines, at, wanted = data.split(b"\n")[:-1], 0, []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict) and record.get("type") != "step":
            wanted.append((at, line))
        at += len(line) + 1
    return used == len(index) and entries == wanted


KINDS = st.lists(st.sampled_from(["step"] * 4 + ["epoch", "event"]), max_size=30)


@settings(max_examples=80, deadline=None, suppress_health_check=FIXTURES)
@given(kinds=KINDS, more=KINDS, metrics_cut=st.integers(0, 4000), index_cut=st.integers(0, 4000),
       dangling=st.booleans(), resume=st.booleans())
@example(kinds=["epoch", "step"], more=["epoch"], metrics_cut=4000, index_cut=4000, dangling=True, resume=True)
@example(kinds=[], more=[], metrics_cut=1, index_cut=0, dangling=False, resume=True)  # a fragment was indexed
def test_the_history_and_the_index_agree_with_metrics_after_a_kill_anywhere(
        tmp_path_factory, kinds, more, metrics_cut, index_cut, dangling, resume):
    run = tmp_path_factory.mktemp("index")
    _write(run, ["start", *kinds])
    metrics, index = run / METRICS, run / INDEX
    os.truncate(metrics, min(metrics_cut, metrics.stat().st_size))  # killed somewhere in a write ...
    os.truncate(index, min(index_cut, index.stat().st_size))
    if dangling:  # ... or between an index entry and its line (the order an older version wrote in)
        with open(index, "ab") as fh:
            fh.write(b'{"at":%d,"record":{"type":"epoch","epoch":77,"step":0,"time":0.0}}\n' % metrics.stat().st_size)
    if resume:
        _write(run, ["start", *more], first=1000)
        assert _index_matches(run)  # repaired
    truth = _not_steps(read_records(metrics))
    sampled, _ = read_history(metrics, max_steps=5, whole_below=0)
    assert _not_steps(sampled) == truth
    whole, _ = read_history(metrics, max_steps=5)
    assert _not_steps(whole) == truth


def test_a_kill_between_a_line_and_its_entry_leaves_a_line_without_one(tmp_path):
    _write(tmp_path, ["start", "step", "epoch"])
    entries = (tmp_path / INDEX).read_bytes()
    _write(tmp_path, ["epoch"], first=10)
    (tmp_path / INDEX).write_bytes(entries)  # the last line's entry never written
    records, _ = read_history(tmp_path / METRICS, whole_below=0)
    assert [r["epoch"] for r in records if r["type"] == "epoch"] == [2, 10]
    _write(tmp_path, ["start", "epoch"], first=20)
    assert _index_matches(tmp_path)


def test_an_index_left_by_a_run_without_one_is_not_started(tmp_path):
    _write(tmp_path, ["start", "epoch"])
    (tmp_path / INDEX).unlink()
    _write(tmp_path, ["start", "epoch"], first=10)
    assert not (tmp_path / INDEX).exists()  # one starting mid-file would be of no use to a reader
    records, _ = read_history(tmp_path / METRICS, whole_below=0)
    assert [r["epoch"] for r in records if r["type"] == "epoch"] == [1, 11]


# --- a disk too full for config.json ----------------------------------------------------------------

def test_a_run_dir_that_cannot_take_config_json_is_refused_and_left_as_found(small_config, monkeypatch):
    from tuitrain.rundir import files
    from tuitrain.session import Session

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    session = Session(small_config(epochs=1, limit=100))
    session.prepare()
    monkeypatch.setattr(files, "write_all", full)
    with pytest.raises(UsageError) as refused:
        session.open_run_dir()
    assert str(refused.value).startswith("cannot write config.json in run dir")
    assert "No space left on device" in str(refused.value)
    assert not Path(session.config.run_dir).exists()  # created by this start: removed again
    monkeypatch.undo()
    lock = RunLock(session.config.run_dir)  # and the lock was let go
    lock.acquire()
    lock.release()


def test_records_that_could_not_be_written_are_reported_at_close(tmp_path, monkeypatch):
    from tuitrain.rundir import writer

    log = RunLog(tmp_path, on_problem=lambda *args: None)
    log.write(_record("start", 0))
    real = writer.write_all
    monkeypatch.setattr(writer, "write_all", lambda fd, data: 0)
    monkeypatch.setattr(writer, "write_json_atomic", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    log.write(_record("epoch", 1))
    log.write(_record("hist", 1))
    log.write_status({"state": "done"})
    assert log.close() == {METRICS: 1, "histograms.jsonl": 1, "status.json": 1}
    monkeypatch.setattr(writer, "write_all", real)
