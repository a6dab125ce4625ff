"""What the model gets wrong, per class: the confusion matrix as a heatmap with class names, per-class
accuracy worst first, and the most confused pairs ("Shirt -> T-shirt/top 112"). Updated each epoch."""

from __future__ import annotations

from rich.color import Color, blend_rgb
from rich.color_triplet import ColorTriplet
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from tuitrain import fmt
from tuitrain.confusion import Confusion, confused_pairs, per_class, read_confusion
from tuitrain.plotscale import compact

NAME_WIDTH = 11
"""Class names are cut to this many characters in the matrix (all of "T-shirt/top")."""
NUMBERS_UP_TO = 20
"""Up to this many classes each cell shows its count; beyond, colour only (two characters a cell)."""
MAX_CLASSES = 40
"""The matrix shows at most this many classes (the worst first); the lists cover all of them."""
BASE = ColorTriplet(40, 40, 46)
RIGHT, WRONG = ColorTriplet(30, 150, 70), ColorTriplet(210, 50, 50)
WRONG_FULL = 0.25
"""An off-diagonal cell holding this share of its true class (or more) is drawn at full red."""
WAITING = "no confusion record yet: classification runs write one at each epoch end"


def cell_style(fraction: float, diagonal: bool) -> Style:
    """Background by the share of the true class in this cell: green on the diagonal, red off it."""
    strength = fraction if diagonal else min(1.0, fraction / WRONG_FULL)
    bg = blend_rgb(BASE, RIGHT if diagonal else WRONG, strength) if fraction else BASE
    light = 0.299 * bg.red + 0.587 * bg.green + 0.114 * bg.blue > 140
    return Style(bgcolor=Color.from_triplet(bg), color="black" if light else "bright_white")


def heatmap(conf: Confusion) -> Text:
    """Rows: true class (index and name); columns: predicted class (index); cells coloured by share."""
    order = list(range(len(conf.classes)))
    if len(order) > MAX_CLASSES:
        worst = {name: i for i, (name, _, _) in enumerate(per_class(conf))}
        order = sorted(order, key=lambda i: worst.get(conf.classes[i], len(order)))[:MAX_CLASSES]
        order.sort()
    numbers = len(order) <= NUMBERS_UP_TO
    cell = 4 if numbers else 2
    index_width = len(str(order[-1]))
    text = Text()
    text.append(" " * (index_width + NAME_WIDTH + 2) + "predicted →\n", style="dim")
    text.append(" " * (index_width + NAME_WIDTH + 1) + "".join(f"{j:>{cell}}" if numbers or j % 5 == 0 else " " * cell
                                                            for j in order) + "\n", style="bold")
    for i in order:
        row_total = sum(conf.matrix[i]) or 1
        text.append(f"{i:>{index_width}} {conf.classes[i][:NAME_WIDTH]:<{NAME_WIDTH}} ")
        for j in order:
            count = conf.matrix[i][j]
            label = (str(count) if count < 10_000 else compact(count, 2)) if count else "·"
            label = label if numbers else ""
            text.append(f"{label:>{cell}}", cell_style(count / row_total, i == j))
        text.append("\n")
    if len(order) < len(conf.classes):
        text.append(f"{len(order)} of {len(conf.classes)} classes shown (the worst)", style="dim")
    text.rstrip()
    return text


def accuracy_bars(conf: Confusion, width: int = 8) -> Text:
    """One line per class, worst first: name, accuracy and a bar ``width`` characters long (0: none)."""
    text = Text()
    text.append("per class, worst first\n", style="bold")
    for name, accuracy, _ in per_class(conf):
        colour = "red" if accuracy < 0.7 else "yellow" if accuracy < 0.9 else "green"
        filled = round(accuracy * width)
        text.append(f"{name[:NAME_WIDTH]:<{NAME_WIDTH}} {100 * accuracy:5.1f}% ")
        text.append("█" * filled, colour)
        text.append("░" * (width - filled) + "\n", "dim")
    text.rstrip()
    return text


def pairs_text(conf: Confusion, count: int = 5) -> Text:
    """The most confused pairs, "true -> predicted count"."""
    text = Text()
    text.append("most confused (true -> predicted)\n", style="bold")
    pairs = confused_pairs(conf, count)
    if not pairs:
        text.append("none: every validation sample is right", "green")
    for true, pred, n in pairs:
        text.append(f"{true} -> {pred} ")
        text.append(f"{n}\n", "bold red")
    text.rstrip()
    return text


class ClassesPanel(Horizontal):
    """The heatmap over the confused pairs, beside the per-class accuracy; from the latest confusion record."""

    DEFAULT_CSS = """
    ClassesPanel { height: auto; }
    ClassesPanel #class-main { width: auto; height: auto; padding: 0 1 0 0; }
    ClassesPanel #heatmap { width: auto; height: auto; text-wrap: nowrap; }
    ClassesPanel #pairs { width: auto; height: auto; margin-top: 1; text-wrap: nowrap; }
    ClassesPanel #per-class { width: 1fr; height: auto; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.confusion: Confusion | None = None
        """The latest valid confusion record shown (None until one arrives)."""

    def compose(self) -> ComposeResult:
        with Vertical(id="class-main"):
            yield Static(WAITING, id="heatmap")
            yield Static(id="pairs")
        yield Static(id="per-class")

    def update_record(self, record: dict) -> bool:
        """Show a `confusion` record; False (and nothing changes) when it is malformed."""
        conf = read_confusion(record)
        if conf is None:
            return False
        self.confusion = conf
        self.border_subtitle = f"epoch {conf.epoch} · val acc {fmt.acc(conf.accuracy)} of {fmt.count(conf.total)}"
        self.query_one("#heatmap", Static).update(heatmap(conf))
        self.query_one("#pairs", Static).update(pairs_text(conf))
        self._draw_bars()
        return True

    def on_resize(self) -> None:
        self.call_after_refresh(self._draw_bars)  # the bars take what width the side column has

    def _draw_bars(self) -> None:
        if self.confusion is not None:
            free = self.query_one("#per-class").size.width - (NAME_WIDTH + 8)
            self.query_one("#per-class", Static).update(accuracy_bars(self.confusion, max(0, min(10, free))))
