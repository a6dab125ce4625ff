"""read_history on long runs: step records sampled by seeking, epochs and events from index.jsonl.

``whole_below=0`` sends small test files through the path that 1 GB files take.
"""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuitrain.rundir import INDEX, METRICS, RunLog, read_history, read_records


def write_run(run_dir: Path, kinds: list[str]) -> list[dict]:
    """Records of the given types through RunLog (step numbers rising); returns what was written."""
    log = RunLog(run_dir)
    written, step = [], 0
    for i, kind in enumerate(["start", *kinds]):
        if kind == "step":
            step += 1
            record = {"type": "step", "step": step, "loss": 1.0 / step, "time": float(i)}
        elif kind == "start":
            record = {"type": "event", "event": "start", "step": 0, "time": 0.0}
        elif kind == "epoch":
            record = {"type": "epoch", "epoch": i, "step": step, "val_acc": 0.5, "time": float(i)}
        else:
            record = {"type": kind, "event": "save", "step": step, "time": float(i), "reason": 'a "quoted" text'}
        log.write(record)
        written.append(record)
    log.close()
    return written


def not_steps(records: list[dict]) -> list[dict]:
    return [r for r in records if r["type"] != "step"]


def check_sampled(records: list[dict], written: list[dict], max_steps: int) -> None:
    assert not_steps(records) == not_steps(written)  # every epoch and event, in order
    steps = [r for r in records if r["type"] == "step"]
    all_steps = [r for r in written if r["type"] == "step"]
    assert len(steps) <= max_steps + 1
    if all_steps:
        assert steps[-1] == all_steps[-1]  # the newest point is always there
    positions = [written.index(r) for r in records]
    assert positions == sorted(positions)  # file order


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.sampled_from(["step"] * 8 + ["epoch", "event"]), max_size=300),
       max_steps=st.integers(1, 50))
def test_sampled_history_keeps_every_epoch_and_event(tmp_path_factory, kinds, max_steps):
    run = tmp_path_factory.mktemp("run")
    written = write_run(run, kinds)
    records, follower = read_history(run / METRICS, max_steps=max_steps, whole_below=0)
    check_sampled(records, written, max_steps)
    (run / INDEX).unlink()  # a run written before index.jsonl: the byte search finds the same
    again, _ = read_history(run / METRICS, max_steps=max_steps, whole_below=0)
    assert again == records
    assert follower.poll() == []


def test_steps_are_spread_over_the_run(tmp_path):
    written = write_run(tmp_path, ["step"] * 5000)
    records, _ = read_history(tmp_path / METRICS, max_steps=100, whole_below=0)
    steps = [r["step"] for r in records if r["type"] == "step"]
    assert 95 <= len(steps) <= 101
    gaps = [b - a for a, b in zip(steps, steps[1:], strict=False)]
    assert max(gaps) <= 2 * 5000 / 100  # evenly spaced, not bunched at one end
    assert steps[-1] == written[-1]["step"]


def test_follower_starts_after_a_partial_last_line(tmp_path):
    write_run(tmp_path, ["step", "epoch", "step"])
    path = tmp_path / METRICS
    with open(path, "a") as fh:
        fh.write('{"type":"step","step":3,"lo')
    records, follower = read_history(path, whole_below=0)
    assert [r["type"] for r in records] == ["event", "step", "epoch", "step"]
    with open(path, "a") as fh:
        fh.write('ss":0.5,"time":9.0}\n')
    assert [r["step"] for r in follower.poll()] == [3]


def test_garbage_lines_and_a_damaged_index_are_survived(tmp_path):
    written = write_run(tmp_path, ["step", "epoch"] * 20)
    path = tmp_path / METRICS
    with open(path, "ab") as fh:
        fh.write(b'not json at all\n{"type":"step",\x00\xff\n[1,2,3]\n')
    log = RunLog(tmp_path)
    log.write({"type": "epoch", "epoch": 99, "step": 20, "time": 99.0})
    log.close()
    written.append({"type": "epoch", "epoch": 99, "step": 20, "time": 99.0})
    records, _ = read_history(path, max_steps=10, whole_below=0)
    assert not_steps(records) == not_steps(written)
    # An index whose offsets are wrong (here: from another file) is noticed and the file is scanned.
    index = tmp_path / INDEX
    index.write_text('{"at":0,"record":{"type":"event","time":0.0,"step":0}}\n{"at":5,"record":{"type":"epoch"}}\n'
                     "garbage\n")
    records, _ = read_history(path, max_steps=10, whole_below=0)
    assert not_steps(records) == not_steps(written)


def test_a_run_continued_without_an_index_is_scanned(tmp_path):
    # The first part written by a version without index.jsonl, the rest by this one.
    first = write_run(tmp_path, ["step", "epoch"] * 5)
    (tmp_path / INDEX).unlink()
    log = RunLog(tmp_path)
    more = [{"type": "event", "event": "start", "step": 5, "time": 50.0}, {"type": "step", "step": 6, "time": 51.0},
            {"type": "epoch", "epoch": 6, "step": 6, "time": 52.0}]
    for record in more:
        log.write(record)
    log.close()
    records, _ = read_history(tmp_path / METRICS, whole_below=0)
    assert not_steps(records) == not_steps(first + more)


def test_index_lines_point_at_their_records(tmp_path):
    write_run(tmp_path, ["step", "epoch", "event", "step", "step", "epoch"])
    data = (tmp_path / METRICS).read_bytes()
    entries = read_records(tmp_path / INDEX)
    assert [e["record"]["type"] for e in entries] == ["event", "epoch", "event", "epoch"]
    for entry in entries:
        line = data[entry["at"]:data.index(b"\n", entry["at"])]
        assert json.loads(line) == entry["record"]
    assert not (tmp_path / "histograms.jsonl").exists()


def test_small_and_large_paths_agree(tmp_path):
    written = write_run(tmp_path, (["step"] * 30 + ["epoch", "event"]) * 30)
    whole, _ = read_history(tmp_path / METRICS, max_steps=40)
    sampled, _ = read_history(tmp_path / METRICS, max_steps=40, whole_below=0)
    assert not_steps(whole) == not_steps(sampled) == not_steps(written)
    assert abs(len(whole) - len(sampled)) <= 5


def test_the_scan_reads_lines_longer_than_its_chunk(tmp_path):
    from tuitrain.rundir.read import _scan_not_steps

    written = write_run(tmp_path, ["step", "epoch", "event"] * 10)
    data = (tmp_path / METRICS).read_bytes()
    with open(tmp_path / METRICS, "rb") as fh:
        for chunk_size in (16, 100, 1 << 20):  # lines are about 70-100 bytes
            found = _scan_not_steps(fh, len(data), chunk_size=chunk_size)
            assert [json.loads(line) for _, line in found] == not_steps(written)
            assert all(data[at:].startswith(line) for at, line in found)


# --- files another program wrote ------------------------------------------------------------------

SEPARATORS = [(", ", ": "), (",", ":"), (",", ": "), (" , ", " : ")]


def write_foreign(path: Path, kinds: list[str], separators=(", ", ": "), type_last: bool = False,
                  long_line: int = 0) -> list[dict]:
    """A metrics.jsonl written by another program (json.dumps with other separators, "type" last);
    ``long_line``: one event line of about that many bytes in the middle. Returns the records."""
    written = []
    with open(path, "w") as fh:
        for i, kind in enumerate(["start", *kinds]):
            if kind == "step":
                record = {"type": "step", "step": i, "epoch": 1, "loss": 1.0 / (i + 1), "time": float(i)}
            elif kind == "epoch":
                record = {"type": "epoch", "epoch": i, "step": i, "val_acc": 0.5, "time": float(i)}
            else:
                record = {"type": "event", "event": "start" if kind == "start" else "save", "step": i,
                          "time": float(i)}
            if long_line and i == len(kinds) // 2:
                record = {"type": "event", "event": "note", "step": i, "time": float(i), "text": "x" * long_line}
            if type_last:
                record = {**{k: v for k, v in record.items() if k != "type"}, "type": record["type"]}
            fh.write(json.dumps(record, separators=separators) + "\n")
            written.append(record)
    return written


def key(record: dict) -> tuple:
    return tuple(sorted(record.items()))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.sampled_from(["step"] * 8 + ["epoch", "event"]), max_size=300),
       separators=st.sampled_from(SEPARATORS), type_last=st.booleans(), max_steps=st.integers(1, 50))
def test_a_file_another_program_wrote_shows_every_epoch_and_event(tmp_path_factory, kinds, separators, type_last,
                                                                    max_steps):
    path = tmp_path_factory.mktemp("foreign") / METRICS
    written = write_foreign(path, kinds, separators, type_last)
    truth = read_records(path)
    for whole_below in (0, 1 << 30):  # the sampled path (files over 16 MB) and the whole one
        records, follower = read_history(path, max_steps=max_steps, whole_below=whole_below)
        assert [key(r) for r in not_steps(records)] == [key(r) for r in not_steps(truth)]
        steps = [r for r in records if r["type"] == "step"]
        all_steps = [r for r in written if r["type"] == "step"]
        assert len(steps) <= max_steps + 1
        assert len(steps) >= min(len(all_steps), max_steps // 2)  # about max_steps, spread over the run
        if all_steps:
            assert key(steps[-1]) == key(all_steps[-1])
        assert follower.poll() == []


class CountingOpen:
    """open() for read.py that counts the bytes its files read."""

    def __init__(self):
        self.read = 0

    def __call__(self, *args, **kwargs):
        fh = open(*args, **kwargs)  # noqa: SIM115
        counter = self

        class Counted:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                fh.close()

            def read(self, n=-1):
                data = fh.read(n)
                counter.read += len(data)
                return data

            def readline(self):
                data = fh.readline()
                counter.read += len(data)
                return data

            def __getattr__(self, name):
                return getattr(fh, name)

        return Counted()


def test_a_long_line_does_not_hide_the_steps_around_it_and_costs_one_pass(tmp_path, monkeypatch):
    from tuitrain.rundir import read

    path = tmp_path / METRICS
    written = write_foreign(path, ["step"] * 21 + ["epoch"] + ["step"] * 21, long_line=20 << 20)
    opened = CountingOpen()
    monkeypatch.setattr(read, "open", opened, raising=False)
    records, _ = read_history(path)  # 20 MB: sampled
    assert [r["step"] for r in records if r["type"] == "step"] == [r["step"] for r in written if r["type"] == "step"]
    assert [key(r) for r in not_steps(records)] == [key(r) for r in not_steps(written)]
    assert opened.read < 3 * path.stat().st_size  # about one pass for the scan, one for the samples


def test_a_large_foreign_file_is_read_in_bounded_bytes(tmp_path, monkeypatch):
    from tuitrain.rundir import read

    path = tmp_path / METRICS
    written = write_foreign(path, (["step"] * 500 + ["epoch"]) * 500)  # about 40 MB, json.dumps' defaults
    opened = CountingOpen()
    monkeypatch.setattr(read, "open", opened, raising=False)
    seen = []
    records, _ = read_history(path, progress=lambda done, total: seen.append((done, total)))
    assert len([r for r in records if r["type"] == "epoch"]) == 500
    assert len([r for r in records if r["type"] == "step"]) >= 1900
    assert key(records[-1]) == key(written[-1])
    assert opened.read < 2 * path.stat().st_size  # before: 2,000 samples of 1 MB each
    assert seen[-1][0] == seen[-1][1] and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_watch_says_how_far_it_read_a_long_history_on_its_first_screen(tmp_path):
    from tuitrain.backends import WatchBackend
    from tuitrain.runstate import LOADING_NOTE, RunState

    written = write_foreign(tmp_path / METRICS, (["step"] * 500 + ["epoch"]) * 500)  # about 20 MB: sampled
    written.append({"type": "event", "event": "end", "step": 0, "time": 0.0, "status": "done"})
    with open(tmp_path / METRICS, "a") as fh:
        fh.write(json.dumps(written[-1]) + "\n")
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "status.json").write_text('{"state": "done"}')
    batches: list[list[dict]] = []
    WatchBackend(tmp_path).run(batches.append)
    loading = [r for batch in batches for r in batch if r["type"] == "loading"]
    assert loading and loading[-1]["done"] == loading[-1]["total"] == (tmp_path / METRICS).stat().st_size
    history = next(batch for batch in batches if batch[0]["type"] == "replay")
    assert len([r for r in history if r.get("type") == "epoch"]) == 500
    assert len([r for r in history if r.get("type") == "step"]) >= 1900
    run = RunState(watch_mode=True)
    run.apply(loading[0])
    assert run.note.startswith(LOADING_NOTE) and run.note.endswith("MB")
    for record in history:
        run.apply(record)
    assert run.status == "done" and not run.note.startswith(LOADING_NOTE)
