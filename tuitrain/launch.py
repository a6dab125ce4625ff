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
    from tuitrain import signals
    from tuitrain.engine import compiler_error
    from tuitrain.progress import Progress, final_line
    from tuitrain.session import Session, check_first

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1  # started by torchrun
    headless = (ui == "headless" or distributed or signals.hung_up()
                or (ui == "auto" and (config.headless or not sys.stdout.isatty())))
    if int(os.environ.get("RANK", "0")):  # a DDP worker: trains its shard; rank 0 writes and reports
        session = Session(config, model=model, dataset=dataset, task=task)
        session.prepare()
        # torchrun passes SIGTERM to every rank; rank 0's Stop (or Save) reaches this one at the same
        # step through the broadcast, so here the signals are left to rank 0, not obeyed alone.
        with signals.SignalRelay(on_stop=lambda reason: None, on_save=lambda: None, on_hangup=lambda: None):
            return session.run()
    if not headless:
        # A person is there to lower the LR and go on, so divergence pauses rather than stops.
        config = config.replace(on_nonfinite="pause")
    check_first(config, own_model=model is not None)  # before the seconds of loading data
    _say(f"tuitrain: loading {config.dataset} and building {config.model}...")
    session = Session(config, model=model, dataset=dataset, task=task)
    session.prepare()
    from tuitrain.threads import release_thread_pool

    # The thread that trains must own torch's only CPU thread pool: preparing here started one on
    # this thread, and two pools on 2 cores make libgomp put the workers to sleep after every
    # parallel region (about a third of the throughput; threads.py has the measurements).
    release_thread_pool()
    headless = headless or signals.hung_up()  # the terminal went away while loading: no dashboard to show
    if headless:
        progress = Progress(run_dir=config.run_dir)
        progress.gone = signals.leave_terminal
        session.on_record = progress
        with _signals(session, progress=progress) as relay:
            session.open_run_dir()
            if signals.hung_up():  # while loading: the progress lines go to log.txt from the start
                relay.hang_up()
            _train_in_thread(session)
    else:
        from tuitrain.app import TuiTrainApp
        from tuitrain.backends import LiveBackend

        backend = LiveBackend(session)
        app = TuiTrainApp(backend)
        with _signals(session, app=app, backend=backend) as relay:
            session.open_run_dir()
            if signals.hung_up():  # between loading and here: the dashboard never starts
                relay.hang_up()
            else:
                app.run()
            if backend.detached:  # the terminal went away; the run went on headless
                if backend.started:
                    while not session.ended.wait(0.2):  # training in the dashboard's worker thread
                        pass
                else:
                    _train_in_thread(session)
    error = session.result.error if session.result is not None else None
    if show_traceback and error is not None and not (config.compile and compiler_error(error)):
        # a --compile failure is the final line alone
        _say(user_traceback(error, f"{config.run_dir}/metrics.jsonl's error event"), config.run_dir)
    _say(final_line(session.result, config.run_dir), config.run_dir)
    if session.result is None:  # the app itself crashed before training ended; Textual printed why
        from tuitrain.engine import Result

        return Result("failed", 0, 0, None, "the dashboard crashed", run_dir=config.run_dir)
    return session.result


def detach(config: TrainConfig, argv: list[str]) -> int:
    """``tuitrain DATASET ... --detach`` (``argv`` without the flag): check what can be checked
    without loading anything (UsageError, exit 2, nothing started), then start the run headless in
    a session of its own (setsid: no terminal, so no hang-up reaches it; stdin /dev/null, stdout and
    stderr appended to RUN_DIR/log.txt), print where it is and how to watch it, and return 0."""
    import subprocess
    from pathlib import Path

    from tuitrain.errors import UsageError
    from tuitrain.progress import watch_hint
    from tuitrain.rundir import LOG
    from tuitrain.session import check_first

    check_first(config)
    try:
        Path(config.run_dir).mkdir(parents=True, exist_ok=True)
        log = os.open(Path(config.run_dir) / LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                      0o644)
    except OSError as exc:
        raise UsageError(f"cannot create run dir {config.run_dir}: {exc.strerror or exc}") from None
    try:
        child = subprocess.Popen([sys.executable, "-m", "tuitrain", *argv, "--headless", "--run-dir", config.run_dir],
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    except OSError as exc:
        raise UsageError(f"cannot start the run: {exc.strerror or exc}") from None
    finally:
        os.close(log)
    print(watch_hint(config.run_dir))
    print(f"tuitrain: training in the background (pid {child.pid}); its output goes to "
          f"{Path(config.run_dir) / LOG}")
    return 0


def _say(text: str, run_dir: str = "") -> None:
    """A line on stderr; once the terminal is gone, in RUN_DIR/log.txt instead (unless stderr is
    a file: a log the user chose, or log.txt itself under --detach). A refused write never ends a run."""
    from tuitrain import signals
    from tuitrain.progress import LogFile

    if run_dir and signals.hung_up() and not _stderr_is_file():
        LogFile(run_dir).write(text + "\n")
        return
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _stderr_is_file() -> bool:
    """Whether stderr is a regular file (a log the user redirected to): it stays after a hang-up."""
    import stat

    try:
        return stat.S_ISREG(os.fstat(2).st_mode)
    except OSError:
        return False


class _Relay:
    """The run's signals (launch's part of signals.SignalRelay): SIGTERM stops the run like Ctrl-C
    (the dashboard leaves once last.pt is written); SIGUSR1 saves a checkpoint and training goes
    on; SIGHUP, with ``--on-hangup continue``, sends the progress lines to RUN_DIR/log.txt and (the
    dashboard) leaves the dashboard while training goes on; with ``stop``, stops like SIGTERM.
    SIGINT to the dashboard (it takes Ctrl-C as a key) stops like Ctrl-C."""

    def __init__(self, session, progress=None, app=None, backend=None):
        from tuitrain.commands import Save
        from tuitrain.signals import SignalRelay

        self.session, self.progress, self.app, self.backend = session, progress, app, backend
        self.hung_up = False
        self._lock = threading.Lock()
        self.relay = SignalRelay(on_stop=self.stop, on_save=lambda: session.send(Save()),
                                 on_hangup=self.hang_up if session.config.on_hangup == "continue" else None,
                                 interrupt=app is not None)

    def __enter__(self) -> _Relay:
        self.relay.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self.relay.__exit__(*exc_info)

    def stop(self, reason: str) -> None:
        from tuitrain.commands import Stop

        if self.app is not None and not self.hung_up:
            try:
                self.app.call_from_thread(self.app.stop_run, reason)
                return
            except RuntimeError:  # the dashboard is not running (yet, or any more): stop the engine directly
                pass
        elif self.app is None:
            _say(f"\ntuitrain: {reason.upper()}: stopping at the next step, saving last.pt", self.session.config.run_dir)
        self.session.send(Stop(reason))

    def hang_up(self) -> None:
        """The terminal went away (the standard streams already point at /dev/null) and the run
        goes on: progress lines into RUN_DIR/log.txt; the dashboard leaves without stopping it."""
        from tuitrain.progress import Progress

        with self._lock:
            if self.hung_up:
                return
            self.hung_up = True
        run_dir = self.session.config.run_dir
        note = "tuitrain: the terminal went away (SIGHUP); training goes on headless, progress lines in log.txt"
        if self.app is None:
            if not _stderr_is_file():  # else the lines go on into the user's log
                self.progress.to_log(run_dir)
            self.progress.say(note)
            return
        progress = Progress(run_dir=run_dir)
        progress.to_log(run_dir)
        progress.say(note)
        self.backend.detach(progress)
        if self.session.start_record is not None:  # the start event came before: totals, elapsed time
            progress.quiet = True
            progress(self.session.start_record)
            progress.quiet = False
        from tuitrain.messages import HungUp

        self.app.post_message(HungUp())


def _signals(session, progress=None, app=None, backend=None) -> _Relay:
    return _Relay(session, progress, app, backend)


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
