"""CoNLL-2003 named entity recognition: reader, sub-token label alignment in windows, DataModule.

The paper (section 5.3) feeds WordPiece tokens, predicts each word from its first sub-token and uses
"maximal document context". Where this module goes further than the paper says:

- Tags are read with conlleval's chunk rules, which agree for IOB1 (the original CoNLL-2003 files) and
  IOB2/BIO files, and are rewritten in one `scheme` (IOB2 by default), so files in either scheme load.
- Every word is predicted exactly once. A sentence longer than `max_seq_length - 2` word pieces is not
  truncated: it is cut into several windows, each owning a contiguous span of words (labels on their
  first pieces) and filling the rest of its room with the words around that span (labels -100).
- `document_context=True` fills that room with the neighbouring sentences of the same document, centred
  on the target sentence; sentences are joined without a separator, all in segment A (type id 0).
- A word that tokenises to no piece at all (only control or zero-width characters) is fed as [UNK], so it
  still gets a prediction; a word longer than the window keeps its first pieces only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from tokenizers import Tokenizer
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from bertlab.data.errors import DataError
from bertlab.data.loaders import SplitLoaders
from bertlab.data.tokenizer import LazyTokenizer, plain_tokenizer, special_ids
from bertlab.metrics.ner import CONLL_TYPES, get_chunks

IGNORE_INDEX = -100
LABEL_NAMES: tuple[str, ...] = ("O", *(f"{p}-{t}" for t in CONLL_TYPES for p in "BI"))
SPLITS: tuple[str, ...] = ("train", "val", "test")
HUB_SPLITS: dict[str, str] = {"train": "train", "val": "validation", "test": "test"}
TAG_SCHEMES: tuple[str, ...] = ("IOB1", "IOB2")


@dataclass(frozen=True)
class Sentence:
    """One sentence: its words, one tag per word, its document's index and the file line of its first word."""

    words: tuple[str, ...]
    tags: tuple[str, ...]
    doc: int
    line: int | None = None


@dataclass(frozen=True)
class Window:
    """One model input `(T,)`: [CLS] context + owned words + context [SEP] of sentence `sentence`.

    `word_ids[t]` is the index (in the sentence) of the owned word that piece t belongs to, None for
    special tokens, context and pieces of words another window owns, as `Encoding.word_ids` but restricted.
    `labels[t]` is that word's label id on its first piece and -100 everywhere else.
    """

    sentence: int
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    word_ids: tuple[int | None, ...]


# ---------------------------------------------------------------------------------------------- tags


def convert_tags(tags: Sequence[str], scheme: str = "IOB2") -> list[str]:
    """Rewrite IOB1 or IOB2 tags `(N,)` in `scheme`, keeping the chunks conlleval reads from them."""
    if scheme not in TAG_SCHEMES:
        raise ValueError(f"unknown NER scheme {scheme!r}; use one of {TAG_SCHEMES}")
    out = ["O"] * len(tags)
    prev_end, prev_type = -1, ""
    for kind, start, end in get_chunks(tags, "IOB1"):
        # IOB1 writes B- only where a chunk directly follows one of the same type
        begin = scheme == "IOB2" or (start == prev_end and kind == prev_type)
        out[start] = f"{'B' if begin else 'I'}-{kind}"
        for i in range(start + 1, end):
            out[i] = f"I-{kind}"
        prev_end, prev_type = end, kind
    return out


def _check_tag(tag: str, label_names: Sequence[str], path: str | Path | None, line: int | None) -> None:
    """Raise DataError naming the file and line when `tag` is outside the label set."""
    if tag not in label_names:
        raise DataError(
            path,
            f"unknown NER tag {tag!r}",
            f"use one of {', '.join(label_names)} (IOB1 or IOB2 tags)",
            line=line,
        )


# ---------------------------------------------------------------------------------------------- reading


def read_conll(
    path: str | Path,
    scheme: str = "IOB2",
    columns: int | None = 4,
    label_names: Sequence[str] = LABEL_NAMES,
) -> list[Sentence]:
    """Read a CoNLL-2003 file (`word POS chunk NER` per line, blank lines between sentences).

    `-DOCSTART-` lines start a new document; the word is the first column and the tag the last.
    `columns=None` takes the column count from the first word line; every word line must have it.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found", "pass the path of a CoNLL-2003 file such as eng.train")
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    first_line = 0
    doc = -1

    def close() -> None:
        if words:
            sentences.append(
                Sentence(tuple(words), tuple(convert_tags(tags, scheme)), max(doc, 0), first_line)
            )
            words.clear()
            tags.clear()

    convert_tags([], scheme)  # validates `scheme` before reading
    try:
        with path.open(encoding="utf-8") as f:
            for number, raw in enumerate(f, start=1):
                parts = raw.split()
                if not parts:
                    close()
                    continue
                if parts[0] == "-DOCSTART-":
                    close()
                    doc += 1
                    continue
                if columns is None:
                    columns = len(parts)
                if len(parts) != columns or len(parts) < 2:
                    expected = columns if columns >= 2 else "at least 2"
                    raise DataError(
                        path,
                        f"expected {expected} space-separated columns (word ... NER tag), found {len(parts)}",
                        "fix the line or pass the file's column count as `columns`",
                        line=number,
                    )
                _check_tag(parts[-1], label_names, path, number)
                if not words:
                    first_line = number
                    doc = max(doc, 0)  # a file without -DOCSTART- lines is one document
                words.append(parts[0])
                tags.append(parts[-1])
    except UnicodeDecodeError as err:
        raise DataError(path, f"not UTF-8 text ({err.reason})", "re-encode the file as UTF-8") from err
    close()
    if not sentences:
        raise DataError(path, "no sentences found", "pass a CoNLL file with one `word ... tag` line per word")
    return sentences


def load_hub_conll(hub_name: str, split: str, scheme: str = "IOB2") -> list[Sentence]:
    """Read a split ("train", "val", "test") of a hub copy such as `eriktks/conll2003` via `datasets`.

    The hub copies drop the -DOCSTART- lines, so every sentence is its own document there.
    """
    try:
        import datasets

        data = datasets.load_dataset(hub_name, split=HUB_SPLITS[split])
        names = data.features["ner_tags"].feature.names
    except Exception as err:  # the hub client raises many types, all meaning "not available"
        reason = str(err).splitlines()[0][:200] if str(err) else ""
        raise DataError(
            hub_name,
            f"could not load the {split!r} split from the Hugging Face hub ({type(err).__name__}: {reason})",
            "pass local CoNLL files as train_file/val_file/test_file, or check the connection",
        ) from err
    sentences = []
    for i, row in enumerate(data):
        tags = [names[t] for t in row["ner_tags"]]
        for tag in tags:
            _check_tag(tag, LABEL_NAMES, f"{hub_name}[{HUB_SPLITS[split]}]", i)
        sentences.append(Sentence(tuple(row["tokens"]), tuple(convert_tags(tags, scheme)), doc=i, line=None))
    return sentences


# ---------------------------------------------------------------------------------------------- alignment


def align_labels(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """Token labels `(T,)`: each word's label on its first piece, -100 on later pieces and on None."""
    labels = []
    previous: int | None = None
    for word in word_ids:
        labels.append(IGNORE_INDEX if word is None or word == previous else word_labels[word])
        previous = word
    return labels


def word_pieces(tokenizer: Tokenizer, sentences: Sequence[Sequence[str]]) -> list[list[list[int]]]:
    """Piece ids of every word `(S, N_s, pieces)`; a word with no piece gets an empty list."""
    tok = plain_tokenizer(tokenizer)  # a tokenizer.json's own padding or truncation would corrupt word ids
    encodings = tok.encode_batch(
        [list(words) for words in sentences], is_pretokenized=True, add_special_tokens=False
    )
    out = []
    for words, enc in zip(sentences, encodings):
        pieces: list[list[int]] = [[] for _ in words]
        for piece, word in zip(enc.ids, enc.word_ids):
            if word is not None:
                pieces[word].append(piece)
        out.append(pieces)
    return out


def _split_words(lengths: Sequence[int], budget: int) -> list[tuple[int, int]]:
    """Cut words with `lengths` pieces into contiguous spans `[a, b)` of at most `budget` pieces, evenly."""
    total = sum(lengths)
    if total <= budget:
        return [(0, len(lengths))]
    # aim at equal spans rather than full ones, so every owned word keeps some context on both sides
    target = math.ceil(total / math.ceil(total / budget))
    spans, start, size = [], 0, 0
    for i, n in enumerate(lengths):
        if size and size + n > target:
            spans.append((start, i))
            start, size = i, 0
        size += n
    spans.append((start, len(lengths)))
    return spans


def build_windows(
    pieces: Sequence[Sequence[Sequence[int]]],
    labels: Sequence[Sequence[int]] | None,
    docs: Sequence[int] | None,
    *,
    cls_id: int,
    sep_id: int,
    unk_id: int,
    max_seq_length: int = 128,
    document_context: bool = False,
) -> list[Window]:
    """Model windows for sentences given as word pieces `(S, N_s, pieces)` and word label ids `(S, N_s)`.

    Each word is owned by exactly one window. Context is the rest of the sentence, or with
    `document_context` the consecutive sentences sharing `docs[s]`, split evenly left and right.
    """
    budget = max_seq_length - 2
    if budget < 1:
        raise ValueError(f"max_seq_length={max_seq_length} leaves no room between [CLS] and [SEP]")
    sentence_pieces = [[list(p[:budget]) or [unk_id] for p in sent] for sent in pieces]
    # streams: runs of sentences whose windows may borrow each other's pieces as context
    groups: list[list[int]] = []
    for s in range(len(sentence_pieces)):
        same_doc = document_context and docs is not None and s > 0 and docs[s] == docs[s - 1]
        if same_doc:
            groups[-1].append(s)
        else:
            groups.append([s])
    windows: list[Window] = []
    for group in groups:
        stream: list[int] = []
        owner: list[tuple[int, int]] = []  # (sentence, word) of every stream position
        offsets: dict[int, list[int]] = {}
        for s in group:
            offsets[s] = []
            for w, word in enumerate(sentence_pieces[s]):
                offsets[s].append(len(stream))
                stream.extend(word)
                owner.extend((s, w) for _ in word)
        for s in group:
            lengths = [len(p) for p in sentence_pieces[s]]
            for first, last in _split_words(lengths, budget):
                a = offsets[s][first]
                b = offsets[s][last - 1] + lengths[last - 1]
                room = budget - (b - a)
                left = min(a, room // 2)
                right = min(len(stream) - b, room - left)
                left = min(a, room - right)  # give what the right side could not use back to the left
                word_ids: list[int | None] = [None]
                for t in range(a - left, b + right):
                    sent, word = owner[t]
                    word_ids.append(word if sent == s and first <= word < last else None)
                word_ids.append(None)
                input_ids = (cls_id, *stream[a - left : b + right], sep_id)
                token_labels = (
                    align_labels(word_ids, labels[s])
                    if labels is not None
                    else [IGNORE_INDEX] * len(word_ids)
                )
                windows.append(Window(s, input_ids, tuple(token_labels), tuple(word_ids)))
    return windows


def _rows(predictions: Tensor | Sequence[Any]) -> list[list[int]]:
    """Predicted label ids per window from ids `(W, T)`, logits `(W, T, C)` or a list of either per window."""
    if isinstance(predictions, Tensor):
        if predictions.dim() == 3:
            predictions = predictions.argmax(-1)
        return predictions.tolist()
    rows = []
    for row in predictions:
        if isinstance(row, Tensor):
            row = (row.argmax(-1) if row.dim() == 2 else row).tolist()
        rows.append(list(row))
    return rows


def decode_windows(
    predictions: Tensor | Sequence[Any],
    word_ids: Sequence[Sequence[int | None]],
    sentence_ids: Sequence[int],
    label_names: Sequence[str],
    num_words: Sequence[int] | dict[int, int] | None = None,
) -> list[list[str]]:
    """Word tags per sentence from token predictions `(W, T)` (or logits `(W, T, C)`) of windows.

    Each word takes the prediction at its first piece. Sentences come out in order of first appearance
    in `sentence_ids`; a word predicted by no window or by two windows raises ValueError.
    """
    rows = _rows(predictions)
    if not len(rows) == len(word_ids) == len(sentence_ids):
        raise ValueError(
            f"{len(rows)} predictions, {len(word_ids)} word id lists, {len(sentence_ids)} sentence ids"
        )
    found: dict[int, dict[int, int]] = {}
    for row, ids, s in zip(rows, word_ids, sentence_ids):
        if len(row) < len(ids):
            raise ValueError(f"a prediction row has {len(row)} tokens but its window has {len(ids)}")
        words = found.setdefault(s, {})
        previous: int | None = None
        for t, word in enumerate(ids):
            if word is not None and word != previous:
                if word in words:
                    raise ValueError(f"word {word} of sentence {s} is predicted twice")
                words[word] = row[t]
            previous = word
    out = []
    for s, words in found.items():
        n = num_words[s] if num_words is not None else max(words) + 1
        missing = [w for w in range(n) if w not in words]
        if missing:
            raise ValueError(f"sentence {s}: words {missing[:5]} have no prediction; pass every window of it")
        out.append([label_names[words[w]] for w in range(n)])
    return out


# ---------------------------------------------------------------------------------------------- batching


class _SentenceDataset(Dataset):
    """Items are sentences, each the list of its windows, so a sentence never straddles batches or ranks."""

    def __init__(self, windows: Sequence[Window]) -> None:
        self.groups: list[list[tuple[int, Window]]] = []
        for i, window in enumerate(windows):
            if not self.groups or self.groups[-1][0][1].sentence != window.sentence:
                self.groups.append([])
            self.groups[-1].append((i, window))

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, index: int) -> list[tuple[int, Window]]:
        return self.groups[index]


def collate_windows(items: Sequence[Sequence[tuple[int, Window]]], pad_id: int) -> dict[str, Tensor]:
    """Pad the windows of a batch of sentences: ids, types, mask, labels `(B, T)`, window_index `(B,)`."""
    flat = [pair for sentence in items for pair in sentence]
    width = max(len(w.input_ids) for _, w in flat)
    input_ids = torch.full((len(flat), width), pad_id, dtype=torch.long)
    labels = torch.full((len(flat), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(flat), width), dtype=torch.long)
    for row, (_, window) in enumerate(flat):
        n = len(window.input_ids)
        input_ids[row, :n] = torch.tensor(window.input_ids)
        labels[row, :n] = torch.tensor(window.labels)
        attention_mask[row, :n] = 1
    return {
        "input_ids": input_ids,
        "token_type_ids": torch.zeros_like(input_ids),
        "attention_mask": attention_mask,
        "labels": labels,
        "window_index": torch.tensor([i for i, _ in flat], dtype=torch.long),
    }


@dataclass
class _Split:
    """What the DataModule keeps of one split."""

    sentences: list[Sentence]
    windows: list[Window]


def _unique(values: Iterable[int]) -> list[int]:
    """Values in order of first appearance."""
    return list(dict.fromkeys(values))


class NERDataModule(LazyTokenizer, SplitLoaders, L.LightningDataModule):
    """CoNLL-2003 NER from local files (`train_file`, ...) or a hub copy (`hub_name`), split by split.

    Batches hold `batch_size` sentences, so `B` counts windows: a long sentence adds one row per window.
    Keys: input_ids, token_type_ids, attention_mask, labels `(B, T)` and window_index `(B,)`, all long;
    `decode(split, predictions, window_index)` turns predictions back into word tags per sentence.
    Dataset items are whole sentences, so a DistributedSampler never splits a sentence's windows across
    ranks and every evaluation batch decodes on its own (`EntityF1` then sums its counts over ranks).
    """

    def __init__(
        self,
        *,
        train_file: str | Path | None = None,
        val_file: str | Path | None = None,
        test_file: str | Path | None = None,
        hub_name: str | None = None,
        tokenizer: str | Path | Tokenizer,
        max_seq_length: int = 128,
        scheme: str = "IOB2",
        document_context: bool = False,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        num_workers: int = 0,
        max_train_sentences: int | None = None,
        max_eval_sentences: int | None = None,
    ) -> None:
        super().__init__()
        if scheme not in TAG_SCHEMES:
            raise ValueError(f"unknown NER scheme {scheme!r}; use one of {TAG_SCHEMES}")
        if max_seq_length < 3:
            raise ValueError(f"max_seq_length={max_seq_length} leaves no room between [CLS] and [SEP]")
        self.files: dict[str, Path | None] = {
            "train": None if train_file is None else Path(train_file),
            "val": None if val_file is None else Path(val_file),
            "test": None if test_file is None else Path(test_file),
        }
        self.hub_name = hub_name
        self._tokenizer_source = tokenizer
        self.max_seq_length = max_seq_length
        self.scheme = scheme
        self.document_context = document_context
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.max_sentences = {
            "train": max_train_sentences,
            "val": max_eval_sentences,
            "test": max_eval_sentences,
        }
        self.label_names: list[str] = list(LABEL_NAMES)
        self.num_labels = len(self.label_names)
        self.label_to_id = {name: i for i, name in enumerate(self.label_names)}
        self.splits: dict[str, _Split] = {}
        # plain values only, so checkpoints load under torch's weights_only default
        self.save_hyperparameters(
            {
                "train_file": None if train_file is None else str(train_file),
                "val_file": None if val_file is None else str(val_file),
                "test_file": None if test_file is None else str(test_file),
                "hub_name": hub_name,
                "tokenizer": None if isinstance(tokenizer, Tokenizer) else str(tokenizer),
                "max_seq_length": max_seq_length,
                "scheme": scheme,
                "document_context": document_context,
                "batch_size": batch_size,
                "eval_batch_size": eval_batch_size,
                "max_train_sentences": max_train_sentences,
                "max_eval_sentences": max_eval_sentences,
            }
        )

    def _read(self, split: str) -> list[Sentence] | None:
        """Sentences of one split from its file, else from the hub, else None."""
        path = self.files[split]
        if path is not None:
            return read_conll(path, scheme=self.scheme)
        if self.hub_name is None:
            return None
        if self.document_context:
            raise DataError(
                self.hub_name,
                "hub copies of CoNLL-2003 drop the -DOCSTART- lines, so there is no document context",
                "pass the original files as train_file/val_file/test_file, or set document_context=False",
            )
        return load_hub_conll(self.hub_name, split, self.scheme)

    def setup(self, stage: str | None = None) -> None:
        """Read and window the splits `stage` needs (all available ones when None)."""
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in wanted.get(stage or "", SPLITS):
            if split in self.splits:
                continue
            sentences = self._read(split)
            if sentences is None:
                continue
            limit = self.max_sentences[split]
            if limit is not None:
                sentences = sentences[:limit]
            self.splits[split] = _Split(sentences, self.make_windows(sentences))

    def make_windows(self, sentences: Sequence[Sentence]) -> list[Window]:
        """Tokenise sentences and cut them into windows with this module's settings."""
        ids = special_ids(self.tokenizer)
        return build_windows(
            word_pieces(self.tokenizer, [s.words for s in sentences]),
            [[self.label_to_id[t] for t in s.tags] for s in sentences],
            [s.doc for s in sentences],
            cls_id=ids["cls"],
            sep_id=ids["sep"],
            unk_id=ids["unk"],
            max_seq_length=self.max_seq_length,
            document_context=self.document_context,
        )

    def _split(self, split: str) -> _Split:
        """The prepared split, with a clear error when it is missing."""
        if split not in SPLITS:
            raise KeyError(f"unknown split {split!r}; use one of {SPLITS}")
        if split not in self.splits:
            raise RuntimeError(
                f"split {split!r} is not loaded: pass {split}_file (or hub_name) and call setup() first"
            )
        return self.splits[split]

    def sentences(self, split: str) -> list[Sentence]:
        """The split's sentences (words, gold tags in `scheme`, document)."""
        return self._split(split).sentences

    def windows(self, split: str) -> list[Window]:
        """The split's windows; `window_index` in batches indexes this list."""
        return self._split(split).windows

    def gold_tags(self, split: str, window_index: Tensor | Sequence[int] | None = None) -> list[list[str]]:
        """Gold word tags per sentence: all sentences, or those of `window_index` in `decode`'s order."""
        data = self._split(split)
        if window_index is None:
            return [list(s.tags) for s in data.sentences]
        index = window_index.tolist() if isinstance(window_index, Tensor) else list(window_index)
        return [list(data.sentences[s].tags) for s in _unique(data.windows[w].sentence for w in index)]

    def decode(
        self,
        split: str,
        predictions: Tensor | Sequence[Any],
        window_index: Tensor | Sequence[int] | None = None,
    ) -> list[list[str]]:
        """Word tags per sentence from predicted ids `(W, T)` or logits `(W, T, C)` of windows.

        Without `window_index`, row i is window i and every sentence of the split comes back in order.
        With it (a batch's `window_index`), row i is window `window_index[i]` and the sentences of those
        windows come back in order of first appearance, matching `gold_tags(split, window_index)`.
        """
        data = self._split(split)
        if window_index is None:
            index = list(range(len(data.windows)))
        else:
            index = window_index.tolist() if isinstance(window_index, Tensor) else list(window_index)
        chosen = [data.windows[w] for w in index]
        return decode_windows(
            predictions,
            [w.word_ids for w in chosen],
            [w.sentence for w in chosen],
            self.label_names,
            {s: len(data.sentences[s].words) for s in _unique(w.sentence for w in chosen)},
        )

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        """A loader over the split's sentences that pads each batch to its longest window."""
        return DataLoader(
            _SentenceDataset(self._split(split).windows),
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=functools.partial(collate_windows, pad_id=special_ids(self.tokenizer)["pad"]),
            persistent_workers=self.num_workers > 0,
        )
