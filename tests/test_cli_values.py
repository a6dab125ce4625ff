"""CLI values that used to crash (issue 12 #5, #13): one line on stderr, exit 2, nothing written.
A Hypothesis test throws text, integers and floats at every training option."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.helpers import EngineRun
from tuitrain import config
from tuitrain.cli import main
from tuitrain.commands import Save, Stop
from tuitrain.options import Flag

FAST = ["--headless", "--epochs", "1", "--limit", "100", "--model", "mlp", "--device", "cpu"]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("tuitrain: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def _everything_under(root: Path) -> set[Path]:
    return set(root.rglob("*"))


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh current folder with one plain file in it (to put a run dir under)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a folder")
    return tmp_path


BAD_VALUES = [
    (["--seed", str(10**30)], "--seed"),
    (["--seed", "-1"], "--seed"),
    (["--seed", str(2**63)], "--seed"),
    (["--run-dir", "d" * 300], "longer than 255 bytes"),
    (["--run-dir", "a/b/" + "d" * 300], "longer than 255 bytes"),
    (["--run-dir", "afile/run"], "is a file"),
    (["--run-dir", "afile/deeper/run"], "is a file"),
    (["--run-dir", "/proc/tuitrain-test/run"], "cannot create run dir"),
    (["--run-dir", "new/sub/\udcff\udcfe"], "UTF-8"),  # bytes ff fe on the command line
    (["--data-dir", "\udcff"], "UTF-8"),
    (["--run-dir", "run\nname"], "control characters"),
    (["--device", "cpu\n"], "control characters"),
    (["--device", "cuda:\u0661"], "unknown device"),  # an Arabic-Indic digit is \d, not a device
    (["--monitor", "val_acc\n"], "control characters"),
    (["--accumulate", str(10**23)], "--accumulate"),  # used to overflow in the first step
    (["--resume", "9" * 5000], "longer than 4096 bytes"),
    (["--model-arg", "x=("], "not a Python literal"),
    (["--model", "net.py:Net", "--model-arg", "x=three"], "quote it: --model-arg \"x='three'\""),  # issue 24
    (["--model-arg", "x=1"], "built-in mlp takes none"),
    (["--model-arg", "1x=2"], "KEY=VALUE"),
    (["--model", "net.py:Net", "--model-arg", "x={(1, 2): 3}"], "config.json"),
]


@pytest.mark.parametrize(("args", "message"), BAD_VALUES, ids=[" ".join(a)[:40] for a, _ in BAD_VALUES])
def test_bad_values_are_one_line_exit_2_and_write_nothing(workdir, capsys, args, message):
    (workdir / "net.py").write_text("import torch\nclass Net(torch.nn.Linear):\n"
                                    "    def __init__(self, x=0):\n        super().__init__(784, 10)\n")
    before = _everything_under(workdir)
    assert main(["synthetic", *FAST, *args]) == 2
    assert message in _one_error_line(capsys)
    assert _everything_under(workdir) == before


def test_sweep_dir_that_cannot_be_made(workdir, capsys):
    before = _everything_under(workdir)
    code = main(["sweep", "synthetic", "--lr", "0.01", "--epochs", "1", "--limit", "100", "--device", "cpu",
                 "--sweep-dir", "/proc/x"])
    assert code == 2 and "cannot create sweep dir" in _one_error_line(capsys)
    code = main(["sweep", "synthetic", "--lr", "0.01", "--sweep-dir", "afile/sweep"])
    assert code == 2 and "is a file" in _one_error_line(capsys)
    assert _everything_under(workdir) == before


def test_mid_epoch_resume_with_another_batch_size_is_refused(small_config, capsys):
    run = EngineRun(small_config(epochs=2, limit=1000, batch_size=50)).start()
    run.wait_for(lambda r: r.get("type") == "step" and r["step"] >= 5)
    run.send(Save("mid.pt", id=1))
    saved = run.wait_event("save", cmd_id=1)
    run.send(Stop())
    run.join()
    path = saved["path"]
    resume = ["synthetic", "--headless", "--device", "cpu", "--limit", "1000", "--epochs", "2", "--resume", path,
              "--run-dir", str(Path(path).parent.parent.parent / "resumed")]
    assert main([*resume, "--batch-size", "25"]) == 2
    line = _one_error_line(capsys)
    assert "mid-epoch with batch size 50" in line and "--batch-size 50" in line
    assert not (Path(path).parent.parent.parent / "resumed").exists()


# ---------------------------------------------------------------- Hypothesis over every option
OPTIONS = [o.flag for o in config.OPTIONS.values() if o.cli and o.flag.startswith("-") and not isinstance(o, Flag)]
"""Every option of `tuitrain DATASET` that takes a value, as the TrainConfig fields declare them."""
VALUES = st.one_of(
    st.text(max_size=40),
    st.integers().map(str),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["0", "-1", "1e309", "nan", "cpu", "cuda:0", "val_x", "x=1", "a/b", "../", "/proc/x", "\x00",
                     "\udcff", "9" * 5000]),
)


@functools.cache
def _synthetic_tensors():
    from tuitrain.data import synthetic  # the real one: imported at the first call, before the patch

    ds = synthetic()
    return ds.train_x[:500], ds.train_y[:500], ds.val_x[:100], ds.val_y[:100]


def _setup_only(config, *args, **kwargs):
    """launch.run without training: build everything the run would (engine.setup), write nothing."""
    from tuitrain.engine import Engine, Result

    Engine(config).setup()
    return Result("done", 0, 0, None)


@pytest.fixture
def setup_only(monkeypatch, tmp_path):
    from tuitrain import data

    _synthetic_tensors()

    def cached_synthetic(seed: int = 1234):
        return data.DataSet("synthetic", *_synthetic_tensors(), [], [], [f"class {i}" for i in range(10)])

    monkeypatch.setattr(data, "synthetic", cached_synthetic)
    monkeypatch.setattr("tuitrain.launch.run", _setup_only)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(OPTIONS), value=VALUES)
def test_any_option_value_is_taken_or_refused_in_one_line(setup_only, capsys, option, value):
    args = ["synthetic", "--headless", "--device", "cpu", "--model", "mlp", "--limit", "100", "--run-dir", "run"]
    code = main([*args, option, value])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code in (0, 2), err
    event(f"exit {code}")
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("tuitrain: error:"), err
    assert not os.listdir(setup_only), "nothing is written before training"
