"""``tuitrain.fit``: your own model and data, with the dashboard, the run directory and the controls.

    import tuitrain
    result = tuitrain.fit(model, train_dataset, val_dataset, epochs=5, lr=1e-3)

Everything the CLI gives applies: the live dashboard on a terminal (headless otherwise, or with
``headless=True``), RUN_DIR with metrics.jsonl, checkpoints and TensorBoard files, the keys and
``tuitrain ctl``/``watch``, exact resume. The loss is cross-entropy over class indices.
"""

from __future__ import annotations

import sys

import torch

from tuitrain.config import TrainConfig, validate
from tuitrain.data import UserData
from tuitrain.errors import UsageError


def _as_dataset(data, what: str) -> torch.utils.data.Dataset:
    if isinstance(data, torch.utils.data.Dataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        return torch.utils.data.TensorDataset(*data)
    raise UsageError(f"{what} must be a torch Dataset of (input, class index) or a tuple (inputs, labels)")


def fit(model: torch.nn.Module, train_data, val_data=None, *, epochs: int = 10, batch_size: int = 100,
        lr: float = 0.001, optimizer: str = "adam", device: str = "auto", seed: int = 0, run_dir: str = "",
        resume: str = "", headless: bool | None = None, num_workers: int = 0, name: str = "custom",
        classes: list[str] | None = None, hist_every: int = 200):
    """Train ``model`` on ``train_data``, validating on ``val_data`` after each epoch.

    ``train_data``/``val_data``: torch Datasets yielding (input, class index), or (inputs, labels)
    tensor tuples. Without ``val_data``, 10% of ``train_data`` is held out (seeded). Returns the
    engine's Result (status, epochs_done, step, best_val_acc). Raises UsageError on bad input.
    """

    train = _as_dataset(train_data, "train_data")
    if val_data is None:
        n_val = max(1, len(train) // 10)
        split = torch.utils.data.random_split(train, [len(train) - n_val, n_val],
                                              generator=torch.Generator().manual_seed(seed))
        train, val = split[0], split[1]
    else:
        val = _as_dataset(val_data, "val_data")
    cfg = validate(TrainConfig(dataset=name, model=f"custom:{type(model).__name__}", epochs=epochs,
                               batch_size=batch_size, lr=lr, optimizer=optimizer, device=device, seed=seed,
                               run_dir=run_dir, resume=resume, headless=bool(headless), hist_every=hist_every),
                   custom=True)
    dataset = UserData(name, train, val, classes or [], num_workers=num_workers)
    headless = (not sys.stdout.isatty()) if headless is None else headless
    if headless:
        from tuitrain.cli import train_headless

        return train_headless(cfg, model=model, dataset=dataset)[1]
    from tuitrain.app import run_dashboard

    session = run_dashboard(cfg, model=model, dataset=dataset, return_session=True)
    return session.result
