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

from tuitrain import __version__
from tuitrain.config import (
    DATASETS,
    MODELS,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULERS,
    TrainConfig,
    default_data_dir,
    validate,
)
from tuitrain.errors import UsageError
from tuitrain.keys import key_line
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

{key_line()}
exit codes: 0 done, 1 run failed, 2 bad usage or input, 130 interrupted (last.pt
saved)
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


def _sweep_hint(text: str, option: str = "") -> str:
    """The refusal of a comma-separated value where one is expected, pointing to ``tuitrain sweep``."""
    example = f"`tuitrain sweep DATASET {option} {text}`" if option else "`tuitrain sweep DATASET ...`"
    return f"one value per run, got {text!r}; {example} trains one run per comma-separated value"


def _whole(text: str, minimum: int) -> int:
    """A whole number of at least ``minimum``, or argparse's one-line refusal."""
    try:
        value = int(text)
    except ValueError:
        if "," in text:
            raise argparse.ArgumentTypeError(_sweep_hint(text)) from None
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be above 0, got {value}" if minimum == 1 else
                                         f"must be {minimum} or more, got {value}")
    return value


def _positive_int(text: str) -> int:
    return _whole(text, 1)


def _non_negative_int(text: str) -> int:
    return _whole(text, 0)


def _non_negative_float(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more, got {text!r}")
    return value


def _model_arg(text: str) -> tuple[str, object]:
    """KEY=VALUE with VALUE a Python literal (plain text when it is not one)."""
    import ast

    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"must be KEY=VALUE with KEY a Python name, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return key, value


def _lr(text: str) -> float:
    from tuitrain.config import parse_lr

    if "," in text:
        raise argparse.ArgumentTypeError(_sweep_hint(text, "--lr"))
    try:
        return parse_lr(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def train_parser() -> argparse.ArgumentParser:
    """The parser for ``tuitrain DATASET [options]``."""
    p = _Parser(
        prog="tuitrain",
        description="Train a PyTorch model with a live terminal dashboard you can steer.",
        epilog=COMMANDS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dataset", metavar="DATASET", help=f"one of {', '.join(DATASETS)}")
    p.add_argument("--model", default="cnn", help=f"{', '.join(MODELS)} or path/to/file.py:ClassName [cnn]")
    p.add_argument("--epochs", type=_positive_int, default=10, help="total epochs [10]")
    p.add_argument("--batch-size", type=_positive_int, default=100, help="samples per step [100]")
    p.add_argument("--lr", type=_lr, default=0.001, help="learning rate [0.001]")
    p.add_argument("--optimizer", default="adam", choices=OPTIMIZERS, metavar="O",
                   help=f"{', '.join(OPTIMIZERS)} [adam]")
    p.add_argument("--weight-decay", type=_non_negative_float, default=0.0, help="weight decay [0]")
    p.add_argument("--scheduler", default="none", choices=SCHEDULERS, metavar="S",
                   help=f"LR schedule: {', '.join(SCHEDULERS)} [none]")
    p.add_argument("--monitor", default="", help="val_loss or val_acc: picks best.pt, drives early stopping "
                   "and plateau [val_acc]")
    p.add_argument("--early-stopping", type=_non_negative_int, default=0, metavar="N",
                   help="stop after N epochs without improvement of the monitor [off]")
    p.add_argument("--grad-clip", type=_non_negative_float, default=0.0, metavar="X",
                   help="clip the gradient norm to X [off]")
    p.add_argument("--accumulate", type=_positive_int, default=1, metavar="N", help="batches per optimizer step [1]")
    p.add_argument("--precision", default="32", choices=PRECISIONS, metavar="P", help=f"{', '.join(PRECISIONS)} [32]")
    p.add_argument("--compile", action="store_true", help="train through torch.compile (first steps compile) [off]")
    p.add_argument("--model-arg", type=_model_arg, action="append", default=[], metavar="KEY=VALUE",
                   help="keyword argument for a path.py:NAME model (repeatable; VALUE a Python literal)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps [auto]")
    p.add_argument("--seed", type=int, default=0, help="seed for init and data order [0]")
    p.add_argument("--data-dir", default=None, help=f"data folder, torchvision layout [{default_data_dir()}]")
    p.add_argument("--run-dir", default="", help="where to write [runs/DATASET-MODEL-YYYYmmdd-HHMMSS]")
    p.add_argument("--resume", default="", metavar="PATH", help="continue from a checkpoint")
    p.add_argument("--headless", action="store_true", help="no dashboard; progress on stderr")
    p.add_argument("--log-every", type=_positive_int, default=20, help="steps between step records [20]")
    p.add_argument("--hist-every", type=_positive_int, default=200, help="steps between histograms [200]")
    p.add_argument("--limit", type=_positive_int, default=0, metavar="N",
                   help="use only the first N training samples and N/5 validation samples [all]")
    p.add_argument("--version", action="version", version=f"tuitrain {__version__}")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Build and validate the TrainConfig (shared by train, sweep and tests)."""
    cfg = TrainConfig(
        dataset=args.dataset, model=args.model, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, optimizer=args.optimizer, device=args.device, seed=args.seed,
        data_dir=args.data_dir or default_data_dir(), run_dir=args.run_dir, resume=args.resume,
        headless=args.headless, log_every=args.log_every, hist_every=args.hist_every, limit=args.limit,
        weight_decay=args.weight_decay, scheduler=args.scheduler, monitor=args.monitor,
        early_stopping=args.early_stopping, grad_clip=args.grad_clip, accumulate=args.accumulate,
        precision=args.precision, model_args=dict(args.model_arg), compile=args.compile,
    )
    return validate(cfg)


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
    except KeyboardInterrupt:
        print("tuitrain: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `tuitrain runs | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def cmd_train(argv: list[str]) -> int:
    """``tuitrain DATASET``: the dashboard on a terminal, else headless; the exit code of its end."""
    from tuitrain.launch import run, user_traceback

    cfg = config_from_args(train_parser().parse_args(argv))
    try:
        return run(cfg, show_traceback=True).exit_code
    except (UsageError, KeyboardInterrupt):
        raise
    except Exception as exc:  # the user's model failed while being built or checked, before training
        print(user_traceback(exc), file=sys.stderr)
        print(f"tuitrain: run failed before training: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED


def train_headless(cfg: TrainConfig):
    """One run of a sweep: headless; (exit code, Result)."""
    from tuitrain.launch import run

    result = run(cfg, ui="headless")
    return result.exit_code, result


SWEEPABLE: dict[str, Callable[[str], object]] = {
    "lr": _lr, "batch_size": _positive_int, "epochs": _positive_int, "optimizer": str, "model": str, "seed": int,
    "weight_decay": _non_negative_float, "scheduler": str, "grad_clip": _non_negative_float,
    "accumulate": _positive_int, "precision": str, "early_stopping": _non_negative_int}


def cmd_sweep(argv: list[str]) -> int:
    """``tuitrain sweep DATASET --lr 0.01,0.001 --batch-size 100,1000 ...``: one run per combination."""
    import time
    from pathlib import Path

    from tuitrain.sweep import run_sweep

    p = _Parser(prog="tuitrain sweep", description="Train every combination of comma-separated option values, "
                "one run after another (headless), then print a table sorted by val_acc and write "
                "results.csv and results.json in the sweep folder.")
    p.add_argument("dataset", metavar="DATASET", help=f"one of {', '.join(DATASETS)}")
    for name in SWEEPABLE:
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None, metavar="V1,V2,...")
    p.add_argument("--device", default="auto", help="[auto]")
    p.add_argument("--data-dir", default=None, help=f"[{default_data_dir()}]")
    p.add_argument("--sweep-dir", default="", help="[runs/sweep-DATASET-YYYYmmdd-HHMMSS]")
    p.add_argument("--compile", action="store_true", help="every run through torch.compile [off]")
    p.add_argument("--limit", type=_positive_int, default=0, metavar="N",
                   help="use only the first N training samples and N/5 validation samples [all]")
    args = p.parse_args(argv)
    grid: dict[str, list] = {}
    for name, convert in SWEEPABLE.items():
        text = getattr(args, name)
        if text is None:
            continue
        values = []
        for item in text.split(","):
            try:
                values.append(convert(item.strip()))
            except (argparse.ArgumentTypeError, ValueError) as exc:
                raise UsageError(f"--{name.replace('_', '-')}: {exc}") from None
        grid[name] = values
    if not grid:
        raise UsageError("give at least one option with values to sweep, e.g. --lr 0.01,0.001")
    base = TrainConfig(dataset=args.dataset, device=args.device, data_dir=args.data_dir or default_data_dir(),
                       limit=args.limit, headless=True, run_dir="unused", compile=args.compile)
    sweep_dir = Path(args.sweep_dir or f"runs/sweep-{args.dataset}-{time.strftime('%Y%m%d-%H%M%S')}")
    return run_sweep(base, grid, sweep_dir, train_headless)


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


def cmd_runs(argv: list[str]) -> int:
    """``tuitrain runs [DIR]``: a table of runs."""
    p = _Parser(prog="tuitrain runs", description="List the runs under DIR.")
    p.add_argument("dir", nargs="?", default=None, metavar="DIR", help="[runs]")
    args = p.parse_args(argv)
    from pathlib import Path

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
    args = p.parse_args(argv)
    from tuitrain.rundir import is_run_dir

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
    args = p.parse_args(argv)
    require_run_dir(args.run_dir)
    answer = send_command(args.run_dir, args.command, args.arg)
    if answer.get("bad_input"):
        raise UsageError(answer.get("reason", "bad input"))
    shown = {k: v for k, v in answer.items() if k not in ("ok", "type", "event", "time", "cmd_id", "reason")}
    details = " ".join(f"{k}={v}" for k, v in shown.items())
    if answer.get("ok"):
        print(f"done: {args.command} {details}".rstrip())
        return EXIT_OK
    print(f"refused: {args.command}: {answer.get('reason', 'no reason given')}")
    return EXIT_FAILED


_SUBCOMMANDS = {"summary": cmd_summary, "runs": cmd_runs, "watch": cmd_watch, "ctl": cmd_ctl, "sweep": cmd_sweep}
