"""TensorBoard event files in the run directory, written from the same records as metrics.jsonl.

They lie in RUN_DIR itself (beside config.json, as Lightning's loggers put theirs), not in a folder of
their own: TensorBoard names a run after the folder that holds its event files, so ``tensorboard
--logdir runs`` lists ``synthetic-cnn-20250101-120000`` and ``my-sweep/03-lr=0.001-...``, not
``.../tensorboard`` for every run.

Scalars: train/loss, train/acc, train/grad_norm, lr (per step record); epoch/train_loss,
epoch/train_acc, val/loss, val/acc and val/<metric> for each user metric (per epoch). Histograms:
weights/NAME and grads/NAME from the engine's histogram records (the same bins the dashboard draws). Confusion records: a text
summary (TEXT tab, ``val/confusion``: per-class accuracy worst first, the most confused pairs and the matrix as a
markdown table) and per-class accuracy scalars ``val_class_acc/NAME``; no figure, so matplotlib is not needed.
tensorboard is a dependency.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from tuitrain import fmt
from tuitrain.confusion import Confusion, confused_pairs, per_class, read_confusion

RETRY_S = 10.0
"""After a failed write (disk full, too many open files), a new event file is tried this much later."""


def confusion_markdown(conf: Confusion) -> str:
    """Per-class accuracy (worst first), the most confused pairs and the matrix, as TensorBoard markdown."""
    conf = Confusion(conf.epoch, [c.replace("|", "\\|") for c in conf.classes], conf.matrix)  # | splits cells
    lines = [f"**epoch {conf.epoch}**: val accuracy {fmt.acc(conf.accuracy)} of {fmt.count(conf.total)} samples", "",
             "| class | accuracy | samples |", "|---|---:|---:|"]
    lines += [f"| {name} | {100 * acc:.1f}% | {n} |" for name, acc, n in per_class(conf)]
    lines += ["", "most confused (true -> predicted): "
              + "; ".join(f"{t} -> {p} {n}" for t, p, n in confused_pairs(conf)), "",
              "| true \\ predicted | " + " | ".join(conf.classes) + " |", "|---" * (len(conf.classes) + 1) + "|"]
    lines += [f"| **{name}** | " + " | ".join(str(c) for c in row) + " |" for name, row in zip(conf.classes, conf.matrix, strict=True)]
    return "\n".join(lines)


class TensorBoardSink:
    """A RunLog sink: ``write(record)`` turns records into TensorBoard summaries.

    TensorBoard is a second copy of the curves: when its writer fails, the records it misses stay
    in metrics.jsonl. ``write`` then raises OSError (RunLog reports it once, training goes on) until
    a new writer, tried every RETRY_S, works again.
    """

    def __init__(self, run_dir: str | Path):
        _quiet_writer_threads()
        self.log_dir = str(Path(run_dir))  # TensorBoard's run name is this folder's path under --logdir
        self.writer: Any = None
        """The SummaryWriter, or None while it has failed (a new one is tried every RETRY_S)."""
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
            for key, value in record.items():  # train_loss, train_acc, val_loss, val_acc, val_<metric>
                if key.startswith(("train_", "val_")) and key != "train_seconds" and isinstance(value, (int, float)):
                    split, _, name = key.partition("_")
                    w.add_scalar(f"epoch/{key}" if split == "train" else f"val/{name}", value, step)
        elif kind == "confusion":
            self._confusion(record)
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

    def _confusion(self, record: dict) -> None:
        conf = read_confusion(record)
        if conf is None:
            return
        step = record.get("step", 0)
        for name, accuracy, _ in per_class(conf):
            self.writer.add_scalar(f"val_class_acc/{name}", accuracy, step)
        self.writer.add_text("val/confusion", confusion_markdown(conf), step)

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
