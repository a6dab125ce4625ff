"""What task.py decides on the first batch, under tuitrain.fit on real model shapes: a loss that
broadcasts is refused, warnings while training are recorded, and a Hugging Face-style model gets its
labels and trains on its own loss."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tuitrain
from tuitrain.rundir import read_records
from tuitrain.task import TargetError


def _fit(model, train, val=None, tmp_path=None, **kwargs):
    kwargs.setdefault("epochs", 2)
    kwargs.setdefault("batch_size", 16)
    return tuitrain.fit(model, train, val, headless=True, device="cpu", run_dir=str(tmp_path / "run"), **kwargs)


# ------------------------------------------------------------------------------- Hugging Face-style models
@dataclass
class SequenceClassifierOutput:
    """What transformers' models return: an object with ``loss`` (None without labels) and ``logits``."""

    loss: torch.Tensor | None
    logits: torch.Tensor


class TinySequenceClassifier(nn.Module):
    """BertForSequenceClassification's interface on a small model: ``forward(input_ids,
    attention_mask=None, labels=None)``, the loss computed inside when labels are given."""

    def __init__(self, as_dict: bool = False, takes_labels: bool = True):
        super().__init__()
        self.embed = nn.Embedding(200, 32)
        self.head = nn.Linear(32, 2)
        self.as_dict = as_dict
        if not takes_labels:
            self.forward = self._no_labels  # type: ignore[method-assign]

    def _logits(self, input_ids, attention_mask):
        mask = (attention_mask if attention_mask is not None else torch.ones_like(input_ids)).unsqueeze(-1).float()
        return self.head((self.embed(input_ids) * mask).sum(1) / mask.sum(1))

    def forward(self, input_ids, attention_mask=None, labels=None):
        logits = self._logits(input_ids, attention_mask)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        if self.as_dict:  # a ModelOutput as a dict leaves out what is None
            return {"logits": logits, **({"loss": loss} if loss is not None else {})}
        return SequenceClassifierOutput(loss, logits)

    def _no_labels(self, input_ids, attention_mask=None):
        return SequenceClassifierOutput(None, self._logits(input_ids, attention_mask))


def _sst2_like(n: int, seed: int) -> list[dict]:
    """Padded token ids, attention masks and labels as transformers' default_data_collator batches
    them; the label is 1 when the positive token 7 occurs."""
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(n):
        length = int(torch.randint(6, 16, (1,), generator=gen))
        ids = torch.randint(10, 200, (length,), generator=gen)
        label = int(torch.randint(0, 2, (1,), generator=gen))
        if label:
            ids[int(torch.randint(0, length, (1,), generator=gen))] = 7
        samples.append({"input_ids": F.pad(ids, (0, 16 - length)), "labels": torch.tensor(label),
                        "attention_mask": F.pad(torch.ones(length, dtype=torch.long), (0, 16 - length))})
    return samples


@pytest.mark.parametrize("as_dict", [False, True], ids=["object", "dict"])
def test_a_hugging_face_style_model_trains_on_its_own_loss_with_accuracy(tmp_path, as_dict):
    torch.manual_seed(0)
    model = TinySequenceClassifier(as_dict)
    result = _fit(model, _sst2_like(256, 0), _sst2_like(128, 1), tmp_path, epochs=3, lr=0.02)
    assert result.status == "done" and result.monitor == "val_acc"
    assert result.best_val_acc > 0.8, result.history  # chance: 0.5
    losses = [r["loss"] for r in read_records(tmp_path / "run" / "metrics.jsonl") if r["type"] == "step"]
    assert losses[-1] < losses[0]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["loss"] == "model"


def test_a_loss_fn_reading_outputs_loss_gets_the_labels_passed(tmp_path):
    """The GLUE script's ``loss = outputs.loss``: labels were stripped from the model's keyword
    arguments, so outputs.loss was None and the run failed at step 1 after the run dir existed."""
    torch.manual_seed(0)
    result = _fit(TinySequenceClassifier(), _sst2_like(128, 0), _sst2_like(64, 1), tmp_path,
                  loss_fn=lambda outputs, labels: outputs.loss)
    assert result.status == "done" and result.epochs_done == 2 and result.monitor == "val_loss"


def test_a_model_that_takes_no_labels_is_told_before_the_run_dir(tmp_path):
    with pytest.raises(TargetError, match=r"loss_fn returned NoneType, not a tensor \(a model computes its own loss"):
        _fit(TinySequenceClassifier(takes_labels=False), _sst2_like(64, 0), tmp_path=tmp_path,
             loss_fn=lambda outputs, labels: outputs.loss)
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------- a loss that broadcasts
def _diabetes_like(n: int = 442, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """sklearn's diabetes shape, as a tabular trainer feeds it: (N, 10) standardised features and a
    standardised target of shape (N,) (``y_scaler.fit_transform(...).ravel()``)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 10, generator=gen)
    y = x @ torch.linspace(-1, 1, 10) + 0.7 * torch.randn(n, generator=gen)
    return x, (y - y.mean()) / y.std()


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))  # outputs (N, 1)


@pytest.mark.parametrize("loss_fn", [nn.MSELoss(), nn.L1Loss(), nn.HuberLoss()], ids=["mse", "l1", "huber"])
def test_outputs_n_1_against_targets_n_are_refused_naming_both_shapes(tmp_path, loss_fn):
    """MSELoss broadcast (N, 1) against (N,) to (N, N): the run learned the targets' mean, silently."""
    with pytest.raises(ValueError, match=r"outputs are of shape \(N, 1\) float32 and the targets of shape \(N,\) "
                                         r"float32, which broadcast to \(N, N\): reshape") as info:
        _fit(_mlp(), _diabetes_like(), tmp_path=tmp_path, loss_fn=loss_fn)
    assert isinstance(info.value, TargetError) and "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_a_warning_the_loss_raises_on_the_first_batch_is_a_refusal_quoting_it(tmp_path):
    def mse(out, y):  # a function, not a loss module: only torch's warning tells
        return F.mse_loss(out, y)

    with pytest.raises(ValueError, match=r"the loss warned on the first batch \(outputs of shape \(N, 1\) float32, "
                                         r"targets of shape \(N,\) float32\): UserWarning: Using a target size"):
        _fit(_mlp(), _diabetes_like(), tmp_path=tmp_path, loss_fn=mse)
    assert not (tmp_path / "run").exists()


def test_the_same_data_reshaped_trains(tmp_path):
    x, y = _diabetes_like()
    torch.manual_seed(0)
    result = _fit(_mlp(), (x, y.view(-1, 1)), tmp_path=tmp_path, loss_fn=nn.MSELoss(), epochs=3, lr=0.01)
    assert result.status == "done" and result.history[-1]["val_loss"] < 0.8  # the targets' variance is 1


# ------------------------------------------------------------------------------- warnings while training
class _WarnsWhileTraining(nn.Module):
    """A regression MLP whose last batch of each epoch is smaller (442 = 13 x 32 + 26) and whose
    forward warns in training mode only (after the pre-flight check, which runs it in eval mode)."""

    def __init__(self):
        super().__init__()
        self.body = _mlp()

    def forward(self, x):
        if self.training and len(x) < 32:
            import warnings

            warnings.warn(f"a short batch of {len(x)} samples", UserWarning, stacklevel=2)
        return self.body(x).squeeze(1)


def test_warnings_while_training_are_events_and_progress_lines_once_each(tmp_path, capsys):
    torch.manual_seed(0)
    result = _fit(_WarnsWhileTraining(), _diabetes_like(), tmp_path=tmp_path, loss_fn=nn.MSELoss(), epochs=3,
                  batch_size=32)
    assert result.status == "done"
    events = [r for r in read_records(tmp_path / "run" / "metrics.jsonl") if r.get("event") == "warning"]
    assert len(events) == 1, events  # raised every epoch, recorded once
    assert events[0]["message"] == "a short batch of 14 samples" and events[0]["category"] == "UserWarning"
    assert events[0]["epoch"] == 1
    err = capsys.readouterr().err
    assert err.count("warning: UserWarning: a short batch of 14 samples") == 1
