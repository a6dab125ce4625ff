"""No host sync per training step: reading values back happens once per record, never per step.

On a GPU every ``.item()``, ``.tolist()``, ``bool(tensor)``... waits for the device to finish, so a
sync per step leaves the GPU idle between steps. On CPU there is nothing to wait for, but the same
calls show where a GPU run would wait: the test replaces them on ``torch.Tensor`` with counting
wrappers, runs the engine on CPU and splits what happened into windows between two forward passes
of the model. A window with no record (step, hist, epoch, event) in it must have no sync; one with
records may have a few per record. So the number of syncs grows with the number of records (log
intervals, epochs), not with the number of steps.

Not seen from Python: syncs inside C++ kernels (boolean-mask indexing, ``nonzero``). On a GPU,
``torch.cuda.set_sync_debug_mode`` sees those (the test marked ``gpu`` below).

To cover a new option, add a ``pytest.param({...}, id=...)`` to CONFIGS: the keys are TrainConfig
fields (or ``fit`` arguments once the engine runs through ``fit``; adapt ``count_syncs`` then).
"""

from __future__ import annotations

import queue
from collections.abc import Callable

import pytest
import torch

# Tensor methods that copy a value to the host (and so wait for the device on a GPU).
SYNC_METHODS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__")
SYNCS_PER_RECORD = 2  # e.g. an epoch end: evaluation totals, the finite-weights check before saving

CONFIGS = [
    pytest.param({}, id="default-adam"),
    pytest.param({"optimizer": "sgd"}, id="sgd"),
    pytest.param({"optimizer": "adamw"}, id="adamw"),
    pytest.param({"model": "cnn-bn", "hist_every": 7}, id="batchnorm-hist"),
    pytest.param({"model": "mlp", "batch_size": 30}, id="mlp-partial-batch"),
    pytest.param({"precision": "bf16-mixed"}, id="bf16-mixed"),
    pytest.param({"accumulate": 4}, id="accumulate"),
    pytest.param({"grad_clip": 1.0}, id="grad-clip"),
    pytest.param({"scheduler": "onecycle"}, id="onecycle"),
    pytest.param({"scheduler": "plateau", "early_stopping": 5}, id="plateau-early-stopping"),
    pytest.param({"optimizer": "rmsprop", "scheduler": "cosine", "weight_decay": 0.01}, id="unfused-cosine"),
    pytest.param({"compile": True, "model": "mlp"}, id="compile"),
]


class Timeline:
    """What happened, in order: ("forward", ""), ("sync", method) and ("record", type) entries."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str]] = []

    def windows(self) -> list[list[tuple[str, str]]]:
        """The entries between one forward pass and the next (the first window: before the first)."""
        found: list[list[tuple[str, str]]] = [[]]
        for entry in self.entries:
            if entry[0] == "forward":
                found.append([])
            else:
                found[-1].append(entry)
        return found

    def count(self, kind: str, window: list[tuple[str, str]] | None = None) -> int:
        """Entries of ``kind`` in ``window`` (default: all)."""
        return sum(1 for k, _ in (self.entries if window is None else window) if k == kind)


@pytest.fixture
def sync_counter(monkeypatch) -> Timeline:
    """Count every call of SYNC_METHODS on any tensor from here on, into a Timeline."""
    # Records come at the log interval only, not also once a second on a slow (loaded) machine,
    # so the number of windows without records does not depend on the machine's speed.
    monkeypatch.setattr("tuitrain.engine.LOG_MAX_INTERVAL_S", 1e9, raising=False)
    timeline = Timeline()
    for name in SYNC_METHODS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            timeline.entries.append(("sync", _name))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return timeline


def count_syncs(config, timeline: Timeline, per_step: Callable[[torch.Tensor], None] | None = None, task=None):
    """Train ``config`` to its end on this thread with the counters on; return (result, records).

    ``per_step``: called on each forward's output (the self-check below plants a sync there).
    """
    from tuitrain.engine import Engine

    records: list[dict] = []

    def report(record: dict) -> None:
        records.append(record)
        timeline.entries.append(("record", record.get("type", "")))

    engine = Engine(config, report, queue.Queue(), task=task)
    engine.setup()  # loading and building may sync as they like: count from the first step on
    timeline.entries.clear()
    engine.model.register_forward_pre_hook(lambda module, args: timeline.entries.append(("forward", "")))
    if per_step:

        def planted(module, args, out) -> None:  # returns None: the output stays as it is
            per_step(out)

        engine.model.register_forward_hook(planted)
    result = engine.run()
    return result, records


def check_windows(timeline: Timeline, warm_up: int = 0) -> None:
    """A window without records has no sync; one with records at most SYNCS_PER_RECORD each.
    ``warm_up``: forward passes left out first (compiling and recording CUDA graphs sync, once)."""
    for i, window in enumerate(timeline.windows()):
        if warm_up and i <= warm_up:
            continue
        syncs, records = timeline.count("sync", window), timeline.count("record", window)
        assert syncs <= SYNCS_PER_RECORD * records, (
            f"{syncs} host syncs ({[m for k, m in window if k == 'sync']}) between forward passes {i} and "
            f"{i + 1}, with {records} records there")


@pytest.mark.slow
@pytest.mark.parametrize("changes", CONFIGS)
def test_no_host_sync_per_step(small_config, sync_counter, changes):
    config = small_config(**{"epochs": 2, "log_every": 10, "hist_every": 25, **changes})
    result, records = count_syncs(config, sync_counter)
    assert result.status == "done"
    check_windows(sync_counter)
    # Most windows have no record, so a per-step sync could not hide in the records' allowance.
    windows = sync_counter.windows()
    quiet = sum(1 for w in windows if not sync_counter.count("record", w))
    assert quiet >= len(windows) / 2, (quiet, len(windows))
    assert sync_counter.count("sync") <= SYNCS_PER_RECORD * len(records)


@pytest.mark.slow
def test_no_host_sync_per_step_with_user_metrics_and_loss(small_config, sync_counter):
    import torchmetrics

    from tuitrain.task import Task

    task = Task(loss_fn=lambda out, y: torch.nn.functional.cross_entropy(out, y, label_smoothing=0.1),
                metrics={"top2": lambda out, y: (out.topk(2, dim=1).indices == y[:, None]).any(dim=1).float().mean(),
                         "f1": torchmetrics.F1Score(task="multiclass", num_classes=10)})
    result, records = count_syncs(small_config(epochs=2, log_every=10, hist_every=25), sync_counter, task=task)
    assert result.status == "done" and "val_top2" in result.history[-1] and "val_f1" in result.history[-1]
    check_windows(sync_counter)


@pytest.mark.slow
def test_syncs_grow_with_records_not_steps(small_config, sync_counter):
    short, _ = count_syncs(small_config(epochs=1, limit=500, log_every=10, hist_every=1000), sync_counter)
    short_syncs = sync_counter.count("sync")
    short_records = sync_counter.count("record")
    long, _ = count_syncs(small_config(epochs=1, limit=2000, log_every=40, hist_every=1000), sync_counter)
    assert long.step == 4 * short.step
    # Four times the steps, the same number of log intervals: the same syncs, give or take the
    # records a slow machine adds (a step record at least once a second).
    extra_records = sync_counter.count("record") - short_records
    assert sync_counter.count("sync") <= short_syncs + SYNCS_PER_RECORD * max(extra_records, 0)


@pytest.mark.slow
def test_the_counter_sees_a_sync_planted_in_each_step(small_config, sync_counter):
    # The check above must be able to fail: a loss read back every step, as the notes' loop does.
    result, _ = count_syncs(small_config(epochs=1, log_every=10), sync_counter, per_step=lambda out: out.sum().item())
    assert result.status == "done"
    with pytest.raises(AssertionError, match="host syncs"):
        check_windows(sync_counter)


def cuda_syncs(config, monkeypatch, per_step=None, timeline: Timeline | None = None) -> tuple[Timeline, object]:
    """Train ``config`` on CUDA with the driver's sync warnings on, each into a Timeline as a sync.

    The engine turns warnings raised on its thread into ``warning`` events, once per message: its
    recorder is wrapped, so every sync warning is counted (a check that saw none could not fail)."""
    import warnings

    from tuitrain.engine import Engine

    timeline = timeline if timeline is not None else Timeline()
    recorded = Engine._warning

    def warned(self, category, message, filename, lineno):
        if "synchroniz" in str(message):
            timeline.entries.append(("sync", str(message)[:60]))
        else:
            recorded(self, category, message, filename, lineno)

    monkeypatch.setattr(Engine, "_warning", warned)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *args, **kwargs: timeline.entries.append(("sync", str(message)[:60]))
        torch.cuda.set_sync_debug_mode("warn")
        try:
            result, _ = count_syncs(config, timeline, per_step=per_step)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert result.status == "done", result.message
    return timeline, result


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("changes", CONFIGS)
def test_no_cuda_sync_per_step(small_config, changes, monkeypatch):
    # On a GPU the driver sees every sync, C++ ones included: count its warnings instead.
    config = small_config(**{"epochs": 1, "log_every": 10, "hist_every": 25, "device": "cuda", **changes})
    timeline, _ = cuda_syncs(config, monkeypatch)
    check_windows(timeline, warm_up=3 if changes.get("compile") else 0)


GRAPH_CONFIGS = [
    pytest.param({}, id="graphs-fused-adam"),
    pytest.param({"precision": "bf16-mixed", "scheduler": "cosine", "scheduler_interval": "step", "grad_clip": 1.0},
                 id="graphs-bf16-cosine-per-step-clip"),
    pytest.param({"optimizer": "rmsprop", "model": "cnn-bn", "batch_size": 30}, id="graphs-capturable-odd-batch"),
]


def _mark_replays(monkeypatch, timeline: Timeline, planted=None) -> None:
    """A replay runs no forward hook: each replay marks its own window (``planted``: run after it)."""
    from tuitrain.graphstep import WholeStep

    replay = WholeStep._replay

    def marked(self) -> None:
        timeline.entries.append(("forward", "replay"))
        replay(self)
        if planted:
            planted(self)

    monkeypatch.setattr(WholeStep, "_replay", marked)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("changes", GRAPH_CONFIGS)
def test_no_cuda_sync_per_replayed_step(small_config, changes, monkeypatch):
    from tuitrain.graphstep import WARMUP_STEPS

    config = small_config(**{"epochs": 2, "log_every": 10, "hist_every": 25, "device": "cuda", "cuda_graphs": True,
                             **changes})
    timeline = Timeline()
    _mark_replays(monkeypatch, timeline)
    found, _ = cuda_syncs(config, monkeypatch, timeline=timeline)
    assert sum(1 for _, what in found.entries if what == "replay") > 20
    check_windows(found, warm_up=WARMUP_STEPS + 1)  # warm-up forwards, then the capture's own


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_cuda_counters_see_a_sync_planted_in_each_step(small_config, monkeypatch):
    # Both checks above must be able to fail: a loss read back every step, without and with graphs.
    config = small_config(epochs=1, log_every=10, hist_every=25, device="cuda")
    timeline, _ = cuda_syncs(config, monkeypatch, per_step=lambda out: out.sum().item())
    with pytest.raises(AssertionError, match="host syncs"):
        check_windows(timeline)
    graphs = Timeline()
    _mark_replays(monkeypatch, graphs, planted=lambda ws: ws.engine.window.loss.item())
    found, _ = cuda_syncs(config.replace(cuda_graphs=True, run_dir=config.run_dir + "-graphs"), monkeypatch,
                          timeline=graphs)
    with pytest.raises(AssertionError, match="host syncs"):
        check_windows(found, warm_up=4)
