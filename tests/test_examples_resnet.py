"""examples/resnet.py, the model the README's ``--model FILE:NAME`` example names: the file
it names ships and trains."""

from __future__ import annotations

import re

import pytest
import torch

from tests.helpers import ROOT
from tuitrain.errors import ModelError
from tuitrain.models import build_model

RESNET = str(ROOT / "examples" / "resnet.py")


def test_every_model_file_the_readme_names_is_shipped():
    commands = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("tuitrain ")]
    named = [found for line in commands for found in re.findall(r"--model (\S+\.py):(\w+)", line)]
    assert ("examples/resnet.py", "make_resnet") in named
    for path, name in named:
        assert (ROOT / path).is_file(), path
        assert f"def {name}(" in (ROOT / path).read_text(), (path, name)


@pytest.mark.slow
@pytest.mark.parametrize(("depth", "width", "shape"), [(18, 0.5, (1, 28, 28)), (10, 0.25, (3, 32, 32))])
def test_resnet_builds_and_runs_through_the_model_loader(depth, width, shape):
    model = build_model(f"{RESNET}:make_resnet", shape, 7, {"depth": depth, "width": width})
    model.eval()
    assert model(torch.randn(2, *shape)).shape == (2, 7)
    assert model.stem[0].in_channels == shape[0]  # in_channels came from the data


@pytest.mark.parametrize("args", [{"depth": 50}, {"width": 0}])
def test_resnet_refuses_what_it_cannot_build(args):
    with pytest.raises(ModelError, match="depth must be one of|width must be above 0"):
        build_model(f"{RESNET}:make_resnet", (1, 28, 28), 10, args)
