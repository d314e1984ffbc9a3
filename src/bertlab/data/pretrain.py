"""Pre-training data: the DataModule that turns a text corpus into MLM + NSP batches through an Arrow cache.

It wires pure pieces together: `corpus` reads documents, `nsp` builds the sentence-pair instances,
`pretrain_cache` keys the cache, trains the WordPiece vocabulary and runs the `datasets.map`s, and
`masking` corrupts the batches.

A pre-training *example* is a document. `max_train_examples` caps the usable (>= 2 sentence) documents
read, the held-out ones among them; `val_docs` (a count) or else `val_fraction` holds documents out before
any instance is built, and `max_eval_examples` caps that hold-out.

Masking is dynamic by default (in the collator, fresh every epoch, as RoBERTa); `static_masking=True`
masks at preprocessing, `dupe_factor` times with different segmentations and masks, as the original.
The validation split is always masked statically, so its loss is comparable between epochs.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from tokenizers import Tokenizer
from torch.utils.data import DataLoader

from bertlab.data.base import BertDataModule, SplitData, split_kind
from bertlab.data.corpus import resolve_corpus
from bertlab.data.errors import DataError
from bertlab.data.masking import MaskingCollator, check_probabilities
from bertlab.data.pretrain_cache import (
    build_instances,
    cached_vocab,
    corpus_key,
    data_key,
    make_collator,
    masking_config,
    read_documents,
    train_vocab,
)
from bertlab.data.tokenizer import load_tokenizer

log = logging.getLogger(__name__)

# hparams that do not change the instances, so stay out of their cache key (the corpus and the tokenizer
# enter it through their own keys)
_NOT_IN_KEY = frozenset(
    {"batch_size", "eval_batch_size", "num_workers", "cache_dir", "corpus", "tokenizer", "hub_name"}
)


class PretrainDataModule(BertDataModule):
    """MLM + NSP pre-training batches from a text corpus, preprocessed once into a memory-mapped Arrow cache.

    `prepare_data` (one process per node) reads the corpus, holds documents out for validation, trains a
    WordPiece vocabulary when `tokenizer` is None, tokenises and builds the NSP instances, and saves them
    under `cache_dir/pretrain/<key>/` (key = a hash of the corpus files and every setting). `setup` loads
    them (building first if needed), so a second run costs a second, not a rebuild. Splits are `train`
    and `val` (when documents are held out); `split(name).features` is the instances' Arrow dataset.
    Batches hold `input_ids`, `token_type_ids`, `attention_mask`, `mlm_labels` (B, T) long and
    `next_sentence_label` (B,) long (0 = IsNext, 1 = NotNext), padded to the longest in the batch.

    Arguments worth a note: `corpus` is a file, folder, glob, `datasets` hub name (`name` or `name:config`,
    with `corpus_split`) or "pydoc"; `tokenizer` is a vocab.txt, tokenizer.json, folder or hub name, or None
    to train a `vocab_size` WordPiece on the training documents into `cache_dir/tokenizer/` (`vocab_path`);
    `lowercase` applies to a trained vocabulary and a bare vocab.txt, while a tokenizer.json keeps its own;
    `shard_docs` documents share one pool of random NSP partners.
    """

    DEFAULTS: ClassVar[dict[str, Any]] = {"seed": 0}

    def __init__(
        self,
        corpus: str = "pydoc",
        format: str = "auto",
        path: str | Path | None = None,
        text_field: str = "text",
        corpus_split: str = "train",
        vocab_size: int = 30522,
        lowercase: bool = True,
        short_seq_prob: float = 0.1,
        nsp_prob: float = 0.5,
        mlm_probability: float = 0.15,
        mask_token_prob: float = 0.8,
        random_token_prob: float = 0.1,
        whole_word_masking: bool = False,
        static_masking: bool = False,
        dupe_factor: int = 1,
        val_fraction: float = 0.01,
        val_docs: int | None = None,
        num_proc: int = 1,
        shard_docs: int = 4096,
        cache_dir: str | Path | None = None,
        **shared: Any,
    ) -> None:
        """Pre-training's own arguments; the rest (tokenizer, max_seq_length, batch sizes, caps, seed) are
        `BertDataModule`'s. `tokenizer=None` trains a vocabulary; `eval_batch_size=None` = `batch_size`."""
        check_probabilities(short_seq_prob=short_seq_prob, nsp_prob=nsp_prob, val_fraction=val_fraction)
        if dupe_factor < 1 or num_proc < 1 or shard_docs < 2:
            raise ValueError("dupe_factor and num_proc must be >= 1, shard_docs >= 2")
        shared = self.DEFAULTS | shared
        if shared.get("eval_batch_size") is None:
            shared["eval_batch_size"] = shared.get("batch_size", 32)
        super().__init__(**shared)
        if self.max_seq_length < 5:
            raise ValueError(
                f"max_seq_length={self.max_seq_length} leaves no room for [CLS] A [SEP] B [SEP]; use >= 5"
            )
        # `path` is the config-friendly name of a local corpus (data.path=...); it wins over `corpus`
        self.corpus = str(path) if path is not None else str(corpus)
        self.format, self.text_field, self.corpus_split = format, text_field, corpus_split
        self.vocab_size, self.lowercase = vocab_size, lowercase
        self.short_seq_prob, self.nsp_prob = short_seq_prob, nsp_prob
        self.mlm_probability, self.mask_token_prob = mlm_probability, mask_token_prob
        self.random_token_prob, self.whole_word_masking = random_token_prob, whole_word_masking
        self.static_masking, self.dupe_factor = static_masking, dupe_factor
        self.val_fraction, self.val_docs = val_fraction, val_docs
        self.num_proc, self.shard_docs = num_proc, shard_docs
        self.cache_dir = Path(cache_dir) if cache_dir is not None else Path.cwd() / ".cache" / "bertlab"
        self._trained_vocab: Path | None = None

    # --- tokenizer ----------------------------------------------------------------------------------------

    def load_tokenizer(self) -> Tokenizer:
        """The given tokenizer, with `lowercase` where its files cannot say; a trained one comes from
        `prepare_data`."""
        src = self._tokenizer_source
        if src is None:
            raise RuntimeError(
                "the tokenizer is trained from the corpus: call prepare_data() and setup() first"
            )
        path = Path(src)
        # lowercase applies where the files cannot say (a bare vocab.txt); tokenizer.json keeps its own
        bare = (path.is_file() and path.suffix != ".json") or (
            path.is_dir() and not (path / "tokenizer.json").is_file()
        )
        return load_tokenizer(src, self.lowercase if bare else None)

    @property
    def vocab_path(self) -> Path | None:
        """The vocab.txt behind the tokenizer: the given file or folder's, or the trained one (after
        `prepare_data`); None for a tokenizer.json or a `Tokenizer` object."""
        src = self._tokenizer_source
        if src is None:
            return self._trained_vocab
        if isinstance(src, Tokenizer):
            return None
        path = Path(src)
        if path.is_file() and path.suffix == ".txt":
            return path
        if path.is_dir() and (path / "vocab.txt").is_file():
            return path / "vocab.txt"
        return None

    @property
    def vocab_size_actual(self) -> int:
        """Size of the tokenizer's vocabulary (known after `prepare_data`/`setup` when it is trained)."""
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def _use_tokenizer(self, tokenizer: Tokenizer) -> None:
        """Adopt a tokenizer found in or written to the cache (a trained one also sets `vocab_path`)."""
        self._tokenizer, self._plain = tokenizer, None
        if self._tokenizer_source is None:
            self._trained_vocab = self._vocab_dir() / "vocab.txt"

    # --- keys and paths -----------------------------------------------------------------------------------

    def _vocab_dir(self) -> Path:
        """Where a trained vocabulary lives: `cache_dir/tokenizer/`."""
        return self.cache_dir / "tokenizer"

    def _vocab_stamp(self, corpus: str) -> dict[str, Any]:
        """What a trained vocabulary depends on; a mismatch with the saved stamp means retraining."""
        return {
            "corpus": corpus,
            "vocab_size": self.vocab_size,
            "lowercase": self.lowercase,
            "val_fraction": self.val_fraction,
            "val_docs": self.val_docs,
            "max_eval_examples": self.max_eval_examples,
            "seed": self.seed,
        }

    def _data_dir(self, corpus: str, tokenizer: Tokenizer) -> Path:
        """Cache folder of the instances for this corpus, tokenizer and every instance/masking setting."""
        settings = {k: v for k, v in self.hparams.items() if k not in _NOT_IN_KEY}
        return self.cache_dir / "pretrain" / data_key(corpus, tokenizer, settings)

    def _val_count(self, n: int) -> int:
        """Number of held-out documents out of `n` (at least 2 by fraction: NSP needs two documents)."""
        if self.val_docs is not None:
            n_val = self.val_docs
        elif self.val_fraction > 0:
            n_val = max(2, round(self.val_fraction * n))
        else:
            n_val = 0
        if self.max_eval_examples is not None:
            n_val = min(n_val, self.max_eval_examples)
        if n - n_val < 2:
            raise DataError(
                self.corpus,
                f"only {n} usable documents; holding out {n_val} for validation leaves "
                "fewer than 2 for training",
                "add documents or lower val_fraction / val_docs",
            )
        return n_val

    # --- building -----------------------------------------------------------------------------------------

    def _masking(self) -> dict[str, Any]:
        """This module's masking settings for its tokenizer (see `pretrain_cache.masking_config`)."""
        return masking_config(
            self.tokenizer,
            self.mlm_probability,
            self.mask_token_prob,
            self.random_token_prob,
            self.whole_word_masking,
            self.seed,
        )

    def _instances(self, docs: Any, static: bool, dupe_factor: int, desc: str) -> Any:
        """NSP instances of a documents dataset (masked when `static`), encoded by the plain tokenizer."""
        return build_instances(
            docs,
            self.plain_tokenizer,  # sentences whole: a tokenizer.json may carry padding/truncation settings
            max_seq_length=self.max_seq_length,
            short_seq_prob=self.short_seq_prob,
            nsp_prob=self.nsp_prob,
            dupe_factor=dupe_factor,
            seed=self.seed,
            masking=self._masking() if static else None,
            shard_docs=self.shard_docs,
            num_proc=self.num_proc,
            desc=desc,
        )

    def _build(self) -> Path:
        """Build (or find in the cache) the tokenizer and train/val instances; return the data folder."""
        source = resolve_corpus(self.corpus, self.format)
        key = corpus_key(source, self.text_field, self.corpus_split, self.max_train_examples)
        trained = self._tokenizer_source is None
        tokenizer = cached_vocab(self._vocab_dir(), self._vocab_stamp(key)) if trained else self.tokenizer
        if tokenizer is not None:
            folder = self._data_dir(key, tokenizer)
            if (folder / "done.json").is_file():
                self._use_tokenizer(tokenizer)
                return folder
        docs, usable = read_documents(
            source,
            key,
            self.corpus,
            self.text_field,
            self.corpus_split,
            self.cache_dir,
            self.max_train_examples,
            self.num_proc,
        )
        n_val = self._val_count(len(usable))
        held_out = np.zeros(len(usable), dtype=bool)
        held_out[random.Random(self.seed).sample(range(len(usable)), n_val)] = True
        train_docs = docs.select(usable[~held_out])
        val_docs = docs.select(usable[held_out])
        if tokenizer is None:
            stamp = self._vocab_stamp(key)
            tokenizer = train_vocab(train_docs, self._vocab_dir(), stamp, self.vocab_size, self.lowercase)
        self._use_tokenizer(tokenizer)
        folder = self._data_dir(key, tokenizer)
        train = self._instances(train_docs, self.static_masking, self.dupe_factor, "train")
        if len(train) == 0:
            raise DataError(
                self.corpus,
                "no training instances could be built (documents tokenise to nothing)",
                "check the tokenizer matches the corpus language",
            )
        if folder.exists():
            shutil.rmtree(folder)
        train.save_to_disk(str(folder / "train"))
        stats: dict[str, Any] = {
            "train_docs": len(train_docs),
            "train_instances": len(train),
            "val_docs": len(val_docs),
            "val_instances": 0,
        }
        if n_val:
            val = self._instances(val_docs, True, 1, "validation")
            val.save_to_disk(str(folder / "val"))
            stats["val_instances"] = len(val)
        (folder / "done.json").write_text(json.dumps(stats))  # written last: marks a complete cache
        log.info("pre-training data in %s: %s", folder, stats)
        return folder

    # --- splits and loaders -------------------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Read, hold out, train the vocabulary if needed, tokenise and build instances into the cache."""
        self._build()

    def has_split(self, name: str) -> bool:
        """`train` always; `val` when documents are held out; pre-training has no test or predict data."""
        if name == "train":
            return True
        if name == "val":
            return (self.val_docs if self.val_docs is not None else self.val_fraction) > 0
        return False

    def split_names(self, stage: str) -> list[str]:
        """`["train"]`, `["val"]` when documents are held out, else `[]` (Lightning then skips the stage)."""
        kind = split_kind(stage)
        return [kind] if self.has_split(kind) else []

    def load(self, name: str) -> SplitData:
        """A split's instances, memory-mapped from the cache (built first if needed, train and val together).

        `features` is the Arrow dataset of instances; no `examples` are kept (the cache holds instances).
        """
        if not self.splits:
            import datasets

            folder = self._build()
            for kind in ("train", "val"):
                if (folder / kind).is_dir():
                    data = datasets.load_from_disk(str(folder / kind))
                    self.splits[kind] = SplitData(kind, (), data, source=str(folder / kind))
        return self.splits[name]

    def collator(self) -> MaskingCollator:
        """A dynamic-masking, dynamic-padding collator for this tokenizer and these settings."""
        return make_collator(self._masking())

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]:
        """Pad and mask one batch with a new collator (each loader keeps one, so masks vary batch to batch)."""
        return self.collator()(items)

    def make_loader(self, data: SplitData, train: bool) -> DataLoader:
        """Batches of a split with its own masking collator; train is shuffled by the global RNG."""
        return DataLoader(
            data.features,  # the Arrow dataset itself: it fetches a batch's rows in one call
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            num_workers=self.num_workers,
            collate_fn=self.collator(),
            persistent_workers=self.num_workers > 0,
        )


__all__ = ["PretrainDataModule"]
