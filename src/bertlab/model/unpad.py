"""The padding-free path: packed real tokens for the dense layers, length buckets for attention.

When a batch has padding, the embeddings, projections, feed-forward and LayerNorms run on the real
tokens only (packed `(P, H)`). Attention needs a grid, so around it the sequences are sorted by length
and laid out in a few buckets, each padded only to its own longest sequence (`(b, T_k, 3H)`), instead
of one `(B, T, 3H)` grid: attention work grows with T², and on dynamically padded GLUE batches of 32
the buckets hold about 40% of the full grid's token pairs. `Padding` moves activations between these
layouts; `model/bert.py` only calls it. Outputs at padded positions come back as zeros (transformers
leaves meaningless values there); every real position is the padded grid's.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

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
    by `pad`, so they add no gradient. `multiple` None: what `pack_multiple` asks for on the mask's device."""

    def __init__(self, attention_mask: Tensor, multiple: int | None = None) -> None:
        """attention_mask `(B, T)`: 1 real / 0 pad."""
        self.batch, self.length = attention_mask.shape
        device = attention_mask.device
        if multiple is None:
            multiple = pack_multiple(device)
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
