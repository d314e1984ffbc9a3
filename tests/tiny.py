"""Odd-sized tiny configurations shared by tests, so a transposed axis cannot pass by accident."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch

from bertlab.model import BertConfig, BertForSequenceClassification
from bertlab.tasks.base import BertTask

TINY = dict(vocab_size=99, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
BATCH, LENGTH = 13, 7


def tiny_pretraining_run(task: str, vocab: Path) -> list[str]:
    """Overrides for a 3-step pre-training run of an odd-sized tiny model on the embedded corpus, with a
    given 30,522-token vocabulary (a trained one is not reproducible), fp32 and a CSV log."""
    return [
        f"task={task}",
        f"tokenizer={vocab}",
        "model=bert_tiny",
        "model.hidden_size=36",
        "model.num_attention_heads=3",
        "model.intermediate_size=53",
        "model.vocab_size=30522",
        "logger=csv",
        "hardware.precision=32-true",
        "data.max_train_examples=40",
        "data.val_docs=6",
        "data.max_seq_length=48",
        "data.batch_size=8",
        "trainer.max_steps=3",
        "trainer.val_check_interval=3",
        "trainer.log_every_n_steps=1",
    ]


def tiny_config(**overrides: object) -> BertConfig:
    return BertConfig(**(TINY | overrides))  # type: ignore[arg-type]


def padded_batch(seed: int = 0, batch: int = BATCH, length: int = LENGTH, vocab: int = 99):
    """ids, attention_mask (rows of lengths length..length-3), token types: each `(batch, length)`."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    for i in range(batch):
        mask[i, length - (i % 4) :] = 0
    ids = ids.masked_fill(mask == 0, 0)
    types = torch.randint(0, 2, (batch, length), generator=g) * mask
    return ids, mask, types


def quiet_trainer(**kwargs: Any) -> L.Trainer:
    """A CPU Trainer that writes and prints nothing of its own: no logger, checkpoint, progress bar,
    model summary or sanity validation; `kwargs` add to or override these."""
    return L.Trainer(
        **{
            "accelerator": "cpu",
            "devices": 1,
            "logger": False,
            "enable_checkpointing": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
        }
        | kwargs
    )


def labelled_batches(n: int = 4, seed: int = 0, num_labels: int = 3) -> list[dict[str, torch.Tensor]]:
    """`n` padded batches (`padded_batch` layout) with random labels `(B,)` in [0, num_labels)."""
    g = torch.Generator().manual_seed(seed + 100)
    out = []
    for i in range(n):
        ids, mask, types = padded_batch(seed=seed + i)
        labels = torch.randint(0, num_labels, (ids.shape[0],), generator=g)
        out.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": labels})
    return out


class TinyClassifierTask(BertTask):
    """A minimal BertTask over BertForSequenceClassification: the base's optimizer, schedule and checkpoint
    wiring with no DataModule of its own (loaders are lists of `labelled_batches`)."""

    def __init__(
        self,
        model_config: dict[str, Any],
        num_labels: int = 3,
        pretrained: str | None = None,
        optimizer: Any = None,
        scheduler: Any = None,
    ) -> None:
        super().__init__(model_config, pretrained, optimizer, scheduler)
        self.model = self.build_model(BertForSequenceClassification, num_labels=num_labels)
        self.losses: list[float] = []

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(cross-entropy, logits `(B, num_labels)`)."""
        logits = self.model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        return torch.nn.functional.cross_entropy(logits, batch["labels"]), logits

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _ = self.loss(batch)
        self.losses.append(float(loss.detach()))
        return loss

    def eval_step(self, stage: str, batch: dict[str, torch.Tensor], dataloader_idx: int) -> None:
        loss, logits = self.loss(batch)
        acc = (logits.argmax(-1) == batch["labels"]).float().mean()
        self.log_metrics(stage, {"loss": loss, "acc": acc}, batch_size=len(batch["labels"]))
