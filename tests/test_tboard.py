"""TensorBoard event files read back by TensorBoard: scalars and histograms of a run, confusion records as
per-class accuracy scalars and a text summary, one run named after its folder."""

from __future__ import annotations

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.fake_classes import confusion_record
from tuitrain.tboard import TensorBoardSink


def test_confusion_in_tensorboard(tmp_path):
    sink = TensorBoardSink(tmp_path)
    sink.write(confusion_record(epoch=1, step=600))
    sink.write({"type": "confusion", "epoch": 2, "step": 1200, "classes": ["a"], "matrix": [[1, 2]]})  # refused
    sink.write({**confusion_record(epoch=2, step=1200), "classes": ["a|b", *confusion_record()["classes"][1:]]})
    sink.close()
    acc = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    shirt = acc.Scalars("val_class_acc/Shirt")
    assert [(e.step, round(e.value, 4)) for e in shirt] == [(600, 0.8), (1200, 0.8)]
    texts = acc.Tensors("val/confusion/text_summary")
    assert [t.step for t in texts] == [600, 1200]
    first = texts[0].tensor_proto.string_val[0].decode()
    assert "| Shirt | 80.0% | 1000 |" in first and "Shirt -> T-shirt/top 112" in first
    assert "a\\|b" in texts[1].tensor_proto.string_val[0].decode()


def test_tensorboard_names_each_run_after_its_folder(tmp_path):
    """`tensorboard --logdir runs` lists each run by its folder (sweep/NAME), never as `RUN/tensorboard`."""
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer

    for name in ("sweep/01-lr=0.01", "synthetic-cnn-20250101-120000"):
        sink = TensorBoardSink(tmp_path / "runs" / name)
        sink.write({"type": "step", "step": 1, "epoch": 1, "loss": 1.0, "lr": 0.01})
        sink.close()
    runs = EventMultiplexer().AddRunsFromDirectory(str(tmp_path / "runs")).Runs()
    assert sorted(runs) == ["sweep/01-lr=0.01", "synthetic-cnn-20250101-120000"]


@pytest.mark.slow
def test_tensorboard_events_read_back(small_config):
    from tuitrain.session import Session

    session = Session(small_config(epochs=2))
    session.prepare()
    session.open_run_dir()
    session.run()
    acc = EventAccumulator(str(session.log.run_dir), size_guidance={"histograms": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"train/loss", "train/acc", "lr", "val/acc", "val/loss"} <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("val/acc")] == [20, 40]
    assert "weights/conv1.weight" in tags["histograms"] and "grads/fc1.weight" in tags["histograms"]
    hist = acc.Histograms("weights/conv1.weight")[0].histogram_value
    assert hist.num == 150
