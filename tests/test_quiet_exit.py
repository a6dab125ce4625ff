"""Nothing but tuitrain's own last line follows a dashboard run: no "nanobind: leaked ..." lines at
interpreter exit (triton, imported by torch.optim through torch._dynamo, reports the objects still
alive then; the dashboard's gc.freeze kept them so until the app let go on unmount)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT, Pane, wait

pytestmark = pytest.mark.slow

APP_IN_A_TEST = """
import asyncio
import torch
from tests.fakes import FakeBackend
from tuitrain.app import TuiTrainApp

torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # imports triton (through torch._dynamo) where installed

async def main():
    app = TuiTrainApp(FakeBackend())
    async with app.run_test() as pilot:
        await pilot.pause(0.3)  # on_ready has frozen the heap

asyncio.run(main())
print("the end")
"""


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="the noise came from triton")
def test_a_dashboard_in_a_test_process_leaves_nothing_to_report_at_exit():
    """As pytest's own end: apps run with Pilot in the test process."""
    done = subprocess.run([sys.executable, "-c", APP_IN_A_TEST], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("the end\n")
    assert "nanobind" not in done.stderr, done.stderr[-2000:]


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_a_dashboard_run_ends_with_tuitrains_own_last_line(tmp_path):
    run_dir = tmp_path / "run"
    pane = Pane(tmp_path, ["synthetic", "--epochs", "1", "--limit", "500", "--batch-size", "50", "--model", "mlp",
                           "--device", "cpu", "--run-dir", str(run_dir)])
    output = tmp_path / "pane.out"
    try:
        # Everything the pane shows from now on, as written (escape sequences included).
        subprocess.run(["tmux", "pipe-pane", "-o", "-t", pane.name, f"cat >> {output}"], check=True)
        wait(lambda: "DONE" in pane.screen(), "the run to finish", 180)
        subprocess.run(["tmux", "send-keys", "-t", pane.name, "q"], check=True)
        assert pane.exit_code(60) == 0
    finally:
        pane.kill()
    text = output.read_text(errors="replace")
    plain = re.sub(r"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|[()][A-Z0-9]|[=>78])", "", text).replace("\r", "")
    assert "nanobind" not in plain, plain[-2000:]
    # The last thing written is tuitrain's final line, whole (the screen's rows before it are drawn
    # by cursor moves, so without the escape sequences they run into it).
    assert re.search(rf"tuitrain: done after 1 epoch [^\n]*; run dir {re.escape(str(run_dir))}\n\Z", plain), \
        repr(plain[-300:])
