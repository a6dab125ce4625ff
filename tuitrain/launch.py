"""One launch path: ``run(config, ui=...)`` trains under the dashboard or headless and returns the
engine's Result. The CLI, ``tuitrain sweep`` and ``tuitrain.fit`` all come through here.

    config --> Session.prepare() (load, build, check: UsageError before anything is written)
           --> Session.open_run_dir() --> training thread + (dashboard | progress lines)
           --> final line on stderr --> Result (exit code: Result.exit_code)
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Literal

from tuitrain.config import TrainConfig

UI = Literal["auto", "headless", "dashboard"]


def run(config: TrainConfig, ui: UI = "auto", *, model=None, dataset=None, task=None, show_traceback: bool = False):
    """Train ``config`` (with ``tuitrain.fit``'s own model, data and task) and return the Result.

    ``ui``: ``auto`` picks the dashboard on a terminal, headless otherwise (and always under
    torchrun). Raises UsageError for bad input, before the run directory is created.
    ``show_traceback``: print the frames of user code of a failure before the final line (the CLI;
    ``fit`` re-raises the exception instead).
    """
    from tuitrain.engine import compiler_error
    from tuitrain.progress import Progress, final_line
    from tuitrain.session import Session, check_first

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1  # started by torchrun
    headless = ui == "headless" or distributed or (ui == "auto" and (config.headless or not sys.stdout.isatty()))
    if int(os.environ.get("RANK", "0")):  # a DDP worker: trains its shard; rank 0 writes and reports
        from tuitrain.signals import SignalRelay

        session = Session(config, model=model, dataset=dataset, task=task)
        session.prepare()
        # torchrun passes SIGTERM to every rank; rank 0's Stop (or Save) reaches this one at the same
        # step through the broadcast, so here the signals are left to rank 0, not obeyed alone.
        with SignalRelay(on_stop=lambda reason: None, on_save=lambda: None):
            return session.run()
    if not headless:
        # A person is there to lower the LR and go on, so divergence pauses rather than stops.
        config = config.replace(on_nonfinite="pause")
    check_first(config, own_model=model is not None)  # before the seconds of loading data
    print(f"tuitrain: loading {config.dataset} and building {config.model}...", file=sys.stderr)
    session = Session(config, on_record=Progress(run_dir=config.run_dir) if headless else None, model=model,
                      dataset=dataset, task=task)
    session.prepare()
    from tuitrain.threads import release_thread_pool

    # The thread that trains must own torch's only CPU thread pool: preparing here started one on
    # this thread, and two pools on 2 cores make libgomp put the workers to sleep after every
    # parallel region (about a third of the throughput; threads.py has the measurements).
    release_thread_pool()
    if headless:
        with _signals(session):
            session.open_run_dir()
            _train_in_thread(session)
    else:
        from tuitrain.app import TuiTrainApp
        from tuitrain.backends import LiveBackend

        app = TuiTrainApp(LiveBackend(session))
        with _signals(session, app):
            session.open_run_dir()
            app.run()
    error = session.result.error if session.result is not None else None
    if show_traceback and error is not None and not (config.compile and compiler_error(error)):
        # a --compile failure is the final line alone
        print(user_traceback(error, f"{config.run_dir}/metrics.jsonl's error event"), file=sys.stderr)
    print(final_line(session.result, config.run_dir), file=sys.stderr)
    if session.result is None:  # the app itself crashed before training ended; Textual printed why
        from tuitrain.engine import Result

        return Result("failed", 0, 0, None, "the dashboard crashed", run_dir=config.run_dir)
    return session.result


def _signals(session, app=None):
    """SIGTERM/SIGHUP stop the run like Ctrl-C (the dashboard leaves once last.pt is written);
    SIGUSR1 saves a checkpoint and training goes on."""
    from tuitrain.commands import Save, Stop
    from tuitrain.signals import SignalRelay

    def stop(reason: str) -> None:
        if app is not None:
            try:
                app.call_from_thread(app.stop_run, reason)
                return
            except RuntimeError:  # the dashboard is not running (yet, or any more): stop the engine directly
                pass
        else:
            print(f"\ntuitrain: {reason.upper()}: stopping at the next step, saving last.pt", file=sys.stderr)
        session.send(Stop(reason))

    return SignalRelay(on_stop=stop, on_save=lambda: session.send(Save()))


def _train_in_thread(session) -> None:
    """Train in a worker thread; the main thread waits, so Ctrl-C stops at the next step."""
    from tuitrain.commands import Stop

    finished = threading.Event()

    def train() -> None:
        try:
            session.run()
        finally:
            finished.set()

    worker = threading.Thread(target=train, name="tuitrain-engine")
    worker.start()
    interrupted = False
    # Wait on an Event, not Thread.join: a Ctrl-C inside join() can leave is_alive() wrong (bpo-21822).
    while not finished.is_set():
        try:
            finished.wait(0.2)
        except KeyboardInterrupt:
            if interrupted:
                raise
            print("\ntuitrain: stopping at the next step, saving last.pt (Ctrl-C again to abort)", file=sys.stderr)
            session.send(Stop("interrupt"))
            interrupted = True
    worker.join()


def user_traceback(exc: BaseException, whole_in: str = "") -> str:
    """The traceback of ``exc`` with tuitrain's and torch's own frames left out (what a user can fix),
    saying where the whole one is kept (``whole_in``); with nowhere, the whole traceback itself (the
    model failed before a run dir was written)."""
    import traceback
    from pathlib import Path

    import torch

    if not whole_in:
        whole = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip().splitlines()
        return "\n".join(["Traceback (the whole of it: no run dir was written, so it is kept nowhere else):",
                          *whole[1:]])
    ours = (str(Path(__file__).resolve().parent), str(Path(torch.__file__).resolve().parent))
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(ours)]
    lines = [f"Traceback (your code; the whole traceback is in {whole_in}):"]
    lines += [line.rstrip() for line in traceback.format_list(frames)]
    lines += [line.rstrip() for line in traceback.format_exception_only(type(exc), exc)]
    return "\n".join(lines)
