"""pytorch/examples' sub-pixel CNN super-resolution (ESPCN), ported to tuitrain.fit.

Original: pytorch/examples, super_resolution/main.py, model.py and data.py (BSD-3-Clause). Model
``Net(upscale_factor)`` (4 convolutions, PixelShuffle) and ``nn.MSELoss()`` unchanged; Adam(lr=0.01),
batch 64, test batch 10; the test figure is the average PSNR, ``10 * log10(1 / mse)`` per batch.

Data: BSD300-like images made in memory: 1/f-spectrum noise (natural images' statistics) plus a few
hard edges, as the Y channel in [0, 1]; the target is a crop of ``crop`` pixels (the original:
256 - 256 % factor), the input that crop downscaled by the factor (antialiased, as torchvision's
Resize). Factor 3, crop 48 (inputs 16x16) to keep a short run short.

Glue: 2 lines: the ``tuitrain.fit`` call; the ``psnr`` metric (the test loader's batch size 10 is
fit's validation batch size: it once needed ``val_batch_size=10``).

Judged by: val_psnr after training against the PSNR of the mean image (what a net that learned
nothing gets; above it by 2 dB after 4 short epochs) and of plain bicubic upscaling (what ESPCN
beats after full training).
Shows: nothing wrong.
"""

# ruff: noqa: UP008  (the original's code, kept as it is)

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.init as init
import torch.optim as optim
from _common import cli, last, verdict
from torch.utils.data import DataLoader, TensorDataset

import tuitrain

UPSCALE = 3
CROP = 48


class Net(nn.Module):
    def __init__(self, upscale_factor):
        super(Net, self).__init__()

        self.relu = nn.ReLU()
        self.conv1 = nn.Conv2d(1, 64, (5, 5), (1, 1), (2, 2))
        self.conv2 = nn.Conv2d(64, 64, (3, 3), (1, 1), (1, 1))
        self.conv3 = nn.Conv2d(64, 32, (3, 3), (1, 1), (1, 1))
        self.conv4 = nn.Conv2d(32, upscale_factor ** 2, (3, 3), (1, 1), (1, 1))
        self.pixel_shuffle = nn.PixelShuffle(upscale_factor)

        self._initialize_weights()

    def forward(self, x):
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        x = self.relu(self.conv3(x))
        x = self.pixel_shuffle(self.conv4(x))
        return x

    def _initialize_weights(self):
        init.orthogonal_(self.conv1.weight, init.calculate_gain('relu'))
        init.orthogonal_(self.conv2.weight, init.calculate_gain('relu'))
        init.orthogonal_(self.conv3.weight, init.calculate_gain('relu'))
        init.orthogonal_(self.conv4.weight)


def images(n: int, seed: int, size: int = CROP) -> torch.Tensor:
    """(n, 1, size, size) natural-looking Y channels: 1/f noise plus random straight edges, in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    f = torch.fft.fftfreq(size).abs()
    radius = (f[:, None] ** 2 + f[None, :] ** 2).sqrt().clamp(min=1.0 / size)
    spectrum = torch.randn(n, size, size, dtype=torch.complex64, generator=gen) / radius
    x = torch.fft.ifft2(spectrum).real
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for _ in range(3):  # hard edges: what super-resolution is about
        angle, offset, step = torch.rand(3, n, 1, 1, generator=gen)
        side = (xx * torch.cos(angle * math.pi) + yy * torch.sin(angle * math.pi)) > offset * size
        x = x + (step - 0.5) * 2 * x.std() * side
    x = (x - x.amin((1, 2), keepdim=True)) / (x.amax((1, 2), keepdim=True) - x.amin((1, 2), keepdim=True))
    return x[:, None]


def pairs(n: int, seed: int) -> TensorDataset:
    """(input, target) as data.py makes them: the target crop, and it downscaled by UPSCALE."""
    target = images(n, seed)
    return TensorDataset(F.interpolate(target, scale_factor=1 / UPSCALE, mode="bilinear", antialias=True), target)


def psnr(prediction, target):
    return 10 * torch.log10(1 / F.mse_loss(prediction, target))


def main(epochs: int = 4, limit: int = 1280, run_dir: str = "", headless: bool | None = None, variant: str = "") -> dict:
    torch.manual_seed(123)
    train_set, test_set = pairs(limit, seed=0), pairs(max(limit // 4, 20), seed=1)
    training_data_loader = DataLoader(dataset=train_set, batch_size=64, shuffle=True)
    testing_data_loader = DataLoader(dataset=test_set, batch_size=10, shuffle=False)
    model = Net(upscale_factor=UPSCALE)
    criterion = nn.MSELoss()
    optimizer = optim.Adam(model.parameters(), lr=0.01)
    result = tuitrain.fit(model, training_data_loader, testing_data_loader, loss_fn=criterion, optimizer=optimizer,
                          metrics={"psnr": psnr}, epochs=epochs,
                          run_dir=run_dir, headless=headless, name="super_resolution")
    x, y = test_set.tensors
    mean_psnr = float(psnr(y.mean().expand_as(y), y))
    bicubic_psnr = float(psnr(F.interpolate(x, scale_factor=UPSCALE, mode="bicubic").clamp(0, 1), y))
    value = last(result, "val_psnr")
    return verdict(result, figure="val_psnr dB", value=value,
                   expected=f"> {mean_psnr + 2:.1f} (mean image {mean_psnr:.1f}; bicubic {bicubic_psnr:.1f})",
                   ok=value > mean_psnr + 2, reason="no better than the mean image")


if __name__ == "__main__":
    cli(main, __doc__, epochs=4, limit=1280)
