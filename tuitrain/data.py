"""Data sets held in memory as uint8 tensors, batched by index (no per-sample Python work).

Files are read in torchvision's layout, so an existing torchvision download is reused; a missing
data set is downloaded through torchvision, and when that fails the error names the folder and the
files to put there.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tuitrain.errors import DataError
from tuitrain.task import to_device

# name -> (torchvision class name, folder under data_dir, classes)
_IDX_SETS = {
    "fashion-mnist": (
        "FashionMNIST",
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    ),
    "mnist": ("MNIST", [str(i) for i in range(10)]),
}
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
SYNTHETIC_SIZES = (10_000, 2_000)
PRENORMALIZE_MAX_BYTES = 1 << 30


@dataclass
class DataSet:
    """Train and validation splits as tensors: images uint8 (N, C, H, W), labels int64 (N,)."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    mean: list[float]
    std: list[float]
    classes: list[str]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def shape(self) -> tuple[int, int, int]:
        """One image's (C, H, W)."""
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    @property
    def n_train(self) -> int:
        """Training samples."""
        return len(self.train_x)

    @property
    def n_val(self) -> int:
        """Validation samples."""
        return len(self.val_x)

    def place(self, device: torch.device) -> None:
        """Put the data on the training device whole; small sets are normalised there once, as
        floats (three fewer ops a step), larger ones per batch from uint8."""
        for key in ("train_x", "train_y", "val_x", "val_y"):
            setattr(self, key, getattr(self, key).to(device))
        self._mean = torch.tensor(self.mean, device=device).view(1, -1, 1, 1)
        self._std = torch.tensor(self.std, device=device).view(1, -1, 1, 1)
        small = self.train_x.numel() * 4 <= PRENORMALIZE_MAX_BYTES
        self._train_f = normalize(self.train_x, self._mean, self._std) if small else None
        self.device = device

    def train_batches(self, order: torch.Tensor, start: int, batch_size: int, steps: int):
        """(x, y) on the device for batches ``start``..``steps`` of the epoch's ``order``, by index."""
        for b in range(start, steps):
            if order.device != self.device:  # the first batch, and after a device switch mid-epoch
                order = order.to(self.device)
            yield self.gather(order[b * batch_size : (b + 1) * batch_size])

    def gather(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The training samples of ``idx`` (on the data's device) as a batch: device ops only, so a
        CUDA graph can capture it (graphstep.py)."""
        if self._train_f is not None:
            return self._train_f[idx], self.train_y[idx]
        return normalize(self.train_x[idx], self._mean, self._std), self.train_y[idx]

    def train_device(self) -> torch.device:
        """Where the training split lies."""
        return self.train_x.device

    def val_batches(self, batch_size: int = 1000):
        """(x, y) on the device over the validation split."""
        for start in range(0, len(self.val_x), batch_size):
            x = normalize(self.val_x[start : start + batch_size], self._mean, self._std)
            yield x, self.val_y[start : start + batch_size]

    def peek(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` training samples as a batch (checks and the model summary)."""
        return _peek_normalized(self, n)

    def val_images(self, indices: list[int]) -> torch.Tensor:
        """Validation images as stored (uint8), for the misclassified-samples gallery."""
        return self.val_x[torch.tensor(indices, device=self.val_x.device)]

    def describe(self) -> dict:
        """What config.json records of the data."""
        return {"mean": self.mean, "std": self.std, "shape": list(self.shape), "classes": self.classes,
                "train_samples": self.n_train, "val_samples": self.n_val}


def _peek_normalized(ds: DataSet, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return normalize(ds.train_x[:n].to(ds.device), ds._mean, ds._std), ds.train_y[:n].to(ds.device)


def image_like(x: torch.Tensor) -> bool:
    """Whether samples of this batch can be drawn as pictures: (N, C<=4, H, W) or (N, H, W)."""
    return x.dim() == 4 and x.shape[1] in (1, 3, 4) and min(x.shape[2:]) >= 8 or x.dim() == 3 and min(x.shape[1:]) >= 8


def to_display(images: torch.Tensor) -> torch.Tensor:
    """Images (K, C, H, W) or (K, H, W) of any range as uint8 0..255, scaled per image."""
    x = images.detach().float().cpu()
    if x.dim() == 3:
        x = x.unsqueeze(1)
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    return ((x - lo) / (hi - lo).clamp_min(1e-12) * 255).round().to(torch.uint8)


class TensorData:
    """In-memory tensors (``tuitrain.fit`` with tensors, a TensorDataset or numpy arrays): batched
    by index like the built-in data sets, on the training device when they fit there."""

    def __init__(self, name: str, train: tuple[torch.Tensor, ...], val: tuple[torch.Tensor, ...],
                 classes: list[str]):
        self.name = name
        self.train, self.val = train, val
        self.classes = classes
        self.device = torch.device("cpu")
        self.mean: list[float] = []
        self.std: list[float] = []

    @property
    def n_train(self) -> int:
        """Training samples."""
        return len(self.train[0])

    @property
    def n_val(self) -> int:
        """Validation samples."""
        return len(self.val[0])

    def place(self, device: torch.device) -> None:
        """Move the tensors to ``device`` whole when they take less than a GiB, else per batch."""
        size = sum(t.numel() * t.element_size() for t in (*self.train, *self.val))
        if size <= PRENORMALIZE_MAX_BYTES:
            self.train = tuple(t.to(device) for t in self.train)
            self.val = tuple(t.to(device) for t in self.val)
        self.device = device

    def _take(self, tensors: tuple[torch.Tensor, ...], idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        idx = idx.to(tensors[0].device)
        return tuple(t[idx].to(self.device, non_blocking=True) for t in tensors)

    def train_batches(self, order: torch.Tensor, start: int, batch_size: int, steps: int):
        """Batches ``start``..``steps`` of the epoch's ``order``, as tuples of tensors."""
        order = order.to(self.train[0].device)
        for b in range(start, steps):
            yield self._take(self.train, order[b * batch_size : (b + 1) * batch_size])

    def gather(self, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The training samples of ``idx`` as a batch (device ops only when the tensors are on the device)."""
        return self._take(self.train, idx)

    def train_device(self) -> torch.device:
        """Where the training tensors lie (the CPU when they are too large to move whole)."""
        return self.train[0].device

    def val_batches(self, batch_size: int):
        """The validation split in order."""
        for begin in range(0, self.n_val, batch_size):
            yield tuple(t[begin : begin + batch_size].to(self.device, non_blocking=True) for t in self.val)

    def peek(self, n: int):
        """The first ``n`` training samples as a batch (checks and the model summary)."""
        return self._take(self.train, torch.arange(min(n, self.n_train)))

    def val_images(self, indices: list[int]) -> torch.Tensor | None:
        """Validation inputs as display images, or None when they are not pictures."""
        x = self.val[0]
        return to_display(x[torch.tensor(indices, device=x.device)]) if image_like(x[:1]) else None

    def describe(self) -> dict:
        """What config.json records of the data."""
        return {"classes": self.classes, "train_samples": self.n_train, "val_samples": self.n_val,
                "inputs": [list(t.shape[1:]) for t in self.train]}


class _Indexed(torch.utils.data.Dataset):
    """A user's Dataset whose failures name the sample: ``while loading sample 17 of train_data``."""

    def __init__(self, dataset, what: str):
        self.dataset, self.what = dataset, what

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        try:
            return self.dataset[index]
        except Exception as exc:
            if hasattr(exc, "add_note"):
                exc.add_note(f"tuitrain: while loading sample {index} of {self.what}")
            raise


@dataclass
class UserData:
    """A user's own torch Datasets (``tuitrain.fit``): batched through a DataLoader whose batches
    follow the engine's seeded order, so resume stays exact; samples are used as given."""

    name: str
    train: torch.utils.data.Dataset
    val: torch.utils.data.Dataset
    classes: list[str]
    num_workers: int = 0
    collate_fn: Callable | None = None
    val_collate_fn: Callable | None = None
    """The validation DataLoader's own collate_fn (fit's val_data); None: ``collate_fn``."""
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def n_train(self) -> int:
        """Training samples."""
        return len(self.train)  # type: ignore[arg-type]

    @property
    def n_val(self) -> int:
        """Validation samples."""
        return len(self.val)  # type: ignore[arg-type]

    def place(self, device: torch.device) -> None:
        """Batches go to ``device`` as they are loaded (pinned memory when it is a GPU)."""
        self.device = device

    def _loader(self, dataset, what: str, **kwargs):
        collate = self.val_collate_fn or self.collate_fn if what == "val_data" else self.collate_fn
        return torch.utils.data.DataLoader(_Indexed(dataset, what), num_workers=self.num_workers,
                                           pin_memory=self.device.type == "cuda", collate_fn=collate,
                                           persistent_workers=False, **kwargs)

    def train_batches(self, order: torch.Tensor, start: int, batch_size: int, steps: int):
        """Batches ``start``..``steps`` of the epoch's ``order``, on the device."""
        sampler = [order[b * batch_size : (b + 1) * batch_size].tolist() for b in range(start, steps)]
        for batch in self._loader(self.train, "train_data", batch_sampler=sampler):
            yield to_device(batch, self.device)

    def val_batches(self, batch_size: int):
        """The validation set in order, on the device."""
        for batch in self._loader(self.val, "val_data", batch_size=batch_size):
            yield to_device(batch, self.device)

    def peek(self, n: int):
        """The first ``n`` training samples, collated (checks and the model summary)."""
        collate = self.collate_fn or torch.utils.data.default_collate
        data = _Indexed(self.train, "train_data")
        return to_device(collate([data[i] for i in range(min(n, self.n_train))]), self.device)

    def val_images(self, indices: list[int]) -> torch.Tensor | None:
        """Validation inputs as display images, or None when they are not pictures."""
        from tuitrain.task import default_batch_fn

        collate = self.val_collate_fn or self.collate_fn or torch.utils.data.default_collate
        try:
            inputs, _ = default_batch_fn(collate([self.val[i] for i in indices]))
        except Exception:  # a custom batch structure: no pictures, training is unaffected
            return None
        return to_display(inputs) if isinstance(inputs, torch.Tensor) and image_like(inputs[:1]) else None

    def describe(self) -> dict:
        """What config.json records of the data."""
        return {"classes": self.classes, "train_samples": self.n_train, "val_samples": self.n_val}


def load(name: str, data_dir: str, limit: int = 0) -> DataSet:
    """Load a data set by name; ``limit`` keeps the first N train and N//5 validation samples."""
    if name == "synthetic":
        ds = synthetic()
    elif name in _IDX_SETS:
        ds = _load_idx(name, Path(data_dir))
    elif name == "cifar10":
        ds = _load_cifar(Path(data_dir))
    else:
        raise DataError(f"unknown data set {name!r}")
    if limit:
        ds.train_x, ds.train_y = ds.train_x[:limit], ds.train_y[:limit]
        n_val = max(1, limit // 5)
        ds.val_x, ds.val_y = ds.val_x[:n_val], ds.val_y[:n_val]
    ds.mean, ds.std = _stats(ds, Path(data_dir), limit)
    return ds


def synthetic(seed: int = 1234) -> DataSet:
    """Ten classes of 28x28 images: a blurred class pattern at a random contrast, with heavy noise.

    Learnable to high accuracy in a few epochs by every built-in model, and the same on every
    machine (the generator is seeded independently of the run's seed).
    """
    gen = torch.Generator().manual_seed(seed)
    protos = torch.rand(10, 1, 7, 7, generator=gen)
    protos = torch.nn.functional.interpolate(protos, size=(28, 28), mode="bilinear", align_corners=False)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 10, (n,), generator=gen)
        contrast = 120 + 100 * torch.rand(n, 1, 1, 1, generator=gen)
        x = protos[y] * contrast + torch.randn(n, 1, 28, 28, generator=gen) * 110
        return x.clamp(0, 255).to(torch.uint8), y

    train_x, train_y = make(SYNTHETIC_SIZES[0])
    val_x, val_y = make(SYNTHETIC_SIZES[1])
    return DataSet("synthetic", train_x, train_y, val_x, val_y, [], [], [f"class {i}" for i in range(10)])


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 images to float, scaled to [0, 1] and standardised by the training set's statistics."""
    return (x.float().div_(255.0) - mean) / std


def _load_idx(name: str, root: Path) -> DataSet:
    folder, classes = _IDX_SETS[name]
    raw = root / folder / "raw"
    if _missing_idx(raw):
        _download(name, root, raw)
    train_x = read_idx(_idx_path(raw, IDX_FILES["train"][0]), 3)
    train_y = read_idx(_idx_path(raw, IDX_FILES["train"][1]), 1)
    val_x = read_idx(_idx_path(raw, IDX_FILES["test"][0]), 3)
    val_y = read_idx(_idx_path(raw, IDX_FILES["test"][1]), 1)
    for x, y, split in ((train_x, train_y, "train"), (val_x, val_y, "t10k")):
        if len(x) != len(y):
            raise DataError(f"{raw}: {split} images ({len(x)}) and labels ({len(y)}) differ in number")
    return DataSet(
        name, train_x.unsqueeze(1), train_y.long(), val_x.unsqueeze(1), val_y.long(), [], [], classes
    )


def _idx_path(raw: Path, stem: str) -> Path:
    plain = raw / stem
    return plain if plain.is_file() else raw / f"{stem}.gz"


def _missing_idx(raw: Path) -> list[str]:
    stems = [s for pair in IDX_FILES.values() for s in pair]
    return [s for s in stems if not (raw / s).is_file() and not (raw / f"{s}.gz").is_file()]


def read_idx(path: Path, ndim: int) -> torch.Tensor:
    """Read an IDX file (optionally gzipped) of unsigned bytes; DataError when it is damaged."""
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if len(data) < 4 + 4 * ndim:
        raise DataError(f"{path}: too short to be an IDX file ({len(data)} bytes)")
    magic = struct.unpack(">I", data[:4])[0]
    if magic != 0x800 + ndim:
        raise DataError(f"{path}: not an IDX file of {ndim}-d unsigned bytes (magic {magic:#x})")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    expected = 4 + 4 * ndim
    count = 1
    for d in dims:
        count *= d
    if len(data) != expected + count:
        raise DataError(f"{path}: truncated or padded (header says {count} bytes of data, file has {len(data) - expected})")
    return torch.frombuffer(bytearray(data[expected:]), dtype=torch.uint8).reshape(dims).clone()


def _download(name: str, root: Path, raw: Path) -> None:
    """Download through torchvision into ``root``; on failure a one-line error with what to place where,
    and the folders the attempt created are removed again (no empty FashionMNIST/raw left behind)."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, _IDX_SETS[name][0])
    created = [p for p in (raw, raw.parent, root) if not p.exists()]
    try:
        cls(str(root), train=True, download=True)
        cls(str(root), train=False, download=True)
    except Exception as exc:  # torchvision raises RuntimeError, URLError, OSError...
        _remove_empty(created)
        files = ", ".join(f"{s}.gz" for pair in IDX_FILES.values() for s in pair)
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{name} is not in {raw} and could not be downloaded ({reason}); place {files} there, "
                        f"or give the folder that holds {raw.parent.name}/raw with --data-dir or TUITRAIN_DATA; "
                        f"or try `tuitrain synthetic` (no download)") from None


def _remove_empty(folders: list[Path]) -> None:
    """Remove these folders (deepest first) where they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            pass  # not empty (a partial download is kept for the next try) or already gone


def _load_cifar(root: Path) -> DataSet:
    import torchvision.datasets as tvd

    folder = root / "cifar-10-batches-py"
    created = [root] if not root.exists() else []
    try:
        train = tvd.CIFAR10(str(root), train=True, download=not folder.is_dir())
        test = tvd.CIFAR10(str(root), train=False, download=False)
    except Exception as exc:
        _remove_empty(created)
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"cifar10 is not in {folder} and could not be downloaded ({reason}); "
            f"extract cifar-10-python.tar.gz into {root}, or give that folder with --data-dir or TUITRAIN_DATA; "
            f"or try `tuitrain synthetic` (no download)"
        ) from None

    def as_tensors(split) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(split.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(split.targets)

    (train_x, train_y), (val_x, val_y) = as_tensors(train), as_tensors(test)
    return DataSet("cifar10", train_x, train_y, val_x, val_y, [], [], _CIFAR_CLASSES)


def stats_file(root: Path) -> tuple[Path, str]:
    """Where the statistics of data in ``root`` are cached, and the key prefix there.

    In tuitrain's own data folder ($TUITRAIN_DATA or ~/.cache/tuitrain/data) the file sits beside the
    data; a folder of the user's (an existing torchvision download) is left untouched: the file goes to
    tuitrain's cache ($TUITRAIN_DATA or ~/.cache/tuitrain), keyed by the folder's path.
    """
    from tuitrain.config import default_data_dir

    own = Path(default_data_dir())
    if root.resolve() == own.resolve():
        return root / "tuitrain-stats.json", ""
    cache = Path(os.environ["TUITRAIN_DATA"]) if os.environ.get("TUITRAIN_DATA") else own.parent
    return cache / "tuitrain-stats.json", f"{root.resolve()}:"


def _stats(ds: DataSet, root: Path, limit: int) -> tuple[list[float], list[float]]:
    """Per-channel mean/std of the training images, cached (see :func:`stats_file`; computed once)."""
    cache, prefix = stats_file(root)
    key = f"{prefix}{ds.name}:{len(ds.train_x)}"
    cached: dict = {}
    if ds.name != "synthetic" and not limit:
        try:
            cached = json.loads(cache.read_text())
        except (OSError, ValueError):
            cached = {}
        if key in cached:
            return cached[key]["mean"], cached[key]["std"]
    x = ds.train_x.float().div_(255.0)
    dims = (0, 2, 3)
    mean = [round(v, 6) for v in x.mean(dim=dims).tolist()]
    std = [round(v, 6) for v in x.std(dim=dims).tolist()]
    if ds.name != "synthetic" and not limit:
        cached[key] = {"mean": mean, "std": std}
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cached, indent=1))
            os.replace(tmp, cache)
        except OSError:
            pass  # a read-only data folder: the statistics are recomputed next time, nothing lost
    return mean, std
