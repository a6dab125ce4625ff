"""The dashboard as a newcomer meets it (issue 15): type-ahead into prompts, the paused status,
a run too short for a system sample, v on a wide terminal, few notifications, the load dialog,
the help screen drawn from the key list, and texts that fit."""

from __future__ import annotations

import unicodedata

import pytest
from textual import events
from textual.keys import REPLACED_KEYS, _character_to_key, _get_unicode_name_from_key

from tests.fakes import FakeBackend, scripted_run
from tests.helpers import ready
from tuitrain.app import TuiTrainApp
from tuitrain.commands import SetLR
from tuitrain.keys import KEYS
from tuitrain.widgets.choice_prompt import ChoicePrompt
from tuitrain.widgets.help import HelpScreen
from tuitrain.widgets.lr_prompt import LRPrompt
from tuitrain.widgets.status import StatusLine
from tuitrain.widgets.system import SystemPanel


def _event(name: str, step: int = 150, **details) -> dict:
    return {"type": "event", "event": name, "step": step, "epoch": 1, "time": 0.0, "ok": True, **details}




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
        backend.push(_event("pause"))
        await _settle(pilot, 3)
        paused = str(status.render())
        assert "PAUSED" in paused and "ETA -" in paused and "- samples/s" in paused
        backend.push(_event("resume"), {"type": "step", "step": 160, "epoch": 2, "loss": 0.3, "acc": 0.9,
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
        backend.push(_event("end", status="done", best_val_acc=0.9))
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
            backend.push(_event("pause" if i % 2 == 0 else "resume", step=200 + i))
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
               _event("save", step=100, epoch=1, time=1_700_000_000.0, path=str(paths["last.pt"]), auto=True),
               _event("save", step=100, epoch=1, time=1_700_000_001.0, path=str(paths["best.pt"]), auto=True),
               *scripted_run()[12:],
               _event("save", step=150, epoch=1, time=1_700_000_050.0, path=str(paths["step-150.pt"]))]
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
        backend.push(_event("save", path=path))
        await pilot.pause(0.3)
        assert any("▌ saved checkpoints/step-150.pt " in line for line in _screen_text(app).splitlines())  # on one line
