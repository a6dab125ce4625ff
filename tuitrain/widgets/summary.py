"""The model summary table: layers, output shapes, parameters, totals, size, device and dtype."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import DataTable, Static

from tuitrain import fmt


class SummaryPanel(Vertical):
    """Filled once from the ``start`` event's summary; the device line follows device switches."""

    DEFAULT_CSS = """
    SummaryPanel { height: 1fr; }
    SummaryPanel DataTable { height: 1fr; }
    SummaryPanel #summary-totals { height: auto; }
    """

    def compose(self) -> ComposeResult:
        yield DataTable(id="summary-table", show_cursor=False, zebra_stripes=True)
        yield Static("", id="summary-totals")

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("layer", "output", "params", "train")
        self._totals = ""
        self._device = ""

    def update_summary(self, summary: dict | None, device: str, dtype: str = "float32", error: str = "") -> None:
        """Fill the table from a ModelSummary.to_dict(); without one, say why (training goes on)."""
        table = self.query_one(DataTable)
        table.clear()
        if not summary:
            self._totals = f"no summary: {error or 'the model could not be summarised'} (training goes on)"
            self.set_device(device)
            return
        for name, kind, depth, shape, params, trainable in summary["rows"]:
            label = "  " * max(depth - 1, 0) + f"{name} ({kind})"
            # Text, not str: a DataTable parses str cells as markup, and these come from a record.
            table.add_row(Text(label), fmt.shape(shape), fmt.count(params),
                          Text(str(trainable)))
        self._totals = (f"total {fmt.count(summary['total_params'])} params "
                        f"({fmt.count(summary['trainable_params'])} trainable), "
                        f"{fmt.size(summary['size_mb'] * 1e6)}, {dtype}")
        self.set_device(device)

    def set_device(self, device: str) -> None:
        """Show the device the model is on now."""
        self._device = device
        self.query_one("#summary-totals", Static).update(
            # One line where it fits: on a 24-row terminal the panel has room for 6 layers.
            Content.from_markup(f"{self._totals}, on [b]$device[/b]", device=str(device)))  # $device: text, not markup
