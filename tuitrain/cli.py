"""The ``tuitrain`` command: parse, build the config, hand over. Imports torch only to train.

Exit codes (README, Exit codes): 0 done, 1 the run failed, 2 bad usage or input (one line, no traceback),
130 interrupted after saving checkpoints/last.pt.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from tuitrain import __version__, fmt
from tuitrain.config import DATASETS, MODELS, OPTIONS, TrainConfig, validate
from tuitrain.errors import UsageError
from tuitrain.keys import key_line
from tuitrain.options import Flag, Option
from tuitrain.records import EXIT_FAILED, EXIT_OK, EXIT_SIGNALS, EXIT_USAGE

EXIT_INTERRUPTED = EXIT_SIGNALS["interrupt"]

COMMANDS_HELP = f"""commands:
  tuitrain DATASET [options]     train: the live dashboard in a terminal, else
                                 headless (also with --headless)
  tuitrain watch RUN_DIR         the dashboard over a run directory: live (and
                                 in control) while it lives, else as it ended;
                                 plain lines when stdout is not a terminal
  tuitrain watch RUN_DIR...      compare runs (or a sweep folder): their curves
  tuitrain ctl RUN_DIR CMD [ARG] send pause, resume, save [NAME], load [PATH],
                                 lr VALUE, device NAME or stop to a live run
                                 (exit 0 done, 1 refused, 2 not alive or bad)
  tuitrain sweep DATASET --lr 0.01,0.001 --batch-size 100,1000 [--optimizer ...]
                                 one run per combination, then a table sorted by
                                 val_acc; results.csv/.json in the sweep folder
  tuitrain summary [--model M] [--dataset D]
                                 print the model summary table
  tuitrain runs [DIR]            the runs under DIR (default runs/)
  HOST:RUN_DIR, HOST:[DIR]       a run (or runs) on another machine, through
                                 ssh: watch, ctl and runs (--remote-tuitrain)
  tuitrain stream RUN_DIR        (remote side) a run's records as JSON lines

{key_line()}
exit codes: 0 done, 1 run failed, 2 bad usage or input; a stop by signal saves
last.pt and exits 130 (Ctrl-C, SIGINT), 143 (SIGTERM) or 129 (hang-up with
--on-hangup stop)
"""

SHORT_USAGE = f"""usage: tuitrain DATASET [options]        e.g.  tuitrain synthetic --epochs 3   (no download)
       tuitrain watch|ctl|sweep|runs|summary ...
DATASET: {", ".join(DATASETS)}.  Every option and command: tuitrain --help"""

ALIASES = {"--learning-rate": "--lr", "--learning_rate": "--lr", "--learningrate": "--lr", "--rate": "--lr",
           "--bs": "--batch-size", "--batch": "--batch-size", "--batchsize": "--batch-size",
           "--epoch": "--epochs", "--optim": "--optimizer", "--opt": "--optimizer", "--gpu": "--device",
           "--data": "--data-dir", "--datadir": "--data-dir", "--out": "--run-dir", "--output": "--run-dir",
           "--dataset": "DATASET (the first argument, e.g. `tuitrain synthetic`)"}
"""Options people type from other tools, and what tuitrain calls them."""
NOT_SUBCOMMANDS = {"train", "fit", "run", "start"}
"""Words people put before the data set; tuitrain trains with ``tuitrain DATASET``."""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (README: no usage dump, no traceback), exit 2."""

    def error(self, message: str):
        raise UsageError(f"{message}{self._hint(message)} (see {self.prog} --help)")

    def _hint(self, message: str) -> str:
        """``; did you mean --lr?`` for an unknown option close to (or an alias of) a known one."""
        found = re.match(r"unrecognized arguments: (.*)", message)
        if not found:
            return ""
        known = [o for action in self._actions for o in action.option_strings if o.startswith("--")]
        for word in found.group(1).split():
            name = word.split("=", 1)[0]
            if not name.startswith("--"):
                continue
            guess = ALIASES.get(name) or next(iter(difflib.get_close_matches(name, known, n=1, cutoff=0.7)), "")
            if guess:
                return f"; did you mean {guess}?"
        return ""


LAUNCH_OPTIONS: dict[str, Option] = {
    "detach": Flag(help="start the run in the background, in a session of its own (headless, output in "
                        "RUN_DIR/log.txt), print how to watch it and return at once",
                   doc="Start the run in a session of its own and return: it trains on after the shell or SSH "
                       "session ends.").bound("detach", False),
}
"""Options of ``tuitrain DATASET`` that change how the run is launched, not the run (no TrainConfig
field, not in config.json), declared as the fields declare theirs: ``{"detach": Flag(...).bound(
"detach", False)}``. ``config_from_args`` leaves them out; ``cmd_train`` reads them from the args."""


def _typed(opt: Option) -> Callable[[str], Any]:
    """``opt.parse`` for argparse: its refusal becomes argparse's one line (``argument --lr: ...``)."""

    def convert(text: str) -> Any:
        try:
            return opt.parse(text)
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _help(opt: Option) -> str:
    """The option's --help line with its default in brackets (argparse %-formats help: % doubled)."""
    shown = opt.shown_default()
    return (f"{opt.help} [{shown}]" if shown else opt.help).replace("%", "%%")


def add_option(p: argparse.ArgumentParser, opt: Option, values: bool = False) -> None:
    """``opt`` as declared, or (``values``) as comma-separated values to sweep. Nothing is stored for
    an option not given (argparse.SUPPRESS): the field's own default applies, declared once."""
    if not opt.flag.startswith("-"):
        p.add_argument(opt.name, metavar=opt.flag, type=_typed(opt), help=opt.help)
    elif values:
        p.add_argument(opt.flag, dest=opt.name, metavar="V1,V2,...", default=argparse.SUPPRESS, help=_help(opt))
    elif opt.action == "store_true":
        p.add_argument(opt.flag, dest=opt.name, action="store_true", default=argparse.SUPPRESS, help=_help(opt))
    else:
        p.add_argument(opt.flag, dest=opt.name, action=opt.action, type=_typed(opt), metavar=opt.metavar,
                       default=argparse.SUPPRESS, help=_help(opt))


def train_parser() -> argparse.ArgumentParser:
    """The parser for ``tuitrain DATASET [options]``: every TrainConfig field on the command line."""
    p = _Parser(
        prog="tuitrain",
        description="Train a PyTorch model with a live terminal dashboard you can steer.",
        epilog=COMMANDS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for opt in [*OPTIONS.values(), *LAUNCH_OPTIONS.values()]:
        if opt.cli:
            add_option(p, opt)
    p.add_argument("--version", action="version", version=f"tuitrain {__version__}")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Build and validate the TrainConfig (shared by train, sweep and tests): the options given,
    the fields' defaults for the rest."""
    given = {name: OPTIONS[name].collect(value) for name, value in vars(args).items() if name in OPTIONS}
    if given.get("resume"):  # the checkpoint's own settings, except those given anew
        from tuitrain.checkpoints import resumed_settings

        given = {**resumed_settings(given["resume"], set(given)), **given}
    return validate(TrainConfig(**given))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tuitrain`` console script; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        print(SHORT_USAGE, file=sys.stderr)
        return EXIT_USAGE
    try:
        if argv[0] in NOT_SUBCOMMANDS:
            rest = " ".join(argv[1:]) or "synthetic"
            raise UsageError(f"there is no `{argv[0]}` subcommand: train with `tuitrain {rest}`")
        if argv and argv[0] in _SUBCOMMANDS:
            return _SUBCOMMANDS[argv[0]](argv[1:])
        return cmd_train(argv)
    except UsageError as exc:
        print(f"tuitrain: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:  # Ctrl-C, or a stop signal before a run existed (signals.Stopped: said why)
        if not hasattr(exc, "exit_code"):
            print("tuitrain: interrupted", file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_INTERRUPTED)
    except BrokenPipeError:  # `tuitrain runs | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def cmd_train(argv: list[str]) -> int:
    """``tuitrain DATASET``: the dashboard on a terminal, else headless; the exit code of its end."""
    from tuitrain import signals

    args = train_parser().parse_args(argv)
    if not getattr(args, "detach", False):
        from tuitrain.cpuload import apply_wait_policy

        # libgomp reads its settings when torch loads it: before anything imports torch (a --resume
        # checkpoint's own settings are read below, with torch)
        apply_wait_policy()
    cfg = config_from_args(args)
    if getattr(args, "detach", False):
        from tuitrain.launch import detach

        return detach(cfg, [word for word in argv if not _names_detach(word)])
    from tuitrain.launch import run, user_traceback

    try:
        with signals.startup(cfg.on_hangup):  # before torch and the data load: a signal there has a meaning too
            return run(cfg, show_traceback=True).exit_code
    except (UsageError, KeyboardInterrupt):
        raise
    except Exception as exc:  # the user's model failed while being built or checked, before training
        print(user_traceback(exc), file=sys.stderr)
        print(f"tuitrain: run failed before training: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _names_detach(word: str) -> bool:
    """``--detach`` or an abbreviation argparse takes for it (``--det``; ``--de`` is also --device's)."""
    return len(word) >= 5 and "--detach".startswith(word)


def train_headless(cfg: TrainConfig):
    """One run of a sweep: headless; (exit code, Result)."""
    from tuitrain.launch import run

    result = run(cfg, ui="headless")
    return result.exit_code, result


SWEEPABLE: dict[str, Callable[[str], object]] = {
    name: opt.parse for name, opt in OPTIONS.items() if opt.sweep == "values"}
"""The options ``tuitrain sweep`` takes comma-separated values of, and how each value is read."""


def sweep_parser() -> argparse.ArgumentParser:
    """The parser for ``tuitrain sweep DATASET --lr 0.01,0.001 ...``: the fields declared sweepable."""
    p = _Parser(prog="tuitrain sweep", description="Train every combination of comma-separated option values, "
                "one run after another (headless), then print a table sorted by val_acc and write "
                "results.csv and results.json in the sweep folder.")
    for opt in OPTIONS.values():
        if opt.sweep:
            add_option(p, opt, values=opt.sweep == "values")
    p.add_argument("--sweep-dir", default="", metavar="DIR",
                   help="the folder of the runs and results [runs/sweep-DATASET-YYYYmmdd-HHMMSS]")
    return p


def cmd_sweep(argv: list[str]) -> int:
    """``tuitrain sweep DATASET --lr 0.01,0.001 --batch-size 100,1000 ...``: one run per combination."""
    import time
    from pathlib import Path

    from tuitrain.sweep import run_sweep

    args = vars(sweep_parser().parse_args(argv))
    from tuitrain.cpuload import apply_wait_policy

    apply_wait_policy()  # before the runs import torch (cmd_train says why)
    sweep_dir = Path(args.pop("sweep_dir") or f"runs/sweep-{args['dataset']}-{time.strftime('%Y%m%d-%H%M%S')}")
    # Only what was given is in args, in the order it was given (argparse sets each option as it
    # meets it): the grid, its runs' names and the results' columns follow the command line.
    grid = {name: _values(name, text) for name, text in args.items() if name in SWEEPABLE}
    if not grid:
        raise UsageError("give at least one option with values to sweep, e.g. --lr 0.01,0.001")
    one = {name: OPTIONS[name].collect(value) for name, value in args.items() if name not in SWEEPABLE}
    base = TrainConfig(**one, headless=True, run_dir="unused")
    from tuitrain import signals

    with signals.startup(base.on_hangup):  # also between runs, while the next one loads
        return run_sweep(base, grid, sweep_dir, train_headless)


def _values(name: str, text: str) -> list:
    """The comma-separated values of a swept option, each read as the option reads one."""
    try:
        return [SWEEPABLE[name](item.strip()) for item in text.split(",")]
    except UsageError as exc:
        raise UsageError(f"{OPTIONS[name].flag}: {exc}") from None


def cmd_summary(argv: list[str]) -> int:
    """``tuitrain summary``: print the model summary table."""
    p = _Parser(prog="tuitrain summary", description="Print a model's summary table.")
    p.add_argument("--model", default="cnn", help=f"{', '.join(MODELS)} or path/to/file.py:ClassName [cnn]")
    p.add_argument("--dataset", default="fashion-mnist", choices=DATASETS,
                   help="sets the input shape; no data is loaded [fashion-mnist]")
    args = p.parse_args(argv)
    validate(TrainConfig(dataset=args.dataset, model=args.model))
    from tuitrain import models

    shape = (3, 32, 32) if args.dataset == "cifar10" else (1, 28, 28)
    model = models.build_model(args.model, shape, 10)
    print(models.format_summary(models.summarize(model, shape)))
    return EXIT_OK


REMOTE_HELP = "the tuitrain command on the remote host, e.g. ~/venv/bin/tuitrain [$TUITRAIN_REMOTE or tuitrain]"


def _add_remote(p: argparse.ArgumentParser) -> None:
    p.add_argument("--remote-tuitrain", default=None, metavar="PATH", help=REMOTE_HELP)


def cmd_runs(argv: list[str]) -> int:
    """``tuitrain runs [DIR]``: a table of runs (``HOST:[DIR]``: on another machine, through ssh)."""
    p = _Parser(prog="tuitrain runs", description="List the runs under DIR (HOST:DIR: on HOST, through ssh).")
    p.add_argument("dir", nargs="?", default=None, metavar="DIR", help="[runs]")
    _add_remote(p)
    args = p.parse_args(argv)
    from pathlib import Path

    from tuitrain.remote import run_remote, split_remote

    if args.dir is not None and (where := split_remote(args.dir)):
        host, folder = where
        return run_remote(host, ["runs", *(["--", folder] if folder else [])], args.remote_tuitrain)

    from tuitrain.rundir import format_runs, list_runs

    if args.dir is None:
        if not Path("runs").is_dir():
            print("no runs yet (runs/ does not exist here)")
            return EXIT_OK
        args.dir = "runs"
    print(format_runs(list_runs(args.dir)))
    return EXIT_OK


def cmd_watch(argv: list[str]) -> int:
    """``tuitrain watch RUN_DIR``: the dashboard over a run directory."""
    p = _Parser(prog="tuitrain watch", description="Watch (and, while it lives, control) a run; given several "
                "runs or a folder of runs (a sweep), compare their curves.")
    p.add_argument("run_dirs", metavar="RUN_DIR", nargs="+")
    _add_remote(p)
    args = p.parse_args(argv)
    from tuitrain.remote import split_remote
    from tuitrain.rundir import is_run_dir

    if any(split_remote(path) for path in args.run_dirs):
        return _watch_remote(args.run_dirs, args.remote_tuitrain)
    if not sys.stdout.isatty():  # into a file or a pipe: plain lines, never a full-screen UI
        return _watch_plain(args.run_dirs)
    if len(args.run_dirs) > 1 or not is_run_dir(args.run_dirs[0]):
        from tuitrain.compare_app import run_compare

        return run_compare(args.run_dirs)
    from tuitrain.backends import WatchBackend

    backend = WatchBackend(args.run_dirs[0])
    from tuitrain.app import TuiTrainApp

    TuiTrainApp(backend, watch_mode=True).run()
    return EXIT_OK


def _watch_remote(run_dirs: list[str], remote: str | None) -> int:
    """``tuitrain watch HOST:RUN_DIR`` (through ssh), or a comparison naming at least one remote run."""
    from tuitrain.remote import RemoteBackend, run_remote, split_remote

    where = split_remote(run_dirs[0])
    if len(run_dirs) == 1 and where:
        host, path = where
        if not sys.stdout.isatty():  # plain lines: the host's own `watch` into a pipe does it
            return run_remote(host, ["watch", "--", path], remote)
        import threading

        # The dashboard's imports (about a second) while ssh connects and the host's tuitrain starts:
        # the connecting thread waits on a pipe, so both go on at once.
        loading = threading.Thread(target=__import__, args=("tuitrain.app",), daemon=True)
        loading.start()
        backend = RemoteBackend(host, path, remote)
        loading.join()
        from tuitrain.app import TuiTrainApp

        TuiTrainApp(backend, watch_mode=True).run()
        return EXIT_OK
    if not sys.stdout.isatty():
        raise UsageError("comparing runs on other machines needs a terminal (watch one HOST:RUN_DIR into a file)")
    from tuitrain.compare_app import run_compare

    return run_compare(run_dirs, remote)


def _watch_plain(run_dirs: list[str]) -> int:
    """``tuitrain watch`` with stdout not a terminal: one run's status and progress lines until it
    ends (at once for a finished run); several runs (or a sweep folder) as the ``runs`` table."""
    from tuitrain.progress import watch_plain
    from tuitrain.rundir import expand_runs, format_runs, is_run_dir, list_runs

    if len(run_dirs) == 1 and is_run_dir(run_dirs[0]):
        return watch_plain(run_dirs[0])
    print(format_runs([run for path in expand_runs(run_dirs) for run in list_runs(path)]))
    return EXIT_OK


def cmd_ctl(argv: list[str]) -> int:
    """``tuitrain ctl RUN_DIR COMMAND [ARG]``: one command to a live run."""
    from tuitrain.control import COMMANDS, send_command
    from tuitrain.rundir import require_run_dir

    p = _Parser(prog="tuitrain ctl", description="Send one command to a live run and print its answer.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("command", metavar="COMMAND", help=", ".join(COMMANDS))
    p.add_argument("arg", nargs="?", default=None, metavar="ARG")
    _add_remote(p)
    args = p.parse_args(argv)
    from tuitrain.remote import run_remote, split_remote

    if where := split_remote(args.run_dir):  # the host's own ctl: the same answers and exit codes
        host, path = where
        return run_remote(host, ["ctl", "--", path, args.command, *([args.arg] if args.arg is not None else [])],
                          args.remote_tuitrain)
    require_run_dir(args.run_dir)
    answer = send_command(args.run_dir, args.command, args.arg)
    if answer.get("bad_input"):
        raise UsageError(answer.get("reason", "bad input"))
    shown = {k: v for k, v in answer.items() if k not in ("ok", "type", "event", "time", "cmd_id", "reason")}
    details = fmt.details(shown, args.command)
    if answer.get("ok"):
        print(f"done: {args.command} {details}".rstrip())
        return EXIT_OK
    print(f"refused: {args.command}: {answer.get('reason', 'no reason given')}")
    return EXIT_FAILED


def cmd_stream(argv: list[str]) -> int:
    """``tuitrain stream RUN_DIR``: the remote side of ``watch HOST:RUN_DIR`` (tuitrain.remote)."""
    p = _Parser(prog="tuitrain stream", description="Write a run's history, then its records as it writes them, "
                "as JSON lines on stdout; relay commands read on stdin (one JSON line each) to its control "
                "socket. Run by `tuitrain watch HOST:RUN_DIR` through ssh.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--from", dest="position", default=None, metavar="POSITION",
                   help="go on after this position (JSON: byte offsets by file) instead of sending the history")
    p.add_argument("--metrics-only", action="store_true", help="only metrics.jsonl's records (a comparison)")
    args = p.parse_args(argv)
    from tuitrain.remote import stream

    return stream(args.run_dir, args.position, args.metrics_only)


_SUBCOMMANDS = {"stream": cmd_stream, "summary": cmd_summary, "runs": cmd_runs, "watch": cmd_watch, "ctl": cmd_ctl, "sweep": cmd_sweep}
