"""The most confidently wrong validation images of the latest epoch, drawn in the terminal.

Images are drawn by textual-image: through the kitty graphics protocol or Sixel where the terminal
answered that it has one when tuitrain started, and otherwise with coloured half-block characters
(one character cell holds two pixels), which work over SSH, inside tmux and at 80x24.
TUITRAIN_IMAGES=halfblock forces the half-blocks (for a terminal that claims graphics it cannot show).
"""

from __future__ import annotations

import os

from PIL import Image as PILImage
from textual.app import ComposeResult
from textual.containers import ItemGrid, Vertical
from textual.widgets import Static

# textual-image asks the terminal about graphics when it is imported, which only works before Textual
# takes over stdin: this module is imported with the App, before it runs.
from textual_image.renderable import Image as _detected
from textual_image.renderable import SixelImage as _SixelRenderable
from textual_image.renderable import TGPImage as _TGPRenderable
from textual_image.widget import HalfcellImage
from textual_image.widget import Image as AutoImage

from tuitrain.confusion import Confusion, Sample, read_samples

IMAGE_COLUMNS = 14
"""Each image is drawn this many characters wide (28x28 pixels become 14x7 half-block cells)."""
GRAPHICS = _detected in (_SixelRenderable, _TGPRenderable) and os.environ.get("TUITRAIN_IMAGES") != "halfblock"
"""Whether images go through a terminal graphics protocol rather than half-block characters."""
ImageWidget = AutoImage if GRAPHICS else HalfcellImage
WAITING = "no samples yet: image classification runs write the most confidently wrong at each epoch end"
NOT_IMAGES = "no samples: this run's inputs are not images (the gallery shows image classification only)"


def to_image(sample: Sample) -> PILImage.Image:
    """The sample's planar C*H*W bytes as a PIL image (grey or RGB)."""
    size, plane = (sample.width, sample.height), sample.width * sample.height
    if sample.channels == 1:
        return PILImage.frombytes("L", size, sample.pixels)
    bands = [PILImage.frombytes("L", size, sample.pixels[c * plane:(c + 1) * plane]) for c in range(3)]
    return PILImage.merge("RGB", bands)


def caption(sample: Sample) -> str:
    """True label, predicted label and confidence, on three short lines."""
    return (f"[green]{sample.true[:IMAGE_COLUMNS]}[/]\n[red]→ {sample.pred[:IMAGE_COLUMNS - 2]}[/]\n"
            f"{100 * sample.confidence:.0f}% sure")


class SampleCard(Vertical):
    """One misclassified image and its caption."""

    DEFAULT_CSS = """
    SampleCard { width: 16; height: auto; padding: 0 1; }
    SampleCard .caption { height: 3; width: 100%; }
    """

    def __init__(self, sample: Sample) -> None:
        super().__init__()
        self.sample = sample

    def compose(self) -> ComposeResult:
        image = ImageWidget(to_image(self.sample))
        rows = max(1, round(IMAGE_COLUMNS * self.sample.height / self.sample.width / 2))
        image.styles.width, image.styles.height = IMAGE_COLUMNS, rows
        yield image
        yield Static(caption(self.sample), classes="caption", markup=True)


class Gallery(Vertical):
    """The latest `samples` record as a grid of cards, as many a row as the width takes."""

    DEFAULT_CSS = """
    Gallery { height: auto; }
    Gallery ItemGrid { height: auto; grid-gutter: 1 0; }
    Gallery #gallery-note { height: auto; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.samples: list[Sample] = []
        """The samples shown (the latest record's usable items)."""
        self.epoch = 0
        self._cards_stale = False
        """A record came while the view was hidden: its cards are mounted when it is shown."""

    def compose(self) -> ComposeResult:
        yield Static(WAITING, id="gallery-note")
        yield ItemGrid(min_column_width=16, id="gallery-grid")

    def update_record(self, record: dict) -> bool:
        """Show a `samples` record; False (and nothing changes) when no item in it decodes."""
        samples = read_samples(record)
        if not samples and record.get("items"):
            return False
        self.samples = samples
        self.epoch = record.get("epoch", 0) if isinstance(record.get("epoch"), int) else 0
        note = f"epoch {self.epoch}: the {len(samples)} most confidently wrong (true / predicted)"
        self.query_one("#gallery-note", Static).update(note if samples else f"epoch {self.epoch}: nothing wrong")
        self._cards_stale = True
        if self.is_on_screen:
            self._mount_cards()
        return True

    def no_samples(self, epoch: int, confusion: Confusion | None) -> None:
        """Epoch ``epoch`` ended without a samples record: nothing was wrong, or the inputs are no images."""
        if self.samples:
            return  # an earlier epoch's images stay (a record that did not decode changes nothing either)
        wrong = confusion is not None and confusion.accuracy < 1
        self.query_one("#gallery-note", Static).update(NOT_IMAGES if wrong else f"epoch {epoch}: nothing wrong")

    def on_show(self) -> None:
        """The classes view opened: the cards of the latest record, if they are not there yet."""
        if self._cards_stale:
            self._mount_cards()

    def _mount_cards(self) -> None:
        # Only while the view is shown: each epoch's 15 cards take the UI thread (which shares the GIL
        # and the cores with training) 70 to 200 ms to mount, just as the next epoch starts training.
        self._cards_stale = False
        grid = self.query_one("#gallery-grid", ItemGrid)
        grid.remove_children()
        grid.mount_all(SampleCard(s) for s in self.samples)  # after the removal: Textual keeps the order
