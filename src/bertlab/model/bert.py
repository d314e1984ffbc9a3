"""The BERT encoder (Devlin et al., 2019), top to bottom in reading order.

Post-LayerNorm Transformer layers, exact GELU, learned absolute positions and segment embeddings.
Attribute names are those of transformers' `modeling_bert.py`, so published checkpoints load strictly.

Where we differ from transformers (same numbers, different work): when a batch has padding, the
embeddings, projections, feed-forward and LayerNorms run on the real tokens only (packed `(N, H)`).
Attention needs a grid, so around it the sequences are sorted by length and laid out in a few
buckets, each padded only to its own longest sequence (`(b, T_k, 3H)`), instead of one `(B, T, 3H)`
grid: attention work grows with T², and on dynamically padded GLUE batches of 32 the buckets hold
about 40% of the full grid's token pairs. Outputs at padded positions are zeros instead of
transformers' meaningless values; every real position is identical.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bertlab.model.config import BertConfig


def activation(name: str) -> nn.Module:
    """The feed-forward activation by its transformers name ("gelu" is the exact erf form)."""
    return {
        "gelu": nn.GELU(),
        "gelu_new": nn.GELU(approximate="tanh"),
        "gelu_pytorch_tanh": nn.GELU(approximate="tanh"),
        "relu": nn.ReLU(),
    }[name]


# What a bucket costs beyond its attention work, in that work's units (sequences x T_k²). On a CPU
# (MiniLM, 12 heads) an SDPA call costs ~0.3 ms forward and backward and a (query, key) pair
# ~0.25-0.45 us, so ~1000 pairs; but each bucket adds ~30 small ops, which cost far more when the
# cores are shared with other jobs, so we ask for much more. Measured on GLUE batches of 32 (1 thread):
# 1024 to 16384 ran alike; at 16384 a batch gets 2-3 buckets holding about 40% of the full grid's work.
BUCKET_COST = 16384


def length_buckets(lengths: list[int], bucket_cost: int = BUCKET_COST) -> list[list[int]]:
    """Sequence ids (those with length > 0) grouped for attention: runs of the length-sorted batch that
    minimise the sum over groups of `len(group) * longest² + bucket_cost` (dynamic programming).

    No split falls between two equal lengths (moving them to the shorter group never costs more), so
    the search runs over the distinct lengths: `n_up_to[j]` sequences are no longer than `distinct[j-1]`.
    """
    order = sorted((i for i, n in enumerate(lengths) if n > 0), key=lambda i: lengths[i])
    distinct = sorted({lengths[i] for i in order})
    n_up_to = [0, *itertools.accumulate(sum(1 for i in order if lengths[i] == n) for n in distinct)]
    cost, cut = [0] * (len(distinct) + 1), [0] * (len(distinct) + 1)
    for j in range(1, len(distinct) + 1):  # the last group holds distinct[i:j]
        cost[j], cut[j] = min(
            (cost[i] + (n_up_to[j] - n_up_to[i]) * distinct[j - 1] ** 2 + bucket_cost, i) for i in range(j)
        )
    groups, j = [], len(distinct)
    while j > 0:
        groups.append(order[n_up_to[cut[j]] : n_up_to[j]])
        j = cut[j]
    return groups[::-1]


# Under CPU autocast the packed rows are rounded up to a multiple of this with padding positions. oneDNN
# generates a bf16 kernel per matrix shape, and with dynamic padding nearly every batch has a new token
# count: a Linear(384, 1536) step over 300-700 rows took 20 ms with a new count each time and 14.5 ms
# with counts rounded to 64 (1 thread). fp32 (MKL) showed no such cost, so it packs exactly.
PACK_MULTIPLE = 64


def pack_multiple(device: torch.device) -> int:
    """The row multiple packed activations are rounded to on `device` now (1 = none)."""
    return PACK_MULTIPLE if device.type == "cpu" and torch.is_autocast_enabled("cpu") else 1


class Padding:
    """Moves activations between padded `(B, T, ...)`, packed `(P, ...)` and the length buckets attention
    runs on (M slots in all, each bucket `(b, T_k, ...)`).

    The packed rows are the N real tokens in batch order, then P - N filler rows (padding positions) that
    round P up to `multiple`: they go through the dense layers, are never attended to, and are dropped
    by `pad`, so they add no gradient."""

    def __init__(self, attention_mask: Tensor, multiple: int = 1) -> None:
        self.batch, self.length = attention_mask.shape
        device = attention_mask.device
        flat = attention_mask.flatten()
        self.real = flat.nonzero().squeeze(1)  # (N,)
        n_real = self.real.numel()
        fill = min(-(-n_real // multiple) * multiple, flat.numel()) - n_real
        self.indices = self.real
        if fill > 0:
            self.indices = torch.cat([self.real, (flat == 0).nonzero().squeeze(1)[:fill]])  # (P,)
        lengths = attention_mask.sum(1)  # (B,)
        first = lengths.cumsum(0) - lengths  # packed row of each sequence's first token
        lens = lengths.tolist()
        slots, real = [], []
        self.masks: list[Tensor | None] = []  # per bucket: (b, 1, 1, T_k) keys to attend to, or None
        self.shapes: list[tuple[int, int]] = []  # per bucket: (b, T_k)
        for group in length_buckets(lens):
            ids = torch.tensor(group, device=device)
            n = lengths[ids, None]  # (b, 1)
            pos = torch.arange(lens[group[-1]], device=device)  # (T_k,)
            # a padded slot repeats its sequence's last token: masked as a key, never read back
            slots.append((first[ids, None] + pos.minimum(n - 1)).flatten())
            real.append((pos < n).flatten())
            uniform = lens[group[0]] == lens[group[-1]]  # sorted: shortest first
            self.masks.append(None if uniform else (pos < n)[:, None, None, :])
            self.shapes.append((len(group), pos.numel()))
        if not self.shapes:  # padding only: no bucket, no slot
            self.token_of_slot = self.slot_of_token = self.indices
            return
        self.token_of_slot = torch.cat(slots)  # (M,) packed row each bucket slot reads
        real_slots = torch.cat(real).nonzero().squeeze(1)  # (N,) slots holding real tokens
        # (P,) the slot each packed row is read back from; fillers read slot 0 (any value, never used)
        self.slot_of_token = torch.zeros(len(self.indices), dtype=torch.long, device=device).index_copy_(
            0, self.token_of_slot[real_slots], real_slots
        )

    def unpad(self, x: Tensor) -> Tensor:
        """(B, T, ...) -> (P, ...)"""
        return x.flatten(0, 1).index_select(0, self.indices)

    def pad(self, x: Tensor) -> Tensor:
        """(P, ...) -> (B, T, ...), zeros at padded positions (fillers dropped)."""
        out = x.new_zeros((self.batch * self.length, *x.shape[1:]))
        real = x[: self.real.numel()]  # the fillers come after the real rows
        return out.index_copy(0, self.real, real).view(self.batch, self.length, *x.shape[1:])

    def to_buckets(self, x: Tensor) -> list[Tensor]:
        """(P, C) -> one `(b, T_k, C)` per bucket."""
        parts = x.index_select(0, self.token_of_slot).split([b * t for b, t in self.shapes])
        return [part.view(b, t, -1) for part, (b, t) in zip(parts, self.shapes)]

    def from_buckets(self, xs: list[Tensor]) -> Tensor:
        """One `(b, T_k, C)` per bucket -> (P, C)."""
        return torch.cat([x.flatten(0, 1) for x in xs]).index_select(0, self.slot_of_token)


class BertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, LayerNorm, dropout: ids `(...,)` -> `(..., H)`."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        # padding_idx as transformers: the [PAD] row starts at zero and gets no gradient
        self.word_embeddings = nn.Embedding(
            config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, position_ids: Tensor) -> Tensor:
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention: `(B, T, H)` -> `(B, T, H)` under a key-padding mask."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.num_heads, self.head_dim = config.num_attention_heads, config.head_dim
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob

    def forward(self, x: Tensor, mask: Tensor | None, padding: Padding | None) -> Tensor:
        """x `(B, T, H)` or packed `(N, H)`; mask `(B, 1, 1, T)` bool (True = attend) or None."""
        # one GEMM for q, k, v: cheaper than three and the same numbers
        w = torch.cat((self.query.weight, self.key.weight, self.value.weight))
        b = torch.cat((self.query.bias, self.key.bias, self.value.bias))
        qkv = F.linear(x, w, b)
        if padding is None:
            return self.attend(qkv, mask)
        if not padding.shapes:  # padding only, no token to attend from
            return qkv[:, : self.num_heads * self.head_dim]
        # attention needs a grid: one per length bucket
        return padding.from_buckets(
            [self.attend(part, m) for part, m in zip(padding.to_buckets(qkv), padding.masks)]
        )

    def attend(self, qkv: Tensor, mask: Tensor | None) -> Tensor:
        """Fused projections `(B, T, 3H)` -> context `(B, T, H)`; mask `(B, 1, 1, T)` bool or None."""
        batch, length, _ = qkv.shape
        qkv = qkv.view(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        ctx = F.scaled_dot_product_attention(
            qkv[0], qkv[1], qkv[2], attn_mask=mask, dropout_p=self.dropout_p if self.training else 0.0
        )  # (B, heads, T, head_dim)
        return ctx.transpose(1, 2).reshape(batch, length, -1)


class BertSelfOutput(nn.Module):
    """Attention output projection, dropout, residual, LayerNorm (post-LN)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertAttention(nn.Module):
    """Self-attention block: attention then output projection with residual and LayerNorm."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, x: Tensor, mask: Tensor | None, padding: Padding | None) -> Tensor:
        return self.output(self.self(x, mask, padding), x)


class BertIntermediate(nn.Module):
    """Feed-forward expansion: `(..., H)` -> `(..., I)` with the activation."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = activation(config.hidden_act)

    def forward(self, x: Tensor) -> Tensor:
        return self.intermediate_act_fn(self.dense(x))


class BertOutput(nn.Module):
    """Feed-forward contraction `(..., I)` -> `(..., H)`, dropout, residual, LayerNorm."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertLayer(nn.Module):
    """One post-LN Transformer layer: attention block then feed-forward block."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, x: Tensor, mask: Tensor | None, padding: Padding | None = None) -> Tensor:
        x = self.attention(x, mask, padding)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    """A stack of `num_hidden_layers` BertLayers."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))


class BertPooler(nn.Module):
    """tanh(dense(h_[CLS])): `(B, T, H)` -> `(B, H)`."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden: Tensor) -> Tensor:
        return self.activation(self.dense(hidden[:, 0]))


class BertOutputs(NamedTuple):
    """last_hidden_state `(B, T, H)`; pooler_output `(B, H)` or None; hidden_states L+1 x `(B, T, H)`."""

    last_hidden_state: Tensor
    pooler_output: Tensor | None
    hidden_states: tuple[Tensor, ...] | None


class PreTrainedMixin:
    """from_pretrained / save_pretrained over transformers-format folders (see model/convert.py)."""

    config: BertConfig

    @classmethod
    def from_pretrained(cls, path: str, **kwargs: object):
        from bertlab.model.convert import load_pretrained

        return load_pretrained(cls, path, **kwargs)

    def save_pretrained(self, path: str, vocab_file: str | None = None, lowercase: bool = True) -> None:
        from bertlab.model.convert import save_pretrained

        save_pretrained(self, path, vocab_file=vocab_file, lowercase=lowercase)  # type: ignore[arg-type]


def init_weights(module: nn.Module, std: float) -> None:
    """transformers' BERT initialisation: N(0, std) weights, zero biases, unit LayerNorm, zero [PAD] row."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=std)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class BertModel(PreTrainedMixin, nn.Module):
    """The encoder: ids `(B, T)` -> hidden states `(B, T, H)` and the pooled [CLS] vector `(B, H)`."""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.apply(lambda m: init_weights(m, config.initializer_range))

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> BertOutputs:
        """input_ids, attention_mask (1 real / 0 pad), token_type_ids: `(B, T)`."""
        batch, length = input_ids.shape
        if length > self.config.max_position_embeddings:
            raise ValueError(
                f"sequence length {length} exceeds max_position_embeddings "
                f"{self.config.max_position_embeddings}; truncate inputs (max_seq_length)"
            )
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        position_ids = torch.arange(length, device=input_ids.device).expand(batch, length)
        padding: Padding | None = None
        mask: Tensor | None = None
        if attention_mask is not None and not bool(attention_mask.all()):
            mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T): keys to attend to
            if self.config.unpad:
                padding = Padding(attention_mask, pack_multiple(input_ids.device))
                input_ids, token_type_ids, position_ids = (
                    padding.unpad(t) for t in (input_ids, token_type_ids, position_ids)
                )
        x = self.embeddings(input_ids, token_type_ids, position_ids)
        repad = padding.pad if padding is not None else (lambda t: t)
        states: list[Tensor] = [repad(x)] if output_hidden_states else []
        for layer in self.encoder.layer:
            x = layer(x, mask, padding)
            if output_hidden_states:
                states.append(repad(x))
        x = states[-1] if output_hidden_states else repad(x)
        pooled = self.pooler(x) if self.pooler is not None else None
        return BertOutputs(x, pooled, tuple(states) if output_hidden_states else None)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
