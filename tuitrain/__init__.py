"""tuitrain: a terminal dashboard that trains, shows and steers PyTorch runs.

Importing the package is cheap: nothing here imports torch or textual, so the CLI can answer
``--help`` at once.
"""

from __future__ import annotations

__version__ = "0.1.0"


def fit(*args, **kwargs):
    """Train your own model with tuitrain's dashboard and run directory (see :func:`tuitrain.api.fit`).

    Imported lazily so that ``import tuitrain`` (and ``tuitrain --help``) stays free of torch.
    """
    from tuitrain.api import fit as _fit

    return _fit(*args, **kwargs)


def predict(*args, **kwargs):
    """The model's outputs over some data, in data order (see :func:`tuitrain.api.predict`)."""
    from tuitrain.api import predict as _predict

    return _predict(*args, **kwargs)
