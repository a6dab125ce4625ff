"""RunState and notice_for on plain records: no Textual, no Pilot."""

from __future__ import annotations

from tests.fakes import scripted_run, start_event
from tests.helpers import event_record
from tuitrain.runstate import DIVERGED_NOTE, RunState, notice_for


def _applied(*records: dict, watch_mode: bool = False) -> RunState:
    run = RunState(watch_mode)
    for record in records:
        run.apply(record)
    return run


def test_start_and_steps_fill_progress_lr_and_device():
    run = _applied(*scripted_run())
    assert (run.state, run.step, run.total, run.epochs, run.epoch) == ("RUNNING", 150, 300, 3, 2)
    assert (run.lr, run.device, run.batch_size, run.samples_per_s) == (0.001, "cpu", 100, 8000.0)
    assert run.eta_seconds() == (300 - 150) * 100 / 8000.0
    assert not run.paused and not run.finished and run.exit_code == 0


def test_commands_answered_ok_change_state_refused_ones_do_not():
    run = _applied(start_event(), event_record("pause", step=40))
    assert run.state == "PAUSED" and run.paused and run.step == 40
    run.apply(event_record("lr", old=0.001, new=0.01))
    run.apply(event_record("device", old="cpu", new="cuda:0"))
    assert run.lr == 0.01 and run.device == "cuda:0"
    run.apply(event_record("lr", step=999, ok=False, reason="must be above 0"))
    run.apply(event_record("device", ok=False, new="cuda:7", reason="no such device"))
    run.apply(event_record("resume", ok=False, reason="not now"))
    assert (run.lr, run.device, run.state, run.step) == (0.01, "cuda:0", "PAUSED", 150)
    run.apply(event_record("resume"))
    assert run.state == "RUNNING" and not run.paused and run.note == ""


def test_divergence_pauses_with_a_note_that_resume_clears():
    run = _applied(start_event(), event_record("nonfinite", action="paused", reason="loss is nan"))
    assert run.paused and run.state == "PAUSED" and run.note == DIVERGED_NOTE
    # As the engine writes it: not ok (training diverged), yet the run is paused and p resumes it.
    run = _applied(start_event(), event_record("nonfinite", ok=False, action="paused", reason="loss is nan"))
    assert run.paused and run.state == "PAUSED" and run.note == DIVERGED_NOTE
    run = _applied(start_event(), event_record("nonfinite", ok=False, action="stopped", reason="loss is nan"))
    assert not run.paused and run.state == "RUNNING"
    run.apply(event_record("resume"))
    assert run.note == "" and run.state == "RUNNING"


def test_end_states_notes_and_exit_codes():
    run = _applied(start_event(), event_record("end", status="done", best_val_acc=0.91))
    assert run.finished == run.state == "DONE" and run.exit_code == 0
    assert run.note == "best val_acc 91.00%  (q to leave)"
    assert _applied(start_event(), event_record("end", status="failed")).exit_code == 1
    assert _applied(start_event(), event_record("end", status="interrupted")).exit_code == 130
    assert _applied(start_event(), event_record("end", status="someday")).state == "DONE"  # unknown: shown as done


def test_watch_notes_say_read_only_and_quit_drops_the_hint():
    assert "read-only: the run has ended" in _applied(event_record("end", status="stopped"), watch_mode=True).note
    assert _applied(event_record("end", status="dead"), watch_mode=True).note == "read-only: its process is gone  (q to leave)"
    run = _applied(start_event())
    run.request_quit()
    assert run.state == "STOPPING" and run.quit_requested
    run.apply(event_record("end", status="stopped"))
    assert run.state == "STOPPED" and "q to leave" not in run.note


def test_replay_marks_old_records_and_unknown_types_change_nothing():
    run = _applied({"type": "replay", "begin": True})
    assert run.replaying
    run.apply({"type": "replay", "begin": False})
    run.apply({"type": "something-new", "step": 5})
    assert not run.replaying and run.step == 0 and run.state == "STARTING"


def test_notices():
    assert notice_for(event_record("pause", step=7)).message == "paused at step 7"
    assert notice_for(event_record("save", auto=True, path="last.pt")) is None
    assert notice_for(event_record("start")) is None and notice_for({"type": "step", "step": 1}) is None
    refused = notice_for(event_record("lr", ok=False, reason="must be above 0"))
    assert refused.severity == "error" and refused.message == "lr refused: must be above 0"
    assert notice_for(event_record("nonfinite", reason="loss is nan")).title == "training diverged"
    assert notice_for(event_record("end", status="failed")).severity == "error"


def test_a_warning_while_training_is_a_notification_and_stays_on_the_status_line():
    warning = event_record("warning", category="UserWarning", message="Using a target size (torch.Size([14])) that is "
                     "different to the input size (torch.Size([14, 1]))", source="loss.py:610")
    run = _applied(*scripted_run(), warning)
    assert run.note.startswith("UserWarning: Using a target size") and run.warnings == 1 and run.status == "running"
    notice = notice_for(warning)
    assert notice is not None and notice.severity == "warning" and "target size" in notice.message


def test_the_end_note_names_the_monitored_value():
    run = _applied(*scripted_run(), event_record("end", status="done", best_val_acc=None, best=0.0812, monitor="val_l1"))
    assert run.note.startswith("best val_l1 0.0812")
    run = _applied(*scripted_run(), event_record("end", status="done", best_val_acc=0.91, best=0.91, monitor="val_acc"))
    assert run.note.startswith("best val_acc 91.00%")
