"""CoNLL-2003 named entity recognition: sub-token label alignment in windows, decoding, the DataModule.

The paper (section 5.3) feeds WordPiece tokens, predicts each word from its first sub-token and uses
"maximal document context". Reading and writing the CoNLL format is `bertlab.data.conll`. Where this
module goes further than the paper says:

- Every word is predicted exactly once. A sentence longer than `max_seq_length - 2` word pieces is not
  truncated: it is cut into several windows, each owning a contiguous span of words (labels on their
  first pieces) and filling the rest of its room with the words around that span (labels -100).
- `document_context=True` fills that room with the neighbouring sentences of the same document, centred
  on the target sentence; sentences are joined without a separator, all in segment A (type id 0).
- A word that tokenises to no piece at all (only control or zero-width characters) is fed as [UNK], so it
  still gets a prediction; a word longer than the window keeps its first pieces only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import Tensor

from bertlab.data.base import BertDataModule, SplitData, attention_mask, pad_rows, split_kind
from bertlab.data.conll import LABEL_NAMES, TAG_SCHEMES, Sentence, load_hub_conll, read_conll
from bertlab.data.errors import DataConfigError, DataError
from bertlab.data.progress import chunks
from bertlab.data.tokenizer import plain_tokenizer, special_ids

IGNORE_INDEX = -100


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


# ---------------------------------------------------------------------------------------------- alignment


def align_labels(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """Token labels `(T,)`: each word's label on its first piece, -100 on later pieces and on None."""
    labels = []
    previous: int | None = None
    for word in word_ids:
        labels.append(IGNORE_INDEX if word is None or word == previous else word_labels[word])
        previous = word
    return labels


def word_pieces(
    tokenizer: Tokenizer, sentences: Sequence[Sequence[str]], desc: str | None = None
) -> list[list[list[int]]]:
    """Piece ids of every word `(S, N_s, pieces)`; a word with no piece gets an empty list. `desc` names the
    progress shown (data/progress.py), counted in sentences; None shows none."""
    tok = plain_tokenizer(tokenizer)  # a tokenizer.json's own padding or truncation would corrupt word ids
    out = []
    for part in chunks(len(sentences), desc, unit="sentences"):
        batch = sentences[part]
        encodings = tok.encode_batch(
            [list(words) for words in batch], is_pretokenized=True, add_special_tokens=False
        )
        for words, enc in zip(batch, encodings, strict=True):
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
        raise DataConfigError(f"max_seq_length={max_seq_length} leaves no room between [CLS] and [SEP]")
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


# ---------------------------------------------------------------------------------------------- scoring


def _index(window_index: Tensor | Sequence[int] | None, count: int) -> list[int]:
    """Window indices as a list; None = every window of the split in order."""
    if window_index is None:
        return list(range(count))
    return window_index.tolist() if isinstance(window_index, Tensor) else list(window_index)


def window_sentences(windows: Sequence[Window], window_index: Iterable[int]) -> list[int]:
    """Sentence indices of the windows `window_index`, in order of first appearance (decoding's order)."""
    return list(dict.fromkeys(windows[w].sentence for w in window_index))


def decode_split(
    data: SplitData,
    predictions: Tensor | Sequence[Any],
    label_names: Sequence[str],
    window_index: Tensor | Sequence[int] | None = None,
) -> list[list[str]]:
    """Word tags per sentence of a NER split from predicted ids `(W, T)` or logits `(W, T, C)` of windows.

    Without `window_index`, row i is window i and every sentence of the split comes back in order.
    With it (a batch's `window_index`), row i is window `window_index[i]` and the sentences of those
    windows come back in order of first appearance, matching `gold_tags(data, window_index)`.
    """
    index = _index(window_index, len(data.features))
    chosen = [data.features[w] for w in index]
    return decode_windows(
        predictions,
        [w.word_ids for w in chosen],
        [w.sentence for w in chosen],
        label_names,
        {s: len(data.examples[s].words) for s in window_sentences(data.features, index)},
    )


def gold_tags(data: SplitData, window_index: Tensor | Sequence[int] | None = None) -> list[list[str]]:
    """Gold word tags per sentence: all sentences, or those of `window_index` in `decode_split`'s order."""
    if window_index is None:
        return [list(s.tags) for s in data.examples]
    index = _index(window_index, len(data.features))
    return [list(data.examples[s].tags) for s in window_sentences(data.features, index)]


# ---------------------------------------------------------------------------------------------- batching


def group_windows(windows: Sequence[Window]) -> list[list[tuple[int, Window]]]:
    """Consecutive windows of one sentence as one item `[(window index, window), ...]`."""
    groups: list[list[tuple[int, Window]]] = []
    for i, window in enumerate(windows):
        if not groups or groups[-1][0][1].sentence != window.sentence:
            groups.append([])
        groups[-1].append((i, window))
    return groups


def collate_windows(items: Sequence[Sequence[tuple[int, Window]]], pad_id: int) -> dict[str, Tensor]:
    """Pad the windows of a batch of sentences: ids, types, mask, labels `(B, T)`, window_index `(B,)`."""
    flat = [pair for sentence in items for pair in sentence]
    ids = [w.input_ids for _, w in flat]
    input_ids = pad_rows(ids, pad_id)
    return {
        "input_ids": input_ids,
        "token_type_ids": torch.zeros_like(input_ids),
        "attention_mask": attention_mask(ids),
        "labels": pad_rows([w.labels for _, w in flat], IGNORE_INDEX),
        "window_index": torch.tensor([i for i, _ in flat], dtype=torch.long),
    }


class NERDataModule(BertDataModule):
    """CoNLL-2003 NER from local files (`train_file`, ...) or a hub copy (`hub_name`), split by split.

    A split's `examples` are its `Sentence`s and its `features` its `Window`s; dataset items are whole
    sentences (the list of their windows), so a batch holds `batch_size` sentences and `B` counts
    windows, and a DistributedSampler never splits a sentence's windows across ranks: every evaluation
    batch decodes on its own (`decode_split`, `gold_tags`). Keys: input_ids, token_type_ids,
    attention_mask, labels `(B, T)` and window_index `(B,)` (index into the split's windows), all long.
    """

    def __init__(self, scheme: str = "IOB2", document_context: bool = False, **shared: Any) -> None:
        """`scheme` and `document_context` are NER's own; the rest are `BertDataModule`'s arguments."""
        if scheme not in TAG_SCHEMES:
            raise DataConfigError(f"unknown NER scheme {scheme!r}; use one of {TAG_SCHEMES}")
        super().__init__(**shared)
        if self.max_seq_length < 3:
            raise DataConfigError(
                f"max_seq_length={self.max_seq_length} leaves no room between [CLS] and [SEP]"
            )
        self.scheme = scheme
        self.document_context = document_context
        self.label_to_id = {name: i for i, name in enumerate(LABEL_NAMES)}

    @property
    def label_names(self) -> list[str]:
        """The nine CoNLL-2003 tags in model-id order (`LABEL_NAMES`)."""
        return list(LABEL_NAMES)

    def read(self, name: str) -> list[Sentence]:
        """Sentences of one split from its file, else from the hub."""
        path = self.files.get(name)
        if path is not None:
            return read_conll(path, scheme=self.scheme)
        assert self.hub_name is not None  # has_split checked a source exists
        if self.document_context:
            raise DataError(
                self.hub_name,
                "hub copies of CoNLL-2003 drop the -DOCSTART- lines, so there is no document context",
                "pass the original files as train_file/val_file/test_file, or set document_context=False",
            )
        return load_hub_conll(self.hub_name, split_kind(name), self.scheme)

    def encode(self, name: str, examples: Sequence[Sentence]) -> SplitData:
        """Tokenise sentences and cut them into windows; items group each sentence's windows."""
        windows = self.make_windows(examples, desc=f"tokenising CoNLL-2003 {name}")
        source = str(self.files.get(name) or self.hub_name or "")
        return SplitData(name, list(examples), windows, source=source, items=group_windows(windows))

    def make_windows(self, sentences: Sequence[Sentence], desc: str | None = None) -> list[Window]:
        """Tokenise sentences and cut them into windows with this module's settings."""
        ids = special_ids(self.tokenizer)
        return build_windows(
            word_pieces(self.tokenizer, [s.words for s in sentences], desc),
            [[self.label_to_id[t] for t in s.tags] for s in sentences],
            [s.doc for s in sentences],
            cls_id=ids["cls"],
            sep_id=ids["sep"],
            unk_id=ids["unk"],
            max_seq_length=self.max_seq_length,
            document_context=self.document_context,
        )

    def collate(self, items: list[list[tuple[int, Window]]]) -> dict[str, Tensor]:
        """Pad a batch of sentences' windows to its longest window."""
        return collate_windows(items, self.pad_id)
