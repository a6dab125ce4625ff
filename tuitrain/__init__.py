"""tuitrain: a terminal dashboard that trains, shows and steers PyTorch runs.

Importing the package is cheap: nothing here imports torch or textual, so the CLI can answer
``--help`` at once.
"""

from __future__ import annotations

__version__ = "0.1.0"
