"""The DataLoaders every DataModule builds: resumable training loaders, evaluation loaders.

A run killed mid-epoch and resumed from its checkpoint must see the batches it would have seen. Training
loaders are therefore `torchdata`'s `StatefulDataLoader`: Lightning stores its `state_dict` (the
sampler's generator state and the batches consumed, also with worker processes) in the checkpoint and
restores it, so the resumed epoch continues with the next batch.

Two choices keep the random streams of a resumed run equal to an uninterrupted one's:

- The shuffling sampler owns its generator. Shared with the loader (`generator=`), it would also give
  the worker seeds, and those draws are not restored, so the next epoch's order would drift.
- Evaluation loaders draw their worker seeds from a generator of their own, never from the global RNG:
  a resumed run creates its (persistent) evaluation workers at a different point than the uninterrupted
  run did, and a global draw there would shift the dropout stream of every later step.

`transform` (pre-training's dynamic masking) runs in the main process on each batch as the loader yields
it, so its random state belongs to the main process and can travel in the checkpoint.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchdata.stateful_dataloader import StatefulDataLoader

SAMPLER_EPOCH = "bertlab_sampler_epoch"  # the key StatefulLoader adds to torchdata's state


class _Transformed(Iterator[Any]):
    """An iterator of `batches` with `transform` applied to each, in this (the main) process."""

    def __init__(self, batches: Iterator[Any], transform: Callable[[Any], Any]) -> None:
        self.batches, self.transform = batches, transform

    def __iter__(self) -> _Transformed:
        return self

    def __next__(self) -> Any:
        return self.transform(next(self.batches))

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]


class StatefulLoader(StatefulDataLoader):
    """A `StatefulDataLoader` that applies `transform` to every batch in the main process as it is yielded.

    Lightning asks for a batch only when it trains on it (the loader has a length, so nothing is
    fetched ahead), so a `transform` drawing from a generator has drawn exactly once per batch trained on
    when a checkpoint is written.
    """

    def __init__(self, *args: Any, transform: Callable[[Any], Any] | None = None, **kwargs: Any) -> None:
        with warnings.catch_warnings():  # torchdata 0.11 calls a torch function that now only warns
            warnings.filterwarnings("ignore", message="'set_vital' is deprecated")
            super().__init__(*args, **kwargs)
        self.transform = transform

    def __iter__(self) -> Any:
        batches = super().__iter__()
        return batches if self.transform is None else _Transformed(batches, self.transform)

    def state_dict(self) -> dict[str, Any]:
        """torchdata's state, plus the epoch of a sampler ordered by epoch (`set_epoch`)."""
        state = super().state_dict()
        epoch = getattr(self.sampler, "epoch", None)
        return state if not isinstance(epoch, int) else {**state, SAMPLER_EPOCH: epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the position; a sampler ordered by epoch gets its epoch back first. Lightning resumes
        the iterator before it calls `set_epoch`, so the sampler would otherwise skip the consumed
        batches of epoch 0's order, not of the resumed epoch's."""
        state = dict(state_dict)
        epoch = state.pop(SAMPLER_EPOCH, None)
        if epoch is not None and hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)
        super().load_state_dict(state)


def _worker_seeds(seed: int = 0) -> torch.Generator:
    """The generator a loader draws its worker base seed from (a private one: never the global RNG)."""
    return torch.Generator().manual_seed(seed)


def train_loader(
    data: Dataset | Sized,
    batch_size: int,
    collate: Callable[[list[Any]], Any],
    num_workers: int,
    sampler: Sampler | None = None,
    seed: int | None = None,
    transform: Callable[[Any], Any] | None = None,
) -> StatefulLoader:
    """A resumable training loader: `sampler`'s order, else shuffled by a generator seeded with `seed`
    (None: a seed drawn from the global RNG now, so the run's `seed` decides)."""
    common: dict[str, Any] = {
        "batch_size": batch_size,
        "collate_fn": collate,
        "num_workers": num_workers,
        "persistent_workers": num_workers > 0,
        "transform": transform,
        "generator": _worker_seeds(),
    }
    if sampler is not None:
        return StatefulLoader(data, sampler=sampler, **common)  # type: ignore[arg-type]
    # shuffle=True rather than an explicit sampler, so Lightning sees a shuffled loader (under DDP it
    # substitutes a shuffling DistributedSampler); torchdata's RandomSampler then gets a generator of its
    # own, apart from the worker seeds' (see the module docstring)
    loader = StatefulLoader(data, shuffle=True, **common)  # type: ignore[arg-type]
    if seed is None:
        seed = int(torch.empty((), dtype=torch.int64).random_().item())
    loader.sampler.generator = torch.Generator().manual_seed(seed)  # type: ignore[attr-defined]
    return loader


def eval_loader(
    data: Dataset | Sized, batch_size: int, collate: Callable[[list[Any]], Any], num_workers: int
) -> DataLoader:
    """Batches in order; worker seeds from a private generator (see the module docstring)."""
    return DataLoader(
        data,  # type: ignore[arg-type]
        batch_size=batch_size,
        shuffle=False,
        collate_fn=collate,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        generator=_worker_seeds(),
    )


__all__ = ["StatefulLoader", "eval_loader", "train_loader"]
