"""Training metrics accumulated on the device and read in one host sync per logging interval."""

from __future__ import annotations

import time

import torch


class MetricWindow:
    """Loss sum, correct count, sample count and the divergence flag since the last record.

    Everything stays on the training device between records: adding a step's loss is an in-place
    device op, never a ``.item()``. :meth:`read` is the interval's one sync.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.loss = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.bad = torch.zeros((), device=device)
        self.count = 0
        self.started = time.monotonic()
        self.epoch_loss = 0.0
        self.epoch_correct = 0.0
        self.epoch_count = 0

    def reset(self) -> None:
        """Start a new logging interval (epoch totals are kept)."""
        self.loss.zero_()
        self.correct.zero_()
        self.bad.zero_()
        self.count = 0
        self.started = time.monotonic()

    def reset_epoch(self) -> None:
        """Start a new epoch's totals."""
        self.epoch_loss = self.epoch_correct = 0.0
        self.epoch_count = 0

    def to(self, device: torch.device) -> None:
        """Follow the run to another device."""
        self.loss, self.correct, self.bad = self.loss.to(device), self.correct.to(device), self.bad.to(device)
        self.device = device

    def add(self, loss: torch.Tensor, n: int, correct: torch.Tensor | None) -> None:
        """One batch's mean loss over ``n`` samples and its correct count (classification)."""
        self.loss.add_(loss.detach().float(), alpha=n)
        if correct is not None:
            self.correct += correct
        self.count += n

    def flag(self, found_inf: torch.Tensor) -> None:
        """The divergence guard's flag of one optimizer step (a non-finite loss shows in the sum)."""
        self.bad.add_(found_inf)

    def read(self, grad_norm: torch.Tensor, all_sum=None) -> tuple[float, float, float, float, int]:
        """(loss_sum, correct, bad, grad_norm, count): the one host sync of an interval.

        ``all_sum``: in a distributed run, sums the window over ranks first.
        """
        window = torch.stack([self.loss, self.correct.float(), self.bad.float(), grad_norm.to(self.device).float()])
        count = self.count
        if all_sum is not None:
            window, count = all_sum(window, count)
        loss_sum, correct, bad, norm = window.tolist()
        self.epoch_loss += loss_sum
        self.epoch_correct += correct
        self.epoch_count += count
        return loss_sum, correct, bad, norm, count

    @property
    def elapsed(self) -> float:
        """Seconds since the interval started."""
        return max(time.monotonic() - self.started, 1e-9)

    def epoch_means(self) -> tuple[float, float]:
        """Mean training loss and accuracy of the epoch so far."""
        count = max(self.epoch_count, 1)
        return self.epoch_loss / count, self.epoch_correct / count


def grad_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The global L2 norm of ``grads`` as a device tensor (no host sync); 0 without gradients."""
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
