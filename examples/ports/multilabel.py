"""A multi-label classifier (several labels per sample, BCE), ported to tuitrain.fit.

Original: DataScienceHamburg/PyTorchUltimateMaterial, 045_Classification/MultilabelClassification_end.py.
Model ``MultilabelNetwork(input_size=10, hidden_size=20, output_size=3)`` (Linear, ReLU, Linear,
Sigmoid) and ``nn.BCEWithLogitsLoss()`` unchanged (the sigmoid before a with-logits loss is the
original's; it still learns); Adam(lr=0.01), batch 10; its test figure is the subset accuracy
(``accuracy_score`` of the rounded outputs: all labels of a sample right).

Data: ``make_multilabel_classification(n_samples=10000, n_features=10, n_classes=3, n_labels=2)``'s
shape made in torch: 3 labels, each on with probability 2/3, and 10 count-like features drawn from
the labels' own word distributions, so the labels are learnable; no scikit-learn needed.

Glue: 4 lines: the ``tuitrain.fit`` call; ``subset_acc`` (the original's figure) and ``hamming``
(the fraction of wrong labels, the usual multi-label error) as metrics; ``monitor="val_hamming"``
(keep the model with the fewest wrong labels).

Judged by: the subset accuracy of the model fit returns (restore_best) against the most frequent
label set (the original's "naive classifier") and against the last epoch's.
Showed two defects, now fixed: ``val_hamming`` taken as higher-is-better: best.pt and restore_best kept
the epoch with the MOST wrong labels, and ``tuitrain runs`` showed best val_acc "-"; now
``val_hamming`` is min and ``tuitrain runs`` shows ``val_hamming`` and its best value.
"""

# ruff: noqa: UP008  (the original's code, kept as it is)

from __future__ import annotations

import torch
import torch.nn as nn
from _common import cli, last, verdict

import tuitrain


class MultilabelNetwork(nn.Module):
    def __init__(self, input_size, hidden_size, output_size):
        super(MultilabelNetwork, self).__init__()
        self.fc1 = nn.Linear(input_size, hidden_size)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden_size, output_size)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        x = self.fc1(x)
        x = self.relu(x)
        x = self.fc2(x)
        x = self.sigmoid(x)
        return x


def multilabel_data(n: int, seed: int, n_features: int = 10, n_classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """(x (n, 10) float counts, y (n, 3) float multi-hot), as make_multilabel_classification makes them."""
    words = torch.distributions.Dirichlet(torch.ones(n_features)).sample((n_classes,))  # each label's words
    gen = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, n_classes, generator=gen) < 2 / 3).float()
    y[y.sum(1) == 0, 0] = 1  # every sample has a label
    mix = (y @ words) / y.sum(1, keepdim=True)
    x = torch.stack([torch.multinomial(m, 50, replacement=True, generator=gen).bincount(minlength=n_features)
                     for m in mix]).float()
    return x, y


def main(epochs: int = 5, limit: int = 300, run_dir: str = "", headless: bool | None = None, variant: str = "") -> dict:
    torch.manual_seed(0)  # the labels' word distributions: one "language" for train and test
    X_train, y_train = multilabel_data(limit, seed=1)
    torch.manual_seed(0)
    X_test, y_test = multilabel_data(max(limit // 4, 50), seed=2)
    torch.manual_seed(3)
    model = MultilabelNetwork(input_size=X_train.shape[1], hidden_size=20, output_size=y_train.shape[1])
    loss_fn = nn.BCEWithLogitsLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    result = tuitrain.fit(model, (X_train, y_train), (X_test, y_test), loss_fn=loss_fn, optimizer=optimizer,
                          metrics={"subset_acc": lambda out, y: (out.round() == y).all(1).float().mean(),
                                   "hamming": lambda out, y: (out.round() != y).float().mean()},
                          monitor="val_hamming", batch_size=10, epochs=epochs,
                          run_dir=run_dir, headless=headless, name="multilabel")
    with torch.no_grad():
        test_acc = float((model(X_test).round() == y_test).all(1).float().mean())
    naive = float(torch.unique(y_test, dim=0, return_counts=True)[1].max()) / len(y_test)
    hamming = [round(r.get("val_hamming", float("nan")), 4) for r in result.history]
    wrong = []
    if not test_acc > naive + 0.2:
        wrong.append(f"subset accuracy {test_acc:.3f} near the naive {naive:.3f}")
    if result.best_epoch and hamming[result.best_epoch - 1] > min(hamming) + 0.01:
        wrong.append(f"restore_best kept epoch {result.best_epoch}: val_hamming {hamming[result.best_epoch - 1]} "
                     f"of {hamming}")
    return verdict(result, figure="subset acc", value=test_acc, expected=f"> {naive + 0.2:.2f} (naive {naive:.2f}; "
                   f"last epoch {last(result, 'val_subset_acc'):.2f})", ok=not wrong, reason="; ".join(wrong),
                   val_hamming=hamming)


if __name__ == "__main__":
    cli(main, __doc__, epochs=5, limit=300)
