"""Sweeps (RunBuilder/RunManager built in): the grid of runs, one folder per run, bad values refused first."""

from __future__ import annotations

import csv
import json

import pytest

from tuitrain.cli import main
from tuitrain.sweep import combinations


def test_combinations_are_the_cartesian_product_in_order():
    runs = combinations({"lr": [0.01, 0.001], "batch_size": [100, 1000]})
    assert runs == [{"lr": 0.01, "batch_size": 100}, {"lr": 0.01, "batch_size": 1000},
                    {"lr": 0.001, "batch_size": 100}, {"lr": 0.001, "batch_size": 1000}]


@pytest.mark.slow
def test_sweep_of_four_small_runs(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    code = main(["sweep", "synthetic", "--lr", "0.01,0.001", "--batch-size", "50,100", "--epochs", "1",
                 "--limit", "500", "--device", "cpu", "--sweep-dir", str(sweep), "--data-dir", str(tmp_path)])
    assert code == 0
    rows = json.loads((sweep / "results.json").read_text())
    assert len(rows) == 4
    assert {(r["lr"], r["batch_size"]) for r in rows} == {(0.01, 50), (0.01, 100), (0.001, 50), (0.001, 100)}
    for row in rows:
        assert row["status"] == "done" and 0 <= row["best_val_acc"] <= 1 and row["train_seconds"] > 0
        assert (tmp_path / row["run_dir"]).is_dir() or (sweep / row["run_dir"]).is_dir() or \
            __import__("pathlib").Path(row["run_dir"]).is_dir()
    with open(sweep / "results.csv") as fh:
        header = next(csv.reader(fh))
    assert header[:3] == ["lr", "batch_size", "epochs"] and "best_val_acc" in header
    table = capsys.readouterr().out.strip().splitlines()
    assert table[0].split()[:3] == ["lr", "batch_size", "epochs"]
    accs = [float(line.split()[4].rstrip("%")) for line in table[2:]]
    assert accs == sorted(accs, reverse=True)
    assert all(line.split()[6].endswith("s") for line in table[2:])  # train_seconds as a duration


def test_sweep_bad_value_is_exit_2_before_any_run(tmp_path, capsys):
    assert main(["sweep", "synthetic", "--lr", "0.01,-1", "--sweep-dir", str(tmp_path / "s")]) == 2
    assert "learning rate" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
    assert main(["sweep", "synthetic", "--sweep-dir", str(tmp_path / "s")]) == 2


def test_sweep_compile_applies_to_every_run(tmp_path, monkeypatch):
    seen = []

    def fake_run_sweep(base, grid, sweep_dir, train):
        seen.append((base, grid))
        return 0

    monkeypatch.setattr("tuitrain.sweep.run_sweep", fake_run_sweep)
    assert main(["sweep", "synthetic", "--lr", "0.01,0.001", "--compile", "--sweep-dir", str(tmp_path / "s")]) == 0
    (base, grid), = seen
    assert base.compile is True and grid == {"lr": [0.01, 0.001]}
