"""``tuitrain.fit`` and ``tuitrain.predict``: your own model, data and training, with the dashboard,
the run directory and the controls.

    import torch, tuitrain
    torch.manual_seed(0)                     # fit does not re-initialise your model: seed first
    model = torch.nn.Linear(8, 1)
    result = tuitrain.fit(model, (x, y), loss_fn=torch.nn.MSELoss(), epochs=20, early_stopping=3)
    preds = tuitrain.predict(model, x_test)

Everything the CLI gives applies: the live dashboard on a terminal (headless otherwise, or with
``headless=True``), RUN_DIR with metrics.jsonl, checkpoints and TensorBoard files, the keys and
``tuitrain ctl``/``watch``, exact resume.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from typing import Any

import torch

from tuitrain.config import OPTIONS, TrainConfig, validate
from tuitrain.data import TensorData, UserData
from tuitrain.errors import UsageError
from tuitrain.options import SAME
from tuitrain.task import Task, default_batch_fn, forward, metric_names_clash, primary, to_device


def fit(model: torch.nn.Module, train_data: Any, val_data: Any = None, *, loss_fn: Callable | None = None,
        metrics: Mapping[str, Any] | None = None, batch_fn: Callable | None = None, optimizer: Any = "adam",
        weight_decay: float = 0.0, scheduler: Any = "none", scheduler_interval: str = "", monitor: str = "", mode: str = "",
        early_stopping: int = 0, restore_best: bool = True, grad_clip: float = 0.0, accumulate: int = 1,
        precision: str = "32", compile: bool = False, cuda_graphs: bool = False, val_batch_size: int = 0, collate_fn: Callable | None = None, drop_last: bool = False,
        shuffle: bool = True, num_workers: int = 0, epochs: int = 10, batch_size: int = 100, lr: float = 0.001, device: str = "auto",
        seed: int = 0, run_dir: str = "", resume: str = "", headless: bool | None = None, name: str = "custom",
        classes: list[str] | None = None, hist_every: int = 200, log_every: int = 20):
    """Train ``model`` on ``train_data``, validating on ``val_data`` after each epoch; return a Result.

    Data: a torch Dataset, a DataLoader (its dataset, batch size, collate_fn and drop_last are
    used, a validation DataLoader's batch size and collate_fn for validation; the order is
    tuitrain's, seeded, so resume is exact, shuffled unless ``shuffle=False``), a tuple of tensors or numpy arrays
    ``(x, y[, ...])`` (kept in memory and batched by index: the fast path), or a TensorDataset.
    Without ``val_data``, 10% of ``train_data`` is held out (seeded).

    loss_fn: ``(outputs, targets) -> scalar``. Default: the model's own loss where its output
        carries one (``outputs.loss`` or ``outputs["loss"]``, as transformers' Trainer trains),
        else cross-entropy over integer class-index targets of shape (N,); any other target is
        refused before the first step (ValueError), as is a given loss that broadcasts outputs
        and targets of different shapes or warns on the first batch. Accuracy is reported only
        for class-index targets.
    metrics: ``{"name": fn}`` with ``fn(outputs, targets) -> tensor`` (averaged over validation
        batches, weighted by size) or a ``torchmetrics.Metric``; reported as ``val_<name>``.
    batch_fn: ``batch -> (inputs, targets)``. Default: ``(x, y)``, ``(x, y, *extra)``, or a dict
        with input (input, x, pixel_values, input_ids...) and target (label, labels, y, target)
        keys; the target key goes to the model too when its forward takes that name (``labels``).
        Inputs that are a tuple or dict are passed as ``*args``/``**kwargs``. Outputs that
        are a tuple use element 0, a dict its ``logits``, for the default loss, accuracy, metrics
        and predictions; ``loss_fn`` gets them as they are.
    restore_best: the model ends with best.pt's weights, in eval mode.
    collate_fn, num_workers: for the DataLoader that reads a Dataset (not tensors).
    name: the data's label in config.json and the run directory's name. classes: the class names
        the dashboard shows.

    An exception in your code (model, loss, metric, dataset) is written with its traceback to the
    run's ``error`` event, then re-raised here (same type, same traceback).

    The settings, as ``tuitrain --help`` and config.json have them (config.py declares them):
    """
    given = dict(locals())  # the arguments by name: the settings are read from here, not listed again
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    metrics = dict(metrics or {})
    metric_names_clash(metrics)
    train, loader_opts = _as_data(train_data, "train_data")
    val_opts: dict = {}  # a validation DataLoader's own batch size and collate_fn are used for it
    if val_data is None:
        train, val = _hold_out(train, seed)
    else:
        val, val_opts = _as_data(val_data, "val_data")
    if isinstance(train, tuple) != isinstance(val, tuple):
        train, val = [_as_dataset(d) for d in (train, val)]
    collate_fn = collate_fn or loader_opts.get("collate_fn")
    if isinstance(train, tuple):
        dataset: Any = TensorData(name, train, val, list(classes or []))
    else:
        dataset = UserData(name, train, val, list(classes or []), num_workers=num_workers, collate_fn=collate_fn,
                           val_collate_fn=given["collate_fn"] or val_opts.get("collate_fn") or collate_fn)
    task = Task(loss_fn=loss_fn, metrics=metrics, batch_fn=batch_fn,
                optimizer=None if isinstance(optimizer, str) else optimizer,
                scheduler=None if isinstance(scheduler, str) or scheduler is None else scheduler,
                classes=list(classes or []))
    if isinstance(optimizer, torch.optim.Optimizer):
        _check_optimizer_params(optimizer, model)
    settings = {n: opt.from_fit(given[n]) for n, opt in OPTIONS.items() if opt.fit == SAME}
    settings.update(  # the settings that fit takes as objects, or a DataLoader gives
        dataset=name, model=f"custom:{type(model).__name__}", optimizer=_label(optimizer),
        scheduler=_label(scheduler or "none"), loss=_label(loss_fn) if loss_fn is not None else "cross_entropy",
        metrics=tuple(metrics), batch_size=loader_opts.get("batch_size", batch_size),
        drop_last=drop_last or loader_opts.get("drop_last", False),
        val_batch_size=val_batch_size or val_opts.get("batch_size", 0))
    if resume and epochs == OPTIONS["epochs"].fit_default:
        # A script passes its settings on every call; only the number of epochs is commonly left out,
        # and fit cannot tell the default from epochs=10 written out: the checkpoint's own is taken.
        from tuitrain.checkpoints import resumed_settings

        settings.update(resumed_settings(resume, set(), ("epochs",)))
    cfg = validate(TrainConfig(**settings), custom=True)
    from tuitrain.launch import run

    ui = "auto" if headless is None else ("headless" if headless else "dashboard")
    result = run(cfg, ui=ui, model=model, dataset=dataset, task=task)  # type: ignore[arg-type]
    if restore_best and result.best_checkpoint and result.status != "failed":
        from tuitrain.checkpoints import load_checkpoint

        state = load_checkpoint(result.best_checkpoint, map_location=next(model.parameters()).device)
        model.load_state_dict(state["model"])
        model.eval()
    if result.error is not None:
        raise result.error  # the user's exception, its traceback intact (also in metrics.jsonl)
    return result


FIT_ONLY = ("train_data", "val_data", "batch_fn", "collate_fn", "num_workers", "restore_best", "classes")
"""fit's arguments that are no setting (no TrainConfig field): data, callables and what becomes of
the model, documented in fit's docstring. The others are fields' (``Option.fit``); a test holds
fit's signature to the two."""


def _document_settings() -> None:
    """Append each setting fit takes, in the words config.py declares it with, to fit's docstring."""
    if fit.__doc__ is None:  # python -OO
        return
    lines = [textwrap.fill(f"{name}: {opt.fit_doc or opt.doc}", 100, initial_indent="    ",
                           subsequent_indent="        ") for name, opt in OPTIONS.items() if opt.fit == SAME]
    fit.__doc__ = fit.__doc__.rstrip(" ") + "\n".join(lines) + "\n"


_document_settings()


@torch.inference_mode()
def predict(model: torch.nn.Module, data: Any, *, batch_size: int = 256, batch_fn: Callable | None = None,
            device: str | None = None, collate_fn: Callable | None = None) -> torch.Tensor:
    """The model's outputs over ``data``, concatenated in data order, on the CPU.

    ``data``: a tensor of inputs, a tuple of tensors/arrays (the first is the input), a Dataset or
    a DataLoader (used as given). Samples may be inputs alone or ``(x, y)``/dicts, as in ``fit``
    (``batch_fn`` to say otherwise). The model is put in eval mode; outputs that are a tuple use
    element 0, a dict its ``logits``.
    """
    from tuitrain.device import resolve_device

    target = resolve_device(device) if device else next(model.parameters(), torch.empty(0)).device
    model.eval().to(target)
    if isinstance(data, torch.utils.data.DataLoader):
        loader = data
    else:
        if isinstance(data, torch.Tensor) or _is_array(data):
            data = (data,)
        if isinstance(data, (tuple, list)) and data and all(isinstance(t, torch.Tensor) or _is_array(t) for t in data):
            data = torch.utils.data.TensorDataset(*[torch.as_tensor(t) for t in data])
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=collate_fn)
    outputs = []
    for batch in loader:
        batch = to_device(batch, target)
        if batch_fn is not None:
            inputs = batch_fn(batch)[0]
        elif isinstance(batch, (list, tuple)) and len(batch) == 1:
            inputs = batch[0]
        elif isinstance(batch, (list, tuple, Mapping)):
            inputs = default_batch_fn(batch)[0]
        else:
            inputs = batch
        outputs.append(primary(forward(model, inputs)).float().cpu())
    return torch.cat(outputs) if outputs else torch.empty(0)


def _is_array(value: Any) -> bool:
    return type(value).__module__ == "numpy" and hasattr(value, "shape")


def _as_data(data: Any, what: str) -> tuple[Any, dict]:
    """(tensors tuple or Dataset, options taken from a DataLoader)."""
    opts: dict = {}
    if isinstance(data, torch.utils.data.DataLoader):
        if isinstance(data.dataset, torch.utils.data.IterableDataset):
            raise UsageError(f"{what}: a DataLoader over an IterableDataset cannot be resumed exactly; "
                             f"pass an indexable Dataset")
        if data.batch_size is not None:
            opts["batch_size"] = data.batch_size
        opts["drop_last"] = data.drop_last
        if data.collate_fn is not torch.utils.data.default_collate:
            opts["collate_fn"] = data.collate_fn
        data = data.dataset
    if isinstance(data, torch.utils.data.TensorDataset):
        return tuple(data.tensors), opts
    if isinstance(data, (tuple, list)) and len(data) >= 2 and all(
            isinstance(t, torch.Tensor) or _is_array(t) for t in data):
        tensors = tuple(torch.as_tensor(t) for t in data)
        if len({len(t) for t in tensors}) != 1:
            raise UsageError(f"{what}: the arrays differ in length ({', '.join(str(len(t)) for t in tensors)})")
        return tensors, opts
    if isinstance(data, torch.utils.data.Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        if len(data) == 0:
            raise UsageError(f"{what} is empty")
        return data, opts
    raise UsageError(f"{what} must be a Dataset, a DataLoader, or a tuple (inputs, targets) of tensors or arrays; "
                     f"got {type(data).__name__}")


def _as_dataset(data: Any) -> Any:
    return torch.utils.data.TensorDataset(*data) if isinstance(data, tuple) else data


def _hold_out(train: Any, seed: int) -> tuple[Any, Any]:
    """10% of the training data for validation, chosen by ``seed``."""
    n = len(train[0]) if isinstance(train, tuple) else len(train)
    if n < 2:
        raise UsageError("train_data needs at least 2 samples to hold out a validation split; pass val_data")
    n_val = max(1, n // 10)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    if isinstance(train, tuple):
        return tuple(t[perm[n_val:]] for t in train), tuple(t[perm[:n_val]] for t in train)
    return (torch.utils.data.Subset(train, perm[n_val:].tolist()), torch.utils.data.Subset(train, perm[:n_val].tolist()))


def _check_optimizer_params(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> None:
    ids = {id(p) for p in model.parameters()}
    if not any(id(p) in ids for group in optimizer.param_groups for p in group["params"]):
        raise UsageError("the optimizer given does not hold this model's parameters")


def _label(value: Any) -> str:
    if isinstance(value, str):
        return value
    name = getattr(value, "__name__", None) or type(value).__name__
    return f"custom:{name}"
