"""Validation at epoch ends (evaluation.py): what a classification over many classes records, and
perplexity for language models."""

from __future__ import annotations

import math
import time

import torch
from torch import nn

import tuitrain
from tuitrain.confusion import CONFUSED_PAIRS, MATRIX_MAX_CLASSES
from tuitrain.rundir import read_records

VOCAB = 5000


class BigramLM(nn.Module):
    """A next-word model over a 5,000-word vocabulary: token ids in, (N, V) log-probabilities out."""

    def __init__(self, vocab: int = VOCAB, dim: int = 32):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.out = nn.Linear(dim, vocab)

    def forward(self, tokens):
        return torch.log_softmax(self.out(self.embed(tokens)), dim=1)


def _corpus(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(word, next word) pairs: each word is mostly followed by one of 3 successors."""
    gen = torch.Generator().manual_seed(seed)
    words = torch.randint(0, VOCAB, (n,), generator=gen)
    successor = (words * 7 + torch.randint(0, 3, (n,), generator=gen)) % VOCAB
    noise = torch.randint(0, VOCAB, (n,), generator=gen)
    return words, torch.where(torch.rand(n, generator=gen) < 0.9, successor, noise)


def _epoch_end_seconds(records: list[dict]) -> float:
    """From the last step record of epoch 1 to its epoch record: validation and the records written."""
    steps = [r for r in records if r["type"] == "step"]
    epoch = next(r for r in records if r["type"] == "epoch")
    return epoch["time"] - steps[-1]["time"]


def test_a_5000_word_language_model_gets_perplexity_and_a_small_run_dir(tmp_path):
    """Before: a 5,000 x 5,000 confusion matrix each epoch (25 M numbers, hundreds of MB of
    metrics.jsonl and seconds of Python at each epoch end). Now: top-5 accuracy, the most confused
    pairs, and perplexity, since the loss (NLLLoss over log-probabilities) is cross-entropy."""
    torch.manual_seed(0)
    result = tuitrain.fit(BigramLM(), _corpus(4000, 0), _corpus(2000, 1), loss_fn=nn.NLLLoss(), epochs=2,
                          batch_size=200, lr=0.01, headless=True, run_dir=str(tmp_path / "run"), device="cpu")
    assert result.status == "done"
    metrics = tmp_path / "run" / "metrics.jsonl"
    assert metrics.stat().st_size < 60_000, metrics.stat().st_size
    records = read_records(metrics)
    assert not [r for r in records if r["type"] == "confusion"]
    assert _epoch_end_seconds(records) < 3.0
    for epoch in result.history:
        assert math.isclose(epoch["val_ppl"], math.exp(epoch["val_loss"]), rel_tol=1e-9)
        assert 0 <= epoch["val_acc"] <= epoch["val_top5"] <= 1
        assert 0 < len(epoch["confused"]) <= CONFUSED_PAIRS
        counts = [n for _, _, n in epoch["confused"]]
        assert counts == sorted(counts, reverse=True) and all(t != p for t, p, _ in epoch["confused"])
    assert result.history[-1]["val_ppl"] < result.history[0]["val_ppl"] < VOCAB * 1.5
    assert not list((tmp_path / "run").glob("**/samples.jsonl")) or \
        (tmp_path / "run" / "samples.jsonl").stat().st_size < 60_000


def test_many_classes_counted_sparsely_match_a_dense_count(tmp_path):
    """The most confused pairs, val_acc and val_top5 agree with a count over the whole matrix."""
    torch.manual_seed(1)
    classes = MATRIX_MAX_CLASSES + 50
    x_val = torch.randn(600, 16)
    y_val = torch.randint(0, classes, (600,))
    model = nn.Linear(16, classes)
    result = tuitrain.fit(model, (torch.randn(300, 16), torch.randint(0, classes, (300,))), (x_val, y_val),
                          epochs=1, lr=1e-9, batch_size=100, headless=True, run_dir=str(tmp_path / "run"),
                          device="cpu", restore_best=False, optimizer="sgd")
    epoch = result.history[0]
    with torch.no_grad():
        out = model(x_val)
    pred = out.argmax(1)
    assert math.isclose(epoch["val_acc"], float((pred == y_val).float().mean()), abs_tol=1e-9)
    top5 = (out.topk(5, dim=1).indices == y_val[:, None]).any(1).float().mean()
    assert math.isclose(epoch["val_top5"], float(top5), abs_tol=1e-9)
    dense = torch.zeros(classes, classes, dtype=torch.long)
    dense.index_put_((y_val, pred), torch.ones(600, dtype=torch.long), accumulate=True)
    dense.fill_diagonal_(0)
    top_count = int(dense.max())
    assert epoch["confused"][0][2] == top_count
    for true, predicted, n in epoch["confused"]:
        assert dense[int(true), int(predicted)] == n
    assert "val_ppl" not in epoch  # float features: no language model, whatever the loss
    assert not [r for r in read_records(tmp_path / "run" / "metrics.jsonl") if r["type"] == "confusion"]


def test_a_text_classifier_gets_no_perplexity_and_a_small_one_keeps_its_matrix(tmp_path):
    """Token ids in, 3 classes out: the inputs range over more words than there are classes."""
    torch.manual_seed(2)
    tokens = torch.randint(0, 500, (256, 12))
    model = nn.Sequential(nn.Embedding(500, 8), nn.Flatten(), nn.Linear(96, 3))
    result = tuitrain.fit(model, (tokens, torch.randint(0, 3, (256,))), epochs=1, headless=True,
                          run_dir=str(tmp_path / "run"), device="cpu")
    epoch = result.history[0]
    assert "val_ppl" not in epoch and "val_top5" not in epoch and "confused" not in epoch
    assert [r for r in read_records(tmp_path / "run" / "metrics.jsonl") if r["type"] == "confusion"]


def test_a_character_model_under_the_default_loss_reports_perplexity(tmp_path):
    """A 30-character vocabulary (under MATRIX_MAX_CLASSES: its matrix stays) with the default loss."""
    torch.manual_seed(3)
    chars = torch.randint(0, 30, (512,))
    model = nn.Sequential(nn.Embedding(30, 8), nn.Linear(8, 30))
    start = time.monotonic()
    result = tuitrain.fit(model, (chars, (chars + 1) % 30), epochs=1, headless=True,
                          run_dir=str(tmp_path / "run"), device="cpu")
    assert time.monotonic() - start < 60
    epoch = result.history[0]
    assert math.isclose(epoch["val_ppl"], math.exp(epoch["val_loss"]))
    assert [r for r in read_records(tmp_path / "run" / "metrics.jsonl") if r["type"] == "confusion"]
