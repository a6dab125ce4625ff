"""The engine side never imports textual; the widgets never import torch (checked in subprocesses)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import ROOT

HEADLESS = ["tuitrain.engine", "tuitrain.models", "tuitrain.data", "tuitrain.checkpoints", "tuitrain.config",
            "tuitrain.rundir", "tuitrain.session", "tuitrain.progress", "tuitrain.system", "tuitrain.runstate"]


def _imports(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return set(out.stdout.split())


@pytest.mark.parametrize("module", HEADLESS)
def test_headless_modules_never_import_textual(module):
    assert "textual" not in _imports(module)


RUNDIR = sorted(f"tuitrain.rundir.{p.stem}" for p in (ROOT / "tuitrain" / "rundir").glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("module", ["tuitrain.rundir", *RUNDIR])
def test_the_run_directory_package_imports_neither_torch_nor_textual(module):
    """Everything that writes or reads a run directory is plain Python: a viewer, ``runs`` and the
    remote stream start without either."""
    imported = _imports(module)
    assert "torch" not in imported and "textual" not in imported


def test_widgets_never_import_torch():
    widgets = sorted(p.stem for p in (ROOT / "tuitrain" / "widgets").glob("*.py") if p.stem != "__init__")
    for name in widgets:
        assert "torch" not in _imports(f"tuitrain.widgets.{name}"), name


@pytest.mark.parametrize("module", ["tuitrain.app", "tuitrain.backends", "tuitrain.compare_app", "tuitrain.control",
                                    "tuitrain.cli"])
def test_ui_and_watch_modules_never_import_torch(module):
    """The dashboard and `watch` start without torch (the live backend imports it only to train)."""
    assert "torch" not in _imports(module)
