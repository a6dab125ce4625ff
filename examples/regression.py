"""Regression under tuitrain, as the notes' regression trainer does it: MSE, SGD with momentum,
early stopping on the validation loss, the best model kept, predictions on a test set to CSV.

    python examples/regression.py              # dashboard in a terminal
    python examples/regression.py --headless   # progress lines; same run directory

The data is generated (a noisy nonlinear function of 8 features; no download). While it trains,
the dashboard's keys work as on any run (p, r, s, q), and so do `tuitrain watch` and `tuitrain ctl`.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch
import torch.nn as nn

import tuitrain
from tuitrain import fmt


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (n, 8) and targets (n, 1): a smooth function of the inputs plus noise."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=gen)
    y = torch.sin(x[:, :1]) + 0.5 * x[:, 1:2] * x[:, 2:3] - 0.3 * x[:, 3:4] + 0.05 * torch.randn(n, 1, generator=gen)
    return x, y


class Regressor(nn.Module):
    """Two hidden layers of 64 units with ReLU, one output."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def main(epochs: int = 100, headless: bool | None = None, run_dir: str = "", out: str = ""):
    """Train, keep the best model (by val_loss), write test-set predictions (``out``, by default
    predictions.csv in the run directory, not wherever the script was started); return the Result."""
    torch.manual_seed(0)  # fit does not re-initialise the model: seed before building it
    model = Regressor()
    result = tuitrain.fit(
        model, make_data(4000, seed=0), make_data(800, seed=1),
        loss_fn=nn.MSELoss(),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.01, momentum=0.9),
        metrics={"mae": lambda pred, y: (pred - y).abs().mean()},
        monitor="val_loss", early_stopping=5, restore_best=True,  # the model ends with best.pt's weights
        epochs=epochs, batch_size=64, headless=headless, run_dir=run_dir,
    )
    x_test, y_test = make_data(500, seed=2)
    predictions = tuitrain.predict(model, x_test)
    out = out or str(Path(result.run_dir) / "predictions.csv")
    with open(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["prediction", "target"])
        writer.writerows(zip(predictions[:, 0].tolist(), y_test[:, 0].tolist(), strict=True))
    test_mse = float(((predictions - y_test) ** 2).mean())
    print(f"best val_loss {fmt.loss(result.best)} at epoch {result.best_epoch} of {result.epochs_done}; "
          f"test MSE {fmt.loss(test_mse)}; predictions in {Path(out).resolve()}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--headless", action="store_true", help="progress lines instead of the dashboard")
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args()
    main(args.epochs, headless=True if args.headless else None)
