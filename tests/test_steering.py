"""Steering against a fake engine: each command becomes a call on the surface and one answer."""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any

from tuitrain import steering
from tuitrain.commands import Load, Pause, Resume, Save, SetDevice, SetLR, Stop
from tuitrain.config import TrainConfig
from tuitrain.errors import CheckpointError, UsageError
from tuitrain.trainstate import TrainState


class FakeEngine:
    """A Steerable that records calls and answers as an Engine would."""

    def __init__(self, run_dir: str, load_error: Exception | None = None):
        self.config = TrainConfig(run_dir=run_dir)
        self.state = TrainState(step=7)
        self.commands: queue.Queue = queue.Queue()
        self.dist = None
        self.device = "cpu"
        self.paused = False
        self.stop_reason = ""
        self.lr = 0.001
        self.events: list[dict] = []
        self.calls: list[tuple] = []
        self.load_error = load_error

    def pause(self) -> bool:
        was, self.paused = self.paused, True
        return not was

    def resume(self) -> bool:
        was, self.paused = self.paused, False
        return was

    def set_lr(self, lr: float) -> None:
        if lr <= 0:
            raise UsageError(f"learning rate must be above 0, got {lr:g}")
        self.lr = lr

    def save(self, name: str) -> Path:
        self.calls.append(("save", name))
        return Path(self.config.run_dir) / "checkpoints" / name

    def load(self, path: str | Path, resume: bool = False) -> int:
        self.calls.append(("load", str(path), resume))
        if self.load_error:
            raise self.load_error
        return 42

    def move_to(self, name: str) -> Any:
        raise UsageError(f"device {name} is not available here (available: cpu)")

    def request_stop(self, reason: str = "stop", cmd_id: int = 0) -> None:
        self.stop_reason, self.paused = reason, False
        self.calls.append(("stop", reason, cmd_id))

    def emit_event(self, name: str, **details: Any) -> None:
        self.events.append({"event": name, **details})


def _answers(engine: FakeEngine, *commands) -> list[dict]:
    for cmd in commands:
        engine.commands.put(cmd)
    steering.poll(engine)
    return engine.events


def test_each_command_is_answered_once_by_its_wire_name(tmp_path):
    engine = FakeEngine(str(tmp_path))
    events = _answers(engine, Pause(id=1), Pause(id=2), SetLR(0.01, id=3), SetLR(-1.0, id=4), Save(id=5),
                      Save("../x.pt", id=6), SetDevice("cuda:3", id=7), Resume(id=8), Resume(id=9))
    assert [(e["event"], e["cmd_id"], e["ok"]) for e in events] == [
        ("pause", 1, True), ("pause", 2, False), ("lr", 3, True), ("lr", 4, False), ("save", 5, True),
        ("save", 6, False), ("device", 7, False), ("resume", 8, True), ("resume", 9, False)]
    assert events[1]["reason"] == "already paused" and events[-1]["reason"] == "not paused"
    assert (events[2]["old"], events[2]["new"]) == (0.001, 0.01) and events[3]["old"] == 0.01
    assert engine.calls == [("save", "step-7.pt")]  # the bad name never reached save
    assert events[6]["old"] == "cpu" and "not available" in events[6]["reason"]


def test_load_takes_the_newest_checkpoint_and_answers_a_refusal_in_one_line(tmp_path):
    engine = FakeEngine(str(tmp_path))
    assert _answers(engine, Load(id=1))[-1]["reason"] == "no checkpoint in this run yet"
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"x")
    done = _answers(engine, Load(id=2))[-1]
    assert done["ok"] and done["from_step"] == 42 and done["path"].endswith("last.pt")
    refused = FakeEngine(str(tmp_path), load_error=CheckpointError("checkpoint a.pt is corrupted\ndetails"))
    answer = _answers(refused, Load("a.pt", id=3))[-1]
    assert (answer["ok"], answer["reason"], answer["path"]) == (False, "checkpoint a.pt is corrupted", "a.pt")
    assert refused.calls == [("load", "a.pt", False)]


def test_stop_ends_polling_and_leaves_the_rest_queued(tmp_path):
    engine = FakeEngine(str(tmp_path))
    engine.paused = True  # a stop reaches a paused run too
    _answers(engine, Stop(reason="sigterm", id=4), Pause(id=5))
    assert engine.calls == [("stop", "sigterm", 4)] and not engine.paused
    assert engine.commands.qsize() == 1 and engine.events == []  # answered by the run's stop event


def test_a_paused_poll_waits_on_the_queue_and_counts_the_time(tmp_path):
    import threading

    engine = FakeEngine(str(tmp_path))
    engine.paused = True
    later = threading.Timer(0.3, lambda: engine.commands.put(Resume(id=1)))
    later.start()
    try:
        waited = steering.poll(engine)  # blocks until the Resume arrives
    finally:
        later.cancel()
    assert not engine.paused and waited > 0.2 and engine.events[0]["event"] == "resume"
    assert steering.poll(FakeEngine(str(tmp_path))) == 0.0  # not paused, nothing queued: no wait
