"""pytorch/examples' word-level LSTM language model, ported to tuitrain.fit.

Original: pytorch/examples, word_language_model/main.py and model.py (BSD-3-Clause). Model
``RNNModel('LSTM', ntokens, 200, 200, 2, dropout=0.2)`` and its loss ``nn.NLLLoss()`` over the
model's log_softmax unchanged; plain SGD at lr 20 (the original's ``p.data.add_(p.grad, alpha=-lr)``),
gradient norm clipped at 0.25, bptt 35, batch 20, eval batch 10, and "lr /= 4 when the validation
loss did not improve" as ReduceLROnPlateau(factor=0.25, patience=0). Perplexity is what it prints.

Data: a generated corpus over a vocabulary of 3,848 words (the issue's case): Zipf-distributed words
where each word is followed, 90% of the time, by one of its own 4 successors; the rest of the time by
any word. A model that learns the successors beats the unigram perplexity by far; no download.

Glue: 5 lines: the ``tuitrain.fit`` call; ``batch_fn`` turns a batch of (35,)-token windows into
the model's (seq, batch) layout with a zero hidden state (fit shuffles windows, so the original's
hidden state carried from batch to batch cannot be: it keeps fit's shuffling);
``loss_fn`` applies the NLLLoss to element 0 of the model's (log_probs, hidden); a ``ppl`` metric;
``monitor="val_ppl"`` (the figure the original prints and keeps the best model by).

Judged by: validation perplexity after training against the unigram perplexity (what a model that
learned only word frequencies gets), and the restored best model's perplexity against the last
epoch's.
Shows: fixed (it wrote a 3,848 x 3,848 confusion matrix each epoch: tens of MB of
metrics.jsonl and seconds at each epoch end; now ``val_top5`` and the 10 most confused pairs, and
``val_ppl`` is this port's own metric) and fixed (``val_ppl`` taken as higher-is-better:
best.pt and restore_best keep the WORST epoch, so the model returned has the highest perplexity).
"""

# ruff: noqa: UP008  (the original's code, kept as it is)

from __future__ import annotations

import math
import random

import torch
import torch.nn as nn
import torch.nn.functional as F
from _common import cli, last, verdict

import tuitrain

NTOKENS = 3848
BPTT = 35


class RNNModel(nn.Module):
    """Container module with an encoder, a recurrent module, and a decoder."""

    def __init__(self, rnn_type, ntoken, ninp, nhid, nlayers, dropout=0.5, tie_weights=False):
        super(RNNModel, self).__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        if rnn_type in ['LSTM', 'GRU']:
            self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=dropout)
        else:
            try:
                nonlinearity = {'RNN_TANH': 'tanh', 'RNN_RELU': 'relu'}[rnn_type]
            except KeyError as e:
                raise ValueError( """An invalid option for `--model` was supplied,
                                 options are ['LSTM', 'GRU', 'RNN_TANH' or 'RNN_RELU']""") from e
            self.rnn = nn.RNN(ninp, nhid, nlayers, nonlinearity=nonlinearity, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)

        # Optionally tie weights as in:
        # "Using the Output Embedding to Improve Language Models" (Press & Wolf 2016)
        # https://arxiv.org/abs/1608.05859
        # and
        # "Tying Word Vectors and Word Classifiers: A Loss Framework for Language Modeling" (Inan et al. 2016)
        # https://arxiv.org/abs/1611.01462
        if tie_weights:
            if nhid != ninp:
                raise ValueError('When using the tied flag, nhid must be equal to emsize')
            self.decoder.weight = self.encoder.weight

        self.init_weights()

        self.rnn_type = rnn_type
        self.nhid = nhid
        self.nlayers = nlayers

    def init_weights(self):
        initrange = 0.1
        nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -initrange, initrange)

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output)
        decoded = decoded.view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        if self.rnn_type == 'LSTM':
            return (weight.new_zeros(self.nlayers, bsz, self.nhid),
                    weight.new_zeros(self.nlayers, bsz, self.nhid))
        else:
            return weight.new_zeros(self.nlayers, bsz, self.nhid)


def corpus(n_tokens: int, seed: int) -> torch.Tensor:
    """A token stream over NTOKENS words: Zipf frequencies, each word usually followed by one of 4 successors."""
    rules = random.Random(1234)  # the language: the same for train and validation
    words = list(range(NTOKENS))
    zipf = [1.0 / (rank + 1) for rank in words]
    successors = [rules.choices(words, zipf, k=4) for _ in words]
    rng = random.Random(seed)
    stream, w = [], 0
    for _ in range(n_tokens):
        w = rng.choices(successors[w], (0.5, 0.25, 0.15, 0.1))[0] if rng.random() < 0.9 else rng.choices(words, zipf)[0]
        stream.append(w)
    return torch.tensor(stream)


def windows(stream: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) as (n, BPTT) windows: the original's get_batch, one window a sample."""
    n = (len(stream) - 1) // BPTT
    return stream[: n * BPTT].view(n, BPTT), stream[1 : n * BPTT + 1].view(n, BPTT)


def unigram_ppl(train: torch.Tensor, val: torch.Tensor) -> float:
    counts = torch.bincount(train, minlength=NTOKENS).double() + 1
    return math.exp(-float(torch.log(counts / counts.sum())[val].mean()))


def main(epochs: int = 3, limit: int = 40000, run_dir: str = "", headless: bool | None = None, variant: str = "") -> dict:
    torch.manual_seed(1111)
    train_stream, val_stream = corpus(limit, seed=0), corpus(max(limit // 10, 2 * BPTT + 2), seed=1)
    model = RNNModel("LSTM", NTOKENS, 200, 200, 2, 0.2, False)
    criterion = nn.NLLLoss()
    result = tuitrain.fit(
        model, windows(train_stream), windows(val_stream), batch_size=20, val_batch_size=10, epochs=epochs,
        batch_fn=lambda b: ((b[0].t().contiguous(), model.init_hidden(len(b[0]))), b[1].t().reshape(-1)),
        loss_fn=lambda out, targets: criterion(out[0], targets),
        metrics={"ppl": lambda log_probs, targets: torch.exp(F.nll_loss(log_probs, targets))}, monitor="val_ppl",
        optimizer=lambda params: torch.optim.SGD(params, lr=20), grad_clip=0.25,
        scheduler=lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.25, patience=0),
        run_dir=run_dir, headless=headless, name="word_language_model")
    unigram = unigram_ppl(train_stream, val_stream)
    final = last(result, "val_ppl")
    x, y = windows(val_stream)
    with torch.no_grad():  # the original: "Load the best saved model. Run on test data."
        model.eval()
        out, _ = model(x.t().contiguous(), model.init_hidden(len(x)))
        restored = math.exp(float(criterion(out, y.t().reshape(-1))))
    best_ppl = [r.get("val_ppl", math.nan) for r in result.history]
    wrong = []
    if not final < 0.8 * unigram:
        wrong.append(f"val ppl {final:.0f} not below the unigram {unigram:.0f}")
    if restored > 1.02 * min(best_ppl, default=math.nan):
        wrong.append(f"restore_best returned the epoch-{result.best_epoch} model (ppl {restored:.0f}), "
                     f"not the lowest-ppl epoch ({min(best_ppl):.0f})")
    return verdict(result, figure="val_ppl", value=final, expected=f"< {0.8 * unigram:.0f} (unigram {unigram:.0f}, "
                   f"uniform {NTOKENS})", ok=not wrong, reason="; ".join(wrong), restored_ppl=restored,
                   epoch_ppl=best_ppl)


if __name__ == "__main__":
    cli(main, __doc__, epochs=3, limit=40000)
