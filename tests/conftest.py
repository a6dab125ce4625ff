"""Shared fixtures: small data sets written in torchvision's IDX layout, and engine helpers."""

from __future__ import annotations

import gzip
import os
import queue
import struct
import threading
import time
from pathlib import Path

import pytest
import torch
from hypothesis import settings

# CI (and any plain `pytest`) runs Hypothesis derandomized: a landing never turns on a random seed.
# Explore with random seeds while developing: HYPOTHESIS_PROFILE=explore python -m pytest ...
# (a failure found there is a bug: fix it and keep the example with @example).
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def write_idx(path: Path, array: torch.Tensor) -> None:
    """Write a uint8 tensor as a gzipped IDX file (the format of the MNIST family)."""
    header = struct.pack(">I", 0x800 + array.dim()) + struct.pack(f">{array.dim()}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.contiguous().numpy().tobytes()))


def write_fashion_mnist(root: Path, n_train: int = 2000, n_test: int = 500, folder: str = "FashionMNIST") -> Path:
    """A small learnable stand-in for Fashion-MNIST in DIR/FashionMNIST/raw/*.gz; returns DIR."""
    from tuitrain.data import synthetic

    ds = synthetic(seed=7)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "train-images-idx3-ubyte.gz", ds.train_x[:n_train, 0])
    write_idx(raw / "train-labels-idx1-ubyte.gz", ds.train_y[:n_train].to(torch.uint8))
    write_idx(raw / "t10k-images-idx3-ubyte.gz", ds.val_x[:n_test, 0])
    write_idx(raw / "t10k-labels-idx1-ubyte.gz", ds.val_y[:n_test].to(torch.uint8))
    return root


@pytest.fixture
def fmnist_dir(tmp_path: Path) -> Path:
    """A data folder holding a small Fashion-MNIST-shaped IDX data set."""
    return write_fashion_mnist(tmp_path / "data")


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Tests never download: any attempt fails at once as it would offline."""
    from urllib.error import URLError

    import torchvision.datasets.mnist as tv_mnist

    def refuse(*args, **kwargs):
        raise URLError("network disabled in tests")

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", refuse)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """tuitrain's own cache ($TUITRAIN_DATA) in the test's folder: tests never write to ~/.cache."""
    monkeypatch.setenv("TUITRAIN_DATA", str(tmp_path / "tuitrain-cache"))


class EngineRun:
    """An Engine running in a thread, collecting its records, with helpers to wait on them."""

    def __init__(self, config):
        from tuitrain.engine import Engine

        self.records: list[dict] = []
        self._cond = threading.Condition()
        self.commands: queue.Queue = queue.Queue()
        self.engine = Engine(config, self._report, self.commands)
        self.engine.setup()
        self.result = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _report(self, record: dict) -> None:
        with self._cond:
            self.records.append(record)
            self._cond.notify_all()

    def _run(self) -> None:
        self.result = self.engine.run()

    def start(self) -> EngineRun:
        self.thread.start()
        return self

    def send(self, cmd) -> None:
        self.commands.put(cmd)

    def wait_for(self, predicate, timeout: float = 30.0) -> dict:
        """The first record (in order) matching ``predicate``; fails the test on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for record in self.records:
                    if predicate(record):
                        return record
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out waiting for a record")
                self._cond.wait(left)

    def wait_event(self, name: str, cmd_id: int | None = None, timeout: float = 30.0) -> dict:
        return self.wait_for(
            lambda r: r.get("type") == "event" and r["event"] == name and (cmd_id is None or r.get("cmd_id") == cmd_id),
            timeout,
        )

    def steps(self) -> list[int]:
        with self._cond:
            return [r["step"] for r in self.records if r.get("type") == "step"]

    def join(self, timeout: float = 60.0):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "engine did not finish"
        return self.result


@pytest.fixture
def small_config(tmp_path):
    """A config for a fast CPU run on the synthetic data set."""
    from tuitrain.config import TrainConfig

    def make(**changes):
        base = dict(dataset="synthetic", model="cnn", epochs=2, batch_size=50, lr=0.001, device="cpu",
                    seed=0, run_dir=str(tmp_path / "run"), limit=1000, log_every=5, hist_every=10,
                    data_dir=str(tmp_path / "data"))
        base.update(changes)
        return TrainConfig(**base)

    return make


@pytest.fixture
def ssh_box(tmp_path):
    """A real SSH server on a loopback port (tests/helpers.py SshBox), ended after the test."""
    from tests.helpers import SshBox

    box = SshBox(tmp_path / "ssh")
    try:
        yield box
    finally:
        box.close()

