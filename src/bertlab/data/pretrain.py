"""Pre-training data: the DataModule that turns a text corpus into MLM + NSP batches through an Arrow cache.

It wires pure pieces together: `corpus` reads documents, `nsp` builds the sentence-pair instances,
`pretrain_cache` keys the cache, trains the WordPiece vocabulary and runs the `datasets.map`s, and
`masking` corrupts the batches.

A pre-training *example* is a document. `max_train_examples` caps the usable (>= 2 sentence) documents
read, the held-out ones among them; `val_docs` (a count) or else `val_fraction` holds documents out before
any instance is built, and `max_eval_examples` caps that hold-out.

Masking is dynamic by default (fresh every epoch, as RoBERTa: the training loader masks each batch in
the main process from a generator whose state checkpoints keep, so a resumed run masks as an uninterrupted
one would); `static_masking=True` masks at preprocessing, `dupe_factor` times with different
segmentations and masks, as the original.
The validation split is always masked statically, so its loss is comparable between epochs, and with
`eval_masking` (the config's default: the paper's 15%, 80/10/10) rather than the training masking, so
held-out accuracy compares across recipes and Table 8's mixes; None masks it as training does.
The `test` split (mode=test) is the held-out documents (val's instances) or every usable document of
`test_file`, masked statically the same way; `trainer.test` with a given tokenizer builds only it.
With dynamic masking the training masking settings stay out of the cache key: the training instances
are unmasked, so a recipe that changes only its masking reuses the tokenised cache.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from lightning.pytorch.trainer.states import TrainerFn
from tokenizers import Tokenizer
from torch.utils.data import DataLoader

from bertlab.data.base import BertDataModule, SplitData, split_kind
from bertlab.data.corpus import resolve_corpus
from bertlab.data.errors import DataConfigError, DataError
from bertlab.data.loaders import eval_loader, train_loader
from bertlab.data.masking import MaskingCollator, check_eval_masking, check_masking, check_probabilities
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
from bertlab.data.pretrain_vocab import CorpusVocabulary

log = logging.getLogger(__name__)

# hparams that do not change the instances, so stay out of their cache key (the corpus and the tokenizer
# enter it through their own keys)
_NOT_IN_KEY = frozenset(
    {"batch_size", "eval_batch_size", "num_workers", "cache_dir", "corpus", "tokenizer", "hub_name"}
)
# the training masking: in the key only when it is applied at preprocessing (static_masking)
_TRAIN_MASKING = ("mlm_probability", "mask_token_prob", "random_token_prob", "whole_word_masking")


class PretrainDataModule(CorpusVocabulary, BertDataModule):
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
    `shard_docs` documents share one pool of random NSP partners. `nsp=False` (the "No NSP" ablation)
    builds one contiguous segment per instance instead (`nsp.create_segment_instances`: DOC-SENTENCES,
    token types all 0) and its batches have no `next_sentence_label`; `nsp_prob` is then unused.
    `segment_pairs` (with `nsp=False`) splits each segment at a random sentence boundary into `[CLS] A [SEP]
    B [SEP]`, token types 0/1, so sentence-pair fine-tuning meets trained segment-B inputs.
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
        nsp: bool = True,
        segment_pairs: bool = False,
        mlm_probability: float = 0.15,
        mask_token_prob: float = 0.8,
        random_token_prob: float = 0.1,
        whole_word_masking: bool = False,
        static_masking: bool = False,
        eval_masking: Mapping[str, Any] | None = None,
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
        check_masking(mlm_probability, mask_token_prob, random_token_prob)  # before any data is read
        eval_masking = check_eval_masking(eval_masking)
        if segment_pairs and nsp:
            raise DataConfigError(
                "data.segment_pairs=true is for MLM-only data (data.nsp=false); NSP instances are pairs already"
            )
        if dupe_factor < 1 or num_proc < 1 or shard_docs < 2:
            raise DataConfigError("dupe_factor and num_proc must be >= 1, shard_docs >= 2")
        shared = self.DEFAULTS | shared
        if shared.get("eval_batch_size") is None:
            shared["eval_batch_size"] = shared.get("batch_size", 32)
        super().__init__(**shared)
        if self.max_seq_length < 5:
            raise DataConfigError(
                f"max_seq_length={self.max_seq_length} leaves no room for [CLS] A [SEP] B [SEP]; use >= 5"
            )
        # `path` is the config-friendly name of a local corpus (data.path=...); it wins over `corpus`
        self.corpus = str(path) if path is not None else str(corpus)
        self.format, self.text_field, self.corpus_split = format, text_field, corpus_split
        self.vocab_size, self.lowercase = vocab_size, lowercase
        self.short_seq_prob, self.nsp_prob, self.nsp = short_seq_prob, nsp_prob, bool(nsp)
        self.segment_pairs = bool(segment_pairs)
        self.mlm_probability, self.mask_token_prob = mlm_probability, mask_token_prob
        self.random_token_prob, self.whole_word_masking = random_token_prob, whole_word_masking
        self.static_masking, self.dupe_factor = static_masking, dupe_factor
        self.eval_masking = eval_masking
        self.val_fraction, self.val_docs = val_fraction, val_docs
        self.num_proc, self.shard_docs = num_proc, shard_docs
        self.cache_dir = Path(cache_dir) if cache_dir is not None else Path.cwd() / ".cache" / "bertlab"
        self._trained_vocab: Path | None = None

    # --- keys and paths -----------------------------------------------------------------------------------

    def _settings(self) -> dict[str, Any]:
        """The hparams that key the instances; `nsp` only when off, so MLM + NSP keys stay as they were."""
        settings = {k: v for k, v in self.hparams.items() if k not in _NOT_IN_KEY}
        settings.pop("eval_masking", None)
        if not self.static_masking:
            for key in _TRAIN_MASKING:
                settings.pop(key, None)
        # what the held-out (val/test) instances are masked with
        settings["held_out_masking"] = self.eval_masking or {k: self.hparams.get(k) for k in _TRAIN_MASKING}
        pairs = settings.pop("segment_pairs", False)  # keys without it stay as they were
        if settings.get("nsp", True):
            settings.pop("nsp", None)
        else:  # a different instance layout, a different cache
            settings["layout"] = "doc-sentence-pairs" if pairs else "doc-sentences"
        return settings

    def _data_dir(self, corpus: str, tokenizer: Tokenizer) -> Path:
        """Cache folder of the instances for this corpus, tokenizer and every instance/masking setting."""
        settings = self._settings()
        # the test corpus is cached on its own (`_test_data`); None keeps train/val keys as they were
        settings["test_file"] = None
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
        """This module's training masking for its tokenizer (see `pretrain_cache.masking_config`)."""
        return masking_config(
            self.tokenizer,
            self.mlm_probability,
            self.mask_token_prob,
            self.random_token_prob,
            self.whole_word_masking,
            self.seed,
        )

    def _eval_masking(self) -> dict[str, Any]:
        """The held-out splits' masking: `eval_masking` (token-level, as the paper), else the training one."""
        if self.eval_masking is None:
            return self._masking()
        p = self.eval_masking
        return masking_config(
            self.tokenizer,
            p["mlm_probability"],
            p["mask_token_prob"],
            p["random_token_prob"],
            False,
            self.seed,
        )

    def _instances(self, docs: Any, masking: dict[str, Any] | None, dupe_factor: int, desc: str) -> Any:
        """NSP instances of a documents dataset (masked with `masking` unless None), encoded by the plain
        tokenizer."""
        return build_instances(
            docs,
            self.plain_tokenizer,  # sentences whole: a tokenizer.json may carry padding/truncation settings
            max_seq_length=self.max_seq_length,
            short_seq_prob=self.short_seq_prob,
            nsp_prob=self.nsp_prob,
            dupe_factor=dupe_factor,
            seed=self.seed,
            masking=masking,
            shard_docs=self.shard_docs,
            num_proc=self.num_proc,
            desc=desc,
            nsp=self.nsp,
            segment_pairs=self.segment_pairs,
        )

    def _build(self, with_train: bool = True) -> Path:
        """Build (or find in the cache) the tokenizer and train/val instances; return the data folder.

        `with_train=False` (testing with a given tokenizer) wants the held-out instances only: a complete
        cache's, else those alone, in the same folder marked `held_out.json` (a later fit builds the rest).
        """
        source = resolve_corpus(self.corpus, self.format)
        key = corpus_key(source, self.text_field, self.corpus_split, self.max_train_examples)
        trained = self._tokenizer_source is None
        tokenizer = cached_vocab(self._vocab_dir(), self._vocab_stamp(key)) if trained else self.tokenizer
        if tokenizer is not None:
            folder = self._data_dir(key, tokenizer)
            if (folder / "done.json").is_file() or (not with_train and (folder / "held_out.json").is_file()):
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
        shutil.rmtree(folder, ignore_errors=True)
        if not with_train:
            self._instances(val_docs, self._eval_masking(), 1, "validation").save_to_disk(str(folder / "val"))
            (folder / "held_out.json").write_text(json.dumps({"val_docs": len(val_docs)}))
            return folder
        static = self._masking() if self.static_masking else None
        train = self._instances(train_docs, static, self.dupe_factor, "train")
        if len(train) == 0:
            raise DataError(
                self.corpus,
                "no training instances could be built (documents tokenise to nothing)",
                "check the tokenizer matches the corpus language",
            )
        train.save_to_disk(str(folder / "train"))
        stats: dict[str, Any] = {
            "train_docs": len(train_docs),
            "train_instances": len(train),
            "val_docs": len(val_docs),
            "val_instances": 0,
        }
        if n_val:
            val = self._instances(val_docs, self._eval_masking(), 1, "validation")
            val.save_to_disk(str(folder / "val"))
            stats["val_instances"] = len(val)
        (folder / "done.json").write_text(json.dumps(stats))  # written last: marks a complete cache
        log.info("pre-training data in %s: %s", folder, stats)
        return folder

    def _test_data(self) -> Path:
        """The test instances' folder: the held-out documents' (val's), or every usable document of
        `test_file` (capped by `max_eval_examples`), cached under its own key."""
        if self._tokenizer_source is None:
            self._build()  # adopts the trained vocabulary (already built: prepare_data ran first)
        if self.files["test"] is None:
            return self._build(with_train=False) / "val"
        test_file = str(self.files["test"])
        source = resolve_corpus(test_file, "auto" if self.format == "pydoc" else self.format)
        key = corpus_key(source, self.text_field, self.corpus_split, self.max_eval_examples)
        settings = self._settings()
        folder = self.cache_dir / "pretrain" / data_key(f"test:{key}", self.tokenizer, settings)
        if not (folder / "done.json").is_file():
            docs, usable = read_documents(
                source, key, test_file, self.text_field, self.corpus_split, self.cache_dir,
                self.max_eval_examples, self.num_proc,
            )  # fmt: skip
            test = self._instances(docs.select(usable), self._eval_masking(), 1, "test")
            if len(test) == 0:
                problem = "no test instances (its documents tokenise to nothing)"
                raise DataError(test_file, problem, "check the tokenizer matches the corpus language")
            shutil.rmtree(folder, ignore_errors=True)
            test.save_to_disk(str(folder / "test"))
            (folder / "done.json").write_text(json.dumps({"docs": len(usable), "instances": len(test)}))
        return folder / "test"

    # --- splits and loaders -------------------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Read, hold out, train the vocabulary if needed, tokenise and build instances into the cache.

        Under `trainer.test` with a given tokenizer, only the test split (no training instances)."""
        testing = self.trainer is not None and self.trainer.state.fn == TrainerFn.TESTING
        if not testing or self._tokenizer_source is None:
            self._build()
        if testing and self.has_split("test"):
            self._test_data()

    def has_split(self, name: str) -> bool:
        """`train` always; `val` when documents are held out; `test` then too, or with `test_file`."""
        if name == "train":
            return True
        held_out = (self.val_docs if self.val_docs is not None else self.val_fraction) > 0
        if name == "val":
            return held_out
        return name == "test" and (held_out or self.files["test"] is not None)

    def split_names(self, stage: str) -> list[str]:
        """`[kind]` when that split has data (above), else `[]` (Lightning then skips the stage)."""
        kind = split_kind(stage)
        return [kind] if self.has_split(kind) else []

    def load(self, name: str) -> SplitData:
        """A split's instances, memory-mapped from the cache (built first if needed, train and val together;
        test on its own, see `_test_data`).

        `features` is the Arrow dataset of instances; no `examples` are kept (the cache holds instances).
        """
        if name not in self.splits:
            import datasets

            if name == "test":
                folder = self._test_data()
                self.splits[name] = SplitData(name, (), datasets.load_from_disk(str(folder)), str(folder))
                return self.splits[name]
            folder = self._build()
            for kind in ("train", "val"):
                if kind not in self.splits and (folder / kind).is_dir():
                    data = datasets.load_from_disk(str(folder / kind))
                    self.splits[kind] = SplitData(kind, (), data, source=str(folder / kind))
        return self.splits[name]

    def test_dataloader(self) -> DataLoader:
        """The test split's batches; a `DataError` when there is none (mode=test would score nothing)."""
        if not self.has_split("test"):
            problem = "no test data: no documents are held out (val_docs=0 or val_fraction=0), no test_file"
            raise DataError(self.corpus, problem, "set data.val_docs=<count> or data.test_file=<corpus>")
        return super().test_dataloader()  # type: ignore[return-value]

    def collator(self) -> MaskingCollator:
        """A dynamic-masking, dynamic-padding collator for this tokenizer and these settings."""
        return make_collator(self._masking())

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]:
        """Pad and mask one batch with a new collator (its own generator, seeded with `seed`)."""
        return self.collator()(items)

    @property
    def mask_generator(self) -> torch.Generator:
        """The generator of the training batches' dynamic masks, seeded with `seed`; checkpoints keep its
        state (`state_dict`), so a resumed run draws the masks an uninterrupted one would."""
        if getattr(self, "_mask_generator", None) is None:
            self._mask_generator = torch.Generator().manual_seed(self.seed)
        return self._mask_generator

    def state_dict(self) -> dict[str, Any]:
        """What Lightning stores in a checkpoint for this module: the masking generator's state."""
        return {"mask_generator": self.mask_generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "mask_generator" in state_dict:
            self.mask_generator.set_state(state_dict["mask_generator"])

    def make_loader(self, data: SplitData, train: bool) -> DataLoader:
        """A split's batches, padded in the loader (its workers). Training batches are shuffled (from the
        global RNG) and resumable, and are masked dynamically in the main process as they are yielded,
        from `mask_generator`; evaluation splits are masked statically."""
        collator = self.collator()
        if not train:
            return eval_loader(data.features, self.eval_batch_size, collator.pad, self.num_workers)
        return train_loader(
            data.features,  # the Arrow dataset itself: it fetches a batch's rows in one call
            self.batch_size,
            collator.pad,
            self.num_workers,
            transform=lambda batch: collator.mask_batch(batch, self.mask_generator),
        )


__all__ = ["PretrainDataModule"]
