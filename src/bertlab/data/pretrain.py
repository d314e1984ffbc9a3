"""Pre-training data: NSP sentence-pair instances (pure functions) and the LightningDataModule around them.

Instance creation follows google-research/bert `create_pretraining_data.py`: a document's sentences are
gathered into chunks of whole sentences up to a target length (`max_seq_len - 3`, or with probability
`short_seq_prob` a random length in [2, max]); A is a random-length prefix of the chunk; B is the rest of
the chunk (IsNext) or, with probability `nsp_prob`, text from a random other document (NotNext), and then
the unused segments are put back; the longer of A and B is trimmed from a random end until the pair fits.
Labels use transformers' convention: `next_sentence_label` 0 = IsNext, 1 = NotNext.

Where we differ from the original, on purpose:
- The original forces a random B whenever a chunk holds a single segment (a document's leftover last
  sentence, or one sentence longer than the target): on 8000 documents of the development Wikipedia dump at length
  128 that gives 43% IsNext, not 50%. Here a chunk closes only once it holds two segments, a lone last
  sentence joins the chunk before it, and a put-back that would leave only that lone sentence drops it;
  so the label is an exact Bernoulli(`nsp_prob`) draw (50.1% IsNext on the same documents, with 12% fewer,
  fuller instances).
- The random B document is drawn from the same *shard* (one batch of `shard_docs` documents in the
  `datasets.map` that builds instances) instead of the whole corpus, so shards are independent and the
  map runs with `num_proc` processes over a memory-mapped corpus larger than RAM. A shard of thousands
  of documents makes this indistinguishable in practice; a shard with a single document yields only
  IsNext pairs.
- Masking is dynamic by default (in the collator, fresh every epoch, as RoBERTa); `static_masking=True`
  masks at preprocessing, `dupe_factor` times with different segmentations and masks, as the original.
  The validation split is always masked statically, so its loss is comparable between epochs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import random
import shutil
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import pyarrow.compute as pc
import torch
from lightning import LightningDataModule
from tokenizers import Tokenizer
from torch.utils.data import DataLoader

from bertlab.data.corpus import CorpusSource, resolve_corpus, usable_documents
from bertlab.data.errors import DataError
from bertlab.data.masking import IGNORE_INDEX, MaskingCollator, pad_sequences
from bertlab.data.tokenizer import load_tokenizer, special_ids, train_wordpiece

log = logging.getLogger(__name__)

IS_NEXT, NOT_NEXT = 0, 1
_CACHE_VERSION = "1"  # bump when the preprocessing output changes meaning


class Instance(TypedDict):
    """One pre-training example before padding: `[CLS] A [SEP] B [SEP]` ids, token types and NSP label."""

    input_ids: list[int]
    token_type_ids: list[int]
    next_sentence_label: int


def truncate_seq_pair(
    tokens_a: list[int], tokens_b: list[int], max_num_tokens: int, rng: random.Random
) -> None:
    """Trim the longer of A and B in place, one token from a random end at a time, until both fit."""
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        trunc = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        # a random end, so the model does not learn that sequences are always cut at the back
        if rng.random() < 0.5:
            del trunc[0]
        else:
            trunc.pop()


def make_instance(
    tokens_a: Sequence[int], tokens_b: Sequence[int], label: int, cls_id: int, sep_id: int
) -> Instance:
    """`[CLS] A [SEP] B [SEP]` with token types 0 for [CLS] A [SEP] and 1 for B [SEP]."""
    input_ids = [cls_id, *tokens_a, sep_id, *tokens_b, sep_id]
    token_type_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
    return {"input_ids": input_ids, "token_type_ids": token_type_ids, "next_sentence_label": label}


def create_instances_from_document(
    all_documents: Sequence[Sequence[Sequence[int]]],
    document_index: int,
    max_seq_len: int,
    rng: random.Random,
    cls_id: int,
    sep_id: int,
    short_seq_prob: float = 0.1,
    nsp_prob: float = 0.5,
) -> list[Instance]:
    """NSP instances from one document (a list of token-id sentences); random B from the other documents."""
    if max_seq_len < 5:
        raise ValueError(f"max_seq_len={max_seq_len} leaves no room for [CLS] A [SEP] B [SEP]; use >= 5")
    document = all_documents[document_index]
    n = len(document)
    max_num_tokens = max_seq_len - 3
    # Usually fill the whole sequence; sometimes a shorter one, so fine-tuning on short inputs is not new.
    target = max_num_tokens
    if rng.random() < short_seq_prob:
        target = rng.randint(2, max_num_tokens)

    instances: list[Instance] = []
    chunk: list[Sequence[int]] = []
    length = 0
    i = 0
    while i < n:
        chunk.append(document[i])
        length += len(document[i])
        last = i == n - 1
        if last or (length >= target and len(chunk) >= 2 and n - i - 1 != 1):
            a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
            tokens_a = [t for seg in chunk[:a_end] for t in seg]
            tokens_b: list[int] = []
            has_other = len(all_documents) > 1
            random_next = has_other and (len(chunk) == 1 or rng.random() < nsp_prob)
            if random_next:
                other = rng.randrange(len(all_documents) - 1)
                other += other >= document_index  # skip this document itself
                random_doc = all_documents[other]
                target_b = target - len(tokens_a)
                for seg in random_doc[rng.randrange(len(random_doc)) :]:
                    tokens_b.extend(seg)
                    if len(tokens_b) >= target_b:
                        break
                unused = len(chunk) - a_end
                # Put the unused segments back for the next chunk, unless that is one lone last segment
                # (it could only make a forced-NotNext pair, which would bias the labels).
                if unused and not (last and unused == 1):
                    i -= unused
            else:
                tokens_b = [t for seg in chunk[a_end:] for t in seg]
            if tokens_a and tokens_b:
                truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
                instances.append(
                    make_instance(tokens_a, tokens_b, NOT_NEXT if random_next else IS_NEXT, cls_id, sep_id)
                )
            chunk, length = [], 0
        i += 1
    return instances


def create_instances(
    all_documents: Sequence[Sequence[Sequence[int]]],
    max_seq_len: int,
    rng: random.Random,
    cls_id: int,
    sep_id: int,
    short_seq_prob: float = 0.1,
    nsp_prob: float = 0.5,
    dupe_factor: int = 1,
) -> list[Instance]:
    """Instances of every document, `dupe_factor` passes (each segmented differently), shuffled."""
    instances: list[Instance] = []
    for _ in range(dupe_factor):
        for index in range(len(all_documents)):
            instances.extend(
                create_instances_from_document(
                    all_documents, index, max_seq_len, rng, cls_id, sep_id, short_seq_prob, nsp_prob
                )
            )
    rng.shuffle(instances)
    return instances


# ---------------------------------------------------------------------------------------------------------
# datasets plumbing: module-level functions so `datasets` can hash them (cache) and ship them to processes


def _generate_documents(
    files: list[tuple[str, str]] | None,
    kind: str,
    label: str,
    text_field: str,
    split: str,
    cache_dir: str | None,
    max_docs: int | None,
    stamp: str,
) -> Iterator[dict[str, list[str]]]:
    """Rows {"sentences": [...]} of every document of one shard of the corpus (`stamp` keys the cache).

    Short documents are kept here and filtered in the main process, so the skip warning is counted once;
    `max_docs` counts usable (>= 2 sentence) documents.
    """
    del stamp
    source = CorpusSource(label, kind, list(files or []))  # type: ignore[arg-type]
    usable = 0
    for doc in source.documents(text_field, split, cache_dir):
        if max_docs is not None and usable >= max_docs:
            break
        usable += len(doc) >= 2
        yield {"sentences": doc}


def _tokenize_batch(batch: dict[str, list[Any]], tokenizer: Tokenizer) -> dict[str, list[Any]]:
    """Sentences -> token ids per document, no special tokens; drop empty sentences and < 2-sentence docs."""
    docs = batch["sentences"]
    flat = [s for doc in docs for s in doc]
    encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)  # no offsets: faster
    encodings = encode(flat, add_special_tokens=False)
    out: list[list[list[int]]] = []
    k = 0
    for doc in docs:
        segments = [e.ids for e in encodings[k : k + len(doc)] if e.ids]
        k += len(doc)
        if len(segments) >= 2:
            out.append(segments)
    return {"segments": out}


def _instances_batch(
    batch: dict[str, list[Any]],
    indices: list[int],
    cls_id: int,
    sep_id: int,
    max_seq_len: int,
    short_seq_prob: float,
    nsp_prob: float,
    dupe_factor: int,
    seed: int,
    masking: dict[str, Any] | None,
) -> dict[str, list[Any]]:
    """Instances of one shard of documents (random B within the shard); masked here when `masking` is set."""
    docs = batch["segments"]
    rng = random.Random(f"{seed}:{indices[0]}")  # str seeds are stable across runs and processes
    instances = create_instances(
        docs, max_seq_len, rng, cls_id, sep_id, short_seq_prob, nsp_prob, dupe_factor
    )
    out: dict[str, list[Any]] = {
        "input_ids": [x["input_ids"] for x in instances],
        "token_type_ids": [x["token_type_ids"] for x in instances],
        "next_sentence_label": [x["next_sentence_label"] for x in instances],
    }
    if masking is not None:
        out["input_ids"], out["mlm_labels"] = _static_mask(out["input_ids"], masking, rng.getrandbits(63))
    return out


def _static_mask(seqs: list[list[int]], masking: dict[str, Any], seed: int) -> tuple[list[Any], list[Any]]:
    """Mask variable-length sequences once, as the collator would; return (masked ids, labels) as lists."""
    if not seqs:
        return [], []
    collator = _make_collator(masking)
    ids = pad_sequences(seqs, collator.pad_id)
    masked, labels = collator.mask(ids, torch.Generator().manual_seed(seed))
    lengths = [len(s) for s in seqs]
    return (
        [row[:n] for row, n in zip(masked.tolist(), lengths)],
        [row[:n] for row, n in zip(labels.tolist(), lengths)],
    )


def _make_collator(masking: dict[str, Any]) -> MaskingCollator:
    """A MaskingCollator from `_masking_config`'s plain dict (continuation ids -> a (V,) bool table)."""
    cfg = dict(masking)
    cont_ids = cfg.pop("continuation_ids")
    if cont_ids is not None:
        table = torch.zeros(cfg["vocab_size"], dtype=torch.bool)
        table[cont_ids] = True
        cfg["is_continuation"] = table
    return MaskingCollator(**cfg)


def _unwrap_data_error(err: BaseException) -> DataError | None:
    """The DataError behind an exception that `datasets` wrapped (e.g. DatasetGenerationError), if any."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, DataError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _sha(obj: Any) -> str:
    """Short stable hash of a JSON-able object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def continuation_ids(tokenizer: Tokenizer) -> list[int]:
    """Ids of the `##` continuation pieces of a WordPiece vocabulary."""
    return sorted(i for t, i in tokenizer.get_vocab(with_added_tokens=False).items() if t.startswith("##"))


class PretrainDataModule(LightningDataModule):
    """MLM + NSP pre-training batches from a text corpus, preprocessed once into a memory-mapped Arrow cache.

    `prepare_data` (one process per node) reads the corpus, splits documents into train/validation,
    trains a WordPiece vocabulary when `tokenizer` is None, tokenises and builds the NSP instances, and
    saves them under `cache_dir/pretrain/<key>/` (key = a hash of the corpus files and every setting).
    `setup` loads them (building first if needed), so a second run costs a second, not a rebuild.
    Batches hold `input_ids`, `token_type_ids`, `attention_mask`, `mlm_labels` (B, T) long and
    `next_sentence_label` (B,) long (0 = IsNext, 1 = NotNext), padded to the longest in the batch.

    Arguments worth a note: `corpus` is a file, folder, glob, `datasets` hub name (`name` or `name:config`,
    with `split`) or "pydoc"; `tokenizer` is a vocab.txt, tokenizer.json, folder or hub name, or None to
    train a `vocab_size` WordPiece on the training documents into `cache_dir/tokenizer/` (`vocab_path`);
    `lowercase` applies to a trained vocabulary and a bare vocab.txt, while a tokenizer.json keeps its own;
    `val_docs` (a count) or else `val_fraction` holds documents out before any instance is built;
    `shard_docs` documents share one pool of random NSP partners; `max_docs` caps usable documents.
    """

    def __init__(
        self,
        corpus: str = "pydoc",
        format: str = "auto",
        path: str | Path | None = None,
        text_field: str = "text",
        split: str = "train",
        tokenizer: str | Path | Tokenizer | None = None,
        vocab_size: int = 30522,
        lowercase: bool = True,
        max_seq_len: int = 128,
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
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        num_proc: int = 1,
        shard_docs: int = 4096,
        cache_dir: str | Path | None = None,
        seed: int = 0,
        max_docs: int | None = None,
    ) -> None:
        super().__init__()
        if max_seq_len < 5:
            raise ValueError(f"max_seq_len={max_seq_len} leaves no room for [CLS] A [SEP] B [SEP]; use >= 5")
        for name, p in (
            ("short_seq_prob", short_seq_prob),
            ("nsp_prob", nsp_prob),
            ("val_fraction", val_fraction),
        ):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name}={p} must lie in [0, 1]")
        if dupe_factor < 1 or batch_size < 1 or num_proc < 1 or shard_docs < 2:
            raise ValueError("dupe_factor, batch_size and num_proc must be >= 1, shard_docs >= 2")
        self.save_hyperparameters(ignore=["tokenizer"], logger=False)
        # `path` is the config-friendly name of a local corpus (data.path=...); it wins over `corpus`
        self.corpus = str(path) if path is not None else str(corpus)
        self.format, self.text_field, self.split = format, text_field, split
        self.vocab_size, self.lowercase = vocab_size, lowercase
        self.max_seq_len, self.short_seq_prob, self.nsp_prob = max_seq_len, short_seq_prob, nsp_prob
        self.mlm_probability, self.mask_token_prob = mlm_probability, mask_token_prob
        self.random_token_prob, self.whole_word_masking = random_token_prob, whole_word_masking
        self.static_masking, self.dupe_factor = static_masking, dupe_factor
        self.val_fraction, self.val_docs = val_fraction, val_docs
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.num_proc, self.shard_docs = num_workers, num_proc, shard_docs
        self.cache_dir = Path(cache_dir) if cache_dir is not None else Path.cwd() / ".cache" / "bertlab"
        self.seed, self.max_docs = seed, max_docs

        self.tokenizer: Tokenizer | None = None
        self.vocab_path: Path | None = None
        self._train_tokenizer = tokenizer is None
        if isinstance(tokenizer, Tokenizer):
            self.tokenizer = tokenizer
        elif tokenizer is not None:
            src = Path(tokenizer)
            # lowercase applies where the files cannot say (a bare vocab.txt); tokenizer.json keeps its own
            plain_vocab = (src.is_file() and src.suffix != ".json") or (
                src.is_dir() and not (src / "tokenizer.json").is_file()
            )
            self.tokenizer = load_tokenizer(tokenizer, lowercase if plain_vocab else None)
            if src.is_file() and src.suffix == ".txt":
                self.vocab_path = src
            elif src.is_dir() and (src / "vocab.txt").is_file():
                self.vocab_path = src / "vocab.txt"
        self.train_dataset: Any = None
        self.val_dataset: Any = None

    # --- keys and paths -----------------------------------------------------------------------------------

    @property
    def vocab_size_actual(self) -> int:
        """Size of the tokenizer's vocabulary (known after `prepare_data`/`setup` when it is trained)."""
        if self.tokenizer is None:
            raise RuntimeError(
                "the tokenizer is trained from the corpus: call prepare_data() and setup() first"
            )
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def _source(self) -> tuple[CorpusSource, str]:
        """The resolved corpus, and a key of its identity (file sizes and times too) and reading options."""
        source = resolve_corpus(self.corpus, self.format)
        stats: list[Any] = [(p, f, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p, f in source.files]
        if source.kind == "pydoc":  # its text changes with the Python version
            stats.append(platform.python_version())
        key = _sha(
            [_CACHE_VERSION, source.label, source.kind, stats, self.text_field, self.split, self.max_docs]
        )
        return source, key

    def _val_count(self, n: int) -> int:
        """Number of held-out documents out of `n` (at least 2 when any: NSP needs two documents)."""
        if self.val_docs is not None:
            n_val = self.val_docs
        elif self.val_fraction > 0:
            n_val = max(2, round(self.val_fraction * n))
        else:
            n_val = 0
        if n - n_val < 2:
            raise DataError(
                self.corpus,
                f"only {n} usable documents; holding out {n_val} for validation leaves "
                "fewer than 2 for training",
                "add documents or lower val_fraction / val_docs",
            )
        return n_val

    def _tokenizer_dir(self) -> Path:
        """Where a trained vocabulary lives: `cache_dir/tokenizer/`."""
        return self.cache_dir / "tokenizer"

    def _tokenizer_stamp(self, corpus_key: str) -> dict[str, Any]:
        """What a trained vocabulary depends on; a mismatch with the saved stamp means retraining."""
        return {
            "corpus": corpus_key,
            "vocab_size": self.vocab_size,
            "lowercase": self.lowercase,
            "val_fraction": self.val_fraction,
            "val_docs": self.val_docs,
            "seed": self.seed,
        }

    def _cached_tokenizer(self, corpus_key: str) -> Tokenizer | None:
        """The vocabulary trained earlier on this same corpus and settings, if the cache holds it."""
        folder = self._tokenizer_dir()
        stamp = folder / "stamp.json"
        if stamp.is_file() and json.loads(stamp.read_text()) == self._tokenizer_stamp(corpus_key):
            self.vocab_path = folder / "vocab.txt"
            return load_tokenizer(folder / "tokenizer.json")
        return None

    def _data_dir(self, corpus_key: str, tokenizer: Tokenizer) -> Path:
        """Cache folder of the instances for this corpus, tokenizer and every instance/masking setting."""
        settings = {
            k: v
            for k, v in self.hparams.items()
            if k not in {"batch_size", "eval_batch_size", "num_workers", "cache_dir", "corpus"}
        }
        key = _sha([_CACHE_VERSION, corpus_key, _sha(tokenizer.to_str()), settings])
        return self.cache_dir / "pretrain" / key

    # --- building -----------------------------------------------------------------------------------------

    def _documents(self, source: CorpusSource, corpus_key: str) -> tuple[Any, np.ndarray]:
        """All documents as a cached Arrow dataset {"sentences": list[str]}, and the usable rows' indices."""
        import datasets

        features = datasets.Features({"sentences": datasets.Sequence(datasets.Value("string"))})
        # max_docs needs one ordered reader; otherwise each process reads whole files
        num_proc = (
            self.num_proc
            if source.kind == "files" and self.max_docs is None and len(source.files) > 1
            else None
        )
        try:
            docs = datasets.Dataset.from_generator(
                _generate_documents,
                features=features,
                cache_dir=str(self.cache_dir / "datasets"),
                gen_kwargs={
                    "files": source.files if source.kind == "files" else None,
                    "kind": source.kind,
                    "label": source.label,
                    "text_field": self.text_field,
                    "split": self.split,
                    "cache_dir": str(self.cache_dir / "hub"),
                    "max_docs": self.max_docs,
                    "stamp": corpus_key,
                },
                num_proc=num_proc,
            )
        except Exception as err:
            data_error = _unwrap_data_error(err)
            if data_error is not None:
                raise data_error from None
            # datasets cannot build a dataset of zero rows: re-read here for the precise DataError (empty
            # corpus, or no document of two sentences), quick exactly when the corpus is (nearly) empty
            for _ in usable_documents(
                source.documents(self.text_field, self.split), self.corpus, self.max_docs
            ):
                pass
            raise
        # keep documents of >= 2 sentences (NSP needs them), counted with pyarrow rather than in Python
        lengths = (
            pc.list_value_length(docs.data.column("sentences")).fill_null(0).to_numpy(zero_copy_only=False)
        )
        usable = np.flatnonzero(lengths >= 2)
        if len(usable) == 0:
            if len(docs) == 0:
                raise DataError(
                    self.corpus,
                    "the corpus holds no documents",
                    "check the file is not empty and the format (text, wiki, jsonl) is right",
                )
            raise DataError(
                self.corpus,
                f"none of its {len(docs)} documents has 2 or more sentences, which next-sentence pairs need",
                "put one sentence per line and a blank line between documents",
            )
        if len(usable) < len(docs):
            warnings.warn(
                f"{self.corpus}: skipped {len(docs) - len(usable)} of {len(docs)} documents with fewer "
                "than 2 sentences (next-sentence pairs need 2)",
                stacklevel=3,
            )
        return docs, usable

    def _train_vocab(self, train_docs: Any, corpus_key: str) -> Tokenizer:
        """Train a WordPiece vocabulary on the training documents into `cache_dir/tokenizer/`."""
        folder = self._tokenizer_dir()
        if folder.exists():
            shutil.rmtree(folder)

        def texts() -> Iterator[list[str]]:
            for batch in train_docs.iter(batch_size=1000):
                yield [s for doc in batch["sentences"] for s in doc]

        log.info("training a WordPiece vocabulary of %d on %d documents", self.vocab_size, len(train_docs))
        train_wordpiece(texts=texts(), vocab_size=self.vocab_size, lowercase=self.lowercase, out_dir=folder)
        (folder / "stamp.json").write_text(json.dumps(self._tokenizer_stamp(corpus_key)))
        self.vocab_path = folder / "vocab.txt"
        return load_tokenizer(folder / "tokenizer.json")

    def _masking_config(self, tokenizer: Tokenizer) -> dict[str, Any]:
        """Collator settings; `continuation_ids` set for whole-word masking."""
        ids = special_ids(tokenizer)
        return {
            "pad_id": ids["pad"],
            "mask_id": ids["mask"],
            "vocab_size": tokenizer.get_vocab_size(with_added_tokens=True),
            "special_ids": sorted(ids.values()),
            "mlm_probability": self.mlm_probability,
            "mask_token_prob": self.mask_token_prob,
            "random_token_prob": self.random_token_prob,
            "continuation_ids": continuation_ids(tokenizer) if self.whole_word_masking else None,
            "seed": self.seed,
        }

    def _instances(self, docs: Any, tokenizer: Tokenizer, static: bool, dupe_factor: int, desc: str) -> Any:
        """Tokenise documents and build NSP instances (masked when `static`): a datasets.Dataset."""
        import datasets

        # encode sentences whole: a tokenizer.json may carry padding/truncation settings for other uses
        tok = Tokenizer.from_str(tokenizer.to_str())
        tok.no_padding()
        tok.no_truncation()
        ids = special_ids(tok)
        num_proc = self.num_proc if self.num_proc > 1 and len(docs) >= 2 * self.shard_docs else None
        # one process: encode_batch already runs on every core (Rust threads); measured faster than num_proc=2
        tokenized = docs.map(
            _tokenize_batch,
            batched=True,
            batch_size=1000,
            fn_kwargs={"tokenizer": tok},
            remove_columns=docs.column_names,
            desc=f"Tokenising {desc} documents",
            features=datasets.Features(
                {"segments": datasets.Sequence(datasets.Sequence(datasets.Value("int32")))}
            ),
        )
        features = {
            "input_ids": datasets.Sequence(datasets.Value("int32")),
            "token_type_ids": datasets.Sequence(datasets.Value("int8")),
            "next_sentence_label": datasets.Value("int8"),
        }
        if static:
            features["mlm_labels"] = datasets.Sequence(datasets.Value("int32"))
        return tokenized.map(
            _instances_batch,
            batched=True,
            batch_size=self.shard_docs,
            with_indices=True,
            num_proc=num_proc,
            remove_columns=tokenized.column_names,
            features=datasets.Features(features),
            desc=f"Building {desc} instances",
            fn_kwargs={
                "cls_id": ids["cls"],
                "sep_id": ids["sep"],
                "max_seq_len": self.max_seq_len,
                "short_seq_prob": self.short_seq_prob,
                "nsp_prob": self.nsp_prob,
                "dupe_factor": dupe_factor,
                "seed": self.seed,
                "masking": self._masking_config(tok) if static else None,
            },
        )

    def _build(self) -> Path:
        """Build (or find in the cache) the tokenizer and train/val instances; return the data folder."""
        source, corpus_key = self._source()
        tokenizer = self.tokenizer
        if self._train_tokenizer:
            tokenizer = self._cached_tokenizer(corpus_key)
        if tokenizer is not None:
            folder = self._data_dir(corpus_key, tokenizer)
            if (folder / "done.json").is_file():
                self.tokenizer = tokenizer
                return folder
        docs, usable = self._documents(source, corpus_key)
        n_val = self._val_count(len(usable))
        held_out = np.zeros(len(usable), dtype=bool)
        held_out[random.Random(self.seed).sample(range(len(usable)), n_val)] = True
        train_docs = docs.select(usable[~held_out])
        val_docs = docs.select(usable[held_out])
        if tokenizer is None:
            tokenizer = self._train_vocab(train_docs, corpus_key)
        self.tokenizer = tokenizer
        folder = self._data_dir(corpus_key, tokenizer)
        train = self._instances(train_docs, tokenizer, self.static_masking, self.dupe_factor, "train")
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
            val = self._instances(val_docs, tokenizer, True, 1, "validation")
            val.save_to_disk(str(folder / "val"))
            stats["val_instances"] = len(val)
        (folder / "done.json").write_text(json.dumps(stats))  # written last: marks a complete cache
        log.info("pre-training data in %s: %s", folder, stats)
        return folder

    # --- Lightning hooks ----------------------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Read, split, train the vocabulary if needed, tokenise and build instances into the cache."""
        self._build()

    def setup(self, stage: str | None = None) -> None:
        """Load the cached tokenizer and memory-mapped datasets (building them if `prepare_data` did not)."""
        if self.train_dataset is not None:
            return
        import datasets

        folder = self._build()
        self.train_dataset = datasets.load_from_disk(str(folder / "train"))
        self.val_dataset = datasets.load_from_disk(str(folder / "val")) if (folder / "val").is_dir() else None

    def collator(self) -> MaskingCollator:
        """The dynamic-masking, dynamic-padding collator for this tokenizer and these settings."""
        if self.tokenizer is None:
            raise RuntimeError("call setup() first")
        return _make_collator(self._masking_config(self.tokenizer))

    def _loader(self, dataset: Any, batch_size: int, shuffle: bool) -> DataLoader:
        """A DataLoader over a memory-mapped dataset with this module's collator."""
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=self.collator(),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches, masked afresh each time they are drawn."""
        if self.train_dataset is None:
            self.setup("fit")
        return self._loader(self.train_dataset, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader | list[Any]:
        """Validation batches with fixed (static) masks; an empty list when no documents are held out."""
        if self.train_dataset is None:
            self.setup("validate")
        if self.val_dataset is None:
            return []
        return self._loader(self.val_dataset, self.eval_batch_size, shuffle=False)


__all__ = [
    "IGNORE_INDEX",
    "IS_NEXT",
    "NOT_NEXT",
    "Instance",
    "PretrainDataModule",
    "continuation_ids",
    "create_instances",
    "create_instances_from_document",
    "make_instance",
    "truncate_seq_pair",
]
