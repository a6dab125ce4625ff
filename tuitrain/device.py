"""Devices: which exist here, which one a name means, and the autocast of a precision.

Kept apart from the engine so that listing devices (the dashboard's device prompt, config.json,
``predict``) never needs the training loop.
"""

from __future__ import annotations

import contextlib

import torch

from tuitrain.errors import UsageError

AUTOCAST_DTYPES = {"32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
"""What each ``--precision`` computes in under autocast (None: no autocast)."""


def available_devices() -> list[str]:
    """Devices that exist here: cpu, then each CUDA GPU, then mps."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        found.append("mps")
    return found


def resolve_device(name: str) -> torch.device:
    """auto picks CUDA, then MPS, then CPU; a device that does not exist is a UsageError."""
    present = available_devices()
    if name == "auto":
        return torch.device(next((d for d in present if d != "cpu"), "cpu"))
    wanted = "cuda:0" if name == "cuda" else name
    if wanted not in present:
        raise UsageError(f"device {name} is not available here (available: {', '.join(present)})")
    return torch.device(wanted)


def autocast(device: torch.device, precision: str, cache: bool = True) -> contextlib.AbstractContextManager:
    """The autocast context of ``precision`` on ``device`` (a no-op for full precision); ``cache``:
    autocast's cache of casted weights (off where a CUDA graph is captured)."""
    dtype = AUTOCAST_DTYPES.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=cache)
