"""Image segmentation with a U-Net under tuitrain.fit: the Carvana car-mask task.

Model: this port's own small implementation of the U-Net architecture (Ronneberger, Fischer and
Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation", MICCAI 2015): an encoder of
two-convolution blocks with 2x2 max-pooling between them, a decoder that doubles the resolution with
transposed convolutions and joins the encoder's map of the same size (the skip connections), and a
1x1 convolution to class scores per pixel. Here 3 levels and 16 base channels (the paper: 5 levels,
64 channels) so that a CPU trains it in seconds; batch normalisation in each block.

Training, as segmentation trainers for this task commonly do: cross-entropy per pixel plus a soft
Dice loss on the softmax (one minus the mean Dice over classes); RMSprop with momentum;
ReduceLROnPlateau('max') on the validation Dice score; gradient norm clipped at 1.0; batch 1; 10% of
the data held out for validation.

Data: image/mask pairs made in memory in the Carvana set's form (RGB image, a mask of class
indexes 0/1 for each pixel): a coloured ellipse (the "car") on a noisy grey backdrop (the studio);
32x32 rather than 959x640.

Glue: 4 lines: the ``tuitrain.fit`` call; ``batch_fn`` (samples are dicts with ``image`` and ``mask``,
and ``mask`` is not one of fit's target keys); ``loss_fn`` (the two-term loss); the ``dice`` metric
(Dice of the predicted car pixels, background excluded) with ``monitor="val_dice"``.

Judged by: the best epoch's val_dice (best.pt's; 4 validation images make the last epoch's noisy)
against the Dice of a constant "all car" prediction.
Showed a defect, now fixed (``tuitrain runs`` showed best val_acc "-" for this run though status.json
holds best val_dice); now it shows ``val_dice`` and its best value.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from _common import cli, verdict
from torch import nn

import tuitrain


def conv_block(channels_in: int, channels_out: int) -> nn.Sequential:
    """Two 3x3 convolutions (same size), each followed by batch normalisation and ReLU."""
    layers: list[nn.Module] = []
    for c_in in (channels_in, channels_out):
        layers += [nn.Conv2d(c_in, channels_out, 3, padding=1, bias=False), nn.BatchNorm2d(channels_out), nn.ReLU()]
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """Encoder-decoder with skip connections; ``levels`` poolings, ``width`` channels at the top
    level, doubled at each level below. Input sides must be divisible by 2**levels."""

    def __init__(self, in_channels: int = 3, n_classes: int = 2, width: int = 16, levels: int = 3):
        super().__init__()
        self.n_classes = n_classes
        sizes = [width * 2**i for i in range(levels + 1)]  # 16, 32, 64, 128
        self.encoders = nn.ModuleList([conv_block(in_channels, sizes[0])] +
                                      [conv_block(a, b) for a, b in zip(sizes, sizes[1:], strict=False)])
        self.upsamplers = nn.ModuleList([nn.ConvTranspose2d(b, a, 2, stride=2) for a, b in zip(sizes, sizes[1:], strict=False)])
        self.decoders = nn.ModuleList([conv_block(2 * a, a) for a in sizes[:-1]])
        self.head = nn.Conv2d(sizes[0], n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, encode in enumerate(self.encoders):
            x = encode(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()  # the bottom of the U
        for up, decode in zip(reversed(self.upsamplers), reversed(self.decoders), strict=True):
            x = decode(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)


def dice_per_class(probs: torch.Tensor, onehot: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Dice overlap 2|A.B| / (|A| + |B|) of each class channel over the batch and pixels: shape (C,).
    A class absent from both counts as a perfect match."""
    dims = (0, 2, 3)
    overlap = (probs * onehot).sum(dims)
    total = probs.sum(dims) + onehot.sum(dims)
    return (2 * overlap + eps) / (total + eps)


def carvana_like(n: int, seed: int, size: int = 32) -> list[dict]:
    """``{"image": (3, size, size) float in [0, 1], "mask": (size, size) int64}`` dicts."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    samples = []
    for _ in range(n):
        cx, cy, rx, ry = (torch.rand(4, generator=gen) * torch.tensor([1.0, 1.0, 0.4, 0.3])
                          + torch.tensor([-0.5, -0.5, 0.25, 0.15]))
        mask = (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1).long()
        back = 0.5 + 0.1 * torch.rand(3, 1, 1, generator=gen)  # the studio's grey backdrop
        car = torch.rand(3, 1, 1, generator=gen) * 0.3 + torch.tensor([0.0, 0.0, 0.7]).view(3, 1, 1)[torch.randperm(3, generator=gen)]
        image = torch.where(mask.bool(), car, back) + 0.1 * torch.randn(3, size, size, generator=gen)
        samples.append({"image": image.clamp(0, 1), "mask": mask})
    return samples


def main(epochs: int = 3, limit: int = 40, run_dir: str = "", headless: bool | None = None, variant: str = "") -> dict:
    torch.manual_seed(0)
    dataset = carvana_like(limit, seed=0)
    n_val = int(len(dataset) * 0.1)
    train_set, val_set = torch.utils.data.random_split(dataset, [len(dataset) - n_val, n_val],
                                                       generator=torch.Generator().manual_seed(0))
    model = UNet(in_channels=3, n_classes=2)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-8)

    def onehot(masks: torch.Tensor) -> torch.Tensor:
        return F.one_hot(masks, model.n_classes).permute(0, 3, 1, 2).float()

    def loss(logits, masks):
        return F.cross_entropy(logits, masks) + 1 - dice_per_class(logits.softmax(dim=1), onehot(masks)).mean()

    def dice(logits, masks):  # hard masks, the car class alone
        return dice_per_class(onehot(logits.argmax(dim=1)), onehot(masks))[1:].mean()

    result = tuitrain.fit(model, train_set, val_set, batch_fn=lambda b: (b["image"], b["mask"]), loss_fn=loss,
                          metrics={"dice": dice}, monitor="val_dice", optimizer=optimizer, grad_clip=1.0,
                          scheduler=lambda opt: torch.optim.lr_scheduler.ReduceLROnPlateau(opt, "max", patience=5),
                          batch_size=1, epochs=epochs, run_dir=run_dir, headless=headless, name="unet")
    masks = torch.stack([s["mask"] for s in val_set])
    all_car = float(dice(torch.stack([torch.zeros_like(masks), torch.ones_like(masks)], 1).float(), masks))
    value = result.best if result.best is not None else float("nan")  # best.pt's
    dice_by_epoch = [round(r.get("val_dice", float("nan")), 3) for r in result.history]
    return verdict(result, figure="best val_dice", value=value, expected=f"> {all_car + 0.15:.2f} (all 'car' {all_car:.2f})",
                   ok=value > all_car + 0.15, reason=f"masks not learned: val_dice by epoch {dice_by_epoch}")


if __name__ == "__main__":
    cli(main, __doc__, epochs=3, limit=40)
