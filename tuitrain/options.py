"""Each option declared once: the kinds of option a TrainConfig field can carry.

harlequin's options.py is the model: one object per option, a class per kind of value (text, choice,
count, number, flag), from which every surface is built. Here the object rides on its dataclass
field (``config.option(default, Count(...))``), so a setting's type, default, flag, help, bounds,
surfaces and sweepability are one statement. From them cli.py builds the parsers and SWEEPABLE,
``config.validate`` checks, ``tuitrain.fit`` reads its settings by name and documents them, and tests
hold fit's signature, the flags and the README to them.

Imports neither torch nor argparse: ``tuitrain --help`` is printed from these.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from tuitrain.errors import UsageError

SAME = "="
"""``Option.fit``: fit takes a keyword argument of the field's own name and default."""
MAX_COUNT = 2**53
"""The largest count (epochs, batch size, steps...): what a float, JSON and every reader hold exactly."""
NAME_MAX = 255
"""The longest file name (bytes) of Linux and macOS file systems."""
PATH_MAX = 4096
"""The longest path (bytes) Linux takes."""


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()
"""``Option.default`` of a field whose default a factory makes (dataclasses' MISSING would mean: required)."""


@dataclass(frozen=True, kw_only=True)
class Option:
    """A setting of plain text, and the base of every kind: how the CLI takes it, --help shows it,
    ``validate`` checks it and ``tuitrain.fit`` is given it."""

    doc: str
    """What the setting does: the field's documentation, and its entry in ``help(tuitrain.fit)``."""
    help: str = ""
    """One line of ``tuitrain --help``; the default is added in brackets."""
    metavar: str = ""
    """The value's placeholder (``--epochs N``), in --help and the README's table."""
    shown: str | None = None
    """The default as --help and the README show it; None: the field's default as it is."""
    cli: bool = True
    """A flag of ``tuitrain DATASET`` (False: fit's, or set by tuitrain itself)."""
    fit: str = SAME
    """How ``tuitrain.fit`` takes it: SAME (a keyword argument of the field's name and default), ""
    (not at all), or the name of the argument the value is derived from (``loss_fn`` gives ``loss``)."""
    fit_default: Any = SAME
    """fit's default where it differs from the field's (``headless=None``: decide by the terminal)."""
    fit_doc: str = ""
    """fit's own words where fit takes more than the config holds (an Optimizer, a factory)."""
    sweep: Literal["values", "one", ""] = ""
    """``tuitrain sweep``: comma-separated values (one run each), one value for every run, or not taken."""
    flag: str = ""
    """The command-line name: ``--`` and the field's name with dashes unless given; no dash: positional."""
    name: str = ""
    """The field's name (set by ``bound``)."""
    default: Any = NO_DEFAULT
    """The field's default (set by ``bound``)."""

    action: ClassVar[str] = "store"
    """argparse's action for the flag."""

    def bound(self, name: str, default: Any) -> Option:
        """This option as the field ``name`` with ``default`` carries it."""
        default = NO_DEFAULT if default is dataclasses.MISSING else default
        return dataclasses.replace(self, name=name, default=default, flag=self.flag or f"--{name.replace('_', '-')}",
                                   fit_default=default if self.fit_default is SAME else self.fit_default)

    def shown_default(self) -> str:
        """The default in words for --help and the README; "" when there is none worth showing."""
        if self.shown is not None:
            return self.shown
        if self.default is NO_DEFAULT or self.default == "":
            return ""
        return f"{self.default:g}" if isinstance(self.default, float) else str(self.default)

    def parse(self, text: str) -> Any:
        """The value of ``--flag TEXT`` (UsageError, one line, when there is none)."""
        return text

    def collect(self, value: Any) -> Any:
        """The field's value from what the parser gathered (a repeated flag gathers a list)."""
        return value

    def from_fit(self, value: Any) -> Any:
        """The field's value from fit's argument: a path object as its text."""
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    def check(self, cfg: Any, custom: bool = False) -> None:
        """Refuse (UsageError, one line) a value of this setting the run cannot take. ``custom``:
        the config comes from ``tuitrain.fit``, where names of the user's own things are labels."""
        value = getattr(cfg, self.name)
        if isinstance(value, str):
            check_text(value, self.flag)
        self.check_value(value, cfg, custom)

    def check_value(self, value: Any, cfg: Any, custom: bool) -> None:
        """The kind's own rule (text has none beyond ``check_text``)."""


def check_text(value: str, flag: str) -> None:
    """Every text setting is written to config.json and used in paths: it must be UTF-8 (a file name
    of other bytes reaches Python as lone surrogates) without NUL or other control characters."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{flag} must be UTF-8 text, got {value!r}") from None
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise UsageError(f"{flag} must not hold control characters (newline, NUL...), got {value!r}")


def sweep_hint(text: str, flag: str = "") -> str:
    """The refusal of comma-separated values where one is expected, pointing to ``tuitrain sweep``."""
    example = f"`tuitrain sweep DATASET {flag} {text}`" if flag else "`tuitrain sweep DATASET ...`"
    return f"one value per run, got {text!r}; {example} trains one run per comma-separated value"


@dataclass(frozen=True, kw_only=True)
class Choice(Option):
    """One of a few names (``--optimizer adam``)."""

    choices: tuple[str, ...]
    noun: str
    """What the names are, for the refusal: ``unknown optimizer 'x'``."""
    also: str = ""
    """What else is taken, after the names: ``or path/to/file.py:ClassName``."""
    accept: Callable[[str], bool] | None = None
    """Takes a value outside ``choices`` (a user's model file)."""
    custom: Literal["", "any", "prefixed"] = ""
    """Under ``tuitrain.fit``: any label, ``custom:Name`` labels of the user's own objects, or neither."""
    blank: bool = False
    """"" is taken (and means: inferred)."""

    def parse(self, text: str) -> str:
        self.check_value(text, None, False)
        return text

    def from_fit(self, value: Any) -> Any:
        """A whole number as its text (``precision=32``, as Lightning writes it)."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    def check_value(self, value: Any, cfg: Any, custom: bool) -> None:
        if value in self.choices or (self.blank and value == ""):
            return
        if isinstance(value, str) and (
                (self.accept is not None and self.accept(value))
                or (custom and self.custom == "any")
                or (custom and self.custom == "prefixed" and value.startswith("custom:"))):
            return
        also = f" {self.also}" if self.also else ""
        raise UsageError(f"unknown {self.noun} {value!r} (choose from {', '.join(self.choices)}{also})")


@dataclass(frozen=True, kw_only=True)
class Count(Option):
    """A whole number in a range (``--epochs 10``)."""

    low: int = 1
    high: int = MAX_COUNT
    high_text: str = "2**53"
    typed_low: int | None = None
    """The least the command line takes, where ``low`` is a default that means "all" (``--limit``)."""

    def parse(self, text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise UsageError(sweep_hint(text) if "," in text else f"must be a whole number, got {text!r}") from None
        least = self.low if self.typed_low is None else self.typed_low
        if value < least:
            raise UsageError(f"must be above 0, got {value}" if least == 1 else f"must be {least} or more, got {value}")
        return value

    def check_value(self, value: Any, cfg: Any, custom: bool) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not self.low <= value <= self.high:
            raise UsageError(f"{self.flag} must be a whole number from {self.low} to {self.high_text}, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class Number(Option):
    """A finite number, 0 or more (``--grad-clip 1.0``)."""

    def parse(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise UsageError(sweep_hint(text) if "," in text else f"must be a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0:
            raise UsageError(f"must be a finite number, 0 or more, got {text!r}")
        return value

    def check_value(self, value: Any, cfg: Any, custom: bool) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise UsageError(f"{self.flag} must be a finite number, 0 or more, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class Flag(Option):
    """On or off, off by default (``--compile``)."""

    action: ClassVar[str] = "store_true"

    def shown_default(self) -> str:
        return "off" if self.shown is None else self.shown

    def from_fit(self, value: Any) -> bool:
        """Any truth value, as Python's ``if`` reads it (None: off)."""
        return bool(value)

    def check_value(self, value: Any, cfg: Any, custom: bool) -> None:
        if not isinstance(value, bool):
            raise UsageError(f"{self.flag} must be True or False, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class PathText(Option):
    """A file or folder (``--resume PATH``): names and the whole short enough for every file call."""

    folder: bool = False
    """A folder the run creates: also not under a file."""

    def check_value(self, value: Any, cfg: Any, custom: bool) -> None:
        if not isinstance(value, str):
            raise UsageError(f"{self.flag} must be a path, got {value!r}")
        (check_folder if self.folder else check_lengths)(value, self.flag)


def check_lengths(path: str, option: str) -> str:
    """Each name of ``path`` at most NAME_MAX bytes, the whole at most PATH_MAX: longer ones fail
    every file call with ENAMETOOLONG, somewhere it would be a traceback."""
    if len(path.encode("utf-8", "surrogateescape")) >= PATH_MAX:
        raise UsageError(f"{option}: the path is longer than {PATH_MAX} bytes")
    for part in Path(path).parts:
        if len(part.encode("utf-8", "surrogateescape")) > NAME_MAX:
            raise UsageError(f"{option}: the name {part[:40]!r}... is longer than {NAME_MAX} bytes")
    return path


def check_folder(path: str, option: str) -> str:
    """A folder to create: names not too long, and not under a file (checked before anything is
    loaded or made; what only creating it tells is refused then, in one line too)."""
    check_lengths(path, option)
    for parent in Path(path).parents:
        try:
            if parent.exists():
                if not parent.is_dir():
                    raise UsageError(f"{option} {path} is under {parent}, which is a file, not a folder")
                break
        except OSError as exc:
            raise UsageError(f"{option} {path}: {exc.strerror or exc}") from None
    return path
