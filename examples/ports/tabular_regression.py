"""A tabular regression trainer on the diabetes data's shape, ported to tuitrain.fit.

Original: rahaahmadi/simpletrainer, examples/train_regression.py. Model ``nn.Sequential(Linear(10, 32),
ReLU(), Linear(32, 1))`` and ``nn.MSELoss()`` unchanged; Adam(lr=1e-3), batch 32, test batch 64,
10 epochs; the inputs standardised and the target standardised to a vector of shape (N,) (the
script's ``y_scaler.fit_transform(y.reshape(-1, 1)).ravel()``), so the model's (N, 1) outputs meet
(N,) targets, as in the original.

Data: scikit-learn's diabetes set's shape made in memory: 442 patients, 10 standardised features,
a target that a linear model explains about half of (diabetes' R^2 is ~0.5), split 80/20.

Glue: 1 line (the ``tuitrain.fit`` call).

Judged by: the test MSE of the model's predictions (computed with matching shapes) against the
variance of the target (1.0: what predicting the mean gets) and the noise floor (~0.5).
Shows as fixed: MSELoss of (N, 1) against (N,) broadcasts to (N, N) (the model
learned to predict the mean, torch's UserWarning the only sign); fit now refuses it before the run
directory is written, with a ValueError naming both shapes (the script's own bug: its targets need
``.view(-1, 1)`` or its outputs ``.squeeze(1)``).
"""

from __future__ import annotations

import torch
from _common import cli, verdict
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import tuitrain


def diabetes_like(seed: int = 42) -> tuple[torch.Tensor, torch.Tensor]:
    """(X (442, 10) standardised, y (442,)): y = a linear function of X plus noise of equal variance."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(442, 10, generator=gen)
    w = torch.tensor([0.0, -0.3, 1.3, 0.8, -0.5, 0.3, -0.2, 0.3, 1.0, 0.2])
    signal = X @ w
    y = signal + signal.std() * torch.randn(442, generator=gen)
    return X, y * 50 + 152  # the diabetes target's units


def main(epochs: int = 10, limit: int = 442, run_dir: str = "", headless: bool | None = None, variant: str = "") -> dict:
    torch.manual_seed(42)
    X, y = diabetes_like()
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(42))
    test, train = perm[: len(X) // 5], perm[len(X) // 5 :]
    X = (X - X[train].mean(0)) / X[train].std(0)  # StandardScaler().fit_transform
    y_scaled = (y - y[train].mean()) / y[train].std()  # y_scaler.fit_transform(...).ravel()
    X_train, X_test, y_train_scaled, y_test_scaled = X[train], X[test], y_scaled[train], y_scaled[test]

    train_loader = DataLoader(TensorDataset(X_train, y_train_scaled), batch_size=32, shuffle=True)
    test_loader = DataLoader(TensorDataset(X_test, y_test_scaled), batch_size=64)
    model = nn.Sequential(
        nn.Linear(X.shape[1], 32),
        nn.ReLU(),
        nn.Linear(32, 1)
    )
    criterion = nn.MSELoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    result = tuitrain.fit(model, train_loader, test_loader, loss_fn=criterion, optimizer=optimizer, epochs=epochs,
                          run_dir=run_dir, headless=headless, name="tabular_regression")
    with torch.no_grad():
        model.eval()
        mse = float(((model(X_test).squeeze(1) - y_test_scaled) ** 2).mean())
    variance = float(y_test_scaled.var())
    return verdict(result, figure="test MSE", value=mse, expected=f"< {0.8 * variance:.2f} (the mean: {variance:.2f}; "
                   f"noise floor ~0.5)", ok=mse < 0.8 * variance,
                   reason=f"predicts the mean: outputs (N, 1) vs targets (N,) broadcast to (N, N) in MSELoss; "
                          f"val_loss {result.history[-1]['val_loss']:.3f}" if result.history else "")


if __name__ == "__main__":
    cli(main, __doc__, epochs=10, limit=442)
