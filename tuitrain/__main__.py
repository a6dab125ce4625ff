"""``python -m tuitrain`` is the same as the ``tuitrain`` command."""

from __future__ import annotations

import sys

from tuitrain.cli import main

if __name__ == "__main__":
    sys.exit(main())
