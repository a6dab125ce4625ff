"""The live backend hands records to the UI in batches: few wake-ups of the UI thread, no record lost."""

from __future__ import annotations

import threading
import time

import pytest

from tests.fakes import start_event
from tests.helpers import until
from tuitrain.app import TuiTrainApp
from tuitrain.backends import POST_EVERY_S, Coalescer, LiveBackend
from tuitrain.widgets.curves import Curves
from tuitrain.widgets.dashboard import STATUS_EVERY_S


def step(n: int) -> dict:
    return {"type": "step", "step": n, "epoch": 1, "batch": n, "loss": 1.0 / n, "acc": 0.5, "lr": 0.001,
            "samples_per_s": 8000.0, "time": float(n)}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_metric_records_go_at_most_every_interval_and_the_rest_at_once_in_order():
    batches: list[list[dict]] = []
    clock = Clock()
    coalesce = Coalescer(batches.append, every_s=0.5, clock=clock)
    sent = [start_event()] + [step(n) for n in range(1, 2001)]
    sent.insert(1001, {"type": "event", "event": "pause", "step": 1000, "time": 0.0})
    for record in sent:
        coalesce(record)
        clock.now += 0.001  # a thousand records a second, for two seconds
    coalesce.flush()
    assert [r for batch in batches for r in batch] == sent  # every record, in order
    assert batches[0] == [start_event()]  # not a metric: at once
    assert batches[-1][-1] == sent[-1]
    assert any(batch[-1]["type"] == "event" and batch[-1]["event"] == "pause" for batch in batches)  # at once
    # Two seconds at most every 0.5 s, plus the start, the pause and the flush.
    assert len(batches) <= 2 / 0.5 + 1 + 3, len(batches)
    assert coalesce.posted == len(batches)


def test_slow_metric_records_are_not_held_back():
    batches: list[list[dict]] = []
    clock = Clock()
    coalesce = Coalescer(batches.append, every_s=0.5, clock=clock)
    for n in range(1, 6):
        coalesce(step(n))
        clock.now += 0.6
    assert [len(b) for b in batches] == [1] * 5


class FastSession:
    """Reports a start event, then step records as fast as it can for ``seconds``, then the end."""

    def __init__(self, run_dir: str, seconds: float) -> None:
        self.config = type("Config", (), {"run_dir": run_dir})()
        self.on_record = None
        self.seconds = seconds
        self.sent = 0
        self.elapsed = 0.0
        self.stopped = threading.Event()

    def run(self) -> None:
        report, begin = self.on_record, time.monotonic()
        report(start_event(total_steps=10**9))
        n = 0
        while time.monotonic() - begin < self.seconds and not self.stopped.is_set():
            n += 1
            report(step(n))
            time.sleep(0.0005)  # a tiny model: a step record every half millisecond or so
        self.sent = n
        self.elapsed = time.monotonic() - begin
        report({"type": "event", "event": "end", "step": n, "epoch": 1, "time": 0.0, "status": "done"})

    def send(self, command) -> None:
        self.stopped.set()


@pytest.mark.slow
async def test_a_fast_record_stream_wakes_the_ui_a_few_times_a_second(tmp_path):
    session = FastSession(str(tmp_path / "run"), seconds=2.0)
    app = TuiTrainApp(LiveBackend(session))
    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: app.run_state.finished, "the end of the stream")
        await pilot.pause()
        counts, seconds = app.counts, session.elapsed
        assert session.sent > 200  # the stream was fast: hundreds of records (thousands on a quiet machine)
        assert counts["records"] == session.sent + 2  # every record reached the dashboard
        assert app.run_state.step == session.sent
        # Generous bounds (the UI thread may run late under load, never more often): a batch every
        # POST_EVERY_S plus the start and the end; the status line and the plots once a clock tick
        # plus the state changes. Each record posted alone, as before, would be hundreds of messages.
        assert counts["messages"] <= seconds / POST_EVERY_S + 4, counts
        ticks = counts["ticks"]
        assert ticks <= seconds / STATUS_EVERY_S + 3, counts
        assert counts["status"] <= ticks + 4, counts
        assert app.query_one(Curves).redraws <= ticks + 4, counts
