"""tuitrain: a terminal dashboard that trains, shows and steers PyTorch runs.

Importing the package is cheap: nothing here imports torch or textual, so the CLI can answer
``--help`` at once. ``tuitrain.fit`` and ``tuitrain.predict`` are loaded on first use (PEP 562), so
``help(tuitrain.fit)`` shows their whole documentation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["fit", "predict", "__version__"]

if TYPE_CHECKING:
    from tuitrain.api import fit, predict


def __getattr__(name: str) -> Any:
    if name in ("fit", "predict"):
        from tuitrain import api

        return getattr(api, name)
    raise AttributeError(f"module 'tuitrain' has no attribute {name!r}")
