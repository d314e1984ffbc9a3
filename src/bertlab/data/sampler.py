"""Length-grouped sampling: batches of similar length, so dynamic padding wastes little compute.

Each epoch the indices are shuffled, cut into mega-batches of `mega_batch_mult` global batches, each
mega-batch is sorted by length (longest first) and cut into batches, and the batch order is shuffled.
A batch therefore holds neighbours in length inside a random mega-batch, and no epoch sees batches in
length order (which would bias the learning-rate schedule towards long or short examples).

The sampler subclasses `DistributedSampler` so Lightning leaves it alone under DDP instead of wrapping
it in a shuffling sampler that would undo the grouping; each rank takes its share of every global
batch. As with `DistributedSampler`, call `set_epoch` each epoch (Lightning does) for a new order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DistributedSampler


class LengthGroupedSampler(DistributedSampler):
    """Yield example indices so that each run of `batch_size` consecutive indices has similar lengths."""

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        mega_batch_mult: int = 50,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if batch_size < 1 or mega_batch_mult < 1:
            raise ValueError(
                f"batch_size ({batch_size}) and mega_batch_mult ({mega_batch_mult}) must be >= 1"
            )
        if num_replicas is None or rank is None:
            dist = torch.distributed
            initialised = dist.is_available() and dist.is_initialized()
            num_replicas = (
                num_replicas if num_replicas is not None else (dist.get_world_size() if initialised else 1)
            )
            rank = rank if rank is not None else (dist.get_rank() if initialised else 0)
        # the parent sets num_replicas, rank, epoch, seed, num_samples and total_size (padded, not dropped)
        super().__init__(
            lengths, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False
        )  # type: ignore[arg-type]
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.mega_batch_mult = mega_batch_mult

    def global_order(self) -> list[int]:
        """All ranks' indices for this epoch, padded to `total_size`; rank r takes positions r, r+R, …."""
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(len(self.lengths), generator=g).tolist()
        global_batch = self.batch_size * self.num_replicas
        mega = global_batch * self.mega_batch_mult
        batches: list[list[int]] = []
        for start in range(0, len(perm), mega):
            chunk = sorted(perm[start : start + mega], key=lambda i: self.lengths[i], reverse=True)
            batches.extend(chunk[b : b + global_batch] for b in range(0, len(chunk), global_batch))
        # only full global batches are shuffled; the ragged last one stays last so every earlier
        # global batch splits into equal, full per-rank batches
        full = [b for b in batches if len(b) == global_batch]
        ragged = [b for b in batches if len(b) != global_batch]
        order = torch.randperm(len(full), generator=g).tolist()
        flat = [i for k in order for i in full[k]] + [i for b in ragged for i in b]
        # pad by repeating from the start, as DistributedSampler does, so every rank gets num_samples
        while flat and len(flat) < self.total_size:
            flat += flat[: self.total_size - len(flat)]
        return flat

    def __iter__(self) -> Iterator[int]:
        # interleaving keeps each aligned block of batch_size*R global positions inside one global batch
        return iter(self.global_order()[self.rank : self.total_size : self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples
