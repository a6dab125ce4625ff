"""transformers' run_glue_no_trainer.py (sequence classification with a linear warm-up), ported to
tuitrain.fit.

Original: huggingface/transformers (Apache-2.0), examples/pytorch/text-classification/
run_glue_no_trainer.py. The model is ``AutoModelForSequenceClassification`` (here
``BertForSequenceClassification`` from a tiny ``BertConfig``, randomly initialised: no download);
the loss is the model's own ``outputs.loss``; AdamW over the script's two parameter groups (no
weight decay for bias and LayerNorm.weight); ``get_scheduler("linear", num_warmup_steps,
num_training_steps=max_train_steps)`` stepped after every optimizer step; batch 8
(``--per_device_train_batch_size``), 3 epochs, ``--learning_rate 1e-3`` (a tiny model from scratch;
the default 5e-5 is for fine-tuning), ``--num_warmup_steps`` 10% of the steps; accuracy as the
metric ("accuracy" is what ``evaluate.load("glue", "sst2")`` computes).

Data: an SST-2-shaped task made in memory: token ids over a 1,000-word vocabulary, padded to 32 with
attention masks (the script's ``--pad_to_max_length`` path, batched by ``default_data_collator``);
the label is 1 when the sentence holds the "positive" token 7 (a rule the model learns; chance 50%).

Glue: 3 lines: the ``tuitrain.fit`` call; ``loss_fn`` reading ``outputs.loss`` (as the script does);
``get_scheduler`` wrapped in a function of the optimizer for fit.

Variants (``--variant``):
  (none)     as above. The default batch_fn once stripped ``labels`` from the
             model's keyword arguments, so ``outputs.loss`` was None and the run failed at step 1
             after the run directory existed; now ``labels`` reaches the model (its forward takes
             it), and without loss_fn fit would train on ``outputs.loss`` itself.
  ce         ``loss_fn`` = cross-entropy on ``outputs.logits``. The warm-up once
             was stepped once an epoch (LR 0 for all of epoch 1, val_acc at chance); now
             get_scheduler's schedules step per optimizer step (``scheduler_interval`` says so
             for any other).
  ce-nosched the same without the scheduler (constant LR 1e-3): reaches ~100%.
Needs ``transformers`` (``pip install transformers``); reported as skipped without it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from _common import cli, last, skipped, verdict

import tuitrain

VOCAB, LENGTH, POSITIVE = 1000, 32, 7


def sst2_like(n: int, seed: int) -> list[dict]:
    """Pre-tokenised, padded samples as the script's ``preprocess_function`` gives them."""
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(n):
        length = int(torch.randint(8, LENGTH - 1, (1,), generator=gen))
        words = torch.randint(10, VOCAB, (length,), generator=gen)
        label = int(torch.randint(0, 2, (1,), generator=gen))
        if label:
            words[int(torch.randint(0, length, (1,), generator=gen))] = POSITIVE
        ids = torch.cat([torch.tensor([2]), words, torch.tensor([3])])  # [CLS] ... [SEP]
        pad = LENGTH - len(ids)
        samples.append({"input_ids": F.pad(ids, (0, pad)), "token_type_ids": torch.zeros(LENGTH, dtype=torch.long),
                        "attention_mask": F.pad(torch.ones(len(ids), dtype=torch.long), (0, pad)),
                        "labels": torch.tensor(label)})
    return samples


def main(epochs: int = 3, limit: int = 1000, run_dir: str = "", headless: bool | None = None, variant: str = "") -> dict:
    try:
        from transformers import BertConfig, BertForSequenceClassification, default_data_collator, get_scheduler
    except ImportError:
        return skipped("transformers is not installed (pip install transformers)")
    torch.manual_seed(42)
    config = BertConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=64, num_labels=2)
    model = BertForSequenceClassification(config)
    train_dataset, eval_dataset = sst2_like(limit, seed=0), sst2_like(max(limit // 4, 16), seed=1)
    train_dataloader = torch.utils.data.DataLoader(train_dataset, shuffle=True, collate_fn=default_data_collator,
                                                   batch_size=8)
    eval_dataloader = torch.utils.data.DataLoader(eval_dataset, collate_fn=default_data_collator, batch_size=8)

    # Optimizer
    # Split weights in two groups, one with weight decay and the other not.
    weight_decay = 0.0
    no_decay = ["bias", "LayerNorm.weight"]
    optimizer_grouped_parameters = [
        {
            "params": [p for n, p in model.named_parameters() if not any(nd in n for nd in no_decay)],
            "weight_decay": weight_decay,
        },
        {
            "params": [p for n, p in model.named_parameters() if any(nd in n for nd in no_decay)],
            "weight_decay": 0.0,
        },
    ]
    optimizer = torch.optim.AdamW(optimizer_grouped_parameters, lr=1e-3)

    # Scheduler and math around the number of training steps.
    num_update_steps_per_epoch = math.ceil(len(train_dataloader) / 1)
    max_train_steps = epochs * num_update_steps_per_epoch
    num_warmup_steps = max_train_steps // 10
    def lr_scheduler(optimizer):  # built by fit (building it here would set the LR to 0 at once)
        return get_scheduler(name="linear", optimizer=optimizer, num_warmup_steps=num_warmup_steps,
                             num_training_steps=max_train_steps)

    if variant == "":
        loss_fn = lambda outputs, labels: outputs.loss  # noqa: E731  (the script: loss = outputs.loss)
    elif variant in ("ce", "ce-nosched"):
        loss_fn = lambda outputs, labels: F.cross_entropy(outputs.logits, labels)  # noqa: E731
    else:
        raise SystemExit(f"glue.py: unknown --variant {variant!r} (ce, ce-nosched)")
    result = tuitrain.fit(model, train_dataloader, eval_dataloader, loss_fn=loss_fn, optimizer=optimizer,
                          scheduler="none" if variant == "ce-nosched" else lr_scheduler,
                          epochs=epochs, run_dir=run_dir, headless=headless, name="glue")
    acc = last(result, "val_acc")
    lrs = [round(r.get("lr", math.nan), 6) for r in result.history]
    return verdict(result, figure="val_acc", value=acc, expected="> 0.9 (chance 0.5)", ok=acc > 0.9,
                   reason=f"at chance; LR at each epoch end {lrs} (warm-up of {num_warmup_steps} steps "
                          f"stepped once an epoch)", epoch_lr=lrs)


if __name__ == "__main__":
    cli(main, __doc__, epochs=3, limit=1000)
