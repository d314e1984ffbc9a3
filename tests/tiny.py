"""Odd-sized tiny configurations shared by tests, so a transposed axis cannot pass by accident."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from bertlab.model import BertConfig

TINY = dict(vocab_size=99, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
BATCH, LENGTH = 13, 7


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
