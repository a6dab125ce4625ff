"""Every model's forward on its data shape; the cnn's state_dict matches the notes' Network."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tuitrain import models
from tuitrain.errors import ModelError


@pytest.mark.parametrize("name", ["cnn", "lenet", "mlp", "cnn-bn"])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_forward_shapes(name, shape):
    model = models.build_model(name, shape)
    out = model(torch.randn(4, *shape))
    assert out.shape == (4, 10)


def test_cnn_is_the_notes_network():
    """Written independently, as in the notes; strict loads both ways."""

    class NotesNetwork(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(in_channels=1, out_channels=6, kernel_size=5)
            self.conv2 = nn.Conv2d(in_channels=6, out_channels=12, kernel_size=5)
            self.fc1 = nn.Linear(in_features=12 * 4 * 4, out_features=120)
            self.fc2 = nn.Linear(in_features=120, out_features=60)
            self.out = nn.Linear(in_features=60, out_features=10)

        def forward(self, t):
            t = F.max_pool2d(F.relu(self.conv1(t)), kernel_size=2, stride=2)
            t = F.max_pool2d(F.relu(self.conv2(t)), kernel_size=2, stride=2)
            t = F.relu(self.fc1(t.reshape(-1, 12 * 4 * 4)))
            return self.out(F.relu(self.fc2(t)))

    ours = models.build_model("cnn", (1, 28, 28))
    theirs = NotesNetwork()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(ours(x), theirs(x))


def test_user_model(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text("import torch.nn as nn\nclass Tiny(nn.Module):\n"
                    "    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(784, 10)\n"
                    "    def forward(self, x):\n        return self.fc(x.flatten(1))\n")
    model = models.build_model(f"{path}:Tiny", (1, 28, 28))
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ModelError, match="no nn.Module subclass or function named Nope"):
        models.build_model(f"{path}:Nope", (1, 28, 28))
    with pytest.raises(ModelError, match="does not exist"):
        models.build_model(f"{tmp_path / 'missing.py'}:Tiny", (1, 28, 28))


def test_summary_table():
    summary = models.summarize(models.build_model("cnn", (1, 28, 28)), (1, 28, 28))
    assert summary.total_params == 32998 == summary.trainable_params
    names = [r.name for r in summary.rows]
    assert names == ["conv1", "conv2", "fc1", "fc2", "out"]
    assert summary.rows[2].output_shape == (1, 120)
    assert models.ModelSummary.from_dict(summary.to_dict()) == summary
    text = models.format_summary(summary)
    assert "Total params: 32,998" in text


def test_a_model_file_calling_sys_exit_is_a_one_line_model_error(tmp_path):
    script = tmp_path / "script.py"
    script.write_text("import sys\nsys.exit(7)\n")
    with pytest.raises(ModelError) as info:  # before: SystemExit(7) went through, exit 7 without a word
        models.load_user_model(f"{script}:Net")
    assert "sys.exit(7)" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.slow
def test_cli_with_a_model_file_calling_sys_exit_exits_2_with_one_line(tmp_path):
    import subprocess
    import sys

    from tests.helpers import ROOT

    script = tmp_path / "script.py"
    script.write_text("import sys\nsys.exit(7)\n")
    done = subprocess.run([sys.executable, "-m", "tuitrain", "synthetic", "--model", f"{script}:Net", "--headless",
                           "--limit", "200", "--run-dir", str(tmp_path / "run")], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    assert [ln for ln in done.stderr.splitlines() if ln.startswith("tuitrain: error:")] and "sys.exit(7)" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "run").exists()


COMPLEX_MODEL = '''
import torch
from torch import nn


class Complex(nn.Module):
    def __init__(self, in_channels=1, image_size=28, num_classes=10):
        super().__init__()
        self.w = nn.Parameter(torch.randn(in_channels * image_size * image_size, num_classes, dtype=torch.cfloat) / 100)

    def forward(self, x):
        return (x.flatten(1).to(torch.cfloat) @ self.w).abs()
'''


@pytest.mark.slow
def test_a_model_with_complex_parameters_trains_and_resumes(small_config, tmp_path):
    """Before: the divergence guard's check raised for ComplexFloat and the run failed at step 1."""
    from tests.helpers import EngineRun
    from tuitrain import checkpoints

    path = tmp_path / "complexmodel.py"
    path.write_text(COMPLEX_MODEL)
    run = EngineRun(small_config(model=f"{path}:Complex", epochs=2, limit=500, hist_every=1)).start()
    result = run.join(120)
    assert result.status == "done", result.message
    assert result.history[-1]["val_acc"] > 0.5
    hist = [r for r in run.records if r.get("type") == "hist"]
    assert hist and hist[-1]["layers"][0]["w"] is not None
    last = checkpoints.load_checkpoint(result.last_checkpoint)
    checkpoints.check_payload("last.pt", last, run.engine.model, run.engine.optimizer)
