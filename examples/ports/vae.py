"""pytorch/examples' variational auto-encoder, ported to tuitrain.fit.

Original: pytorch/examples, vae/main.py (BSD-3-Clause). Model ``VAE`` (784-400-20 encoder, 20-400-784
decoder) and ``loss_function`` (BCE + KLD, summed over the batch) unchanged; Adam(lr=1e-3), batch 128.

Data: generated MNIST-shaped digits in [0, 1] on a clean background (the original's
``transforms.ToTensor()`` of MNIST); the
target of each image is the image itself.

Glue: 3 lines: the ``tuitrain.fit`` call; ``loss_fn`` unpacks the model's (recon, mu, logvar)
tuple into ``loss_function``; the reconstruction term is reported as a metric ``bce``. The KLD term
cannot be: a metric gets only element 0 of a tuple output (recon), never mu and logvar.

Judged by: val_loss per image (the original's "Test set loss", sum / number of images) against
the first epoch's and against the loss of predicting the mean image with a standard-normal code.
``val_bce`` is lower-is-better (it was once taken as higher-is-better, were it monitored). The
monitored val_loss is right. The run's val_loss is the
batch mean of a per-batch SUM, not the per-image figure the original prints.
"""

# ruff: noqa: UP008  (the original's code, kept as it is)

from __future__ import annotations

import torch
import torch.utils.data
from _common import cli, digits, last, verdict
from torch import nn
from torch.nn import functional as F

import tuitrain


class VAE(nn.Module):
    def __init__(self):
        super(VAE, self).__init__()

        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5*logvar)
        eps = torch.randn_like(std)
        return mu + eps*std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


# Reconstruction + KL divergence losses summed over all elements and batch
def loss_function(recon_x, x, mu, logvar):
    BCE = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction='sum')

    # see Appendix B from VAE paper:
    # Kingma and Welling. Auto-Encoding Variational Bayes. ICLR, 2014
    # https://arxiv.org/abs/1312.6114
    # 0.5 * sum(1 + log(sigma^2) - mu^2 - sigma^2)
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())

    return BCE + KLD


def main(epochs: int = 3, limit: int = 4000, run_dir: str = "", headless: bool | None = None, variant: str = "") -> dict:
    torch.manual_seed(1)
    x_train, _ = digits(limit, seed=0, noise=0.0)
    x_test, _ = digits(max(limit // 6, 128), seed=1, noise=0.0)
    model = VAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    result = tuitrain.fit(
        model, (x_train, x_train), (x_test, x_test), optimizer=optimizer, batch_size=128, epochs=epochs,
        loss_fn=lambda out, x: loss_function(out[0], x, out[1], out[2]),
        metrics={"bce": lambda recon, x: F.binary_cross_entropy(recon, x.view(-1, 784), reduction="sum")},
        run_dir=run_dir, headless=headless, name="vae")
    with torch.no_grad():  # the original's test(): summed loss over the test set / its size
        model.eval()
        recon, mu, logvar = model(x_test)
        per_image = float(loss_function(recon, x_test, mu, logvar)) / len(x_test)
        mean_image = x_train.mean(0, keepdim=True).clamp(1e-4, 1 - 1e-4).expand_as(x_test).reshape(-1, 784)
        baseline = float(F.binary_cross_entropy(mean_image, x_test.view(-1, 784), reduction="sum")) / len(x_test)
    first = result.history[0]["val_loss"] / 128 if result.history else float("nan")
    return verdict(result, figure="test loss/image", value=per_image,
                   expected=f"< {baseline:.1f}, the mean image (epoch 1 ~{first:.1f})",
                   ok=per_image < baseline, reason="no better than the mean image",
                   val_bce=last(result, "val_bce"))


if __name__ == "__main__":
    cli(main, __doc__, epochs=3, limit=4000)
