"""What every bertlab DataModule shares: tokenizer, split names, caps, stage-to-splits, hparams, loaders.

A dataset module subclasses `BertDataModule` and supplies only what is its own:

- `read(split)`: the split's examples from its file (or the hub), a `DataError` on bad rows;
- `encode(split, examples)`: a `SplitData` whose `features` are the encoded rows;
- `collate(items)`: one padded batch.

Split names are the same everywhere: `train`, `val`, `test` and `predict` (`predict` reads the test
source and needs no labels). A task with several dev sets names them `val_<part>` (MNLI:
`val_matched`, `val_mismatched`); `split_names(stage)` lists the splits whose loaders a stage gets, in
order. Caps are `max_train_examples` (train) and `max_eval_examples` (every other split); an "example"
is what the reader yields (a GLUE row, a CoNLL sentence, a SQuAD question, a SWAG question).

What a task may ask of its DataModule is declared here and nowhere else: `split_names(stage)`,
`split(name)` (a `SplitData`: the examples read and the features encoded, for post-processing and
scoring), `tokenizer`, and `label_names`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from tokenizers import Tokenizer
from torch.utils.data import DataLoader, Dataset, Sampler

from bertlab.data.errors import DataConfigError, DataError
from bertlab.data.loaders import eval_loader, train_loader
from bertlab.data.progress import seconds
from bertlab.data.tokenizer import load_tokenizer, plain_tokenizer, special_ids

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test", "predict")
# the splits each Lightning stage reads; None (a direct setup() call) reads every labelled one
STAGE_SPLITS: dict[str | None, tuple[str, ...]] = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("predict",),
    None: ("train", "val", "test"),
}
_PLAIN = (str, int, float, bool, type(None))
SLOW_READ_S = 2.0  # reads slower than this are logged


def config_kind(name: str) -> str:
    """The split whose `data.<kind>_file` feeds `name`: predict reads test's."""
    kind = split_kind(name)
    return "test" if kind == "predict" else kind


def split_kind(name: str) -> str:
    """`val` for `val`/`val_matched`, `test` for `test`/`test_matched`, …: the part before `_`."""
    kind = name.split("_", 1)[0]
    if kind not in SPLITS:
        raise KeyError(f"unknown split {name!r}; splits are named {', '.join(SPLITS)} (optionally _<part>)")
    return kind


@dataclass
class SplitData(Dataset):
    """One split after reading and encoding: a map-style Dataset over `items` (default: `features`).

    `examples` are what the reader returned (after the cap), `features` the encoded rows that batches
    index (a SQuAD window, a CoNLL window); `items` groups features when one dataset item must keep
    several together (all windows of a sentence, so a distributed sampler never splits them).
    """

    name: str
    examples: Sequence[Any]
    features: Sequence[Any]
    source: str = ""
    items: Sequence[Any] | None = None

    def __len__(self) -> int:
        return len(self.items if self.items is not None else self.features)

    def __getitem__(self, index: int) -> Any:
        return (self.items if self.items is not None else self.features)[index]

    @property
    def lengths(self) -> list[int]:
        """Token count of every item, for length-grouped batching (items must have `input_ids`)."""
        return [len(f["input_ids"]) for f in (self.items if self.items is not None else self.features)]


class BertDataModule(L.LightningDataModule):
    """Base DataModule: the lazy tokenizer, files-or-hub sources, caps, stage-to-splits and loaders.

    Subclasses take their own arguments and pass the shared ones on (`**shared`), with their own defaults
    in `DEFAULTS`; every constructor argument with a plain value lands in `hparams` (so a `.ckpt` records
    it and loads under `weights_only`). Nothing is read before `prepare_data`/`setup`.
    """

    # a subclass's defaults for the shared arguments (SQuAD: 384 tokens), applied under what the caller gives
    DEFAULTS: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        *,
        tokenizer: str | Path | Tokenizer | None = None,
        train_file: str | Path | None = None,
        val_file: str | Path | None = None,
        test_file: str | Path | None = None,
        hub_name: str | None = None,
        max_seq_length: int = 128,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        num_workers: int = 0,
        max_train_examples: int | None = None,
        max_eval_examples: int | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        sizes = {
            "batch_size": batch_size,
            "eval_batch_size": eval_batch_size,
            "max_seq_length": max_seq_length,
        }
        for name, value in sizes.items():
            if value < 1:
                raise DataConfigError(f"data.{name}={value} must be >= 1; set a positive data.{name}")
        for name, value in (
            ("max_train_examples", max_train_examples),
            ("max_eval_examples", max_eval_examples),
        ):
            if value is not None and value < 1:
                raise DataConfigError(f"data.{name}={value} must be >= 1 or null (no cap)")
        if num_workers < 0:
            raise DataConfigError(f"data.num_workers={num_workers} must be >= 0 (0: the main process loads)")
        # plain values only: checkpoints load under torch's weights_only default; Lightning collects the
        # arguments of the subclass's __init__ too
        self.save_hyperparameters(logger=False)
        for key, value in list(self.hparams.items()):
            if isinstance(value, Path):
                self.hparams[key] = str(value)
            elif not isinstance(value, (*_PLAIN, list, tuple, dict)):
                self.hparams.pop(key)  # a ready Tokenizer object: the run config records its source
        self._tokenizer_source = tokenizer
        self._tokenizer: Tokenizer | None = tokenizer if isinstance(tokenizer, Tokenizer) else None
        self._plain: Tokenizer | None = None
        # predict reads the test source, labels or not; modules with another layout (GLUE) set their own
        self.files: dict[str, Path | None] = {
            name: None if path is None else Path(path)
            for name, path in (
                ("train", train_file),
                ("val", val_file),
                ("test", test_file),
                ("predict", test_file),
            )
        }
        self.hub_name = hub_name
        self.max_seq_length = max_seq_length
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers = num_workers
        self.max_train_examples, self.max_eval_examples = max_train_examples, max_eval_examples
        self.seed = seed
        self.splits: dict[str, SplitData] = {}

    # -- tokenizer ------------------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Tokenizer:
        """The WordPiece tokenizer, loaded on first use (a path, a hub name or a ready `Tokenizer`)."""
        if self._tokenizer is None:
            self._tokenizer = self.load_tokenizer()
        return self._tokenizer

    def load_tokenizer(self) -> Tokenizer:
        """Load the tokenizer from its source; pre-training overrides this to train one."""
        if self._tokenizer_source is None:
            raise ValueError("no tokenizer: pass tokenizer= a vocab.txt, tokenizer.json or checkpoint folder")
        return load_tokenizer(self._tokenizer_source)

    @property
    def plain_tokenizer(self) -> Tokenizer:
        """A copy of `tokenizer` with padding and truncation off (checkpoint tokenizer.json files set both)."""
        if self._plain is None:
            self._plain = plain_tokenizer(self.tokenizer)
        return self._plain

    @property
    def pad_id(self) -> int:
        """The [PAD] id that `collate` fills with."""
        return special_ids(self.tokenizer)["pad"]

    @property
    def label_names(self) -> list[str]:
        """Label strings in model-id order ([] when the task has none, or is a regression)."""
        return []

    # -- splits ---------------------------------------------------------------------------------------
    def split_names(self, stage: str) -> list[str]:
        """The splits whose loaders `stage` ("train", "val", "test", "predict") gets, in order."""
        return [split_kind(stage)]

    def has_split(self, name: str) -> bool:
        """Whether `name` has a source: its file, or the hub."""
        return self.files.get(name) is not None or self.hub_name is not None

    def cap(self, name: str) -> int | None:
        """`max_train_examples` for train, `max_eval_examples` for every other split."""
        return self.max_train_examples if split_kind(name) == "train" else self.max_eval_examples

    def read(self, name: str) -> Sequence[Any]:
        """The split's examples from its file or the hub; `DataError` naming file and line on bad input."""
        raise NotImplementedError

    def encode(self, name: str, examples: Sequence[Any]) -> SplitData:
        """Tokenise `examples` into a `SplitData` (features the loader batches)."""
        raise NotImplementedError

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]:
        """Pad a list of dataset items into one batch of tensors."""
        raise NotImplementedError

    def load(self, name: str) -> SplitData:
        """Read, cap and encode one split, once."""
        if name not in self.splits:
            started = time.perf_counter()
            examples = self.read(name)
            took = time.perf_counter() - started
            if (
                took >= SLOW_READ_S
            ):  # a large file (or the hub): say where the time went; encode shows its own
                label = type(self).__name__.removesuffix("DataModule")
                log.info("reading %s %s: %d examples in %s", label, name, len(examples), seconds(took))
            cap = self.cap(name)
            if cap is not None:
                examples = examples[:cap]
            if not examples:
                raise DataError(
                    self.files.get(name) or self.hub_name,
                    f"the {name} split has no examples",
                    f"pass a non-empty file as data.{config_kind(name)}_file",
                )
            self.splits[name] = self.encode(name, examples)
        return self.splits[name]

    def split(self, name: str) -> SplitData:
        """A split prepared by `setup` (loaded now if it was not), with a clear error when it has no source."""
        if name not in self.splits and not self.has_split(name):
            raise DataError(
                None,
                f"no {name} data",
                f"set data.{config_kind(name)}_file (or data.hub_name for a hub copy)",
            )
        return self.load(name)

    def setup(self, stage: str | None = None) -> None:
        """Read and encode the splits `stage` needs (the ones with a source), once."""
        kinds = STAGE_SPLITS.get(stage, STAGE_SPLITS[None])
        for kind in kinds:
            for name in self.split_names(kind):
                if self.has_split(name):
                    self.load(name)

    # -- loaders --------------------------------------------------------------------------------------
    def sampler(self, data: SplitData) -> Sampler | None:
        """The training sampler; None = shuffle (seeded with `seed` when set, else the global seed).

        A run resumed mid-epoch continues exactly with a custom sampler whose order is a function of its
        seed and epoch (`set_epoch`, as `LengthGroupedSampler`): the loader skips the indices already
        used. A sampler with other state must implement `state_dict` / `load_state_dict`.
        """
        return None

    def make_loader(self, data: SplitData, train: bool) -> DataLoader:
        """A loader over one split: train shuffled at `batch_size` (resumable, `train_loader`), others in
        order at `eval_batch_size` (`eval_loader`)."""
        if not train:
            return eval_loader(data, self.eval_batch_size, self.collate, self.num_workers)
        return train_loader(
            data, self.batch_size, self.collate, self.num_workers, sampler=self.sampler(data), seed=self.seed
        )

    def _loaders(self, stage: str) -> DataLoader | list[DataLoader]:
        loaders = [
            self.make_loader(self.split(name), train=stage == "train") for name in self.split_names(stage)
        ]
        return loaders[0] if len(loaders) == 1 else loaders

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches."""
        return self._loaders("train")  # type: ignore[return-value]

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """Dev batches in file order; a list when the task has several dev sets (MNLI)."""
        return self._loaders("val")

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        """Test batches in file order."""
        return self._loaders("test")

    def predict_dataloader(self) -> DataLoader | list[DataLoader]:
        """The predict split(s), read without labels, in file order."""
        return self._loaders("predict")


def pad_rows(rows: Sequence[Sequence[int]], value: int, width: int | None = None) -> torch.Tensor:
    """Right-pad lists of ids to one `(B, T)` long tensor, `T = width` or the longest row."""
    T = width if width is not None else max((len(r) for r in rows), default=0)
    out = torch.full((len(rows), T), value, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
    return out


def attention_mask(rows: Sequence[Sequence[int]], width: int | None = None) -> torch.Tensor:
    """`(B, T)` long: 1 on each row's real tokens, 0 on padding."""
    T = width if width is not None else max((len(r) for r in rows), default=0)
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    return (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).long()


__all__ = [
    "SPLITS",
    "STAGE_SPLITS",
    "BertDataModule",
    "SplitData",
    "attention_mask",
    "pad_rows",
    "split_kind",
]
