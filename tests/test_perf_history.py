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
