"""A convolutional auto-encoder for MNIST, ported to tuitrain.fit.

Original: L1aoXingyu/pytorch-beginner, 08-AutoEncoder/conv_autoencoder.py. Model ``autoencoder``
(two strided convolutions with max-pooling down to 8x2x2, three transposed convolutions back to
1x28x28, tanh) and ``nn.MSELoss()`` between the output and the input image unchanged;
Adam(lr=1e-3, weight_decay=1e-5), batch 128; images normalised to [-1, 1] as its
``Normalize((0.5,), (0.5,))``.

Data: generated MNIST-shaped digits on a clean background; each image is its own target.

Glue: 1 line (the ``tuitrain.fit`` call, with ``(images, images)`` as the data).

Judged by: val_loss after training against the MSE of a blank image (all background, where this
auto-encoder's 32-number code gets to first) and, for reference, of the mean image (which it beats
only after some 30 short epochs here; the original trains 100 epochs of 60,000).
Shows today: nothing wrong.
"""

# ruff: noqa: UP008  (the original's code, kept as it is)

from __future__ import annotations

import torch
from _common import cli, digits, last, verdict
from torch import nn

import tuitrain


class autoencoder(nn.Module):
    def __init__(self):
        super(autoencoder, self).__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 16, 3, stride=3, padding=1),  # b, 16, 10, 10
            nn.ReLU(True),
            nn.MaxPool2d(2, stride=2),  # b, 16, 5, 5
            nn.Conv2d(16, 8, 3, stride=2, padding=1),  # b, 8, 3, 3
            nn.ReLU(True),
            nn.MaxPool2d(2, stride=1)  # b, 8, 2, 2
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(8, 16, 3, stride=2),  # b, 16, 5, 5
            nn.ReLU(True),
            nn.ConvTranspose2d(16, 8, 5, stride=3, padding=1),  # b, 8, 15, 15
            nn.ReLU(True),
            nn.ConvTranspose2d(8, 1, 2, stride=2, padding=1),  # b, 1, 28, 28
            nn.Tanh()
        )

    def forward(self, x):
        x = self.encoder(x)
        x = self.decoder(x)
        return x


def main(epochs: int = 15, limit: int = 4000, run_dir: str = "", headless: bool | None = None, variant: str = "") -> dict:
    torch.manual_seed(0)
    img = (digits(limit, seed=0, noise=0.0)[0] - 0.5) / 0.5
    val = (digits(max(limit // 5, 128), seed=1, noise=0.0)[0] - 0.5) / 0.5
    model = autoencoder()
    criterion = nn.MSELoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    result = tuitrain.fit(model, (img, img), (val, val), loss_fn=criterion, optimizer=optimizer, batch_size=128,
                          epochs=epochs, run_dir=run_dir, headless=headless, name="conv_autoencoder")
    background = float(criterion(torch.full_like(val, -1.0), val))
    mean_image = float(criterion(img.mean(0, keepdim=True).expand_as(val), val))
    value = last(result, "val_loss")
    return verdict(result, figure="val_loss", value=value, expected=f"< {0.95 * background:.3f} (blank image "
                   f"{background:.3f}; mean image {mean_image:.3f})", ok=value < 0.95 * background,
                   reason="no better than a blank image")


if __name__ == "__main__":
    cli(main, __doc__, epochs=15, limit=4000)
