"""pytorch/examples' sine-wave LSTM (time_sequence_prediction), ported to tuitrain.fit.

Original: pytorch/examples, time_sequence_prediction/train.py (the version with ``--device``,
commit 04b1f3ce) and generate_sine_wave.py (BSD-3-Clause). Model ``Sequence`` (two LSTMCells of 51, a linear read-out; float64) and
``nn.MSELoss()`` unchanged; LBFGS(lr=0.8) over the whole training set as one batch (97 waves), one
optimizer step per "STEP" (an epoch here), 15 steps.

Data: generate_sine_wave.py's waves, made in memory: 100 sine waves of period 2*pi*20, each shifted
by a random offset; waves 3.. train, 0..2 test; input wave[:-1], target wave[1:]. ``--limit`` is the
wave length (the original: 1000; 200 here by default to keep the short run short).

Glue: 1 line (the ``tuitrain.fit`` call, batch = the whole set as in the original).

Judged by: test MSE after training against the variance of the waves (a model predicting 0).
Shows: fixed (an optimizer whose step needs a closure): tuitrain passes LBFGS a
closure, as Lightning does, and the port trains (it failed at step 1 with "LBFGS.step() missing 1
required positional argument: 'closure'", after the run directory existed).
"""

# ruff: noqa: B007, UP008  (the original's code, kept as it is)

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
from _common import cli, verdict

import tuitrain


class Sequence(nn.Module):
    def __init__(self):
        super(Sequence, self).__init__()
        self.lstm1 = nn.LSTMCell(1, 51)
        self.lstm2 = nn.LSTMCell(51, 51)
        self.linear = nn.Linear(51, 1)
        self.dummy_param = nn.Parameter(torch.empty(0))

    def forward(self, input, future = 0):
        outputs = []
        device = self.dummy_param.device
        h_t = torch.zeros(input.size(0), 51, dtype=torch.double).to(device)
        c_t = torch.zeros(input.size(0), 51, dtype=torch.double).to(device)
        h_t2 = torch.zeros(input.size(0), 51, dtype=torch.double).to(device)
        c_t2 = torch.zeros(input.size(0), 51, dtype=torch.double).to(device)

        for input_t in input.split(1, dim=1):
            h_t, c_t = self.lstm1(input_t, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        for i in range(future):# if we should predict the future
            h_t, c_t = self.lstm1(output, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        outputs = torch.cat(outputs, dim=1)
        return outputs


def sine_waves(length: int, n: int = 100, period: int = 20) -> np.ndarray:
    """generate_sine_wave.py: n waves of ``length`` points, randomly shifted."""
    np.random.seed(2)
    x = np.empty((n, length), 'int64')
    x[:] = np.array(range(length)) + np.random.randint(-4 * period, 4 * period, n).reshape(n, 1)
    return np.sin(x / 1.0 / period).astype('float64')


def main(epochs: int = 15, limit: int = 200, run_dir: str = "", headless: bool | None = None, variant: str = "") -> dict:
    np.random.seed(0)
    torch.manual_seed(0)
    data = torch.from_numpy(sine_waves(limit))
    input, target = data[3:, :-1], data[3:, 1:]
    test_input, test_target = data[:3, :-1], data[:3, 1:]
    seq = Sequence().double()
    criterion = nn.MSELoss()
    optimizer = optim.LBFGS(seq.parameters(), lr=0.8)
    result = tuitrain.fit(seq, (input, target), (test_input, test_target), loss_fn=criterion, optimizer=optimizer,
                          batch_size=len(input), epochs=epochs, run_dir=run_dir, headless=headless,
                          name="time_sequence_prediction")
    with torch.no_grad():
        seq.eval()
        test_loss = float(criterion(seq(test_input), test_target))
    floor = float(test_target.pow(2).mean())
    return verdict(result, figure="test MSE", value=test_loss, expected=f"< {0.01 * floor:.4f} (predicting 0: {floor:.3f})",
                   ok=test_loss < 0.01 * floor, reason="test MSE not below 1% of the waves' power")


if __name__ == "__main__":
    cli(main, __doc__, epochs=15, limit=200)
