"""pytorch/examples' MNIST CNN, ported to tuitrain.fit.

Original: pytorch/examples, mnist/main.py (BSD-3-Clause). Model ``Net`` and its loss
(``F.nll_loss`` over the model's log_softmax) unchanged; Adadelta(lr=1.0), StepLR(step_size=1,
gamma=0.7) stepped once an epoch, batch 64, test batch 1000, as there.

Data: generated MNIST-shaped digits (``_common.digits``), normalised with MNIST's (0.1307, 0.3081)
as the original's transform does; no download.

Glue: 1 line (the ``tuitrain.fit`` call with the original's loss, optimizer and schedule as
arguments); the original's train()/test() loops, device code and argparse (about 45 lines) are gone.

Judged by: val_acc after training, against chance (10%).
Shows: fixed (the test DataLoader's batch size 1000 is used for validation, and
config.json says val_batch_size 1000; it validated in batches of 64). ``--variant resume`` trains
epochs-1 epochs, then resumes from that run's last.pt into a new run directory (fixed: the
resumed run's best_checkpoint is its own copy of the best.pt that its best and best_epoch name).
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
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = F.relu(x)
        x = self.conv2(x)
        x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = F.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        output = F.log_softmax(x, dim=1)
        return output


def data(n: int, seed: int) -> torch.utils.data.TensorDataset:
    x, y = digits(n, seed)
    return torch.utils.data.TensorDataset((x - 0.1307) / 0.3081, y)


def main(epochs: int = 3, limit: int = 2000, run_dir: str = "", headless: bool | None = None, variant: str = "") -> dict:
    torch.manual_seed(1)
    train_loader = torch.utils.data.DataLoader(data(limit, seed=0), batch_size=64, shuffle=True)
    test_loader = torch.utils.data.DataLoader(data(max(limit // 6, 100), seed=1), batch_size=1000)

    def fit(epochs: int, run_dir: str, resume: str = ""):
        model = Net()
        optimizer = optim.Adadelta(model.parameters(), lr=1.0)
        return tuitrain.fit(model, train_loader, test_loader, loss_fn=F.nll_loss, optimizer=optimizer,
                            scheduler=lambda opt: StepLR(opt, step_size=1, gamma=0.7), epochs=epochs,
                            run_dir=run_dir, headless=headless, name="mnist", resume=resume)

    if variant == "resume":  # train, then resume from its last.pt into a new run directory
        first = fit(max(epochs - 1, 1), f"{run_dir}-first" if run_dir else "")
        result = fit(epochs, run_dir, resume=first.last_checkpoint or "")
        ok = result.best_checkpoint is not None and result.best_epoch <= result.epochs_done
        return verdict(result, figure="best_checkpoint", value=str(result.best_checkpoint),
                       expected="a best.pt of the resumed run", ok=ok,
                       reason=f"best_checkpoint {result.best_checkpoint}, best {result.best} from epoch "
                              f"{result.best_epoch} (the first run's {first.best_epoch})")
    result = fit(epochs, run_dir)
    acc = last(result, "val_acc")
    return verdict(result, figure="val_acc", value=acc, expected="> 0.9 (chance 0.1)", ok=acc > 0.9,
                   reason="val_acc near chance")


if __name__ == "__main__":
    cli(main, __doc__, epochs=3, limit=2000)
