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
