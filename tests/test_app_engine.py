"""The dashboard over the real engine on synthetic data: pause, resume, set LR, save, quit."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import until
from tuitrain.app import TuiTrainApp
from tuitrain.backends import LiveBackend
from tuitrain.session import Session
from tuitrain.widgets.lr_prompt import LRPrompt
from tuitrain.widgets.status import StatusLine


def _live(config):
    """A prepared session with its run dir open, and the dashboard over it: (session, app)."""
    session = Session(config)
    session.prepare()
    session.open_run_dir()
    return session, TuiTrainApp(LiveBackend(session))


@pytest.mark.slow
async def test_real_engine_keys(small_config):
    session, app = _live(small_config(epochs=200, limit=2000))
    engine = session.engine
    async with app.run_test(size=(120, 40)) as pilot:
        status = app.query_one(StatusLine)
        await until(pilot, lambda: engine.state.step >= 20, "training to start")
        await pilot.press("p")
        await until(pilot, lambda: status.state == "PAUSED", "pause")
        frozen = engine.state.step
        await pilot.pause(0.5)
        assert engine.state.step == frozen
        await pilot.press("r")
        assert isinstance(app.screen, LRPrompt)
        app.screen.query_one("Input").value = "0.005"
        await pilot.press("enter")
        await until(pilot, lambda: engine.optimizer.param_groups[0]["lr"] == 0.005, "the new LR")
        await pilot.press("s")
        saved = engine.checkpoint_dir / f"step-{frozen}.pt"
        await until(pilot, saved.exists, "the saved checkpoint")
        await pilot.press("p")
        await until(pilot, lambda: engine.state.step > frozen + 5, "training to resume")
        assert status.state == "RUNNING"
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running, "the app to exit")
    assert app.return_value == 0
    assert session.result.status == "stopped"
    last = torch.load(engine.checkpoint_dir / "last.pt", weights_only=True)
    assert last["step"] == session.result.step > frozen


@pytest.mark.slow
async def test_a_divergence_pause_shows_paused_and_p_resumes(small_config):
    """`r 1e308` makes the loss non-finite; the guard pauses the run (a nonfinite event that is not
    ok): the status line and status.json must say paused, and p must resume (it sent pause before)."""
    from tuitrain.rundir import run_state

    session, app = _live(small_config(epochs=200, limit=2000, on_nonfinite="pause"))
    engine = session.engine
    async with app.run_test(size=(120, 40)) as pilot:
        status = app.query_one(StatusLine)
        await until(pilot, lambda: engine.state.step >= 5, "training to start")
        await pilot.press("r")
        app.screen.query_one("Input").value = "1e308"
        await pilot.press("enter")
        await until(pilot, lambda: engine.paused, "the divergence guard to pause the run")
        await until(pilot, lambda: status.state == "PAUSED", "the status line to say PAUSED")
        assert run_state(session.config.run_dir) == "paused"  # what status.json and `runs` say
        paused_at = engine.state.step
        await pilot.press("p")
        await until(pilot, lambda: engine.state.step > paused_at, "p to resume training")
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running, "the app to exit")
