"""A fake backend for Pilot tests: scripted records in, commands recorded, no torch involved."""

from __future__ import annotations

import threading

SUMMARY = {"rows": [["conv1", "Conv2d", 1, [1, 6, 24, 24], 156, "True"], ["fc1", "Linear", 1, [1, 120], 23160, "True"],
                    ["out", "Linear", 1, [1, 10], 610, "True"]],
           "total_params": 23926, "trainable_params": 23926, "size_mb": 0.096}


def start_event(**overrides) -> dict:
    record = {"type": "event", "event": "start", "step": 0, "epoch": 0, "time": 0.0, "epochs": 3,
              "steps_per_epoch": 100, "total_steps": 300, "device": "cpu", "start_epoch": 0, "lr": 0.001,
              "summary": SUMMARY, "dataset": "synthetic", "model": "cnn", "samples": 10000, "batch_size": 100}
    record.update(overrides)
    return record


def scripted_run(steps: int = 150) -> list[dict]:
    """A start event, step records, one epoch, one histogram and one system sample."""
    records = [start_event()]
    for step in range(10, steps + 1, 10):
        records.append({"type": "step", "step": step, "epoch": 1 + step // 100, "batch": step % 100,
                        "loss": 2.3 / (1 + step / 30), "acc": min(0.99, 0.1 + step / 160), "lr": 0.001,
                        "samples_per_s": 8000.0, "time": float(step)})
        if step == 100:
            records.append({"type": "epoch", "epoch": 1, "step": 100, "train_loss": 0.6, "train_acc": 0.8,
                            "val_loss": 0.5, "val_acc": 0.85, "lr": 0.001, "train_seconds": 1.2, "best": True,
                            "time": 100.0})
    records.append({"type": "hist", "step": 100, "epoch": 1, "time": 100.0, "layers": [
        {"name": "conv1.weight", "w": {"lo": -0.3, "hi": 0.3, "norm": 2.0, "counts": [1, 3, 8, 12, 8, 3, 1, 0]},
         "g": {"lo": -0.01, "hi": 0.01, "norm": 0.05, "counts": [0, 1, 4, 9, 9, 4, 1, 0]}},
        {"name": "fc1.weight", "w": {"lo": -0.1, "hi": 0.1, "norm": 5.0, "counts": [2, 4, 6, 8, 8, 6, 4, 2]},
         "g": None}]})
    records.append({"type": "system", "time": 1.0, "cpu_percent": [55.0, 61.0], "rss_mb": 812.0,
                    "ram_used_mb": 4096.0, "ram_total_mb": 16384.0, "gpus": [], "gpu_note": "no GPU found"})
    return records


class FakeBackend:
    """Plays ``records`` at start, then waits; remembers every command and quit."""

    quit_stops_run = True

    def __init__(self, records: list[dict] | None = None, devices=("cpu",), checkpoints=(), controls=True,
                 run_dir: str = "runs/fake"):
        self.records = list(records if records is not None else scripted_run())
        self._devices = list(devices)
        self._checkpoints = list(checkpoints)
        self.controls = controls
        self.run_dir = run_dir
        self.sent: list = []
        self.quits: list[str] = []
        self._emit = None
        self._done = threading.Event()

    def run(self, emit) -> None:
        """Like the engine: returns once the run has ended (an end record), else when told to quit."""
        self._emit = emit
        emit(self.records)
        if not any(r.get("event") == "end" for r in self.records):
            self._done.wait(30)

    def push(self, *records: dict) -> None:
        """Emit more records, as the engine would later (an end record ends run(), as it would)."""
        self._emit(list(records))
        if any(r.get("event") == "end" for r in records):
            self._done.set()

    def send(self, command) -> None:
        self.sent.append(command)

    def devices(self) -> list[str]:
        return self._devices

    def checkpoints(self) -> list[str]:
        return self._checkpoints

    def quit(self, reason: str = "quit") -> None:
        """Like the engine: answer a stop with stop and end events, then return from run()."""
        self.quits.append(reason)
        if self._emit is not None and not self._done.is_set():
            status = "interrupted" if reason == "interrupt" else "stopped"
            self.push({"type": "event", "event": "stop", "step": 150, "time": 0.0, "reason": reason},
                      {"type": "event", "event": "end", "step": 150, "time": 0.0, "status": status})
        self._done.set()
