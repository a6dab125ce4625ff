"""What the run directory's writer does with what it finds there: links planted where its files go,
lines torn by a kill or a full disk, an index.jsonl that does not match metrics.jsonl, a disk too
full to hold config.json."""

from __future__ import annotations

import errno
import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tuitrain.errors import UsageError
from tuitrain.rundir import INDEX, LOCK, METRICS, RECORD_FILES, RunLock, RunLog, read_history, read_records
from tuitrain.rundir import writer as runlog
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


# A full disk or the open-file limit never ends a run: every run-dir write other than a
# checkpoint reports its failure once, keeps the records in memory, writes them when it can again,
# and status.json ends true. Simulated with OSError(ENOSPC/EMFILE), and for real on a small tmpfs.


class Disk:
    """Fails run-dir writes while ``full``: os.write (after a short first write), os.open, and the
    temp file of status.json / config.json (created, then the write fails, as a full disk does)."""

    def __init__(self, monkeypatch, error: int = errno.ENOSPC):
        self.full = False
        self.error = error
        real_write, real_open, real_write_text = os.write, os.open, pathlib.Path.write_text
        self.short_done = False

        def write(fd, data):
            if not self.full:
                return real_write(fd, data)
            if not self.short_done and len(data) > 1:  # a short write: part of a line on disk
                self.short_done = True
                return real_write(fd, bytes(data)[: len(data) // 2])
            raise OSError(self.error, os.strerror(self.error))

        def open_(path, flags, mode=0o777, **kwargs):
            if self.full and self.error == errno.EMFILE:
                raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
            return real_open(path, flags, mode, **kwargs)

        def write_text(path, text, *args, **kwargs):
            if self.full:
                path.touch()  # the temp file exists, empty: it must not stay behind
                raise OSError(self.error, os.strerror(self.error))
            return real_write_text(path, text, *args, **kwargs)

        monkeypatch.setattr(runlog.os, "write", write)
        monkeypatch.setattr(runlog.os, "open", open_)
        monkeypatch.setattr(pathlib.Path, "write_text", write_text)


def _step(i: int) -> dict:
    return {"type": "step", "step": i, "epoch": 1, "loss": 1.0 / i, "lr": 0.001, "time": float(i)}


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EMFILE])
def test_records_wait_in_memory_and_are_written_when_the_disk_takes_them(tmp_path, monkeypatch, error):
    problems = []
    disk = Disk(monkeypatch, error)
    log = RunLog(tmp_path, on_problem=lambda target, exc, lost: problems.append((target, exc and exc.errno, lost)))
    log.write(_step(1))
    log.write_status({"state": "running"})
    disk.full = True
    if error == errno.EMFILE:
        log.close()  # the files are reopened at the next write, which is when EMFILE strikes
    for i in range(2, 7):
        log.write(_step(i))
    log.write_status({"state": "running", "step": 6})
    assert problems == [("metrics.jsonl", error, 0), ("status.json", error, 0)]  # once each
    assert not list(tmp_path.glob(".*.tmp"))  # no empty temp file left
    assert json.loads((tmp_path / "status.json").read_text()) == {"state": "running"}  # the old one stays
    disk.full = False
    log.write(_step(7))
    assert problems[2:] == [("metrics.jsonl", None, 0), ("status.json", None, 0)]
    assert json.loads((tmp_path / "status.json").read_text())["step"] == 6
    log.close()
    assert [r["step"] for r in read_records(tmp_path / "metrics.jsonl")] == list(range(1, 8))


def test_records_beyond_the_memory_bound_are_counted_as_lost(tmp_path, monkeypatch):
    monkeypatch.setattr(runlog, "MAX_PENDING_BYTES", 1000)
    problems = []
    disk = Disk(monkeypatch)
    disk.short_done = True
    log = RunLog(tmp_path, on_problem=lambda target, exc, lost: problems.append((target, lost)))
    disk.full = True
    for i in range(1, 101):
        log.write(_step(i))
    disk.full = False
    log.write(_step(101))
    log.close()
    steps = [r["step"] for r in read_records(tmp_path / "metrics.jsonl")]
    assert steps == list(range(101 - len(steps) + 1, 102))  # the newest kept, in order
    assert problems == [("metrics.jsonl", 0), ("metrics.jsonl", 101 - len(steps))]


@pytest.mark.slow
def test_a_run_goes_on_through_a_full_disk_and_ends_true(small_config, monkeypatch):
    from tuitrain.session import Session
    from tuitrain.tboard import TensorBoardSink

    disk = Disk(monkeypatch)
    real_tb_write = TensorBoardSink._write

    def tb_write(self, record):
        if disk.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_tb_write(self, record)

    monkeypatch.setattr(TensorBoardSink, "_write", tb_write)
    monkeypatch.setattr("tuitrain.tboard.RETRY_S", 0.0)
    seen = []

    def on_record(record):  # the disk fills during epoch 1 and is freed during epoch 2
        seen.append(record)
        if record["type"] == "step":
            disk.full = 10 <= record["step"] < 30

    session = Session(small_config(epochs=2, limit=1000, batch_size=50), on_record=on_record)
    session.prepare()
    session.open_run_dir()
    result = session.run()
    run = Path(session.config.run_dir)
    assert result.status == "done" and result.epochs_done == 2
    assert json.loads((run / "status.json").read_text())["state"] == "done"
    records = read_records(run / "metrics.jsonl")
    writes = [(r["target"], r["ok"]) for r in records if r.get("event") == "write"]
    assert ("metrics.jsonl", False) in writes and ("metrics.jsonl", True) in writes
    assert ("tensorboard/", False) in writes and ("tensorboard/", True) in writes
    assert [r["epoch"] for r in records if r["type"] == "epoch"] == [1, 2]
    steps = [r["step"] for r in records if r["type"] == "step"]
    assert steps == sorted(steps) and len(steps) == len([r for r in seen if r["type"] == "step"])  # none lost
    assert not [p for p in run.rglob("*.tmp")]


def _can_mount_tmpfs(path: Path) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    path.mkdir()
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(path)], capture_output=True).returncode == 0
    return ok


@pytest.mark.slow
def test_a_real_full_disk_on_tmpfs(tmp_path):
    mnt = tmp_path / "mnt"
    if not _can_mount_tmpfs(mnt):
        pytest.skip("needs root and mount -t tmpfs")
    try:
        run = mnt / "run"
        proc = subprocess.Popen(
            [sys.executable, "-m", "tuitrain", "synthetic", "--headless", "--epochs", "10", "--limit", "3000",
             "--batch-size", "50", "--log-every", "5", "--hist-every", "20", "--device", "cpu", "--run-dir", str(run)],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
        reader.start()
        deadline = time.monotonic() + 90
        while not any(r["type"] == "epoch" for r in read_records(run / "metrics.jsonl")):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        # Fill the disk to the last byte. Unbuffered: a buffered file kept a partial write's rest and
        # raised ENOSPC again when closed (whenever the free space was not a multiple of 64 KiB).
        with open(mnt / "filler", "wb", buffering=0) as fh:
            try:
                while True:
                    fh.write(b"\0" * 65536)
            except OSError:
                pass
        # Until the run says it cannot write: appends first fill the room left in the file's last
        # page (tmpfs allocates pages), so how long that takes depends on where the page ended.
        deadline = time.monotonic() + 60
        while not any("cannot write metrics.jsonl" in line for line in list(lines)):
            # The disk must be freed while the run still trains (a fast machine could end a short
            # run within a full disk's seconds, and then nothing is left to write its end with).
            assert proc.poll() is None, "the run ended while the disk was full: make it longer"
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        (mnt / "filler").unlink()
        try:
            proc.wait(timeout=600)  # a loaded 2-core machine trains the rest slowly; a hang shows its output
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("".join(lines)) from None
        reader.join(timeout=10)
        out = "".join(lines)
        assert proc.returncode == 0, out
        assert "Traceback" not in out, out
        assert json.loads((run / "status.json").read_text())["state"] == "done"
        records = read_records(run / "metrics.jsonl")
        assert [r["epoch"] for r in records if r["type"] == "epoch"] == list(range(1, 11))
        assert any(r.get("event") == "write" and r["ok"] for r in records)
        assert not [p for p in run.rglob("*") if p.name.endswith(".tmp") or (p.is_file() and not p.stat().st_size)]
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(mnt: Path) -> None:
    """Fill the file system to the last byte (unbuffered: see test_a_real_full_disk_on_tmpfs)."""
    with open(mnt / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass
        try:
            while True:
                fh.write(b"\0")
        except OSError:
            pass


@pytest.mark.slow
def test_a_disk_full_from_the_start_is_refused_with_one_line(tmp_path):
    mnt = tmp_path / "mnt"
    if not _can_mount_tmpfs(mnt):
        pytest.skip("needs root and mount -t tmpfs")
    try:
        _fill(mnt)
        run = mnt / "run"
        out = subprocess.run(
            [sys.executable, "-m", "tuitrain", "synthetic", "--headless", "--epochs", "1", "--limit", "200",
             "--batch-size", "50", "--device", "cpu", "--run-dir", str(run)],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
        errors = [line for line in out.stderr.splitlines() if line.startswith("tuitrain: error")]
        assert out.returncode == 2, out.stderr
        assert errors == [f"tuitrain: error: cannot write config.json in run dir {run}: No space left on device; "
                          f"nothing was trained"], out.stderr
        assert "Traceback" not in out.stderr and "training" not in out.stderr.replace("nothing was trained", "")
        assert not run.exists()  # nothing left that `watch`, `runs` or `ctl` would call "not a run directory"
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
