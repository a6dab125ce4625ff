"""Shared fixtures: small data sets written in torchvision's IDX layout, and engine helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from tests.helpers import write_fashion_mnist

# CI (and any plain `pytest`) runs Hypothesis derandomized: a landing never turns on a random seed.
# Explore with random seeds while developing: HYPOTHESIS_PROFILE=explore python -m pytest ...
# (a failure found there is a bug: fix it and keep the example with @example).
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


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

