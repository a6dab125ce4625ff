"""pytorch/examples' MNIST LSTM (rows of the image as a sequence), ported to tuitrain.fit.

Original: pytorch/examples, mnist_rnn/main.py (BSD-3-Clause). Model ``Net`` (LSTM(28, 64), then
BatchNorm1d(64), dropout, two linear layers, log_softmax) and its loss ``F.nll_loss`` unchanged;
Adadelta(lr=0.1), StepLR(step_size=1, gamma=0.7) once an epoch, batch 64, as there.

Data: generated MNIST-shaped digits (``_common.digits``), normalised as the original's transform.
The default training set has 3,841 samples = 60 x 64 + 1: its last batch holds ONE sample, as any
data set whose size mod 64 is 1 does (the original's 60,000 does not; a user's 60,001 would).

Glue: 1 line (the ``tuitrain.fit`` call).

Judged by: val_acc against chance (10%): above 30% after 3 short epochs (Adadelta at lr 0.1 under
StepLR learns slowly; the original trains 14 epochs of 60,000 to reach 98%).
Shows: fixed (BatchNorm with a one-sample last batch, 3,841 mod 64 = 1): the
one-sample batch is left out of each epoch before training starts, with a ``notice`` event and line
(drop_last=True); it failed at the end of epoch 1 with torch's "Expected more than 1 value per
channel when training".
"""

# ruff: noqa: UP008  (the original's code, kept as it is)

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from _common import cli, digits, last, verdict
from torch.optim.lr_scheduler import StepLR

import tuitrain


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.rnn = nn.LSTM(input_size=28, hidden_size=64, batch_first=True)
        self.batchnorm = nn.BatchNorm1d(64)
        self.dropout1 = nn.Dropout2d(0.25)
        self.dropout2 = nn.Dropout2d(0.5)
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, input):
        # Shape of input is (batch_size,1, 28, 28)
        # converting shape of input to (batch_size, 28, 28)
        # as required by RNN when batch_first is set True
        input = input.reshape(-1, 28, 28)
        output, hidden = self.rnn(input)

        # RNN output shape is (seq_len, batch, input_size)
        # Get last output of RNN
        output = output[:, -1, :]
        output = self.batchnorm(output)
        output = self.dropout1(output)
        output = self.fc1(output)
        output = F.relu(output)
        output = self.dropout2(output)
        output = self.fc2(output)
        output = F.log_softmax(output, dim=1)
        return output


def data(n: int, seed: int) -> torch.utils.data.TensorDataset:
    x, y = digits(n, seed)
    return torch.utils.data.TensorDataset((x - 0.1307) / 0.3081, y)


def main(epochs: int = 3, limit: int = 3841, run_dir: str = "", headless: bool | None = None, variant: str = "") -> dict:
    torch.manual_seed(1)
    train_loader = torch.utils.data.DataLoader(data(limit, seed=0), batch_size=64, shuffle=True)
    test_loader = torch.utils.data.DataLoader(data(max(limit // 6, 100), seed=1), batch_size=1000, shuffle=True)
    model = Net()
    optimizer = optim.Adadelta(model.parameters(), lr=0.1)
    result = tuitrain.fit(model, train_loader, test_loader, loss_fn=F.nll_loss, optimizer=optimizer,
                          scheduler=lambda opt: StepLR(opt, step_size=1, gamma=0.7), epochs=epochs,
                          run_dir=run_dir, headless=headless, name="mnist_rnn")
    acc = last(result, "val_acc")
    return verdict(result, figure="val_acc", value=acc, expected="> 0.3 (chance 0.1)", ok=acc > 0.3,
                   reason="val_acc near chance")


if __name__ == "__main__":
    cli(main, __doc__, epochs=3, limit=3841)
