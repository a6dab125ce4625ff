"""pytorch/examples' Siamese network (are two digits the same?), ported to tuitrain.fit.

Original: pytorch/examples, siamese_network/main.py (BSD-3-Clause). Model ``SiameseNetwork`` (a
ResNet-18 trunk for 1-channel images, features of both images concatenated, two linear layers,
sigmoid) and its loss ``nn.BCELoss()`` on ``outputs.squeeze()`` unchanged; the pair data set
``APP_MATCHER`` unchanged but for its source of images; Adadelta(lr=1.0), StepLR(step_size=1,
gamma=0.7) once an epoch, batch 64, test batch 1000.

Data: generated MNIST-shaped digits as uint8-range floats (the original feeds MNIST's raw 0..255
pixels), paired by APP_MATCHER: even indexes two images of one class (target 1), odd indexes two
classes (target 0). Chance is 50%.

Glue: 3 lines: the ``tuitrain.fit`` call; ``batch_fn`` (samples are (image_1, image_2, target));
``loss_fn`` (the original's squeeze before BCELoss); a ``match_acc`` metric (the original's test
accuracy at threshold 0.5; ``acc`` is a reserved name).

``--variant naive``: the same call without ``batch_fn``, as a user first writes it.

Judged by: val_match_acc after training against chance (50%).
Shows: with ``--variant naive``, fixed: the default batch_fn takes image_2 as the
target; the model's ``TypeError: SiameseNetwork.forward() missing 1 required positional argument:
'input2'`` now comes as a one-line error naming ``batch_fn=`` (with the lambda to pass), before
anything is written.
"""

# ruff: noqa: UP008, UP034  (the original's code, kept as it is)

from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
import torchvision
from _common import cli, digits, last, verdict
from torch.optim.lr_scheduler import StepLR
from torch.utils.data import Dataset

import tuitrain


class SiameseNetwork(nn.Module):
    """
        Siamese network for image similarity estimation.
        The network is composed of two identical networks, one for each input.
        The output of each network is concatenated and passed to a linear layer.
        The output of the linear layer passed through a sigmoid function.
        `"FaceNet" <https://arxiv.org/pdf/1503.03832.pdf>`_ is a variant of the Siamese network.
        This implementation varies from FaceNet as we use the `ResNet-18` model from
        `"Deep Residual Learning for Image Recognition" <https://arxiv.org/pdf/1512.03385.pdf>`_ as our feature extractor.
        In addition, we aren't using `TripletLoss` as the MNIST dataset is simple, so `BCELoss` can do the trick.
    """
    def __init__(self):
        super(SiameseNetwork, self).__init__()
        # get resnet model
        self.resnet = torchvision.models.resnet18(pretrained=False)

        # over-write the first conv layer to be able to read MNIST images
        # as resnet18 reads (3,x,x) where 3 is RGB channels
        # whereas MNIST has (1,x,x) where 1 is a gray-scale channel
        self.resnet.conv1 = nn.Conv2d(1, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False)
        self.fc_in_features = self.resnet.fc.in_features

        # remove the last layer of resnet18 (linear layer which is before avgpool layer)
        self.resnet = torch.nn.Sequential(*(list(self.resnet.children())[:-1]))

        # add linear layers to compare between the features of the two images
        self.fc = nn.Sequential(
            nn.Linear(self.fc_in_features * 2, 256),
            nn.ReLU(inplace=True),
            nn.Linear(256, 1),
        )

        self.sigmoid = nn.Sigmoid()

        # initialize the weights
        self.resnet.apply(self.init_weights)
        self.fc.apply(self.init_weights)

    def init_weights(self, m):
        if isinstance(m, nn.Linear):
            torch.nn.init.xavier_uniform(m.weight)
            m.bias.data.fill_(0.01)

    def forward_once(self, x):
        output = self.resnet(x)
        output = output.view(output.size()[0], -1)
        return output

    def forward(self, input1, input2):
        # get two images' features
        output1 = self.forward_once(input1)
        output2 = self.forward_once(input2)

        # concatenate both images' features
        output = torch.cat((output1, output2), 1)

        # pass the concatenation to the linear layers
        output = self.fc(output)

        # pass the out of the linear layers to sigmoid layer
        output = self.sigmoid(output)

        return output


class APP_MATCHER(Dataset):
    def __init__(self, n, seed):
        super(APP_MATCHER, self).__init__()

        # generated MNIST-shaped digits instead of datasets.MNIST(root, train=train, download=download);
        # the original's images are MNIST's raw uint8 pixels, as floats 0..255
        images, self.targets = digits(n, seed)
        self.data = (images * 255).round()

        self.group_examples()

    def group_examples(self):
        # get the targets
        np_arr = np.array(self.targets.clone())

        # group examples based on class
        self.grouped_examples = {}
        for i in range(0,10):
            self.grouped_examples[i] = np.where((np_arr==i))[0]

    def __len__(self):
        return self.data.shape[0]

    def __getitem__(self, index):
        # pick some random class for the first image
        selected_class = random.randint(0, 9)

        # pick a random index for the first image in the grouped indices based of the label
        # of the class
        random_index_1 = random.randint(0, self.grouped_examples[selected_class].shape[0]-1)

        # pick the index to get the first image
        index_1 = self.grouped_examples[selected_class][random_index_1]

        # get the first image
        image_1 = self.data[index_1].clone().float()

        # same class
        if index % 2 == 0:
            # pick a random index for the second image
            random_index_2 = random.randint(0, self.grouped_examples[selected_class].shape[0]-1)

            # ensure that the index of the second image isn't the same as the first image
            while random_index_2 == random_index_1:
                random_index_2 = random.randint(0, self.grouped_examples[selected_class].shape[0]-1)

            # pick the index to get the second image
            index_2 = self.grouped_examples[selected_class][random_index_2]

            # get the second image
            image_2 = self.data[index_2].clone().float()

            # set the label for this example to be positive (1)
            target = torch.tensor(1, dtype=torch.float)

        # different class
        else:
            # pick a random class
            other_selected_class = random.randint(0, 9)

            # ensure that the class of the second image isn't the same as the first image
            while other_selected_class == selected_class:
                other_selected_class = random.randint(0, 9)

            # pick a random index for the second image in the grouped indices based of the label
            # of the class
            random_index_2 = random.randint(0, self.grouped_examples[other_selected_class].shape[0]-1)

            # pick the index to get the second image
            index_2 = self.grouped_examples[other_selected_class][random_index_2]

            # get the second image
            image_2 = self.data[index_2].clone().float()

            # set the label for this example to be negative (0)
            target = torch.tensor(0, dtype=torch.float)

        return image_1, image_2, target


def main(epochs: int = 3, limit: int = 2000, run_dir: str = "", headless: bool | None = None, variant: str = "") -> dict:
    torch.manual_seed(1)
    random.seed(1)
    train_loader = torch.utils.data.DataLoader(APP_MATCHER(limit, seed=0), batch_size=64)
    test_loader = torch.utils.data.DataLoader(APP_MATCHER(max(limit // 5, 200), seed=1), batch_size=1000)
    model = SiameseNetwork()
    optimizer = optim.Adadelta(model.parameters(), lr=1.0)
    criterion = nn.BCELoss()
    glue = {} if variant == "naive" else {"batch_fn": lambda b: ((b[0], b[1]), b[2])}
    result = tuitrain.fit(model, train_loader, test_loader, optimizer=optimizer, epochs=epochs,
                          scheduler=lambda opt: StepLR(opt, step_size=1, gamma=0.7), **glue,
                          loss_fn=lambda outputs, targets: criterion(outputs.squeeze(), targets),
                          metrics={"match_acc": lambda out, y: ((out.squeeze() > 0.5).float() == y).float().mean()},
                          run_dir=run_dir, headless=headless, name="siamese_network")
    acc = last(result, "val_match_acc")
    return verdict(result, figure="val_match_acc", value=acc, expected="> 0.75 (chance 0.5)", ok=acc > 0.75,
                   reason="pairs not told apart")


if __name__ == "__main__":
    cli(main, __doc__, epochs=3, limit=2000)
