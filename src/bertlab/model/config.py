"""Typed BERT configuration with the transformers field names, so config.json files read both ways."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")
POOLINGS = ("cls", "mean")


@dataclass
class BertConfig:
    """Sizes and regularisation of a BERT encoder (defaults: BERT-base uncased)."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"  # exact erf GELU, as the released BERT checkpoints
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    classifier_dropout: float | None = None  # None: use hidden_dropout_prob, as transformers
    # causal self-attention (a position attends to itself and earlier ones): the paper's LTR model;
    # transformers' name, so its BertModel / BertLMHeadModel apply the same mask to an export
    is_decoder: bool = False
    # bertlab-only: what the pooler reads. "cls": h_[CLS], the paper's (and transformers'); "mean": the mean of
    # the real tokens' h (cramming, sentence-transformers), for encoders whose [CLS] nothing trained (MLM
    # without NSP). Written to config.json so bertlab reloads it; transformers ignores it (the export warns).
    pooling: str = "cls"
    # bertlab-only: run dense layers on real tokens only when a batch has padding (same numbers).
    unpad: bool = True

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                f"{self.num_attention_heads}; pick sizes where it divides"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act {self.hidden_act!r} is not supported; use one of {ACTIVATIONS}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling {self.pooling!r} is not supported; use one of {POOLINGS}")
        for name in (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
        ):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(
                f"pad_token_id {self.pad_token_id} is outside the vocabulary of {self.vocab_size}"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BertConfig:
        """Build from a transformers config.json dict (or `to_dict`'s); keys that are not fields are ignored
        (architectures, id2label, transformers_version, ...)."""
        names = {f.name for f in dataclasses.fields(cls)}
        pos = values.get("position_embedding_type", "absolute")
        if values.get("add_cross_attention"):
            raise ValueError(
                "add_cross_attention is true: encoder-decoder BERT has cross-attention layers bertlab does "
                "not build; use a config.json with add_cross_attention false (is_decoder alone is supported)"
            )
        if pos != "absolute":
            raise ValueError(f"position_embedding_type {pos!r} is not BERT's; only 'absolute' is supported")
        return cls(**{k: v for k, v in values.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        """A transformers-compatible config.json dict (model_type bert)."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "unpad"}
        out.update({"model_type": "bert", "position_embedding_type": "absolute"})
        return out
