"""CPU per core, the training process's RSS, system RAM, and each GPU through NVML."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static


def bar(fraction: float, width: int = 12) -> str:
    """A text bar, e.g. ``█████░░░░░``."""
    fraction = min(max(fraction, 0.0), 1.0)
    full = round(fraction * width)
    return "█" * full + "░" * (width - full)


class SystemPanel(Static):
    """Shows the newest ``system`` record; absent GPUs are shown as absent, never an error."""

    DEFAULT_CSS = "SystemPanel { height: auto; }"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sampled = False
        """Whether a system record has been shown."""
        self._shape: tuple[int, ...] = ()
        """Cell length of each line shown: a sample of the same shape wraps the same, so needs no layout."""

    def run_ended(self) -> None:
        """The run ended: if it never sent a sample (it lasted under one interval), say so."""
        if not self.sampled:
            self.update("no sample: the run ended before the first one (taken every 2 s)")

    def update_record(self, record: dict) -> None:
        """Render one system record (see tuitrain.system.SystemSample.to_record)."""
        self.sampled = True
        cpus = record.get("cpu_percent") or []
        total = sum(cpus) / len(cpus) if cpus else 0.0
        lines = [f"[b]CPU[/b]  {bar(total / 100)} {total:5.1f}%  ({len(cpus)} cores)"]
        if 1 < len(cpus) <= 16:
            per_core = " ".join(f"{c:3.0f}" for c in cpus)
            lines.append(f"  per core: {per_core}")
        ram_used, ram_total = record.get("ram_used_mb", 0.0), record.get("ram_total_mb", 0.0) or 1.0
        lines.append(f"[b]RAM[/b]  {bar(ram_used / ram_total)} {ram_used / 1024:5.1f}/{ram_total / 1024:.1f} GiB")
        lines.append(f"  training process RSS {record.get('rss_mb', 0.0):,.0f} MiB")
        gpus = record.get("gpus") or []
        names: dict[str, str] = {}  # text from the record, inserted as $variables (never markup)
        if not gpus:
            names["note"] = str(record.get("gpu_note") or "no GPU found")
            lines.append("[b]GPU[/b]  $note")
        for gpu in gpus:
            mem_frac = gpu["mem_used_mb"] / (gpu["mem_total_mb"] or 1.0)
            extras = []
            if gpu.get("temp_c") is not None:
                extras.append(f"{gpu['temp_c']:.0f}°C")
            if gpu.get("power_w") is not None:
                extras.append(f"{gpu['power_w']:.0f} W")
            names[f"gpu{len(names)}"] = str(gpu["name"])[:24]
            lines.append(f"[b]GPU{gpu['index']}[/b] ${next(reversed(names))}  {' '.join(extras)}")
            lines.append(f"  util {bar(gpu['util_percent'] / 100)} {gpu['util_percent']:3.0f}%")
            lines.append(f"  mem  {bar(mem_frac)} {gpu['mem_used_mb'] / 1024:.1f}/{gpu['mem_total_mb'] / 1024:.1f} GiB")
        content = Content.from_markup("\n".join(lines), **names)
        # A sample every 2 s: a layout of the screen costs the UI thread (which shares the GIL and the
        # cores with training) about 8 ms, and this panel (height auto) only needs one when its height
        # can change: lines of other lengths may wrap otherwise.
        shape = tuple(map(len, content.plain.split("\n")))
        self.update(content, layout=shape != self._shape)
        self._shape = shape
