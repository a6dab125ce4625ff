"""Checkpoints: plain dicts, written atomically with a checksum, read with weights_only=True.

A checkpoint holds ``model``, ``optimizer``, ``epoch`` (completed epochs), ``batch`` (next batch of
that epoch, 0 at an epoch end), ``step``, ``config``, ``best_val_acc`` and ``rng`` (every random
state as tensors), so that plain ``torch.load(path, weights_only=True)`` reads it.

Beside each ``X.pt`` lies ``X.pt.sha256``, the hashes its bytes may have. A save writes the sidecar
listing the old and the new hash, then replaces the file, then writes the sidecar with the new hash
alone; a kill at any moment leaves a file whose hash the sidecar lists, and a flipped byte matches
nothing.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import random
from pathlib import Path

import torch

from tuitrain.errors import CheckpointError

REQUIRED_KEYS = ("model", "optimizer", "epoch", "step", "config")
TMP_SUFFIX = ".tmp"


def save_checkpoint(path: str | Path, payload: dict) -> str:
    """Write ``payload`` to ``path`` atomically (temp file, fsync, os.replace); return its sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    sidecar = _sidecar(path)
    old = _read_hashes(sidecar)[:1]
    _write_atomic(sidecar, "\n".join([digest, *old]) + "\n")
    _write_atomic(path, data)
    _write_atomic(sidecar, digest + "\n")
    return digest


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint safely; CheckpointError (one line, naming the file) on any problem."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    data = path.read_bytes()
    if not data:
        raise CheckpointError(f"checkpoint {path} is empty")
    hashes = _read_hashes(_sidecar(path))
    if hashes and hashlib.sha256(data).hexdigest() not in hashes:
        raise CheckpointError(f"checkpoint {path} is corrupted (its sha256 does not match {path.name}.sha256)")
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
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path} is truncated or not a PyTorch file ({reason})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {path} is a {type(ckpt).__name__}, not a tuitrain checkpoint dict")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {path} is not a tuitrain checkpoint (missing {', '.join(missing)})")
    return ckpt


def check_state_dict(path: str | Path, model: torch.nn.Module, state: dict) -> None:
    """Raise CheckpointError naming the keys/shapes when ``state`` does not fit ``model`` exactly.

    Checked before anything is loaded, so a mismatched file never changes the live model.
    """
    own = model.state_dict()
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path}: 'model' is not a state_dict of tensors")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {list(state[k].shape)} vs {list(v.shape)}" for k, v in own.items() if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append("missing " + ", ".join(missing[:6]) + (" ..." if len(missing) > 6 else ""))
    if unexpected:
        problems.append("unexpected " + ", ".join(unexpected[:6]) + (" ..." if len(unexpected) > 6 else ""))
    if shapes:
        problems.append("shape " + ", ".join(shapes[:4]) + (" ..." if len(shapes) > 4 else ""))
    if problems:
        raise CheckpointError(f"checkpoint {path} does not fit this model: {'; '.join(problems)}")


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
    state = {
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


def _write_atomic(path: Path, data: bytes | str) -> None:
    """Temp file in the same folder, flush and fsync, os.replace, then fsync the folder."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    raw = data.encode() if isinstance(data, str) else data
    try:
        with open(tmp, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# --------------------------------------------------------------------------- capture / restore
# The one pair that turns a run's state into a checkpoint dict and back, used by --resume, the
# `load` command, and the rollback of a load that failed half-way.

def capture(engine) -> dict:
    """The checkpoint dict (plain values and tensors only) of an engine at a step boundary."""
    st = engine.state
    rng = rng_state()
    rng["data"] = st.data_order
    payload = {
        "model": engine.model.state_dict(),
        "optimizer": engine.optimizer.state_dict(),
        "epoch": st.epoch,
        "batch": st.batch,
        "step": st.step,
        "config": engine.config.to_dict(),
        "best_val_acc": st.best_val_acc,
        "best": st.best,
        "best_epoch": st.best_epoch,
        "stale_epochs": st.stale_epochs,
        "monitor": engine.monitor,
        "rng": rng,
    }
    if engine.scheduler is not None:
        payload["scheduler"] = engine.scheduler.state_dict()
    if engine.scaler is not None:
        payload["scaler"] = engine.scaler.state_dict()
    return payload


def restore(ckpt: dict, path: str | Path, engine, resume: bool) -> None:
    """Apply a checkpoint to an engine. ``resume``: also the position, best values and random
    states (a `load` command restores weights and optimizer moments only and keeps going)."""
    engine.model.load_state_dict(ckpt["model"])
    try:
        engine.optimizer.load_state_dict(ckpt["optimizer"])
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise CheckpointError(f"checkpoint {path}: optimizer state does not fit ({exc})") from None
    if engine.fused:
        engine.optimizer.found_inf = engine.found_inf  # the guard's flag survives a state reload
    if not resume:
        return
    st = engine.state
    if engine.scheduler is not None and isinstance(ckpt.get("scheduler"), dict):
        engine.scheduler.load_state_dict(ckpt["scheduler"])
    if engine.scaler is not None and isinstance(ckpt.get("scaler"), dict):
        engine.scaler.load_state_dict(ckpt["scaler"])
    st.epoch, st.batch, st.step = int(ckpt["epoch"]), int(ckpt.get("batch", 0)), int(ckpt["step"])
    st.best_val_acc = ckpt.get("best_val_acc")
    saved_monitor = ckpt.get("monitor", "val_acc")
    st.best = ckpt.get("best", st.best_val_acc if saved_monitor == engine.monitor else None)
    if saved_monitor != engine.monitor:
        st.best = None  # another quantity is watched now: its best starts afresh
    st.best_epoch = int(ckpt.get("best_epoch", 0) or 0)
    st.stale_epochs = int(ckpt.get("stale_epochs", 0) or 0)
    rng = ckpt.get("rng") or {}
    if "data" in rng:
        st.data_order = rng["data"]
    if "torch" in rng:
        set_rng_state(rng)
