"""Pilot tests of the dashboard against a fake backend: keys send the right commands, refused
input changes nothing, widgets show what they were given."""

from __future__ import annotations

import unicodedata

import pytest
from rich.style import Style
from textual import events
from textual.keys import REPLACED_KEYS, _character_to_key, _get_unicode_name_from_key

from tests.fake_classes import confusion_record, samples_record
from tests.fakes import FakeBackend, scripted_run, start_event
from tests.helpers import event_record, ready, until
from tuitrain.app import TuiTrainApp
from tuitrain.commands import Load, Pause, Resume, Save, SetDevice, SetLR
from tuitrain.keys import KEYS
from tuitrain.runstate import LEAVE_HINT, RunState
from tuitrain.widgets.choice_prompt import ChoicePrompt
from tuitrain.widgets.curves import Curves
from tuitrain.widgets.gallery import NOT_IMAGES, Gallery
from tuitrain.widgets.help import ENDED_NOTES, HelpScreen
from tuitrain.widgets.histograms import Histograms
from tuitrain.widgets.lr_prompt import LRPrompt
from tuitrain.widgets.status import StatusLine, first_line, second_line
from tuitrain.widgets.summary import SummaryPanel
from tuitrain.widgets.system import SystemPanel


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
        backend.push(event_record("lr", old=0.001, new=0.01), event_record("pause"), event_record("device", old="cpu", new="cuda:0"))
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
        backend.push(event_record("pause", cmd_id=backend.sent[-1].id))
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


@pytest.mark.slow
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


@pytest.mark.slow
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
        backend.push(event_record("end", status="done", best_val_acc=0.91))
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
                      "samples_per_s": 8000.0, "time": 1.0}, event_record("pause", step=160))
        await until(pilot, lambda: app.run_state.state == "PAUSED", "the pushed records")
        app.dashboard.tick()  # the panels' clock beats behind the prompt
        await pilot.pause()
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
    from tuitrain.widgets import curves
    from tuitrain.widgets.dashboard import STATUS_EVERY_S
    from tuitrain.widgets.plot import FastPlot

    backend = FakeBackend()
    app = TuiTrainApp(backend)
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot, app)
        app.dashboard.tick()  # draws what the scripted records changed
        plot = app.query_one("#loss", FastPlot)
        before = plot.strips()
        backend.push({"type": "step", "step": 160, "epoch": 2, "batch": 60, "loss": 9.5, "acc": 0.5, "lr": 0.001,
                      "grad_norm": 1.0, "samples_per_s": 1234.0, "time": 0.0})
        await until(pilot, lambda: app.run_state.step == 160, "the pushed step")
        for _ in range(round(curves.REDRAW_EVERY_S / STATUS_EVERY_S)):
            app.dashboard.tick()  # the clock's beats for one curves redraw, driven instead of awaited
        await pilot.pause()
        assert plot.strips() is not before  # rebuilt by the clock, no explicit redraw
        assert "9.5" in app.query_one("#numbers").render().plain
        assert "step 160/300" in app.query_one(StatusLine).render().plain


# The dashboard for a run without accuracy (regression): the second plot shows the first user
# metric, the numbers list the validation values and the best monitored one; no summary is no crash.


def _regression_run() -> list[dict]:
    records = [start_event(classification=False, metrics=["mae", "r2"], monitor="val_loss", summary=None,
                           summary_error="TypeError: forward() missing 1 required argument")]
    for step in range(10, 201, 10):
        records.append({"type": "step", "step": step, "epoch": 1 + step // 100, "batch": step % 100,
                        "loss": 1 / step, "lr": 0.001, "samples_per_s": 9000.0, "time": float(step)})
        if step % 100 == 0:
            epoch = step // 100
            records.append({"type": "epoch", "epoch": epoch, "step": step, "train_loss": 1 / step,
                            "val_loss": 0.5 / epoch, "val_mae": 0.3 / epoch, "val_r2": 0.4 * epoch, "lr": 0.001,
                            "train_seconds": 1.0, "paused_seconds": 0.0, "best": True, "monitor": "val_loss",
                            "time": float(step)})
    return records


async def test_regression_run_plots_its_first_metric_and_the_monitored_best():
    app = TuiTrainApp(FakeBackend(_regression_run()))
    async with app.run_test(size=(160, 48)) as pilot:
        curves = app.query_one(Curves)
        for _ in range(50):
            await pilot.pause()
            if app.query_one(StatusLine).state == "RUNNING" and len(curves.val_loss) == 2:
                break
        assert curves.second == "mae" and curves.val_acc.ys == [0.3, 0.15] and not curves.train_acc.ys
        curves.redraw()
        numbers = str(curves.query_one("#numbers").render())
        assert "mae 0.1500" in numbers and "r2 0.8000" in numbers and "acc" not in numbers
        assert "best loss 0.2500 (ep 2)" in numbers
        totals = str(app.query_one(SummaryPanel).query_one("#summary-totals").render())
        assert "no summary: TypeError" in totals
        await pilot.press("q")


# The dashboard as a newcomer meets it: type-ahead into prompts, the paused status,
# a run too short for a system sample, v on a wide terminal, few notifications, the load dialog,
# the help screen drawn from the key list, and texts that fit.


async def _settle(pilot, rounds: int = 10) -> None:
    for _ in range(rounds):
        await pilot.pause()


def _burst(app, *keys: str) -> None:
    """Keys as a terminal delivers fast typing: all queued at once, none waiting for the UI."""
    for key in keys:
        if len(key) == 1 and not key.isalnum():
            key = _character_to_key(key)
        try:
            char = unicodedata.lookup(_get_unicode_name_from_key(REPLACED_KEYS.get(key, key)))
        except KeyError:
            char = key if len(key) == 1 else None
        event = events.Key(key, char)
        event.set_sender(app)
        app._driver.send_message(event)


def _screen_text(app) -> str:
    """What the terminal shows, as plain text lines (the active screen over the ones under it)."""
    from textual._context import visible_screen_stack

    visible_screen_stack.set(app._background_screens)  # as Textual does when it draws a modal
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


# ------------------------------------------------------------------------------- type-ahead
TYPED = [
    (("r", "0", ".", "0", "0", "0", "5", "enter"), 0.0005),
    (("r", "5", "e", "-", "4", "backspace", "3", "enter"), 0.005),  # edits apply in the order typed
    (("r", "1", "left", "2", "enter"), 21.0),
    (("r", "7", "enter", "s"), 7.0),  # a key after Enter never changes the value sent
]


@pytest.mark.slow
@pytest.mark.parametrize("keys,lr,how", [(k, lr, "burst") for k, lr in TYPED] + [(*TYPED[1], "press")],
                         ids=[" ".join(k) for k, _ in TYPED] + ["pilot.press"])
async def test_keys_typed_right_after_r_land_in_the_prompt(keys, lr, how):
    backend = FakeBackend()
    app = TuiTrainApp(backend)
    async with app.run_test() as pilot:
        await ready(pilot, app)
        if how == "burst":
            _burst(app, *keys)
        else:
            await pilot.press(*keys)
        await _settle(pilot)
        assert [c.lr for c in backend.sent if isinstance(c, SetLR)] == [lr]
        assert app.screen is app.dashboard


@pytest.mark.slow
async def test_typed_ahead_refusal_keeps_the_prompt_and_sends_nothing():
    backend = FakeBackend()
    app = TuiTrainApp(backend)
    async with app.run_test() as pilot:
        await ready(pilot, app)
        _burst(app, "r", "0", "enter")
        await _settle(pilot)
        assert backend.sent == [] and isinstance(app.screen, LRPrompt)
        assert app.screen.query_one("Input").value == "0"  # typed text, never the pre-filled value
        assert "must be above 0" in str(app.screen.query_one("#lr-error").render())


@pytest.mark.slow
async def test_escape_typed_ahead_cancels():
    backend = FakeBackend()
    app = TuiTrainApp(backend)
    async with app.run_test() as pilot:
        await ready(pilot, app)
        _burst(app, "r", "3", "escape")
        await _settle(pilot)
        assert backend.sent == [] and app.screen is app.dashboard


@pytest.mark.slow
@pytest.mark.parametrize("how", ["burst", "press"])
async def test_keys_typed_right_after_l_and_d(how):
    backend = FakeBackend(devices=("cpu", "cuda:0", "cuda:1"),
                          checkpoints=["runs/fake/checkpoints/step-90.pt", "runs/fake/checkpoints/last.pt"])
    app = TuiTrainApp(backend)
    async with app.run_test() as pilot:
        await ready(pilot, app)
        keys = ("l", "down", "enter", "d", "down", "enter")
        if how == "burst":
            _burst(app, *keys[:3])
            await _settle(pilot)
            _burst(app, *keys[3:])
        else:
            await pilot.press(*keys)
        await _settle(pilot)
        assert [(type(c).__name__, getattr(c, "path", getattr(c, "device", ""))) for c in backend.sent] == [
            ("Load", "runs/fake/checkpoints/last.pt"), ("SetDevice", "cuda:1")]


@pytest.mark.slow
async def test_prompt_keys_do_nothing_while_a_prompt_is_open():
    backend = FakeBackend(checkpoints=["runs/fake/checkpoints/last.pt"])
    app = TuiTrainApp(backend)
    async with app.run_test() as pilot:
        await ready(pilot, app)
        await pilot.press("l", "r", "d")
        assert isinstance(app.screen, ChoicePrompt) and len(app.screen_stack) == 2
        await pilot.press("escape", "question_mark", "r")
        assert isinstance(app.screen, HelpScreen)


# ------------------------------------------------------------------------------- status and panels
@pytest.mark.slow
async def test_paused_status_shows_no_eta_and_no_stale_throughput():
    backend = FakeBackend()
    app = TuiTrainApp(backend)
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot, app)
        status = app.dashboard.query_one(StatusLine)
        status.refresh_text()
        running = str(status.render())
        assert "8,000 samples/s" in running and "ETA -" not in running
        backend.push(event_record("pause"))
        await _settle(pilot, 3)
        paused = str(status.render())
        assert "PAUSED" in paused and "ETA -" in paused and "- samples/s" in paused
        backend.push(event_record("resume"), {"type": "step", "step": 160, "epoch": 2, "loss": 0.3, "acc": 0.9,
                                        "lr": 0.001, "samples_per_s": 7000.0, "time": 1.0})
        await _settle(pilot, 3)
        status.refresh_text()
        assert "7,000 samples/s" in str(status.render()) and "ETA -" not in str(status.render())


async def test_a_run_ended_before_the_first_system_sample_says_so():
    records = [r for r in scripted_run() if r["type"] != "system"]
    backend = FakeBackend(records=records)
    app = TuiTrainApp(backend)
    async with app.run_test() as pilot:
        await ready(pilot, app)
        panel = app.dashboard.query_one(SystemPanel)
        assert "waiting for the first sample" in str(panel.render())
        backend.push(event_record("end", status="done", best_val_acc=0.9))
        await _settle(pilot, 3)
        assert "no sample: the run ended" in str(panel.render())


async def test_v_on_a_wide_terminal_says_what_it_does():
    app = TuiTrainApp(FakeBackend())
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot, app)
        await pilot.press("v")
        await _settle(pilot, 2)
        assert any("under 120 columns" in n for n in app.notices())
        assert app.dashboard.view == 0


@pytest.mark.slow
async def test_at_most_two_notifications_newest_first():
    backend = FakeBackend()
    app = TuiTrainApp(backend)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await ready(pilot, app)
        for i in range(6):
            backend.push(event_record("pause" if i % 2 == 0 else "resume", step=200 + i))
            await _settle(pilot, 2)
        messages = app.notices()
        assert messages == ["resumed at step 205", "paused at step 204"]
        screen = _screen_text(app)
        assert screen.index("resumed at step 205") < screen.index("paused at step 204")  # newest on top
        assert "step 203" not in screen


# ------------------------------------------------------------------------------- load dialog
@pytest.mark.slow
async def test_load_dialog_tells_checkpoints_apart(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    paths = {name: folder / name for name in ("last.pt", "best.pt", "step-150.pt", "copied.pt")}
    for path in paths.values():
        path.write_bytes(b"x")
    records = [*scripted_run()[:12],  # start, steps to 100, the epoch record (val_acc 0.85)
               event_record("save", step=100, epoch=1, time=1_700_000_000.0, path=str(paths["last.pt"]), auto=True),
               event_record("save", step=100, epoch=1, time=1_700_000_001.0, path=str(paths["best.pt"]), auto=True),
               *scripted_run()[12:],
               event_record("save", step=150, epoch=1, time=1_700_000_050.0, path=str(paths["step-150.pt"]))]
    backend = FakeBackend(records=records, run_dir=str(tmp_path), checkpoints=[str(p) for p in paths.values()])
    app = TuiTrainApp(backend)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot, app)
        await pilot.press("l")
        prompt = app.screen
        assert isinstance(prompt, ChoicePrompt)
        assert prompt.header.split() == ["checkpoint", "step", "epoch", "val_acc", "saved"]
        rows = {label.split()[0]: label.split()[1:] for _, label in prompt.choices}
        assert rows["last.pt"][:3] == rows["best.pt"][:3] == ["100", "1", "85.00%"]
        assert rows["step-150.pt"][:3] == ["150", "1+", "-"]  # mid-epoch: not validated
        assert rows["copied.pt"][:3] == ["-", "-", "-"] and len(rows["copied.pt"]) == 4  # its file time
        screen = _screen_text(app)
        assert "val_acc" in screen and "85.00%" in screen
        await pilot.press("escape")


# ------------------------------------------------------------------------------- help and texts
def test_help_lines_fit_and_come_from_the_key_list():
    from tuitrain.keys import HELP_KEY_WIDTH, HELP_TEXT_WIDTH, help_lines

    lines = help_lines()
    assert len(lines) == len(KEYS) and max(map(len, lines)) <= HELP_KEY_WIDTH + HELP_TEXT_WIDTH
    shown = [line.split()[0] for line in lines]
    for key in ("p", "s", "l", "r", "d", "c", "v", "[", "q", "Ctrl-C", "?"):
        assert key in shown, key


@pytest.mark.slow
async def test_help_screen_fits_80x24_and_lists_every_bound_key():
    app = TuiTrainApp(FakeBackend())
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        await pilot.press("question_mark")
        await _settle(pilot, 2)
        assert isinstance(app.screen, HelpScreen)
        text = _screen_text(app)
        lines = text.splitlines()
        title = next(i for i, line in enumerate(lines) if "tuitrain keys" in line)
        top = title - 1  # the help box's own top border, whatever panels lie behind it
        left, right = lines[top].index("╭"), lines[top].index("╮")
        bottom = next(i for i in range(title, len(lines)) if lines[i][left:left + 1] == "╰")
        assert lines[bottom][right] == "╯", "the bottom border is cut"
        assert all(line[left] == "│" and line[right] == "│" for line in lines[top + 1:bottom]), "a border is cut"
        for shown in ("v ", "[ ]", "Ctrl-C", "pause / resume", "this help"):
            assert shown in text, shown
        assert "Esc, q or ? closes" in text  # the last line is not cut off at the bottom
        await pilot.press("escape")


@pytest.mark.slow
async def test_lr_prompt_title_and_refusals_are_whole_at_80x24():
    app = TuiTrainApp(FakeBackend())
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        await pilot.press("r")
        await _settle(pilot, 2)
        assert "New learning rate (now 0.001)" in _screen_text(app)
        app.screen.query_one("Input").value = "abcdefghij"
        await pilot.press("enter")
        await _settle(pilot, 2)
        text = _screen_text(app)
        assert "refused: learning rate must be a number, got" in text and "'abcdefghij'" in text


async def test_footer_at_80x24_shows_every_key_with_the_classes_view():
    class WithClasses(TuiTrainApp):
        def action_classes(self) -> None:
            """Stands in for the classes view (another branch) so its footer entry is drawn."""

    app = WithClasses(FakeBackend())
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        footer = _screen_text(app).splitlines()[-1]
        for label in ("p Pause", "c Classes", "v View", "? Help", "q Quit"):
            assert label in footer, (label, footer)


@pytest.mark.slow
async def test_saved_path_is_shown_whole():
    backend = FakeBackend()
    app = TuiTrainApp(backend)
    path = "runs/synthetic-cnn-20250101-120000/checkpoints/step-150.pt"
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await ready(pilot, app)
        backend.push(event_record("save", path=path))
        await until(pilot, lambda: any("▌ saved checkpoints/step-150.pt " in line
                                       for line in _screen_text(app).splitlines()), "the toast on one line")


# Text that fits at 80x24 and 160x48 (the DONE note, the histograms, the model
# panel, the marks, the comparison's legend and table) and the small things (? in the comparison, a
# non-image run's gallery, the accuracy axis, 1-based epochs, the footer of a finished run).


LONG_DIR = "/home/someone/experiments/fashion/a-long-folder-name/synthetic-cnn-20250101-120000"


def _ended(watch_mode: bool, **end) -> RunState:
    run = RunState(watch_mode)
    run.apply(start_event())
    run.apply(event_record("end", status="done", best_val_acc=0.7825, **end))
    return run


# ------------------------------------------------------------------------------- the status line
@pytest.mark.parametrize("width", [78, 158])
@pytest.mark.parametrize("watch_mode", [False, True])
def test_the_done_note_is_whole_at_any_width(width, watch_mode):
    run = _ended(watch_mode)
    line = second_line(run, LONG_DIR, width).plain
    assert line.startswith("best val_acc 78.25%") and LEAVE_HINT in line and len(line) <= width
    assert ("read-only: the run has ended" in line) == watch_mode
    assert "samples/s" not in line and "ETA" not in first_line(run, width).plain  # ended: nothing left to time


def test_a_long_failure_is_cut_but_says_how_to_leave():
    run = RunState()
    run.apply(start_event())
    run.finish("FAILED", "RuntimeError: " + "mat1 and mat2 shapes cannot be multiplied " * 4)
    line = second_line(run, "runs/a", 78).plain
    assert len(line) == 78 and line.endswith(f"…  {LEAVE_HINT}") and line.startswith("RuntimeError: mat1")


def test_a_running_line_shortens_the_run_dir_to_its_name():
    run = RunState()
    run.apply(start_event(device="cuda:0"))
    run.apply({"type": "step", "step": 150, "epoch": 2, "loss": 0.3, "lr": 0.001, "samples_per_s": 8012.0})
    assert second_line(run, LONG_DIR, 158).plain.endswith(f"run {LONG_DIR}")
    line = second_line(run, LONG_DIR, 78).plain
    assert line == "8,012 samples/s  lr 0.001  device cuda:0  run synthetic-cnn-20250101-120000"
    assert len(first_line(run, 78).plain) <= 78


@pytest.mark.parametrize(("start_epoch", "shown"), [(0, "epoch 1/3"), (2, "epoch 3/3"), (3, "epoch 3/3")])
def test_epochs_count_from_one(start_epoch, shown):
    run = RunState()
    run.apply(start_event(start_epoch=start_epoch))
    assert shown in first_line(run, 78).plain


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_watching_a_finished_run_shows_the_whole_note(size):
    records = [*scripted_run(), event_record("end", status="done", best_val_acc=0.85)]
    app = TuiTrainApp(FakeBackend(records, controls=False, run_dir=LONG_DIR), watch_mode=True)
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.run_state.finished, "the end record")
        await _settle(pilot, 3)
        status = _screen_text(app).splitlines()[1]
        assert "best val_acc 85.00%  read-only: the run has ended  (q to leave)" in status


# ------------------------------------------------------------------------------- the footer
@pytest.mark.slow
async def test_a_finished_run_offers_no_command_keys_but_answers_them():
    backend = FakeBackend()
    app = TuiTrainApp(backend)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await ready(pilot, app)
        footer = _screen_text(app).splitlines()[-1]
        assert all(label in footer for label in ("p Pause", "s Save", "l Load", "r LR", "d Device"))
        backend.push(event_record("end", status="done", best_val_acc=0.85))
        await until(pilot, lambda: app.run_state.finished, "the end record")
        await _settle(pilot, 3)
        footer = _screen_text(app).splitlines()[-1]
        assert not any(label in footer for label in ("Pause", "Save", "Load", "LR", "Device")), footer
        assert all(label in footer for label in ("c Classes", "v View", "q Quit", "? Help"))
        await pilot.press("p")
        await _settle(pilot, 2)
        assert app.notices()[0] == "the run has ended (DONE); nothing to control" and backend.sent == []
        await pilot.press("question_mark")
        await _settle(pilot, 2)
        assert isinstance(app.screen, HelpScreen) and ENDED_NOTES in str(app.screen.query_one("Static").render())
        await pilot.press("l")  # a prompt key while the help is open: nothing (the help keeps the screen)
        await _settle(pilot, 2)
        assert isinstance(app.screen, HelpScreen)
        assert app.notices()[1:] != ["the run has ended (DONE); nothing to control"]  # said once, for p only


async def test_a_read_only_watch_offers_no_command_keys():
    app = TuiTrainApp(FakeBackend(controls=False), watch_mode=True)
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot, app)
        footer = _screen_text(app).splitlines()[-1]
        assert "Pause" not in footer and "q Quit" in footer


# ------------------------------------------------------------------------------- 80x24 panels
async def test_80x24_histograms_have_room_for_their_bars():
    app = TuiTrainApp(FakeBackend())
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        plot = app.dashboard.query_one("#hist-w")
        assert plot.size.height >= 8  # title, frame, x ticks: 4 rows; 4 or more rows of bars (was 2)
        curves = app.dashboard.query_one("#loss")
        assert curves.size.height >= 9  # title, frame, x ticks and 5 or more rows of curve


async def test_80x24_model_panel_shows_every_layer_of_the_cnn():
    summary = {"rows": [["conv1", "Conv2d", 1, [1, 6, 24, 24], 156, "True"],
                        ["conv2", "Conv2d", 1, [1, 12, 8, 8], 1812, "True"],
                        ["fc1", "Linear", 1, [1, 120], 23160, "True"], ["fc2", "Linear", 1, [1, 60], 7260, "True"],
                        ["out", "Linear", 1, [1, 10], 610, "True"]],
               "total_params": 32998, "trainable_params": 32998, "size_mb": 0.132}
    app = TuiTrainApp(FakeBackend([start_event(summary=summary), *scripted_run()[1:]]))
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        await pilot.press("v", "v")
        await _settle(pilot, 3)
        text = _screen_text(app)
        assert "out (Linear)" in text and "total 32,998 params (32,998 trainable), 132 KB, float32, on cpu" in text


async def test_80x24_marks_list_the_newest_that_fit():
    records = scripted_run()
    for i, step in enumerate(range(30, 151, 20)):
        records.append(event_record("lr" if i % 2 else "device", step=step, old=0.001, new=0.002 + i / 1000))
    app = TuiTrainApp(FakeBackend(records))
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        curves = app.dashboard.query_one(Curves)
        curves.redraw()
        await _settle(pilot, 3)
        numbers = curves.query_one("#numbers")
        lines = str(numbers.render()).splitlines()
        assert len(lines) <= numbers.content_size.height
        assert any("marks, newest" in line and "of 7" in line for line in lines), lines
        assert lines[-1].endswith("150: →0.008")  # the newest is listed, last
        assert "val (epoch" not in str(numbers.render())


async def test_160x48_marks_are_listed_whole():
    records = [*scripted_run(), event_record("device", step=150, new="cuda:1"), event_record("lr", step=150, old=0.001, new=0.01)]
    app = TuiTrainApp(FakeBackend(records))
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot, app)
        app.dashboard.query_one(Curves).redraw()
        await _settle(pilot, 3)
        text = str(app.dashboard.query_one("#numbers").render())
        assert "marks\n | 150: →cuda:1\n | 150: lr 0.01" in text


async def test_before_the_first_epoch_val_says_when_it_comes():
    records = [r for r in scripted_run(90) if r["type"] != "epoch"]
    app = TuiTrainApp(FakeBackend(records))
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app, step=90)
        app.dashboard.query_one(Curves).redraw()
        await _settle(pilot, 2)
        text = str(app.dashboard.query_one("#numbers").render())
        assert "after each epoch" in text and "epoch 0" not in text
        assert "epoch 1/3" in _screen_text(app).splitlines()[0]


# ------------------------------------------------------------------------------- the accuracy axis
class _Limits:
    """Stands in for a plotext figure: remembers the y-range set."""

    def __init__(self) -> None:
        self.limits: tuple[float, float] | None = None

    def ylim(self, lo: float, hi: float) -> None:
        self.limits = (lo, hi)

    def yticks(self, *args) -> None:
        pass


@pytest.mark.parametrize(("value", "fraction", "expected"), [(0.1, True, (0.09, 0.11)), (0.0, True, (0.0, 0.5)),
                                                             (1.0, True, (0.9, 1.0)), (2.3, False, (2.07, 2.53)),
                                                             (-1.0, False, (-1.1, -0.9))])
def test_a_flat_curve_keeps_its_axis_on_its_side_of_zero(value, fraction, expected):
    plt = _Limits()
    Curves._yaxis(plt, value, value, False, fraction)
    assert plt.limits == pytest.approx(expected)


async def test_one_accuracy_point_is_not_drawn_on_a_negative_axis():
    records = [start_event(), {"type": "step", "step": 10, "epoch": 1, "loss": 2.3, "acc": 0.1, "lr": 0.001,
                               "samples_per_s": 100.0, "time": 1.0}]
    app = TuiTrainApp(FakeBackend(records))
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot, app, step=10)
        app.dashboard.query_one(Curves).redraw()
        await _settle(pilot, 2)
        plot = app.dashboard.query_one("#acc")
        assert "-" not in "".join(strip.text[:6] for strip in plot.strips())  # no negative tick labels


# ------------------------------------------------------------------------------- the gallery
@pytest.mark.slow
@pytest.mark.parametrize(("records", "note"), [
    ([confusion_record(epoch=1, step=100)], NOT_IMAGES),  # a fit run on tabular data: confusion, no samples
    ([{**confusion_record(epoch=1, step=100), "matrix": [[1000 if i == j else 0 for j in range(10)]
                                                         for i in range(10)]}], "epoch 1: nothing wrong"),
    ([confusion_record(epoch=1, step=100), samples_record(epoch=1, step=100, count=2)],
     "epoch 1: the 2 most confidently wrong"),
])
async def test_the_gallery_says_whether_samples_will_come(records, note):
    backend = FakeBackend([*scripted_run()[:11], *records, event_record("save", step=100, auto=True, path="last.pt"),
                           *scripted_run()[11:]])
    app = TuiTrainApp(backend)
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot, app)
        await pilot.press("c")
        await _settle(pilot, 3)
        assert note in str(app.dashboard.query_one(Gallery).query_one("#gallery-note").render())


@pytest.mark.slow
async def test_the_gallery_waits_while_the_samples_may_still_come():
    backend = FakeBackend([*scripted_run(), confusion_record(epoch=1, step=150)])
    app = TuiTrainApp(backend)
    async with app.run_test(size=(160, 48)) as pilot:
        await ready(pilot, app)
        backend.push({"type": "system", "time": 2.0, "cpu_percent": [50.0], "rss_mb": 800.0, "ram_used_mb": 4096.0,
                      "ram_total_mb": 16384.0, "gpus": [], "gpu_note": "no GPU found"})  # another thread's record
        await _settle(pilot, 3)
        assert "no samples yet" in str(app.dashboard.query_one(Gallery).query_one("#gallery-note").render())
        backend.push(samples_record(epoch=1, step=150, count=1))
        await until(pilot, lambda: app.dashboard.query_one(Gallery).samples, "the samples")


def test_swatch_colours_are_colours_rich_knows():
    from tuitrain.widgets.compare_curves import PALETTE, swatch

    for run in range(len(PALETTE)):
        Style.parse(swatch(run).split("]")[0][1:])  # raised for "orange" and "gray" (drawn uncoloured)
