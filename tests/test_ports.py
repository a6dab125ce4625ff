"""The ports (examples/ports/) run a few steps each, in process, on generated data.

Each port is a real public training script's model and loss under ``tuitrain.fit``. The first test
checks that the ports which train today still get through an epoch. The others pin defects
those ports found: each is ``xfail(strict=True)`` naming the defect, so the fix flips it to a pass
(and a strict xfail that passes fails the suite, telling the fixer to remove the mark).
``python examples/ports/run_all.py`` runs them longer and judges what they learned.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

PORTS = Path(__file__).resolve().parents[1] / "examples" / "ports"
pytestmark = pytest.mark.slow


def port(name: str):
    """Import examples/ports/NAME.py (its sibling ``_common`` on the path)."""
    if str(PORTS) not in sys.path:
        sys.path.insert(0, str(PORTS))
    spec = importlib.util.spec_from_file_location(f"port_{name}", PORTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: the ports' LSTMs run several times faster so on a small shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(name: str, tmp_path: Path, **kwargs) -> dict:
    return port(name).main(run_dir=str(tmp_path / "run"), headless=True, **kwargs)


def steps_done(run_dir: Path) -> int:
    """The step of the run's error event (0: no run dir, or no error recorded)."""
    metrics = run_dir / "metrics.jsonl"
    for line in metrics.read_text().splitlines() if metrics.exists() else []:
        record = json.loads(line)
        if record.get("event") == "error":
            return int(record["step"])
    return 0


@pytest.mark.parametrize(("name", "kwargs"), [
    ("mnist", {"limit": 256}),
    ("vae", {"limit": 256}),
    ("regression", {"limit": 320}),
    ("siamese_network", {"limit": 128}),
    ("super_resolution", {"limit": 128}),
    ("lstm_classifier", {"limit": 512}),
    ("multilabel", {"limit": 100}),
    ("conv_autoencoder", {"limit": 256}),
    ("unet", {"limit": 20}),
], ids=lambda v: v if isinstance(v, str) else "")
def test_a_port_trains_an_epoch(name, kwargs, tmp_path):
    out = run(name, tmp_path, epochs=1, **kwargs)
    assert out["status"] in ("trained", "trained wrong"), out
    assert out["epochs_done"] == 1


def test_lbfgs_trains_or_is_refused_before_anything_is_written(tmp_path):
    try:
        out = run("time_sequence_prediction", tmp_path, epochs=1, limit=30)
    except Exception:
        assert not (tmp_path / "run").exists(), "refused after the run directory was written"
    else:
        assert out["epochs_done"] == 1


def test_batchnorm_with_a_one_sample_last_batch_trains_or_is_refused_naming_drop_last(tmp_path):
    try:
        out = run("mnist_rnn", tmp_path, epochs=1, limit=2 * 64 + 1)
    except Exception as exc:
        assert "drop_last" in str(exc) and steps_done(tmp_path / "run") == 0, exc
    else:
        assert out["epochs_done"] == 1


def test_three_element_samples_for_a_two_input_model_name_batch_fn(tmp_path):
    with pytest.raises(Exception, match="batch_fn"):
        run("siamese_network", tmp_path, epochs=1, limit=64, variant="naive")


def test_a_broadcasting_loss_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"(?s)\(.*1\).*\("):
        run("tabular_regression", tmp_path, epochs=1)
    assert steps_done(tmp_path / "run") == 0


def test_early_stopping_on_val_l1_keeps_the_lowest_error(tmp_path):
    out = run("regression", tmp_path, epochs=4, limit=640)
    assert out["best"] <= min(out["val_l1"]) + 1e-3, out  # val_l1 is rounded to 4 places


def test_a_large_vocabulary_keeps_the_run_dir_small(tmp_path):
    run("word_language_model", tmp_path, epochs=1, limit=2000)
    assert (tmp_path / "run" / "metrics.jsonl").stat().st_size < 5_000_000


def test_a_hugging_face_model_trains_on_its_own_loss(tmp_path):
    pytest.importorskip("transformers")
    out = run("glue", tmp_path, epochs=1, limit=64)
    assert out["epochs_done"] == 1


def test_a_warm_up_schedule_is_stepped_per_step(tmp_path):
    pytest.importorskip("transformers")
    out = run("glue", tmp_path, epochs=2, limit=96, variant="ce")
    assert out["epoch_lr"][0] > 0, out["epoch_lr"]


def test_runs_shows_the_monitored_value(tmp_path):
    run("multilabel", tmp_path, epochs=1, limit=50)
    listing = subprocess.run([sys.executable, "-m", "tuitrain", "runs", str(tmp_path)], capture_output=True, text=True)
    assert "val_hamming" in listing.stdout, listing.stdout
