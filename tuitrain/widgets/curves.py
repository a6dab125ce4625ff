"""Loss and accuracy against step: train smoothed over its faint raw trace, val per epoch, and the
person's interventions (pause, LR change, load, device switch) marked where they happened.

Readable whatever happens: tick labels are compact (``4.1e15``, ``12k``), the loss axis can switch to
a log scale, and on the linear scale a single spike (an LR mistake) is left off the y-range and
marked with a red ``^`` at the top instead of flattening the whole history.
"""

from __future__ import annotations

import math

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import Static

from tuitrain import fmt
from tuitrain.history import Markers, Series, smooth
from tuitrain.plotscale import compact, labels, log_ticks, nice_ticks, spike_cut, without
from tuitrain.widgets.plot import FastPlot, y_ticks

REDRAW_EVERY_S = 1.0
"""Plots are redrawn at most this often: plotext is pure Python and shares the GIL with training.
(On the dashboard, its clock calls :meth:`Curves.redraw_if_dirty`, in one frame with the other panels.)"""

LABEL, VALUE = 6, 8
"""The widths of the numbers' row names and loss column."""
MAX_MARKS = 5
"""The numbers list at most this many of the newest marks (fewer when the panel is short)."""
MARK_COLORS = {"pause": "orange", "lr": "magenta", "load": "cyan", "device": "green", "nonfinite": "red"}


def fit_width(values: list[float], width: int) -> list[float]:
    """At most ``width`` values: averages of equal runs of ``values`` (the last run may be shorter)."""
    if len(values) <= width:
        return values
    step = -(-len(values) // width)
    return [sum(values[i : i + step]) / len(values[i : i + step]) for i in range(0, len(values), step)]


PLOT_LIMIT = 1e100
"""Larger values (and inf, NaN: a diverged loss) are left out of the plots: plotext's axes overflow on them."""



class Curves(Vertical):
    """Two plots (loss, and accuracy or the run's first metric) and the current values beside them.

    A run without accuracy (regression, a custom loss) plots its first metric (``val_<name>``) in the
    second plot; the numbers list every validation value and the best monitored one.
    """

    DEFAULT_CSS = """
    Curves { height: 1fr; }
    Curves Horizontal { height: 1fr; }
    Curves PlotextPlot { width: 1fr; }
    Curves #numbers { width: 26; height: 1fr; padding: 0 1; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.train_loss, self.train_acc = Series(), Series()
        self.val_loss, self.val_acc = Series(), Series()
        self.markers = Markers()
        self._dirty = False
        self.redraws = 0
        """Times drawn (tests and benchmarks count the UI's work)."""
        self._epoch = 0
        self.log_scale = False
        """Whether the loss axis is logarithmic (toggled by a key)."""
        self.spikes: list[tuple[float, float]] = []
        """(step, value) of the loss points left off the linear y-range at the last draw."""
        self.second = "acc"
        """What the second plot shows: acc (classification), a metric's name, or "" (nothing to show)."""
        self.monitor = "val_acc"
        self.best: tuple[float, int] | None = None
        """(value, epoch) of the best monitored value so far."""
        self.val_values: dict[str, float] = {}
        """The latest epoch's validation values (val_loss, val_acc, val_<metric>)."""

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield FastPlot(id="loss")
            yield FastPlot(id="acc")
            yield Static("waiting for the first step...", id="numbers")

    def configure(self, start: dict) -> None:
        """From the start event: what the second plot shows and which value is monitored."""
        metrics = [m for m in start.get("metrics") or [] if isinstance(m, str)]
        classification = start.get("classification", True)
        self.second = "acc" if classification else (metrics[0] if metrics else "")
        self.monitor = str(start.get("monitor") or ("val_acc" if classification else "val_loss"))
        self._dirty = True

    def add_step(self, record: dict) -> None:
        """A step record: one point on each train curve."""
        self.train_loss.append(record["step"], record["loss"])
        if "acc" in record:
            self.train_acc.append(record["step"], record["acc"])
        self._dirty = True

    def add_epoch(self, record: dict) -> None:
        """An epoch record: one validation point on each curve."""
        if isinstance(record.get("val_loss"), (int, float)):
            self.val_loss.append(record["step"], record["val_loss"])
        value = record.get(f"val_{self.second}") if self.second else None
        if isinstance(value, (int, float)):
            self.val_acc.append(record["step"], value)
        self.val_values = {k: v for k, v in record.items() if k.startswith("val_") and isinstance(v, (int, float))}
        monitored = record.get(str(record.get("monitor") or self.monitor))
        if isinstance(monitored, (int, float)) and (record.get("best") or self.best is None):
            self.best = (monitored, record["epoch"])
        self._epoch = record["epoch"]
        self._dirty = True

    def add_event(self, record: dict) -> None:
        """Mark successful interventions on the curves."""
        kind = record["event"]
        if kind in MARK_COLORS and (record.get("ok", True) or kind == "nonfinite"):
            new = record.get("new")
            label = {"lr": f"lr {fmt.lr(new) if isinstance(new, (int, float)) else new}", "device": f"→{record.get('new')}"}.get(kind, kind)
            self.markers.add(record["step"], kind, label)
            self._dirty = True

    def redraw_if_dirty(self) -> None:
        """Redraw if a record came since the last draw (the dashboard's clock calls this)."""
        if self._dirty and self.display:
            self._dirty = False
            self.redraw()

    def toggle_log(self) -> bool:
        """Switch the loss axis between linear and log scale; returns whether it is now log."""
        self.log_scale = not self.log_scale
        self.redraw()
        return self.log_scale

    def on_resize(self) -> None:
        # How many marks the numbers list depends on their height, known once this layout is done.
        self.call_after_refresh(self._show_numbers)

    def _show_numbers(self) -> None:
        self.query_one("#numbers", Static).update(self._numbers(), layout=False)  # fixed width

    def redraw(self) -> None:
        """Draw both plots and the numbers from the history."""
        self.redraws += 1
        self.spikes = self._draw(self.query_one("#loss", FastPlot), "loss", self.train_loss, self.val_loss,
                                 self.log_scale)
        title = {"acc": "accuracy", "": "no accuracy (fit: metrics=)"}.get(self.second, f"val {self.second}")
        self._draw(self.query_one("#acc", FastPlot), title, self.train_acc, self.val_acc, False,
                   fraction=self.second == "acc")
        self._show_numbers()

    def _draw(self, plot: FastPlot, title: str, train: Series, val: Series, log: bool, fraction: bool = False) -> list:
        """Draw one plot; returns the (x, y) points left off its y-range as spikes."""
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(f"{title} (log)" if log else title)
        cut = math.inf if log else spike_cut(train.ys + val.ys)
        # Finite and below PLOT_LIMIT (plotext cannot draw 1e308); the numbers beside still show the rest.
        keep = ((lambda y: 0 < y < PLOT_LIMIT) if log else (lambda y: -PLOT_LIMIT < y <= cut and y < PLOT_LIMIT))
        to_y = (lambda y: math.log10(y)) if log else (lambda y: y)
        spikes = [(x, y) for s in (train, val) for x, y in zip(s.xs, s.ys, strict=True) if not keep(y)]
        shown: list[float] = []
        if train.xs:
            raw = without(train.ys, [i for i, y in enumerate(train.ys) if not keep(y)])
            # Smoothed in the axis' own scale (a log axis: in log space, so one spike does not dominate),
            # lighter while there are few points, so the smoothed curve does not lag far behind.
            smoothed = smooth([to_y(y) for y in raw], 0.9 if len(raw) > 200 else 0.6)
            # A braille plot shows 2 points a column: plotting more only costs time (and plotext is
            # pure Python, sharing the GIL with training).
            width = max(plot.size.width * 2, 20)
            xs, smoothed = fit_width(train.xs, width), fit_width(smoothed, width)
            raw = [to_y(y) for y in fit_width(raw, width)]
            plt.plot(xs, raw, color="gray", marker="dot")
            plt.plot(xs, smoothed, color="blue", marker="braille")  # no plotext legend: it covers the curve
            shown += raw
        points = [(x, to_y(y)) for x, y in zip(val.xs, val.ys, strict=True) if keep(y)]
        if points:
            vx, vy = [p[0] for p in points], [p[1] for p in points]
            plt.plot(vx, vy, color="red", marker="hd")
            plt.scatter(vx, vy, color="red", marker="o")
            shown += vy
        for step, kind, _label in self.markers.items:
            plt.vline(step, MARK_COLORS[kind])
        if shown:
            self._yaxis(plt, min(shown), max(shown), log, fraction, plot.size.height)
            if spikes:
                plt.scatter([x for x, _ in spikes], [max(shown)] * len(spikes), color="red", marker="^")
        xs_all = train.xs or val.xs
        if xs_all:
            ticks = nice_ticks(xs_all[0], xs_all[-1], 5)
            plt.xticks(ticks, labels(ticks))
        # No x label: the panel's title says "by step", and on a 24-row terminal the row is a curve's.
        plot.refresh()
        return spikes

    @staticmethod
    def _yaxis(plt, lo: float, hi: float, log: bool, fraction: bool = False, height: int = 24) -> None:
        """Compact tick labels; on the log scale the positions are log10 and the labels the values.

        A flat curve (one point, a constant) gets a margin that stays on the values' side of 0 (and,
        for an accuracy, of 1): an accuracy of 0.1 is never drawn on an axis from -0.4.
        """
        if hi - lo < 1e-12:
            pad = 0.5 if log else abs(lo) * 0.1 or 0.5
            low_limit = 0.0 if lo >= 0 and not log else -math.inf
            high_limit = 1.0 if fraction and hi <= 1 else math.inf
            lo, hi = max(lo - pad, low_limit), min(hi + pad, high_limit)
        plt.ylim(lo, hi)
        if log:
            plt.yticks(*log_ticks(lo, hi))
        else:
            ticks = y_ticks(lo, hi, height)
            plt.yticks(ticks, labels(ticks))

    def _numbers(self) -> Content:
        """The current values as a small table (the row names, in the curves' colours, are their legend),
        then the best value, spikes, and as many of the newest marks as the height leaves room for."""

        def value_of(value: float | None, pct: bool = False) -> str:
            if value is not None and not pct and abs(value) >= 1000:
                return compact(value)  # never 4078280249534579.0000
            return fmt.acc(value) if pct else fmt.loss(value)  # the same text fmt.metric gives these names

        acc = self.second == "acc"
        lines = [f"[dim]{'':<{LABEL}}{'loss':<{VALUE}}{'acc' if acc else ''}[/]"]
        for name, color, loss, second in (("train", "ansi_blue", self.train_loss, self.train_acc),
                                          ("val", "ansi_red", self.val_loss, self.val_acc)):
            row = f"[b {color}]{name:<{LABEL}}[/]{value_of(loss.last):<{VALUE}}"
            lines.append(row + (value_of(second.last, True) if acc else ""))
        lines.append(f"[dim] after epoch {self._epoch}[/]" if self._epoch else "[dim] after each epoch[/]")
        for key, value in list(self.val_values.items())[:6]:
            if key not in ("val_loss", "val_acc"):
                lines.append(f" {key[4:][:12]} {value_of(value)}")
        if self.best is not None:
            value, epoch = self.best
            shown = value_of(value, True) if self.monitor == "val_acc" else value_of(value)
            lines.append(f"best {self.monitor[4:][:8]} {shown} (ep {epoch})")
        if self.spikes:
            x, y = max(self.spikes, key=lambda p: p[1] if math.isfinite(p[1]) else math.inf)
            lines += ["[red]^[/] off scale (g: log)", f" {compact(y)} at step {compact(x)}"]
        if self.log_scale:
            lines.append("[dim]loss axis: log[/]")
        marks: dict[str, str] = {}  # marker labels quote records (lr, device): $variables, never markup
        height = self.query_one("#numbers").content_size.height or len(lines) + 1 + MAX_MARKS
        items = self.markers.items
        room = min(len(items), MAX_MARKS, max(height - len(lines) - 1, 0))  # a line for the heading
        shown_marks = items[len(items) - room:]
        if shown_marks:
            lines.append("[b]marks[/b]" if len(shown_marks) == len(items) else
                         f"[b]marks[/b], newest {len(shown_marks)} of {len(items)}")
            for i, (step, kind, label) in enumerate(shown_marks):
                marks[f"label{i}"] = str(label)
                lines.append(f" [{MARK_COLORS[kind]}]|[/] {fmt.count(step)}: $label{i}")
        elif items and height > len(lines):
            lines.append(f"[b]marks[/b]: {len(items)}, newest at step {fmt.count(items[-1][0])}")
        return Content.from_markup("\n".join(lines), **marks)
