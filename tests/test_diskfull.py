"""A full disk or the open-file limit never ends a run (issue 12 #2): every run-dir write other than a
checkpoint reports its failure once, keeps the records in memory, writes them when it can again,
and status.json ends true. Simulated with OSError(ENOSPC/EMFILE), and for real on a small tmpfs."""

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

from tuitrain.rundir import RunLog, read_records
from tuitrain.rundir import writer as runlog

ROOT = Path(__file__).resolve().parent.parent


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
