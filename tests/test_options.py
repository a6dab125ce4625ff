"""Each option is declared once, on its TrainConfig field: these tests hold every other place
an option shows up to the declarations, so a new option cannot be forgotten in one of them: fit's
keyword arguments, the train and sweep command lines, SWEEPABLE, validate, and the README's tables."""

from __future__ import annotations

import dataclasses
import inspect
import re

import pytest

import tuitrain
from tests.helpers import ROOT
from tuitrain.api import FIT_ONLY
from tuitrain.cli import LAUNCH_OPTIONS, SWEEPABLE, config_from_args, main, sweep_parser, train_parser
from tuitrain.config import OPTIONS, LearningRate, ModelArgs, TrainConfig, validate
from tuitrain.engine import Result
from tuitrain.errors import UsageError
from tuitrain.options import SAME, Choice, Count, Flag, Number, Option, PathText

FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]
TYPES = {f.name: f.type for f in dataclasses.fields(TrainConfig)}


def _other(opt: Option) -> tuple[list[str], object]:
    """A value of ``opt`` other than its default: (the words after the flag, the value in the config)."""
    if opt.name == "model_args":
        return ["x=1"], {"x": 1}
    if opt.name == "monitor":
        return ["val_loss"], "val_loss"
    if opt.name == "device":
        return ["cpu"], "cpu"
    if opt.name == "dataset":
        return ["mnist"], "mnist"
    if isinstance(opt, Flag):
        return [], True
    if isinstance(opt, Choice):
        value = next(c for c in opt.choices if c != opt.default)
        return [value], value
    if isinstance(opt, Count):
        value = max(opt.low, opt.typed_low or 0) + 2
        return [str(value)], value
    if isinstance(opt, (Number, LearningRate)):
        return ["0.25"], 0.25
    if isinstance(opt, PathText):
        return [f"some/{opt.name}"], f"some/{opt.name}"
    raise AssertionError(f"test_options: give {opt.name} ({type(opt).__name__}) a value to try")


# ------------------------------------------------------------------------------- the declarations
def test_every_field_declares_its_option():
    assert list(OPTIONS) == FIELDS
    for name, opt in OPTIONS.items():
        assert opt.name == name and opt.doc, name
        if opt.cli:  # on the command line: a help line, and a placeholder unless it is a flag or positional
            assert opt.help and (opt.metavar or isinstance(opt, Flag) or not opt.flag.startswith("-")), name
        if opt.sweep:
            assert opt.cli, f"{name}: sweep takes what the command line takes"


def test_the_defaults_pass_validation_and_fill_the_run_dir():
    cfg = validate(TrainConfig(dataset="synthetic"))
    assert cfg.run_dir.startswith("runs/synthetic-cnn-")


@pytest.mark.parametrize("name", [n for n, o in OPTIONS.items() if o.cli])
def test_validate_refuses_a_value_of_the_wrong_type_in_one_line(name):
    wrong = 3 if TYPES[name] == "str" else "text"
    with pytest.raises(UsageError) as info:
        validate(TrainConfig(**{"dataset": "synthetic", name: wrong}))
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------- tuitrain.fit
def test_fit_takes_each_setting_declared_for_it_and_no_other():
    params = inspect.signature(tuitrain.fit).parameters
    same = {n: o for n, o in OPTIONS.items() if o.fit == SAME}
    derived = {o.fit for o in OPTIONS.values() if o.fit not in (SAME, "")}
    assert not set(FIT_ONLY) & set(FIELDS) and not set(FIT_ONLY) & derived
    missing = (set(same) | derived | set(FIT_ONLY)) - set(params)
    undeclared = set(params) - (set(same) | derived | set(FIT_ONLY))
    assert not missing, f"declared for fit but not in its signature: {missing}"
    assert not undeclared, f"fit arguments neither a field's (Option.fit) nor in api.FIT_ONLY: {undeclared}"
    for name, opt in same.items():
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        assert params[name].default == opt.fit_default, f"fit's default for {name} is not the field's"


def test_fit_documents_every_argument():
    doc = inspect.getdoc(tuitrain.fit) or ""
    for name in inspect.signature(tuitrain.fit).parameters:
        assert re.search(rf"\b{name}\b", doc), f"help(tuitrain.fit) does not mention {name}"
    for name, opt in OPTIONS.items():
        if opt.fit == SAME:
            assert f"{name}: {(opt.fit_doc or opt.doc)[:30]}" in " ".join(doc.split()), name


def test_fit_puts_every_setting_it_takes_into_the_config(monkeypatch, tmp_path):
    import torch

    seen: list[TrainConfig] = []

    def fake_run(cfg, **kwargs):
        seen.append(cfg)
        return Result("done", 0, 0, None)

    monkeypatch.setattr("tuitrain.launch.run", fake_run)
    changed = {name: _other(opt)[1] for name, opt in OPTIONS.items() if opt.fit == SAME}
    changed["run_dir"] = str(tmp_path / "run")
    # CUDA graphs go with none of the other settings changed here (--compile, --accumulate...): alone.
    alone = {"cuda_graphs": changed.pop("cuda_graphs"), "device": "cuda", "run_dir": str(tmp_path / "run2")}
    x, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
    tuitrain.fit(torch.nn.Linear(4, 3), (x, y), name="toy", **changed)
    tuitrain.fit(torch.nn.Linear(4, 3), (x, y), name="toy", **alone)
    cfg, graphs = seen
    for name, value in changed.items():
        assert getattr(cfg, name) == value, name
    assert cfg.dataset == "toy" and cfg.model == "custom:Linear"
    assert graphs.cuda_graphs is True and not cfg.cuda_graphs


# ------------------------------------------------------------------------------- the command line
def _flags(parser) -> dict[str, str]:
    """{flag or positional metavar: dest} of a parser, without --help and --version."""
    found = {}
    for action in parser._actions:  # argparse has no public list of its arguments
        for flag in action.option_strings or [action.metavar]:
            if flag not in ("-h", "--help", "--version"):
                found[flag] = action.dest
    return found


def test_the_train_command_takes_each_cli_setting_and_no_other():
    declared = {o.flag: o.name for o in [*OPTIONS.values(), *LAUNCH_OPTIONS.values()] if o.cli}
    assert _flags(train_parser()) == declared


@pytest.mark.parametrize("name", [n for n, o in OPTIONS.items() if o.cli])
def test_each_flag_reaches_the_config(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    opt = OPTIONS[name]
    words, value = _other(opt)
    args = words if not opt.flag.startswith("-") else ["synthetic", opt.flag, *words]
    if name not in ("model", "dataset"):
        args += ["--model", "net.py:Net"]  # takes --model-arg
    cfg = config_from_args(train_parser().parse_args(args))
    assert getattr(cfg, name) == value


def test_no_flag_given_gives_the_fields_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parsed = config_from_args(train_parser().parse_args(["synthetic"])).to_dict()
    default = validate(TrainConfig(dataset="synthetic")).to_dict()
    assert {**parsed, "run_dir": ""} == {**default, "run_dir": ""}


def test_help_shows_each_default_as_declared(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    for opt in OPTIONS.values():
        if opt.cli and opt.shown_default() and opt.flag.startswith("-"):
            assert f"{opt.help} [{opt.shown_default()}]" in out, opt.name


# ------------------------------------------------------------------------------- tuitrain sweep
def test_sweepable_is_what_the_fields_declare():
    assert list(SWEEPABLE) == [n for n, o in OPTIONS.items() if o.sweep == "values"]
    declared = {o.flag: o.name for o in OPTIONS.values() if o.sweep}
    assert _flags(sweep_parser()) == {**declared, "--sweep-dir": "sweep_dir"}


@pytest.fixture
def sweeps(monkeypatch):
    """What ``tuitrain sweep`` would run: [(base config, grid)]."""
    seen: list = []

    def fake_run_sweep(base, grid, sweep_dir, train):
        seen.append((base, grid))
        return 0

    monkeypatch.setattr("tuitrain.sweep.run_sweep", fake_run_sweep)
    return seen


@pytest.mark.parametrize("name", [n for n, o in OPTIONS.items() if o.sweep and o.flag.startswith("-")])
def test_sweep_takes_each_sweepable_option(name, sweeps, tmp_path):
    opt = OPTIONS[name]
    words, value = _other(opt)
    if opt.sweep == "values":
        assert main(["sweep", "synthetic", opt.flag, f"{words[0]},{words[0]}", "--sweep-dir", str(tmp_path)]) == 0
        assert sweeps[0][1] == {name: [value, value]}
    else:
        assert main(["sweep", "synthetic", opt.flag, *words, "--lr", "0.1", "--sweep-dir", str(tmp_path)]) == 0
        assert getattr(sweeps[0][0], name) == value


def test_sweep_grid_follows_the_command_lines_order(sweeps, tmp_path):
    assert main(["sweep", "synthetic", "--seed", "1,2", "--lr", "0.1,0.01", "--batch-size", "10",
                 "--sweep-dir", str(tmp_path)]) == 0
    assert list(sweeps[0][1]) == ["seed", "lr", "batch_size"]


def test_sweep_refuses_a_bad_value_naming_its_option(capsys):
    assert main(["sweep", "synthetic", "--optimizer", "adam,lbfgs"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tuitrain: error: --optimizer: unknown optimizer 'lbfgs'") and "\n" not in err


# ------------------------------------------------------------------------------- --model-arg
def test_model_arg_takes_python_literals_and_refuses_other_text():
    opt = OPTIONS["model_args"]
    assert isinstance(opt, ModelArgs)
    assert opt.parse("width=3") == ("width", 3) and opt.parse("name='three'") == ("name", "three")
    assert opt.parse("sizes=[1, 2]") == ("sizes", [1, 2]) and opt.parse("x=None") == ("x", None)
    with pytest.raises(UsageError, match="'three' is not a Python literal.*--model-arg \"width='three'\""):
        opt.parse("width=three")


# ------------------------------------------------------------------------------- the README
README = (ROOT / "README.md").read_text()


def _readme_table() -> dict[str, tuple[str, str]]:
    """The README's training options table: {flag: (placeholder, default as written)}."""
    section = README[README.index("### Training options"):]
    section = section[:section.index("\n\n", section.index("|---"))]
    rows = {}
    for line in section.splitlines():
        found = re.match(r"\| `(--[a-z-]+)(?: ([^`]+))?` \|([^|]*)\|", line)
        if found:
            rows[found.group(1)] = (found.group(2) or "", found.group(3).replace("`", "").strip())
    return rows


def test_readme_table_lists_every_flag_with_its_placeholder_and_default():
    declared = {o.flag: (o.metavar, o.shown_default()) for o in [*OPTIONS.values(), *LAUNCH_OPTIONS.values()]
                if o.cli and o.flag.startswith("-")}
    assert _readme_table() == declared


def test_readme_lists_every_sweepable_option():
    text = README[README.index("Sweepable options"):README.index("Every combination is checked")]
    values, one = text.split("single-valued")
    assert set(re.findall(r"`(--[a-z-]+)`", values)) == {o.flag for o in OPTIONS.values() if o.sweep == "values"}
    assert set(re.findall(r"`(--[a-z-]+)`", one)) == \
        {o.flag for o in OPTIONS.values() if o.sweep == "one" and o.flag.startswith("-")} | {"--sweep-dir"}
