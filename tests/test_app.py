"""Pilot tests of the dashboard against a fake backend: keys send the right commands, refused
input changes nothing, widgets show what they were given."""

from __future__ import annotations

import pytest

from tests.fakes import FakeBackend
from tests.helpers import ready
from tuitrain.app import TuiTrainApp
from tuitrain.commands import Load, Pause, Resume, Save, SetDevice, SetLR
from tuitrain.widgets.curves import Curves
from tuitrain.widgets.histograms import Histograms
from tuitrain.widgets.lr_prompt import LRPrompt
from tuitrain.widgets.status import StatusLine
from tuitrain.widgets.summary import SummaryPanel
from tuitrain.widgets.system import SystemPanel


def _event(name: str, step: int = 150, **details) -> dict:
    return {"type": "event", "event": name, "step": step, "epoch": 1, "time": 0.0, "ok": True, **details}




async def test_widgets_show_what_they_were_given():
    backend = FakeBackend()
    app = TuiTrainApp(backend)
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot, app)
        curves = app.query_one(Curves)
        assert curves.train_loss.xs[-1] == 150 and curves.val_acc.ys == [0.85]
        assert app.query_one(Histograms).record["layers"][0]["name"] == "conv1.weight"
        assert "no GPU found" in str(app.query_one(SystemPanel).render())
        table = app.query_one(SummaryPanel).query_one("DataTable")
        assert table.row_count == 3
        status = app.query_one(StatusLine)
        assert status.step == 150 and status.total == 300 and status.device == "cpu"
        backend.push(_event("lr", old=0.001, new=0.01), _event("pause"), _event("device", old="cpu", new="cuda:0"))
        await pilot.pause()
        assert [m[1] for m in curves.markers.items] == ["lr", "pause", "device"]
        assert status.lr == 0.01 and status.state == "PAUSED" and status.device == "cuda:0"
        await pilot.press("right_square_bracket")
        assert app.query_one(Histograms).layer_index == 1
        await pilot.press("q")


async def test_pause_resume_save_keys():
    backend = FakeBackend()
    app = TuiTrainApp(backend)
    async with app.run_test() as pilot:
        await ready(pilot, app)
        await pilot.press("p")
        assert isinstance(backend.sent[-1], Pause)
        backend.push(_event("pause", cmd_id=backend.sent[-1].id))
        await pilot.pause()
        await pilot.press("p")
        assert isinstance(backend.sent[-1], Resume)
        await pilot.press("s")
        assert isinstance(backend.sent[-1], Save)
        ids = [c.id for c in backend.sent]
        assert len(set(ids)) == len(ids)  # every command can be matched with its answer


@pytest.mark.slow
async def test_set_lr_prompt_sends_and_refuses():
    backend = FakeBackend()
    app = TuiTrainApp(backend)
    async with app.run_test() as pilot:
        await ready(pilot, app)
        await pilot.press("r")
        assert isinstance(app.screen, LRPrompt)
        assert app.screen.query_one("Input").value == "0.001"
        for bad in ["abc", "0", "-0.5", "inf", "nan"]:
            app.screen.query_one("Input").value = bad
            await pilot.press("enter")
            assert isinstance(app.screen, LRPrompt), bad
            assert "refused" in str(app.screen.query_one("#lr-error").render())
        assert backend.sent == []
        app.screen.query_one("Input").value = "0.02"
        await pilot.press("enter")
        await pilot.pause()
        assert backend.sent == [SetLR(0.02, id=backend.sent[0].id)]
        await pilot.press("r", "escape")
        assert len(backend.sent) == 1


async def test_load_prompt_lists_newest_first():
    backend = FakeBackend(checkpoints=["runs/fake/checkpoints/step-90.pt", "runs/fake/checkpoints/last.pt"])
    app = TuiTrainApp(backend)
    async with app.run_test() as pilot:
        await ready(pilot, app)
        await pilot.press("l", "enter")
        await pilot.pause()
        assert backend.sent[-1].path == "runs/fake/checkpoints/step-90.pt" and isinstance(backend.sent[-1], Load)


async def test_load_without_checkpoints_says_so():
    backend = FakeBackend()
    app = TuiTrainApp(backend)
    async with app.run_test() as pilot:
        await ready(pilot, app)
        await pilot.press("l")
        assert backend.sent == []
        assert any("no checkpoints" in n for n in app.notices())


@pytest.mark.parametrize("devices,expected", [(("cpu",), None), (("cpu", "cuda:0"), "cuda:0")])
async def test_device_key(devices, expected):
    backend = FakeBackend(devices=devices)
    app = TuiTrainApp(backend)
    async with app.run_test() as pilot:
        await ready(pilot, app)
        await pilot.press("d")
        if expected is None:
            assert backend.sent == []
            assert any("no other device" in n for n in app.notices())
        else:
            await pilot.press("enter")
            await pilot.pause()
            assert backend.sent[-1] == SetDevice(expected, id=backend.sent[-1].id)


async def test_quit_stops_then_exits_when_the_run_ends():
    backend = FakeBackend()
    app = TuiTrainApp(backend)
    async with app.run_test() as pilot:
        await ready(pilot, app)
        await pilot.press("q")
        assert backend.quits == ["quit"]
        for _ in range(20):
            await pilot.pause()
    assert app.return_value == 0


async def test_ctrl_c_stops_and_exits_130():
    backend = FakeBackend()
    app = TuiTrainApp(backend)
    async with app.run_test() as pilot:
        await ready(pilot, app)
        await pilot.press("ctrl+c")
        for _ in range(20):
            await pilot.pause()
    assert backend.quits == ["interrupt"] and app.return_value == 130


async def test_done_stays_on_screen_until_q():
    backend = FakeBackend()
    app = TuiTrainApp(backend)
    async with app.run_test() as pilot:
        await ready(pilot, app)
        backend.push(_event("end", status="done", best_val_acc=0.91))
        await pilot.pause()
        status = app.query_one(StatusLine)
        assert status.state == "DONE" and "91.00%" in status.note
        await pilot.press("p")
        assert backend.sent == []  # nothing to control once done
        await pilot.press("q")
    assert app.return_value == 0


async def test_narrow_terminal_cycles_lower_panel():
    app = TuiTrainApp(FakeBackend())
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        assert app.screen.has_class("narrow")
        assert app.query_one(Histograms).display and not app.query_one("#right").display
        await pilot.press("v")
        assert app.query_one("#right").display and app.query_one(SystemPanel).display
        assert not app.query_one(Histograms).display


@pytest.mark.slow
async def test_records_arriving_while_a_prompt_is_open():
    """The panels are updated behind an open prompt (the App's queries would search the prompt)."""
    backend = FakeBackend()
    app = TuiTrainApp(backend)
    async with app.run_test() as pilot:
        await ready(pilot, app)
        await pilot.press("r")
        assert isinstance(app.screen, LRPrompt)
        backend.push({"type": "step", "step": 160, "epoch": 2, "loss": 0.3, "acc": 0.9, "lr": 0.001,
                      "samples_per_s": 8000.0, "time": 1.0}, _event("pause", step=160))
        for _ in range(5):
            await pilot.pause(0.2)  # long enough for the status timer to fire behind the prompt
        assert isinstance(app.screen, LRPrompt)
        # Queries on the dashboard screen itself reach its panels while the prompt is the active screen.
        assert app.dashboard.query_one(Curves).train_loss.xs[-1] == 160
        assert app.dashboard.query_one(StatusLine).state == "PAUSED"
        assert "PAUSED" in str(app.dashboard.query_one(StatusLine).render())  # redrawn behind the prompt
        await pilot.press("escape")


async def test_system_panel_grows_when_a_sample_wraps_longer():
    """A sample of the same shape is drawn without a layout (UI time); one whose lines wrap
    differently gets one, so the panel's height always fits its text."""
    backend = FakeBackend()
    app = TuiTrainApp(backend)
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot, app)
        panel = app.query_one(SystemPanel)
        sample = {"type": "system", "time": 2.0, "cpu_percent": [50.0, 50.0], "rss_mb": 800.0, "ram_used_mb": 4000.0,
                  "ram_total_mb": 16000.0, "gpus": [], "gpu_note": "no GPU found"}
        backend.push(sample)
        await pilot.pause()
        await pilot.pause()
        height = panel.size.height
        backend.push({**sample, "cpu_percent": [99.0, 12.0], "rss_mb": 900.0})  # same shape: same height
        await pilot.pause()
        await pilot.pause()
        assert panel.size.height == height and "99" in str(panel.render())
        backend.push({**sample, "gpu_note": "NVML error: " + "the driver went away " * 6})  # wraps over rows
        await pilot.pause()
        await pilot.pause()
        assert panel.size.height > height
        assert "went away" in str(panel.render())


@pytest.mark.slow
async def test_the_dashboard_clock_redraws_the_curves_and_the_status():
    """One clock draws the panels that changed (status twice a second, curves every second)."""
    from tuitrain.widgets.plot import FastPlot

    backend = FakeBackend()
    app = TuiTrainApp(backend)
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot, app)
        await pilot.pause(1.1)
        plot = app.query_one("#loss", FastPlot)
        before = plot.strips()
        backend.push({"type": "step", "step": 160, "epoch": 2, "batch": 60, "loss": 9.5, "acc": 0.5, "lr": 0.001,
                      "grad_norm": 1.0, "samples_per_s": 1234.0, "time": 0.0})
        await pilot.pause(1.2)
        assert plot.strips() is not before  # rebuilt by the clock, no explicit redraw
        assert "9.5" in app.query_one("#numbers").render().plain
        assert "step 160/300" in app.query_one(StatusLine).render().plain
