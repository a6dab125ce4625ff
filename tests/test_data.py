"""Synthetic and IDX data loading, and the errors for missing or damaged files."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
import torch

from tuitrain import data
from tuitrain.errors import DataError


def test_synthetic_shapes_and_determinism(tmp_path):
    ds = data.load("synthetic", str(tmp_path))
    assert ds.train_x.shape == (10_000, 1, 28, 28) and ds.train_x.dtype == torch.uint8
    assert ds.val_x.shape == (2_000, 1, 28, 28)
    assert set(ds.train_y.unique().tolist()) == set(range(10))
    again = data.load("synthetic", str(tmp_path))
    assert torch.equal(ds.train_x, again.train_x)
    assert len(ds.mean) == 1 and 0 < ds.mean[0] < 1 and ds.std[0] > 0


def test_limit(tmp_path):
    ds = data.load("synthetic", str(tmp_path), limit=500)
    assert len(ds.train_x) == 500 and len(ds.val_x) == 100


def test_idx_gz_loading_and_stats_cache(fmnist_dir, monkeypatch):
    ds = data.load("fashion-mnist", str(fmnist_dir))
    assert ds.train_x.shape == (2000, 1, 28, 28)
    assert ds.val_y.shape == (500,)
    assert ds.classes[9] == "Ankle boot"
    # The user's data folder is left as it was; the statistics go to tuitrain's own cache.
    assert not (fmnist_dir / "tuitrain-stats.json").exists()
    cache = Path(os.environ["TUITRAIN_DATA"]) / "tuitrain-stats.json"
    assert f"{fmnist_dir.resolve()}:fashion-mnist:2000" in cache.read_text()
    assert data.load("fashion-mnist", str(fmnist_dir)).mean == ds.mean  # read back from the cache
    # In tuitrain's own data folder the file sits beside the data.
    monkeypatch.setenv("TUITRAIN_DATA", str(fmnist_dir))
    data.load("fashion-mnist", str(fmnist_dir))
    assert '"fashion-mnist:2000"' in (fmnist_dir / "tuitrain-stats.json").read_text()
    x = ds.train_x.float() / 255
    assert ds.mean[0] == pytest.approx(x.mean().item(), abs=1e-5)


def test_idx_uncompressed_files_are_read(fmnist_dir):
    raw = fmnist_dir / "FashionMNIST" / "raw"
    for gz in raw.glob("*.gz"):
        gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    assert len(data.load("fashion-mnist", str(fmnist_dir)).train_x) == 2000


def test_missing_offline_names_folder_and_files(tmp_path):
    with pytest.raises(DataError) as info:
        data.load("fashion-mnist", str(tmp_path / "nothing"))
    message = str(info.value)
    assert "FashionMNIST/raw" in message and "train-images-idx3-ubyte.gz" in message
    assert "--data-dir" in message and "TUITRAIN_DATA" in message and "tuitrain synthetic" in message
    assert "\n" not in message
    assert not (tmp_path / "nothing").exists()  # the failed download left no empty folders behind


def test_missing_data_in_an_existing_folder_leaves_it_as_it_was(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(DataError):
        data.load("mnist", str(tmp_path / "mine"))
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "not-gzip"])
def test_damaged_idx(fmnist_dir, damage):
    path = fmnist_dir / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    elif damage == "garbage":
        path.write_bytes(gzip.compress(b"\x12\x34\x56\x78" + raw[4:]))
    else:
        path.write_bytes(b"plain text, not gzip")
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        data.load("fashion-mnist", str(fmnist_dir))


def test_normalize():
    x = torch.full((2, 1, 2, 2), 255, dtype=torch.uint8)
    out = data.normalize(x, torch.tensor(0.5).view(1, 1, 1, 1), torch.tensor(0.25).view(1, 1, 1, 1))
    assert torch.allclose(out, torch.full_like(out, 2.0))
