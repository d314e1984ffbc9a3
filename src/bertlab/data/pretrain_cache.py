"""Pre-training's Arrow cache: its keys, the WordPiece vocabulary trained on the corpus, and the `datasets`
plumbing that reads documents and builds NSP instances with `datasets.map`.

`PretrainDataModule` wires these together. The map functions are module-level so that `datasets` can
hash them (its own cache) and ship them to `num_proc` processes.

Where we differ from the original, on purpose: the random B document is drawn from the same *shard* (one
batch of `shard_docs` documents in the `datasets.map` that builds instances) instead of the whole corpus,
so shards are independent and the map runs with `num_proc` processes over a memory-mapped corpus larger
than RAM. A shard of thousands of documents makes this indistinguishable in practice; a shard with a
single document yields only IsNext pairs.
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
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import torch
from tokenizers import Tokenizer

from bertlab.data.corpus import CorpusSource, no_usable_documents, usable_documents
from bertlab.data.errors import DataError
from bertlab.data.masking import MaskingCollator, pad_sequences
from bertlab.data.nsp import create_instances, create_segment_instances
from bertlab.data.progress import datasets_step
from bertlab.data.tokenizer import load_tokenizer, special_ids, train_wordpiece

log = logging.getLogger(__name__)

# bump when the preprocessing output changes meaning (2: max_train_examples used to cap each file)
_CACHE_VERSION = "2"


# -- keys -----------------------------------------------------------------------------------------------


def sha(obj: Any) -> str:
    """Short stable hash of a JSON-able object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def corpus_key(source: CorpusSource, text_field: str, split: str, max_docs: int | None) -> str:
    """A key of the corpus's identity (file sizes and times too) and the options that choose its documents."""
    stats: list[Any] = [(p, f, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p, f in source.files]
    if source.kind == "pydoc":  # its text changes with the Python version
        stats.append(platform.python_version())
    return sha([_CACHE_VERSION, source.label, source.kind, stats, text_field, split, max_docs])


def data_key(corpus: str, tokenizer: Tokenizer, settings: Mapping[str, Any]) -> str:
    """The instances' cache key: corpus key, tokenizer contents and every instance/masking setting."""
    return sha([_CACHE_VERSION, corpus, sha(tokenizer.to_str()), dict(settings)])


# -- vocabulary -----------------------------------------------------------------------------------------


def cached_vocab(folder: Path, stamp: Mapping[str, Any]) -> Tokenizer | None:
    """The vocabulary trained earlier into `folder` with this same `stamp` (corpus and settings), if any."""
    saved = folder / "stamp.json"
    if saved.is_file() and json.loads(saved.read_text()) == dict(stamp):
        return load_tokenizer(folder / "tokenizer.json")
    return None


def train_vocab(
    train_docs: Any, folder: Path, stamp: Mapping[str, Any], vocab_size: int, lowercase: bool
) -> Tokenizer:
    """Train a WordPiece vocabulary on a documents dataset into `folder`, stamped with what it depends on."""
    if folder.exists():
        shutil.rmtree(folder)

    def texts() -> Iterator[list[str]]:
        for batch in train_docs.iter(batch_size=1000):
            yield [s for doc in batch["sentences"] for s in doc]

    log.info("training a WordPiece vocabulary of %d on %d documents", vocab_size, len(train_docs))
    train_wordpiece(texts=texts(), vocab_size=vocab_size, lowercase=lowercase, out_dir=folder)
    (folder / "stamp.json").write_text(json.dumps(dict(stamp)))
    return load_tokenizer(folder / "tokenizer.json")


# -- masking --------------------------------------------------------------------------------------------


def continuation_ids(tokenizer: Tokenizer) -> list[int]:
    """Ids of the `##` continuation pieces of a WordPiece vocabulary."""
    return sorted(i for t, i in tokenizer.get_vocab(with_added_tokens=False).items() if t.startswith("##"))


def masking_config(
    tokenizer: Tokenizer,
    mlm_probability: float,
    mask_token_prob: float,
    random_token_prob: float,
    whole_word_masking: bool,
    seed: int,
) -> dict[str, Any]:
    """`MaskingCollator` settings as a plain dict (it travels to `datasets` processes); `continuation_ids`
    set for whole-word masking."""
    ids = special_ids(tokenizer)
    return {
        "pad_id": ids["pad"],
        "mask_id": ids["mask"],
        "vocab_size": tokenizer.get_vocab_size(with_added_tokens=True),
        "special_ids": sorted(ids.values()),
        "mlm_probability": mlm_probability,
        "mask_token_prob": mask_token_prob,
        "random_token_prob": random_token_prob,
        "continuation_ids": continuation_ids(tokenizer) if whole_word_masking else None,
        "seed": seed,
    }


def make_collator(masking: Mapping[str, Any]) -> MaskingCollator:
    """A MaskingCollator from `masking_config`'s plain dict (continuation ids -> a (V,) bool table)."""
    cfg = dict(masking)
    cont_ids = cfg.pop("continuation_ids")
    if cont_ids is not None:
        table = torch.zeros(cfg["vocab_size"], dtype=torch.bool)
        table[cont_ids] = True
        cfg["is_continuation"] = table
    return MaskingCollator(**cfg)


def _static_mask(seqs: list[list[int]], masking: Mapping[str, Any], seed: int) -> tuple[list[Any], list[Any]]:
    """Mask variable-length sequences once, as the collator would; return (masked ids, labels) as lists."""
    if not seqs:
        return [], []
    collator = make_collator(masking)
    ids = pad_sequences(seqs, collator.pad_id)
    masked, labels = collator.mask(ids, torch.Generator().manual_seed(seed))
    lengths = [len(s) for s in seqs]
    return (
        [row[:n] for row, n in zip(masked.tolist(), lengths)],
        [row[:n] for row, n in zip(labels.tolist(), lengths)],
    )


# -- datasets.map functions -----------------------------------------------------------------------------


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
    max_seq_length: int,
    short_seq_prob: float,
    nsp_prob: float,
    dupe_factor: int,
    seed: int,
    masking: dict[str, Any] | None,
    nsp: bool = True,
    segment_pairs: bool = False,
) -> dict[str, list[Any]]:
    """Instances of one shard of documents (random B within the shard; without `nsp`, one contiguous
    segment each and no `next_sentence_label`); masked here when `masking` is set."""
    docs = batch["segments"]
    rng = random.Random(f"{seed}:{indices[0]}")  # str seeds are stable across runs and processes
    if not nsp:
        segments = create_segment_instances(
            docs, max_seq_length, rng, cls_id, sep_id, short_seq_prob, dupe_factor, segment_pairs
        )
        out: dict[str, list[Any]] = {
            "input_ids": [x["input_ids"] for x in segments],
            "token_type_ids": [x["token_type_ids"] for x in segments],
        }
    else:
        instances = create_instances(
            docs, max_seq_length, rng, cls_id, sep_id, short_seq_prob, nsp_prob, dupe_factor
        )
        out = {
            "input_ids": [x["input_ids"] for x in instances],
            "token_type_ids": [x["token_type_ids"] for x in instances],
            "next_sentence_label": [x["next_sentence_label"] for x in instances],
        }
    if masking is not None:
        out["input_ids"], out["mlm_labels"] = _static_mask(out["input_ids"], masking, rng.getrandbits(63))
    return out


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


# -- building -------------------------------------------------------------------------------------------


def read_documents(
    source: CorpusSource,
    key: str,
    label: str,
    text_field: str,
    split: str,
    cache_dir: Path,
    max_docs: int | None,
    num_proc: int,
) -> tuple[Any, np.ndarray]:
    """All documents as a cached Arrow dataset {"sentences": list[str]}, and the usable rows' indices.

    `key` (from `corpus_key`) keys `datasets`' cache under `cache_dir/datasets`; hub corpora download to
    `cache_dir/hub`. `DataError` (naming `label`) when no document has the two sentences NSP needs.
    """
    import datasets

    features = datasets.Features({"sentences": datasets.Sequence(datasets.Value("string"))})
    # max_docs needs one ordered reader; otherwise each process reads whole files
    parallel = source.kind == "files" and max_docs is None and len(source.files) > 1
    try:
        with datasets_step(f"reading {label}") as step:
            docs = datasets.Dataset.from_generator(
                _generate_documents,
                features=features,
                cache_dir=str(cache_dir / "datasets"),
                gen_kwargs={
                    "files": source.files if source.kind == "files" else None,
                    "kind": source.kind,
                    "label": source.label,
                    "text_field": text_field,
                    "split": split,
                    "cache_dir": str(cache_dir / "hub"),
                    "max_docs": max_docs,
                    "stamp": key,
                },
                num_proc=num_proc if parallel else None,
            )
            step.update(len(docs))
    except Exception as err:
        data_error = _unwrap_data_error(err)
        if data_error is not None:
            raise data_error from None
        # datasets cannot build a dataset of zero rows: re-read here for the precise DataError (empty
        # corpus, or no document of two sentences), quick exactly when the corpus is (nearly) empty
        for _ in usable_documents(source.documents(text_field, split), label, max_docs):
            pass
        raise
    # keep documents of >= 2 sentences (NSP needs them), counted with pyarrow rather than in Python
    lengths = pc.list_value_length(docs.data.column("sentences")).fill_null(0).to_numpy(zero_copy_only=False)
    usable = np.flatnonzero(lengths >= 2)
    if len(usable) == 0:
        raise no_usable_documents(label, len(docs))
    if len(usable) < len(docs):  # the documents too short, not those past the cap below
        warnings.warn(
            f"{label}: skipped {len(docs) - len(usable)} of {len(docs)} documents with fewer "
            "than 2 sentences (next-sentence pairs need 2)",
            stacklevel=3,
        )
    if max_docs is not None:
        # `datasets` runs the generator once per file of a list, so its cap held per file: cap the whole
        usable = usable[:max_docs]
    return docs, usable


def build_instances(
    docs: Any,
    tokenizer: Tokenizer,
    *,
    max_seq_length: int,
    short_seq_prob: float,
    nsp_prob: float,
    dupe_factor: int,
    seed: int,
    masking: dict[str, Any] | None,
    shard_docs: int,
    num_proc: int,
    desc: str,
    nsp: bool = True,
    segment_pairs: bool = False,
) -> Any:
    """Tokenise documents and build NSP instances (`nsp=False`: MLM-only segments, no
    `next_sentence_label` column; `segment_pairs` splits them into A|B), masked when `masking` is set: a
    datasets.Dataset.

    `tokenizer` must have padding and truncation off: sentences are encoded whole.
    """
    import datasets

    ids = special_ids(tokenizer)
    # one process: encode_batch already runs on every core (Rust threads); measured faster than num_proc=2
    with datasets_step(f"tokenising {desc} documents", len(docs)):
        tokenized = docs.map(
            _tokenize_batch,
            batched=True,
            batch_size=1000,
            fn_kwargs={"tokenizer": tokenizer},
            remove_columns=docs.column_names,
            desc=f"Tokenising {desc} documents",
            features=datasets.Features(
                {"segments": datasets.Sequence(datasets.Sequence(datasets.Value("int32")))}
            ),
        )
    features = {
        "input_ids": datasets.Sequence(datasets.Value("int32")),
        "token_type_ids": datasets.Sequence(datasets.Value("int8")),
    }
    if nsp:
        features["next_sentence_label"] = datasets.Value("int8")
    if masking is not None:
        features["mlm_labels"] = datasets.Sequence(datasets.Value("int32"))
    with datasets_step(f"building {desc} instances", len(docs)):
        return tokenized.map(
            _instances_batch,
            batched=True,
            batch_size=shard_docs,
            with_indices=True,
            num_proc=num_proc if num_proc > 1 and len(docs) >= 2 * shard_docs else None,
            remove_columns=tokenized.column_names,
            features=datasets.Features(features),
            desc=f"Building {desc} instances",
            fn_kwargs={
                "cls_id": ids["cls"],
                "sep_id": ids["sep"],
                "max_seq_length": max_seq_length,
                "short_seq_prob": short_seq_prob,
                "nsp_prob": nsp_prob,
                "dupe_factor": dupe_factor,
                "seed": seed,
                "masking": masking,
                "nsp": nsp,
                "segment_pairs": segment_pairs,
            },
        )


__all__ = [
    "build_instances",
    "cached_vocab",
    "continuation_ids",
    "corpus_key",
    "data_key",
    "make_collator",
    "masking_config",
    "read_documents",
    "sha",
    "train_vocab",
]
