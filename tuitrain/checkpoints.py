"""Checkpoints: plain dicts, written atomically with a checksum, read with weights_only=True.

A checkpoint holds ``model``, ``optimizer``, ``epoch`` (completed epochs), ``batch`` (next batch of
that epoch, 0 at an epoch end), ``step``, ``config``, ``best_val_acc`` and ``rng`` (every random
state as tensors), so that plain ``torch.load(path, weights_only=True)`` reads it.

Beside each ``X.pt`` lies ``X.pt.sha256``, the hashes its bytes may have. A save writes the sidecar
listing the hash of the file on disk and the new hash, then replaces the file, then writes the
sidecar with the new hash alone; a kill or a failed write at any moment leaves a file whose hash the
sidecar lists, and a flipped byte matches nothing.

A load reads nothing it has not bounded: the file's size and the sizes its zip archive declares for
its records are checked against ``max_bytes`` (from the model: :func:`size_bound`) before the bytes
are read; then the SHA-256 (when the sidecar is there) and every record's CRC-32 (always: torch
writes them and never checks them) are verified before ``torch.load`` sees a byte. What it returns
is checked by :func:`check_payload` before anything is applied.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import io
import math
import pickle
import random
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tuitrain import fmt
from tuitrain.errors import CheckpointError, UsageError, first_line
from tuitrain.rundir.files import TMP_SUFFIX, write_atomic
from tuitrain.trainstate import TrainState

REQUIRED_KEYS = ("model", "optimizer", "epoch", "step", "config")
DEFAULT_MAX_BYTES = 4 << 30
"""What a load reads when the caller knows no model to size it by (the engine passes size_bound)."""
BOUND_SLACK_BYTES = 64 << 20
"""Room above 4x the model for what else a checkpoint holds: config, rng, pickle, small states."""
MAX_COUNTER = 1 << 62
"""Epoch, batch and step above this are not counters but garbage (and overflow int64 tensors)."""


def save_checkpoint(path: str | Path, payload: dict) -> str:
    """Write ``payload`` to ``path`` atomically (temp file, fsync, os.replace); return its sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(on_cpu(payload), buf)
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    sidecar = _sidecar(path)
    old = _hash_on_disk(path, sidecar)
    write_atomic(sidecar, "\n".join([digest, *old]) + "\n")
    try:
        write_atomic(path, data)
    except BaseException:
        _restore_sidecar(path, sidecar, old)
        raise
    write_atomic(sidecar, digest + "\n")
    return digest


def on_cpu(value: Any) -> Any:
    """``value`` with every tensor in it copied to the CPU: a checkpoint from a GPU box loads with a
    plain ``torch.load(path, weights_only=True)`` on a laptop (load_checkpoint maps it back).
    CUDA tensors are copied without blocking and waited for once, not one sync per tensor."""
    waiting: list[bool] = []

    def move(item: Any) -> Any:
        if isinstance(item, torch.Tensor):
            if item.device.type == "cuda":
                waiting.append(True)
                return item.to("cpu", non_blocking=True)  # into pinned memory; ready after the sync
            return item if item.device.type in ("cpu", "meta") else item.cpu()
        if isinstance(item, dict):
            return {k: move(v) for k, v in item.items()}
        if type(item) in (list, tuple):
            return type(item)(move(v) for v in item)
        return item

    moved = move(value)
    if waiting:
        torch.cuda.synchronize()
    return moved


def size_bound(model: torch.nn.Module) -> int:
    """The most bytes a checkpoint of ``model`` may hold: 4x its parameters and buffers (weights,
    Adam's two moments and AMSGrad's maximum) plus BOUND_SLACK_BYTES."""
    tensors = [*model.parameters(), *model.buffers()]
    return 4 * sum(t.numel() * t.element_size() for t in tensors) + BOUND_SLACK_BYTES


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    max_bytes: int = DEFAULT_MAX_BYTES) -> dict:
    """Read a checkpoint safely; CheckpointError (one line, naming the file) on any problem.

    Nothing above ``max_bytes`` is read: the file's size and the record sizes its zip directory
    declares are checked first, so a sparse or deflate-bomb file costs no memory.
    """
    path = Path(path)
    data = _read_bounded(path, max_bytes)
    hashes = _read_hashes(_sidecar(path))
    if hashes and hashlib.sha256(data).hexdigest() not in hashes:
        raise CheckpointError(f"checkpoint {path} is corrupted (its sha256 does not match {path.name}.sha256)")
    _check_archive(path, data, max_bytes)
    try:
        # weights_only=True always: a file from elsewhere must never run code when read.
        ckpt = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message is a paragraph; keep the one line that says what was found.
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        found = next((ln for ln in lines if "GLOBAL" in ln), "")
        if found:
            raise CheckpointError(f"checkpoint {path} is refused: it holds code or objects, not just tensors ({found[:160]})") from None
        reason = next((ln for ln in lines[1:] if not ln.startswith("Check the documentation")), "unpickling failed")
        raise CheckpointError(f"checkpoint {path} is truncated or not a PyTorch file ({reason[:160]})") from None
    except Exception as exc:  # any parse failure of foreign bytes: RuntimeError, KeyError, EOFError...
        raise CheckpointError(f"checkpoint {path} is truncated or not a PyTorch file ({first_line(exc)})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {path} is a {type(ckpt).__name__}, not a tuitrain checkpoint dict")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {path} is not a tuitrain checkpoint (missing {', '.join(missing)})")
    return ckpt


def _read_bounded(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, once its size is known to be within ``max_bytes`` (a FIFO or a device
    is refused before any read: it could block or never end)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise CheckpointError(f"checkpoint {path} cannot be read ({exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointError(f"checkpoint {path} is not a file")
    if info.st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty")
    if info.st_size > max_bytes:
        raise CheckpointError(f"checkpoint {path} is refused: {fmt.size(info.st_size)} is more than a checkpoint of "
                              f"this model can hold ({fmt.size(max_bytes)})")
    try:
        with open(path, "rb") as fh:
            return fh.read(max_bytes + 1)
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read ({exc.strerror or exc})") from None


def _check_archive(path: Path, data: bytes, max_bytes: int) -> None:
    """torch's zip archive: what it is when it is not one; the record sizes its directory declares
    against ``max_bytes`` (torch allocates what they say); every record's CRC-32."""
    try:
        is_zip = zipfile.is_zipfile(io.BytesIO(data))
    except Exception as exc:  # is_zipfile raises on some damaged directories (a ZIP64 locator naming several disks)
        raise CheckpointError(f"checkpoint {path} is truncated or not a PyTorch file ({first_line(exc)})") from None
    if not is_zip:
        if data[:1] == b"\x80":
            raise CheckpointError(f"checkpoint {path} is a raw pickle file (pickle.dump, or torch.save's legacy "
                                  f"format), not torch's zip format; load it and torch.save it again")
        raise CheckpointError(f"checkpoint {path} is truncated or not a PyTorch file (no zip archive directory)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            records = archive.infolist()
            first = min((info.header_offset for info in records), default=0)
            if first:  # zipfile reads past bytes put in front; torch's reader does not: they would disagree
                raise CheckpointError(f"checkpoint {path} is corrupted ({first} unexpected bytes before its first record)")
            declared = sum(info.file_size for info in records)
            unequal = next((i.filename for i in records if i.compress_type == zipfile.ZIP_STORED
                            and i.file_size != i.compress_size), None)
            if unequal is not None:  # torch stores records; the reader it uses allocates file_size
                raise CheckpointError(f"checkpoint {path} is corrupted (the sizes of its record {unequal[:80]!r} disagree)")
            if declared > max_bytes:
                raise CheckpointError(f"checkpoint {path} is refused: its records unpack to {fmt.size(declared)}, more than "
                                      f"a checkpoint of this model can hold ({fmt.size(max_bytes)})")
            bad = archive.testzip()  # reads every record in 1 MiB pieces, checking its CRC-32
    except CheckpointError:
        raise
    except Exception as exc:  # any parse failure of foreign bytes: BadZipFile, zlib.error, EOFError...
        raise CheckpointError(f"checkpoint {path} is truncated or not a PyTorch file ({first_line(exc)})") from None
    if bad is not None:
        raise CheckpointError(f"checkpoint {path} is corrupted (the CRC-32 of its record {bad[:80]!r} does not match)")


def check_state_dict(path: str | Path, model: torch.nn.Module, state: dict) -> None:
    """Raise CheckpointError naming the keys/shapes/dtypes when ``state`` does not fit ``model`` exactly.

    Checked before anything is loaded, so a mismatched file never changes the live model.
    """
    own = model.state_dict()
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise CheckpointError(f"checkpoint {path}: 'model' is not a state_dict of tensors")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {list(state[k].shape)} vs {list(v.shape)}" for k, v in own.items() if k in state and state[k].shape != v.shape]
    dtypes = [f"{k} {state[k].dtype} vs {v.dtype}" for k, v in own.items() if k in state and state[k].dtype != v.dtype]
    problems = []
    if missing:
        problems.append("missing " + ", ".join(missing[:6]) + (" ..." if len(missing) > 6 else ""))
    if unexpected:
        problems.append("unexpected " + ", ".join(unexpected[:6]) + (" ..." if len(unexpected) > 6 else ""))
    if shapes:
        problems.append("shape " + ", ".join(shapes[:4]) + (" ..." if len(shapes) > 4 else ""))
    if dtypes:
        problems.append("dtype " + ", ".join(dtypes[:4]) + (" ..." if len(dtypes) > 4 else ""))
    if problems:
        raise CheckpointError(f"checkpoint {path} does not fit this model: {'; '.join(problems)}")
    for key, tensor in state.items():
        _check_tensor(path, f"model {key}", tensor)
        _check_values(f"checkpoint {path}: model {key}", tensor, bounded=True)


def check_payload(path: str | Path, ckpt: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Everything a restore will use, checked before any of it is applied; CheckpointError (one line).

    Counters, config, best value and random states by type and range; the model's state by keys,
    shapes and dtypes; the optimizer's by structure and, for every state tensor, shape and dtype
    against its parameter. A wrong-shaped moment would otherwise make the fused optimizer read past
    the tensor (a segfault), and a wrong type would end a live run at its next step.
    """
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED_KEYS):
        raise CheckpointError(f"checkpoint {path} is not a tuitrain checkpoint (it needs {', '.join(REQUIRED_KEYS)})")
    for key in ("epoch", "step", "batch"):
        value = ckpt.get(key, 0)  # batch: absent in checkpoints older than mid-epoch resume
        if type(value) is not int or not 0 <= value < MAX_COUNTER:
            raise CheckpointError(f"checkpoint {path}: '{key}' must be a whole number >= 0, not {_show(value)}")
    if not isinstance(ckpt["config"], dict):
        raise CheckpointError(f"checkpoint {path}: 'config' must be a dict, not {_show(ckpt['config'])}")
    for key in ("best_val_acc", "best"):
        value = ckpt.get(key)
        if value is not None and (type(value) not in (int, float) or not math.isfinite(value)):
            raise CheckpointError(f"checkpoint {path}: '{key}' must be a finite number or None, not {_show(value)}")
    _check_rng(path, ckpt.get("rng"))
    check_state_dict(path, model, ckpt["model"])
    _check_optimizer(path, ckpt["optimizer"], optimizer)


# Optimizer state entries shaped like their parameter, and those that are one number.
PARAM_SHAPED = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer", "square_avg", "grad_avg",
                "sum", "acc_delta", "exp_inf", "ax", "prev")
SCALARS = ("step", "eta", "mu")
NONNEGATIVE = ("exp_avg_sq", "max_exp_avg_sq", "square_avg", "sum", "acc_delta", "exp_inf")
"""State entries that are averages of squares or magnitudes: never below zero."""
_REQUIRED_STATE = {torch.optim.Adam: ("step", "exp_avg", "exp_avg_sq"),
                   torch.optim.AdamW: ("step", "exp_avg", "exp_avg_sq")}


def _check_optimizer(path: str | Path, saved, optimizer: torch.optim.Optimizer) -> None:
    where = f"checkpoint {path}: optimizer state"
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict) or not isinstance(saved.get("param_groups"), list):
        raise CheckpointError(f"{where} is not an optimizer state_dict (state and param_groups)")
    groups, live_groups = saved["param_groups"], optimizer.param_groups
    if len(groups) != len(live_groups):
        raise CheckpointError(f"{where} has {len(groups)} parameter groups, the optimizer {len(live_groups)}")
    params: dict[int, tuple[torch.Tensor, dict]] = {}
    for i, (group, live) in enumerate(zip(groups, live_groups, strict=True)):
        ids = group.get("params") if isinstance(group, dict) else None
        if not isinstance(ids, list) or not all(type(p) is int for p in ids):
            raise CheckpointError(f"{where}: parameter group {i} has no list of parameter ids")
        if len(ids) != len(live["params"]):
            raise CheckpointError(f"{where}: parameter group {i} has {len(ids)} parameters, the model {len(live['params'])}")
        # Numbers (lr, betas, eps...) are read with no default; flags get one from the optimizer's
        # __setstate__, so a checkpoint from an older torch may lack a newer flag.
        absent = [k for k, v in live.items() if k != "params" and not (isinstance(v, bool) or v is None)
                  and k not in group]
        if absent:
            raise CheckpointError(f"{where}: parameter group {i} lacks {', '.join(absent)}")
        for key, value in group.items():
            if key != "params" and key in live and not _same_kind(value, live[key]):
                raise CheckpointError(f"{where}: group {i} '{key}' is {_show(value)}, expected like {_show(live[key])}")
        _check_hyperparameters(f"{where}: group {i}", group, live, optimizer)
        for pid, param in zip(ids, live["params"], strict=True):
            if pid in params:
                raise CheckpointError(f"{where}: parameter id {pid} appears twice")
            params[pid] = (param, group)
    required = next((keys for cls, keys in _REQUIRED_STATE.items() if isinstance(optimizer, cls)), ())
    for pid, entry in saved["state"].items():
        if pid not in params:
            raise CheckpointError(f"{where} names parameter {_show(pid)}, which no group holds")
        if not isinstance(entry, dict):
            raise CheckpointError(f"{where} of parameter {pid} is {_show(entry)}, not a dict")
        param, group = params[pid]
        needed = [*required, *(["max_exp_avg_sq"] if required and group.get("amsgrad") else [])]
        absent = [k for k in needed if k not in entry]
        if entry and absent:
            raise CheckpointError(f"{where} of parameter {pid} lacks {', '.join(absent)}")
        for key, value in entry.items():
            _check_state_value(f"{where} of parameter {pid} {key!r}", key, value, param)


def _check_state_value(where: str, key, value, param: torch.Tensor) -> None:
    if key in SCALARS:
        if isinstance(value, torch.Tensor):
            _check_tensor(where, "", value)
            ok = (value.dim() == 0 and value.dtype not in (torch.bool, torch.complex64, torch.complex128)
                  and bool(value.isfinite() & (value >= 0)))
        else:
            ok = type(value) in (int, float) and math.isfinite(value) and value >= 0
        if not ok:
            raise CheckpointError(f"{where} must be one finite number >= 0, not {_show(value)}")
    elif key in PARAM_SHAPED:
        if value is None and key == "momentum_buffer":  # SGD before its first step with momentum
            return
        if not isinstance(value, torch.Tensor) or value.shape != param.shape or value.dtype != param.dtype:
            raise CheckpointError(f"{where} is {_show(value)}, not like its parameter "
                                  f"({param.dtype} {list(param.shape)})")
        _check_tensor(where, "", value)
        _check_values(where, value, nonnegative=key in NONNEGATIVE)
    elif isinstance(value, torch.Tensor):
        _check_tensor(where, "", value)
        _check_values(where, value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise CheckpointError(f"{where} is {_show(value)}, not a finite number")


def _check_values(where: str, tensor: torch.Tensor, bounded: bool = False, nonnegative: bool = False) -> None:
    """Values a run's own optimizer could have produced: finite (complex numbers by their real and
    imaginary parts); ``nonnegative`` for second moments (squares and their averages); ``bounded``
    for weights: a float32/64 or bf16 weight above the square root of its dtype's largest value
    overflows as soon as it is squared (weight decay, a norm, Adam's second moment), so no run trains
    from there: it fails at its next step."""
    if not (tensor.is_floating_point() or tensor.is_complex()) or tensor.numel() == 0:
        return
    values = torch.view_as_real(tensor) if tensor.is_complex() else tensor
    finite = bool(values.isfinite().all())
    if not finite:
        raise CheckpointError(f"{where} holds non-finite values (NaN or inf)")
    if nonnegative and not tensor.is_complex() and bool((values < 0).any()):
        raise CheckpointError(f"{where} holds negative values (min {fmt.loss(float(values.min()))}); a second "
                              f"moment is an average of squares")
    if bounded:
        info = torch.finfo(values.dtype)
        limit = math.sqrt(info.max) if info.max >= torch.finfo(torch.float32).max else info.max
        largest = float(values.abs().max())
        if largest > limit:
            raise CheckpointError(f"{where} holds a value of magnitude {fmt.loss(largest)}, above "
                                  f"{fmt.loss(limit)} (its square overflows {values.dtype}): training cannot go on from it")


# Hyperparameters by name and the range torch's optimizers accept (their constructors' checks).
_AT_LEAST_ZERO = ("lr", "eps", "weight_decay", "momentum", "alpha", "lr_decay", "initial_accumulator_value",
                  "lambd", "t0")
_BELOW_ONE = ("beta1", "beta2", "rho", "dampening")
FLAGS = ("maximize", "amsgrad", "nesterov", "foreach", "fused", "differentiable", "decoupled_weight_decay",
         "centered")
"""Switches of the optimizer's algorithm: a checkpoint must hold the run's own (maximize=True would
quietly turn training into ascent). ``capturable`` is not one: it says where the step count lives
(on the GPU for a CUDA graph), the same math; a load puts it to the run's own (graphstep.set_capturable),
so a --cuda-graphs run's checkpoint resumes anywhere."""


def _check_hyperparameters(where: str, group: dict, live: dict, optimizer: torch.optim.Optimizer) -> None:
    """A saved parameter group's numbers in their valid ranges and its flags those of the run."""
    for key, value in group.items():
        if key in FLAGS and key in live and value != live[key]:
            raise CheckpointError(f"{where} '{key}' is {value!r}, the run's optimizer has {live[key]!r}; "
                                  f"a checkpoint cannot change how the optimizer works")
    numbers: dict[str, float] = {}
    for key, value in group.items():
        if key == "betas" and isinstance(value, (tuple, list)):
            numbers.update({f"beta{n}": _number(v) for n, v in enumerate(value, 1)})
        elif key in _AT_LEAST_ZERO or key in _BELOW_ONE:
            numbers[key] = _number(value)
    for key, number in numbers.items():
        ok = math.isfinite(number) and number >= 0 and (key not in _BELOW_ONE or number < 1 or key == "dampening")
        if key == "dampening":
            ok = ok and number <= 1
        if not ok:
            shown = f"betas {group.get('betas')!r}" if key.startswith("beta") else f"'{key}' {number!r}"
            bound = "in [0, 1)" if key in _BELOW_ONE and key != "dampening" else ">= 0"
            raise CheckpointError(f"{where} {shown} is outside its valid range ({key} must be {bound})")
    _try_constructor(where, group, optimizer)


def _number(value) -> float:
    if isinstance(value, torch.Tensor):
        return float(value.reshape(-1)[0]) if value.numel() == 1 else math.nan
    return float(value) if type(value) in (int, float) else math.nan


def _try_constructor(where: str, group: dict, optimizer: torch.optim.Optimizer) -> None:
    """torch's own checks of a built-in optimizer's arguments, run on a throwaway optimizer over one
    dummy parameter with the saved group's values (nesterov without momentum, and what else its
    constructor refuses)."""
    cls = type(optimizer)
    if not cls.__module__.startswith("torch.optim."):
        return
    try:
        accepted = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return
    kwargs: dict[str, Any] = {k: (_number(v) if isinstance(v, torch.Tensor) else v) for k, v in group.items()
                              if k in accepted and k not in ("self", "params", "fused", "foreach", "capturable", "differentiable")}
    try:
        cls([torch.zeros(1, requires_grad=True)], **kwargs)  # type: ignore[arg-type]
    except (ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{where} is refused by {cls.__name__} ({first_line(exc)})") from None


def _check_rng(path: str | Path, rng) -> None:
    """The random states set_rng_state and the data generator will be given, tried on throwaway
    generators (torch's and Python's own checks, without touching the global states)."""
    if rng is None:
        return
    if not isinstance(rng, dict):
        raise CheckpointError(f"checkpoint {path}: 'rng' must be a dict of tensors, not {_show(rng)}")
    try:
        for key in ("torch", "data"):
            if key in rng:
                _check_tensor(path, f"rng {key}", rng[key])
                torch.Generator().set_state(rng[key].cpu())  # `ctl load` maps every tensor to the run's device
        if "torch" in rng:
            version, internal, gauss = rng["python_version"], rng["python_state"], rng["python_gauss"]
            if not all(isinstance(t, torch.Tensor) for t in (version, internal, gauss)):
                raise TypeError("python states are not tensors")
            if version.numel() != 1 or internal.dtype != torch.int64 or internal.dim() != 1 or gauss.numel() > 1:
                raise ValueError("python states have the wrong shape or dtype")
            gauss_value = gauss.tolist()
            random.Random().setstate((int(version), tuple(internal.tolist()), gauss_value[0] if gauss_value else None))
        cuda = rng.get("cuda", [])
        if not isinstance(cuda, (list, tuple)) or not all(isinstance(t, torch.Tensor) and t.dtype == torch.uint8
                                                          and t.dim() == 1 for t in cuda):
            raise TypeError("cuda states are not byte tensors")
        if cuda and torch.cuda.is_available():  # set_rng_state restores them only where CUDA is
            size = torch.cuda.get_rng_state().numel()
            if any(t.numel() != size for t in cuda):
                raise ValueError(f"cuda states are not {size} bytes each")
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, OverflowError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path}: 'rng' is not a set of random states ({first_line(exc)})") from None


def _check_tensor(path: str | Path, what: str, tensor) -> None:
    """A plain dense tensor holding data (a meta tensor has none; a sparse one fits no parameter)."""
    name = f"checkpoint {path}: {what}" if what else str(path)
    if not isinstance(tensor, torch.Tensor):
        raise CheckpointError(f"{name} is {_show(tensor)}, not a tensor")
    if tensor.is_meta or tensor.layout != torch.strided or tensor.is_quantized:
        raise CheckpointError(f"{name} holds no plain data ({tensor.device.type} {tensor.layout})")


def _same_kind(value, live) -> bool:
    """Whether a saved hyperparameter can stand where the optimizer has ``live``: numbers for
    numbers (finite), flags for flags, pairs for pairs."""
    if isinstance(live, bool):  # amsgrad=None reaches the fused kernel as a wrong argument
        return type(value) is bool
    if live is None:  # foreach: None means "let torch pick"
        return type(value) is bool or value is None
    if isinstance(live, (int, float)):
        return type(value) in (int, float) and math.isfinite(value)
    if isinstance(live, torch.Tensor):
        return (isinstance(value, torch.Tensor) and value.shape == live.shape and not value.is_meta
                and bool(value.isfinite().all())) or _same_kind(value, 0.0)
    if isinstance(live, (tuple, list)):
        return (isinstance(value, (tuple, list)) and len(value) == len(live)
                and all(_same_kind(v, w) for v, w in zip(value, live, strict=True)))
    return type(value) is type(live)


def _show(value) -> str:
    """A value as a short phrase for an error line."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {list(value.shape)} on {value.device.type}"
    text = " ".join(repr(value).split())  # one line, whatever the value's repr spans
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"




def cleanup_temp(folder: str | Path) -> list[Path]:
    """Remove temp files a killed save left behind; return what was removed."""
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for tmp in folder.glob(f"*{TMP_SUFFIX}"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def rng_state() -> dict:
    """Every random state the run draws from, as tensors (weights_only loads them)."""
    version, internal, gauss = random.getstate()
    state: dict[str, object] = {
        "torch": torch.get_rng_state(),
        "python_version": torch.tensor(version),
        "python_state": torch.tensor(internal, dtype=torch.int64),
        "python_gauss": torch.tensor([] if gauss is None else [gauss], dtype=torch.float64),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"].cpu())
    gauss = state["python_gauss"].tolist()
    random.setstate((int(state["python_version"]), tuple(state["python_state"].tolist()), gauss[0] if gauss else None))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _read_hashes(sidecar: Path) -> list[str]:
    try:
        return [line.strip() for line in sidecar.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError):
        return []


def _hash_on_disk(path: Path, sidecar: Path) -> list[str]:
    """The hash of the file now at ``path``, as the sidecar must keep listing it during a save.

    A one-line sidecar is only ever written once its file is in place, so its line is trusted (no
    read). Any other sidecar (a save failed or was killed, or none exists) is settled by hashing the
    file: trusting its first line would keep the hash of a file never written, and after a second
    failed save the good file on disk would match nothing.
    """
    hashes = _read_hashes(sidecar)
    if len(hashes) == 1 or not path.is_file():
        return hashes[:1] if path.is_file() else []
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    except OSError:
        return []
    actual = digest.hexdigest()
    # Without a sidecar the file was never checked by hash; its CRC-32s still are at every load.
    return [actual] if actual in hashes or not hashes else []


def _restore_sidecar(path: Path, sidecar: Path, old: list[str]) -> None:
    """After a failed save, list only the file on disk again (best effort: if this write fails too,
    the next save settles the sidecar by hashing the file)."""
    try:
        if old:
            write_atomic(sidecar, "\n".join(old) + "\n")
        elif not path.exists():
            sidecar.unlink(missing_ok=True)
    except OSError:
        pass  # the disk is still full; _hash_on_disk reads the file at the next save instead


# --------------------------------------------------------------------------- capture / restore
# The one pair that turns a run's state into a checkpoint dict and back, used by --resume, the
# `load` command, and the rollback of a load that failed half-way. It works on the pieces, never
# on the engine (accelerate's save_accelerator_state takes the model, optimizers and schedulers).

@dataclass
class Parts:
    """What a checkpoint saves and restores: live objects, changed in place by :func:`restore`."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    state: TrainState
    scheduler: Any = None
    scaler: torch.amp.GradScaler | None = None
    config: dict = field(default_factory=dict)
    """The run's configuration (TrainConfig.to_dict()); a resume reads its lr and batch size."""
    monitor: str = ""
    """The monitored value: a best value carries over to a resumed run only if it watches the same."""


def capture(parts: Parts) -> dict:
    """The checkpoint dict of ``parts`` at a step boundary: plain values and the live tensors
    themselves (no copies; :func:`snapshot` copies)."""
    st = parts.state
    rng = rng_state()
    rng["data"] = st.data_order
    payload = {
        "model": parts.model.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "epoch": st.epoch,
        "batch": st.batch,
        "step": st.step,
        "config": parts.config,
        "best_val_acc": st.best_val_acc,
        "best": st.best,
        "best_epoch": st.best_epoch,
        "stale_epochs": st.stale_epochs,
        "monitor": parts.monitor,
        "rng": rng,
    }
    if parts.scheduler is not None:
        payload["scheduler"] = parts.scheduler.state_dict()
    if parts.scaler is not None:
        payload["scaler"] = parts.scaler.state_dict()
    return payload


def snapshot(parts: Parts) -> dict:
    """:func:`capture` with every tensor copied: what :func:`restore` puts back after a failed load."""
    return copy.deepcopy(capture(parts))


RESUMED_SETTINGS = ("model", "model_args", "epochs", "batch_size", "lr", "optimizer", "weight_decay", "scheduler",
                    "monitor", "mode", "early_stopping", "grad_clip", "accumulate", "precision", "val_batch_size",
                    "drop_last", "shuffle", "limit", "log_every", "hist_every")
"""What ``--resume`` takes from the checkpoint's config unless given anew: the run goes on as it was
set up (a 50-epoch run resumed without --epochs trains to 50, not to the default 10)."""


def resumed_settings(path: str | Path, given: set[str] | frozenset[str], names: tuple[str, ...] = RESUMED_SETTINGS) -> dict:
    """The checkpoint's own values of ``names`` not in ``given``; {} when it cannot be read (the
    resume itself then says why, in one line)."""
    try:
        saved = load_checkpoint(path).get("config")
    except Exception:
        return {}
    if not isinstance(saved, dict):
        return {}
    return {name: saved[name] for name in names if name in saved and name not in given}


def check_resume(path: str | Path, ckpt: dict, epochs: int, batch_size: int) -> None:
    """What ``--resume`` needs beyond :func:`check_payload`: epochs left to train, and a mid-epoch
    position saved with this batch size (another one would mean other samples). UsageError."""
    epoch, batch = int(ckpt["epoch"]), int(ckpt.get("batch", 0))
    if epoch >= epochs and batch == 0:
        raise UsageError(f"checkpoint {path} has already trained {epoch} epochs; pass --epochs above {epoch}")
    saved_bs = (ckpt.get("config") or {}).get("batch_size", batch_size)
    if batch and saved_bs != batch_size:
        raise UsageError(f"checkpoint {path} was saved mid-epoch with batch size {saved_bs}; resume with "
                         f"--batch-size {saved_bs}, or from an epoch-end checkpoint (last.pt, best.pt)")


def restore(ckpt: dict, parts: Parts, resume: bool = False, path: str | Path = "the checkpoint") -> None:
    """Apply a checkpoint that :func:`check_payload` passed to ``parts``. ``resume``: also the
    position, best values, scheduler, scaler and random states (a `load` command restores weights
    and optimizer moments only and keeps going). ``path`` names the file in errors."""
    parts.model.load_state_dict(ckpt["model"])
    try:
        parts.optimizer.load_state_dict(ckpt["optimizer"])
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise CheckpointError(f"checkpoint {path}: optimizer state does not fit ({exc})") from None
    if not resume:
        return
    st = parts.state
    for name, target in (("scheduler", parts.scheduler), ("scaler", parts.scaler)):
        if target is not None and isinstance(ckpt.get(name), dict):
            try:
                target.load_state_dict(ckpt[name])
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise CheckpointError(f"checkpoint {path}: {name} state does not fit ({exc})") from None
    st.epoch, st.batch, st.step = int(ckpt["epoch"]), int(ckpt.get("batch", 0)), int(ckpt["step"])
    st.best_val_acc = ckpt.get("best_val_acc")
    saved_monitor = ckpt.get("monitor", "val_acc")  # checkpoints before --monitor watched val_acc
    # Another quantity watched now: its best starts afresh.
    st.best = ckpt.get("best", st.best_val_acc) if saved_monitor == parts.monitor else None
    st.best_epoch = int(ckpt.get("best_epoch", 0) or 0)
    st.stale_epochs = int(ckpt.get("stale_epochs", 0) or 0)
    rng = ckpt.get("rng") or {}
    if "data" in rng:
        st.data_order = rng["data"]
    if "torch" in rng:
        set_rng_state(rng)
