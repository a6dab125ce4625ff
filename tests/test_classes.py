"""The classes view: confusion and samples records read (garbage refused), the panels through Pilot, the
c and v keys, and `watch` drawing the gallery from samples.jsonl."""

from __future__ import annotations

import base64
import json

import pytest

from tests.fake_classes import FASHION, confusion_record, samples_record
from tests.fakes import FakeBackend, scripted_run
from tests.helpers import record_run, until
from tuitrain.app import TuiTrainApp
from tuitrain.backends import WatchBackend
from tuitrain.confusion import MAX_SAMPLES, confused_pairs, per_class, read_confusion, read_samples
from tuitrain.rundir import SAMPLES
from tuitrain.widgets.classes import ClassesPanel, heatmap
from tuitrain.widgets.gallery import Gallery, SampleCard, to_image


def test_confusion_record_read_and_summarised():
    conf = read_confusion(confusion_record())
    assert conf is not None and conf.total == 10_000 and conf.classes == FASHION
    assert abs(conf.accuracy - sum(conf.matrix[i][i] for i in range(10)) / 10_000) < 1e-12
    worst = per_class(conf)
    assert worst[0][0] == "Shirt" and abs(worst[0][1] - 0.8) < 1e-9 and worst[-1][0] == "Trouser"
    assert [a for _, a, _ in worst] == sorted(a for _, a, _ in worst)
    assert confused_pairs(conf, 3) == [("Shirt", "T-shirt/top", 112), ("T-shirt/top", "Shirt", 74),
                                       ("Coat", "Pullover", 61)]
    rows = heatmap(conf).plain.splitlines()
    assert "predicted" in rows[0] and rows[2].startswith("0 T-shirt/top") and rows[8].split()[2] == "112"


def test_malformed_confusion_records_are_refused():
    good = confusion_record()
    bad = [{**good, "matrix": good["matrix"][:9]}, {**good, "classes": []}, {**good, "matrix": "x"},
           {**good, "matrix": [[*row[:9], -1] for row in good["matrix"]]}, {**good, "matrix": [[1.5] * 10] * 10},
           {**good, "classes": None}, {"type": "confusion"}]
    assert [read_confusion(r) for r in bad] == [None] * len(bad)


def test_samples_read_and_bad_items_skipped():
    record = samples_record(count=4)
    items = record["items"]
    items.append({**items[0], "image": "not base64!"})
    items.append({**items[0], "shape": [1, 28, 27]})  # length does not match the shape
    items.append({**items[0], "true": 10})
    items.append({**items[0], "shape": [2, 28, 28]})
    items.append("garbage")
    samples = read_samples(record)
    assert [(s.true, s.pred) for s in samples] == [("Shirt", "T-shirt/top"), ("T-shirt/top", "Shirt"),
                                                   ("Coat", "Pullover"), ("Pullover", "Coat")]
    assert samples[0].confidence == 0.99 and samples[0].pixels[0] == 0
    many = samples_record(count=15)
    many["items"] = many["items"] * 2
    assert len(read_samples(many)) == MAX_SAMPLES
    assert read_samples({"type": "samples", "items": None}) == []


def test_rgb_samples_are_planar():
    red, green, blue = bytes([255] * 4), bytes([0] * 4), bytes([7] * 4)
    record = {"type": "samples", "epoch": 1, "classes": ["a", "b"], "items": [
        {"index": 0, "true": 0, "pred": 1, "confidence": 0.5, "shape": [3, 2, 2],
         "image": base64.b64encode(red + green + blue).decode()}]}
    image = to_image(read_samples(record)[0])
    assert image.mode == "RGB" and image.size == (2, 2) and image.getpixel((1, 1)) == (255, 0, 7)


async def _ready(pilot, app) -> None:
    await until(pilot, lambda: app.dashboard.query_one(ClassesPanel).confusion is not None, "the confusion record")
    await pilot.pause()


def _shown(app, widget_id: str) -> bool:
    return app.dashboard.query_one(f"#{widget_id}").display


@pytest.mark.slow
async def test_classes_view_with_c():
    backend = FakeBackend(scripted_run() + [confusion_record(), samples_record(count=8)])
    app = TuiTrainApp(backend)
    async with app.run_test(size=(160, 48)) as pilot:
        await _ready(pilot, app)
        assert _shown(app, "main") and not _shown(app, "classes")
        await pilot.press("c")
        assert _shown(app, "classes") and not _shown(app, "main")
        panel = app.dashboard.query_one(ClassesPanel)
        assert "Shirt -> T-shirt/top 112" in panel.query_one("#pairs").render().plain
        assert panel.query_one("#per-class").render().plain.splitlines()[1].startswith("Shirt")
        assert "val acc 94.44%" in panel.border_subtitle
        cards = app.dashboard.query(SampleCard)
        assert len(cards) == 8 and "99% sure" in cards[0].query_one(".caption").render().plain
        backend.push(confusion_record(epoch=4, step=2400), {"type": "confusion", "epoch": 5, "matrix": "garbage"},
                     samples_record(epoch=4, count=3))
        await pilot.pause()
        await pilot.pause()
        assert panel.confusion.epoch == 4  # the garbage record after it changed nothing
        assert app.dashboard.query_one(Gallery).epoch == 4 and len(app.dashboard.query(SampleCard)) == 3
        await pilot.press("c")
        assert _shown(app, "main") and not _shown(app, "classes")
        await pilot.press("q")


@pytest.mark.slow
async def test_narrow_v_reaches_the_classes_view():
    app = TuiTrainApp(FakeBackend(scripted_run() + [confusion_record(), samples_record()]))
    async with app.run_test(size=(80, 24)) as pilot:
        await _ready(pilot, app)
        await pilot.press("v", "v", "v")
        assert _shown(app, "classes") and not _shown(app, "main")
        assert app.focused is app.dashboard.query_one("#classes")  # takes the page keys to scroll
        await pilot.press("v")
        assert _shown(app, "main") and _shown(app, "histograms") and not _shown(app, "classes")
        await pilot.press("c")
        assert _shown(app, "classes")
        await pilot.press("c")
        assert _shown(app, "main") and _shown(app, "histograms")


@pytest.mark.slow
async def test_watch_shows_the_latest_samples(tmp_path):
    records = scripted_run() + [confusion_record(epoch=1, step=100),
                                {"type": "event", "event": "end", "step": 150, "time": 2.0, "status": "done"}]
    record_run(tmp_path / "run", records, "done").close()
    with open(tmp_path / "run" / SAMPLES, "w") as fh:
        fh.write(json.dumps(samples_record(epoch=1, count=2)) + "\n")
        fh.write(json.dumps(samples_record(epoch=2, count=5)) + "\n")
        fh.write('{"type": "samples", "epoch": 3, "ite')  # a torn last line is left out
    app = TuiTrainApp(WatchBackend(tmp_path / "run"), watch_mode=True)
    async with app.run_test(size=(160, 48)) as pilot:
        gallery = app.dashboard.query_one(Gallery)
        await until(pilot, lambda: gallery.epoch == 2, "the latest samples")
        await pilot.pause()
        assert not app.dashboard.query(SampleCard)  # the view is hidden: no cards mounted yet (UI time)
        await pilot.press("c")
        await until(pilot, lambda: len(app.dashboard.query(SampleCard)) == 5, "the cards, once the view is shown")
        assert app.dashboard.query_one(ClassesPanel).confusion.epoch == 1
        await pilot.press("q")
