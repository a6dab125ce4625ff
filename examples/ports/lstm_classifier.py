"""A padded-text LSTM sentiment classifier (packed sequences), ported to tuitrain.fit.

Original: bentrevett/pytorch-sentiment-analysis (MIT), "2 - Recurrent Neural Networks.ipynb". Model
``LSTM(vocab_size, embedding_dim, hidden_dim, output_dim=2, n_layers=2, bidirectional=True,
dropout_rate=0.5, pad_index)`` (dims 64 here, 300 there: a short CPU run) (embedding, ``pack_padded_sequence`` with the true lengths, the last hidden states of
both directions, a linear layer), ``initialize_weights`` and ``nn.CrossEntropyLoss()`` unchanged;
Adam(lr=5e-4), batch 512, the notebook's ``collate_fn`` that pads ``ids`` and stacks ``length`` and
``label`` into a dict. (The notebook then copies GloVe vectors into the embedding: not here, no
download.)

Data: reviews made in memory over a 3,000-word vocabulary ("<unk>" 0, "<pad>" 1), 10 to 40 tokens
long; a positive review holds 3 to 10 words of a "positive" set of 50, a negative one as many of a
"negative" set, among random words: a bidirectional LSTM learns it; chance is 50%.

Glue: 2 lines: the ``tuitrain.fit`` call; ``batch_fn`` (the batch is a dict whose input key
``ids`` is not one of fit's input keys, and ``length`` must go to the model too).

Judged by: val_acc against chance (50%).
Shows today: nothing wrong when trained this way (the validation DataLoader's own
collate_fn is ignored and the training one used; they are the same function here).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.optim as optim
from _common import cli, last, verdict

import tuitrain

VOCAB = 3000
PAD = 1


class LSTM(nn.Module):
    def __init__(
        self,
        vocab_size,
        embedding_dim,
        hidden_dim,
        output_dim,
        n_layers,
        bidirectional,
        dropout_rate,
        pad_index,
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_index)
        self.lstm = nn.LSTM(
            embedding_dim,
            hidden_dim,
            n_layers,
            bidirectional=bidirectional,
            dropout=dropout_rate,
            batch_first=True,
        )
        self.fc = nn.Linear(hidden_dim * 2 if bidirectional else hidden_dim, output_dim)
        self.dropout = nn.Dropout(dropout_rate)

    def forward(self, ids, length):
        # ids = [batch size, seq len]
        # length = [batch size]
        embedded = self.dropout(self.embedding(ids))
        # embedded = [batch size, seq len, embedding dim]
        packed_embedded = nn.utils.rnn.pack_padded_sequence(
            embedded, length, batch_first=True, enforce_sorted=False
        )
        packed_output, (hidden, cell) = self.lstm(packed_embedded)
        # hidden = [n layers * n directions, batch size, hidden dim]
        # cell = [n layers * n directions, batch size, hidden dim]
        output, output_length = nn.utils.rnn.pad_packed_sequence(packed_output)
        # output = [batch size, seq len, hidden dim * n directions]
        if self.lstm.bidirectional:
            hidden = self.dropout(torch.cat([hidden[-1], hidden[-2]], dim=-1))
            # hidden = [batch size, hidden dim * 2]
        else:
            hidden = self.dropout(hidden[-1])
            # hidden = [batch size, hidden dim]
        prediction = self.fc(hidden)
        # prediction = [batch size, output dim]
        return prediction


def initialize_weights(m):
    if isinstance(m, nn.Linear):
        nn.init.xavier_normal_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LSTM):
        for name, param in m.named_parameters():
            if "bias" in name:
                nn.init.zeros_(param)
            elif "weight" in name:
                nn.init.orthogonal_(param)


def get_collate_fn(pad_index):
    def collate_fn(batch):
        batch_ids = [i["ids"] for i in batch]
        batch_ids = nn.utils.rnn.pad_sequence(
            batch_ids, padding_value=pad_index, batch_first=True
        )
        batch_length = [i["length"] for i in batch]
        batch_length = torch.stack(batch_length)
        batch_label = [i["label"] for i in batch]
        batch_label = torch.stack(batch_label)
        batch = {"ids": batch_ids, "length": batch_length, "label": batch_label}
        return batch

    return collate_fn


def get_data_loader(dataset, batch_size, pad_index, shuffle=False):
    collate_fn = get_collate_fn(pad_index)
    data_loader = torch.utils.data.DataLoader(
        dataset=dataset,
        batch_size=batch_size,
        collate_fn=collate_fn,
        shuffle=shuffle,
    )
    return data_loader


def reviews(n: int, seed: int) -> list[dict]:
    """``{"ids", "length", "label"}`` samples as the notebook's datasets hold them (ids unpadded)."""
    gen = torch.Generator().manual_seed(seed)
    positive, negative = torch.arange(2, 52), torch.arange(52, 102)
    samples = []
    for _ in range(n):
        length = int(torch.randint(10, 41, (1,), generator=gen))
        ids = torch.randint(102, VOCAB, (length,), generator=gen)
        marked = torch.randperm(length, generator=gen)[: int(torch.randint(3, 11, (1,), generator=gen))]
        label = int(torch.randint(0, 2, (1,), generator=gen))
        words = positive if label else negative
        ids[marked] = words[torch.randint(0, 50, (len(marked),), generator=gen)]
        samples.append({"ids": ids, "length": torch.tensor(length), "label": torch.tensor(label)})
    return samples


def main(epochs: int = 4, limit: int = 4096, run_dir: str = "", headless: bool | None = None, variant: str = "") -> dict:
    torch.manual_seed(1234)
    train_data, valid_data = reviews(limit, seed=0), reviews(max(limit // 4, 64), seed=1)
    batch_size = 512
    train_data_loader = get_data_loader(train_data, batch_size, PAD, shuffle=True)
    valid_data_loader = get_data_loader(valid_data, batch_size, PAD)
    model = LSTM(VOCAB, 64, 64, 2, 2, True, 0.5, PAD)  # the notebook: 300, 300 (too slow for a short CPU run)
    model.apply(initialize_weights)
    optimizer = optim.Adam(model.parameters(), lr=5e-4)
    result = tuitrain.fit(model, train_data_loader, valid_data_loader, optimizer=optimizer, epochs=epochs,
                          batch_fn=lambda b: ((b["ids"], b["length"]), b["label"]),
                          run_dir=run_dir, headless=headless, name="lstm_classifier")
    acc = last(result, "val_acc")
    return verdict(result, figure="val_acc", value=acc, expected="> 0.7 (chance 0.5)", ok=acc > 0.7,
                   reason="val_acc near chance")


if __name__ == "__main__":
    cli(main, __doc__, epochs=4, limit=4096)
