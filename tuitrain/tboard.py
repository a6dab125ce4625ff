"""TensorBoard event files under RUN_DIR/tensorboard, written from the same records as metrics.jsonl.

Scalars: train/loss, train/acc, train/grad_norm, lr (per step record); epoch/train_loss,
epoch/train_acc, val/loss, val/acc (per epoch). Histograms: weights/NAME and grads/NAME from the
engine's histogram records (the same bins the dashboard draws). tensorboard is a dependency.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

RETRY_S = 10.0
"""After a failed write (disk full, too many open files), a new event file is tried this much later."""


class TensorBoardSink:
    """A RunLog sink: ``write(record)`` turns records into TensorBoard summaries.

    TensorBoard is a second copy of the curves: when its writer fails, the records it misses stay
    in metrics.jsonl. ``write`` then raises OSError (RunLog reports it once, training goes on) until
    a new writer, tried every RETRY_S, works again.
    """

    def __init__(self, run_dir: str | Path):
        _quiet_writer_threads()
        self.log_dir = str(Path(run_dir) / "tensorboard")
        self.writer: Any = None
        """The SummaryWriter; None while writing fails (until the next try)."""
        self.error: BaseException | None = None
        """Why the last writer failed."""
        self._retry_at = 0.0
        self._open()

    def _open(self) -> None:
        from torch.utils.tensorboard import SummaryWriter

        try:
            self.writer = SummaryWriter(log_dir=self.log_dir, flush_secs=10)
            self.error = None
        except OSError as exc:  # the folder or the event file cannot be created now (disk full, EMFILE)
            self._drop(exc)

    def _drop(self, exc: BaseException) -> None:
        writer, self.writer = self.writer, None
        self._retry_at = time.monotonic() + RETRY_S
        self.error = exc
        if writer is not None:
            try:
                writer.close()
            except OSError:  # the writer already failed; closing it only releases what it holds
                pass

    def write(self, record: dict) -> None:
        """Write what TensorBoard can show of one record; OSError while TensorBoard cannot be written."""
        if self.writer is None and time.monotonic() >= self._retry_at:
            self._open()
        if self.writer is None:
            raise OSError(str(self.error))
        try:
            self._write(record)
        except OSError as exc:  # ENOSPC/EMFILE, met by the writer's thread and re-raised here
            self._drop(exc)
            raise

    def _write(self, record: dict) -> None:
        kind = record.get("type")
        w = self.writer
        if kind == "step":
            step = record["step"]
            w.add_scalar("train/loss", record["loss"], step)
            if "acc" in record:
                w.add_scalar("train/acc", record["acc"], step)
            if "grad_norm" in record:
                w.add_scalar("train/grad_norm", record["grad_norm"], step)
            w.add_scalar("lr", record["lr"], step)
        elif kind == "epoch":
            step = record["step"]
            for tag, key in (("epoch/train_loss", "train_loss"), ("epoch/train_acc", "train_acc"),
                             ("val/loss", "val_loss"), ("val/acc", "val_acc")):
                w.add_scalar(tag, record[key], step)
        elif kind == "hist":
            for layer in record["layers"]:
                for prefix, key in (("weights", "w"), ("grads", "g")):
                    h = layer.get(key)
                    if h and "sum" in h:
                        self._histogram(f"{prefix}/{layer['name']}", h, record["step"])

    def _histogram(self, tag: str, h: dict, step: int) -> None:
        counts = h["counts"]
        width = (h["hi"] - h["lo"]) / len(counts) or 1e-12
        limits = [h["lo"] + (i + 1) * width for i in range(len(counts))]
        self.writer.add_histogram_raw(tag, min=h["lo"], max=h["hi"], num=sum(counts), sum=h["sum"],
                                      sum_squares=h["sumsq"], bucket_limits=limits, bucket_counts=counts,
                                      global_step=step)

    def close(self) -> None:
        """Flush and close the event file; OSError when the last events cannot be written (or
        the writer had failed: closing must not look like a recovery)."""
        writer, self.writer = self.writer, None
        if writer is None:
            if self.error is not None:
                raise OSError(str(self.error))
            return
        try:
            writer.close()
        except OSError as exc:
            self.error = exc
            raise


_hook_lock = threading.Lock()


def _quiet_writer_threads() -> None:
    """TensorBoard's writer thread keeps a write error for the next ``add_*`` call (which the sink
    reports) and also lets it escape the thread, where threading prints a traceback. Leave only the
    first: an error from that thread goes unprinted; every other thread's goes to the previous hook."""
    with _hook_lock:
        if getattr(threading.excepthook, "_tuitrain", False):
            return
        previous = threading.excepthook

        def hook(args) -> None:
            if type(args.thread).__module__.startswith("tensorboard.") and isinstance(args.exc_value, OSError):
                return
            previous(args)

        hook._tuitrain = True  # type: ignore[attr-defined]
        threading.excepthook = hook
