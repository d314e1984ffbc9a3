"""SQuAD windows: `[CLS] question [SEP] context-slice [SEP]` features over long contexts, with labels.

Where we differ from the original BERT `run_squad.py`:
- Windows are cut from the fast tokenizer's character offsets, not from whitespace words plus
  `_improve_answer_span`: an answer's labels are the first and last context tokens overlapping its
  character span, and predictions map back through the same offsets (exact substrings of the context).
- A feature keeps references to its paragraph's token ids and offsets instead of copies, because
  copies of every window's offsets cost hundreds of MB on full SQuAD; `input_ids`, `offsets` … are
  built on access.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from tokenizers import Tokenizer

from bertlab.data.errors import DataConfigError
from bertlab.data.progress import chunks
from bertlab.data.squad_reader import SquadExample
from bertlab.data.tokenizer import plain_tokenizer, special_ids


@dataclass(frozen=True)
class TokenizedText:
    """Token ids and character offsets of one text, tokenised once and shared by its windows."""

    ids: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class SquadFeature:
    """One window `[CLS] question [SEP] context[doc_start : doc_start + doc_len] [SEP]` with its labels.

    `prefix_ids` is `[CLS] question [SEP]`; `context` is the whole paragraph (shared, not copied).
    `start_position`/`end_position` index `input_ids`; 0 ([CLS]) when the answer is not inside.
    """

    example_index: int
    qid: str
    prefix_ids: tuple[int, ...]
    context: TokenizedText
    doc_start: int
    doc_len: int
    max_context: bytes  # 1 where this window gives the context token its most surrounding context
    start_position: int = 0
    end_position: int = 0

    def __len__(self) -> int:
        return len(self.prefix_ids) + self.doc_len + 1

    @property
    def context_offset(self) -> int:
        """Position in `input_ids` of the window's first context token."""
        return len(self.prefix_ids)

    @property
    def input_ids(self) -> list[int]:
        """Token ids `(T,)`."""
        doc = self.context.ids[self.doc_start : self.doc_start + self.doc_len]
        return [*self.prefix_ids, *doc, self.prefix_ids[-1]]  # the prefix ends with [SEP]

    @property
    def token_type_ids(self) -> list[int]:
        """Segment ids `(T,)`: 0 for `[CLS] question [SEP]`, 1 for the context and its `[SEP]`."""
        return [0] * len(self.prefix_ids) + [1] * (self.doc_len + 1)

    @property
    def offsets(self) -> list[tuple[int, int] | None]:
        """Character span in the context of each position `(T,)`; None for question and special tokens."""
        doc = self.context.offsets[self.doc_start : self.doc_start + self.doc_len]
        return [None] * len(self.prefix_ids) + list(doc) + [None]

    @property
    def token_is_max_context(self) -> list[bool]:
        """Per position `(T,)`: True where no other window of the example sees this context token better."""
        return [False] * len(self.prefix_ids) + [bool(b) for b in self.max_context] + [False]


def plan_windows(num_tokens: int, max_tokens: int, doc_stride: int) -> list[tuple[int, int]]:
    """(start, length) of each context window: `max_tokens` long, starts `doc_stride` apart, last one ends the doc."""
    if max_tokens < 1 or doc_stride < 1:
        raise DataConfigError(f"window of {max_tokens} tokens with stride {doc_stride}: both must be >= 1")
    windows: list[tuple[int, int]] = []
    start = 0
    while start < num_tokens:
        length = min(max_tokens, num_tokens - start)
        windows.append((start, length))
        if start + length >= num_tokens:
            break
        start += min(length, doc_stride)
    return windows


def max_context_flags(windows: Sequence[tuple[int, int]]) -> list[bytes]:
    """Per window, 1 for each token whose best window (most context on its shorter side) is this one.

    Score of token i in window (s, n) is min(i - s, s + n - 1 - i) + 0.01 * n, as in the BERT paper's
    code; ties go to the earlier window.
    """
    best: dict[int, tuple[float, int]] = {}
    for w, (s, n) in enumerate(windows):
        for i in range(s, s + n):
            score = min(i - s, s + n - 1 - i) + 0.01 * n
            if i not in best or score > best[i][0]:
                best[i] = (score, w)
    return [bytes(best[i][1] == w for i in range(s, s + n)) for w, (s, n) in enumerate(windows)]


@functools.lru_cache(maxsize=4096)
def _windows_and_flags(
    num_tokens: int, max_tokens: int, doc_stride: int
) -> tuple[tuple[tuple[int, int], ...], tuple[bytes, ...]]:
    """Windows and their max-context flags, cached: paragraphs share lengths across their questions."""
    windows = plan_windows(num_tokens, max_tokens, doc_stride)
    if len(windows) == 1:  # one window sees every token best
        return tuple(windows), (b"\x01" * windows[0][1],)
    return tuple(windows), tuple(max_context_flags(windows))


def answer_token_span(
    offsets: Sequence[tuple[int, int]], char_start: int, char_end: int
) -> tuple[int, int] | None:
    """First and last token whose characters overlap the answer's `[char_start, char_end)`, or None."""
    first = last = None
    for i, (a, b) in enumerate(offsets):
        if a < char_end and b > char_start and b > a:
            if first is None:
                first = i
            last = i
        elif a >= char_end:
            break
    return None if first is None or last is None else (first, last)


def build_features(
    example_index: int,
    qid: str,
    prefix_ids: Sequence[int],
    context: TokenizedText,
    answer_tokens: tuple[int, int] | None,
    *,
    max_seq_length: int = 384,
    doc_stride: int = 128,
) -> list[SquadFeature]:
    """All windows of one example; `answer_tokens` is the answer's (first, last) context token or None."""
    max_tokens = max_seq_length - len(prefix_ids) - 1
    if max_tokens < 1:
        raise ValueError(
            f"max_seq_length {max_seq_length} leaves no room for context after a {len(prefix_ids)}-token "
            "question prefix; lower max_query_length or raise max_seq_length"
        )
    windows, flags = _windows_and_flags(len(context.ids), max_tokens, doc_stride)
    prefix = tuple(prefix_ids)
    features = []
    for (s, n), flag in zip(windows, flags):
        start = end = 0
        if answer_tokens is not None and s <= answer_tokens[0] and answer_tokens[1] < s + n:
            start, end = (len(prefix) + t - s for t in answer_tokens)
        features.append(SquadFeature(example_index, qid, prefix, context, s, n, flag, start, end))
    return features


def _tokenize(tok: Tokenizer, texts: Sequence[str]) -> list[TokenizedText]:
    """Tokenise texts without special tokens, keeping character offsets."""
    return [
        TokenizedText(tuple(e.ids), tuple(e.offsets))
        for e in tok.encode_batch(list(texts), add_special_tokens=False)
    ]


def make_features(
    examples: Sequence[SquadExample],
    tokenizer: Tokenizer,
    *,
    max_seq_length: int = 384,
    doc_stride: int = 128,
    max_query_length: int = 64,
    training: bool = False,
    desc: str | None = None,
) -> list[SquadFeature]:
    """Windows of every example, labelled with the first gold answer (or [CLS] when there is none).

    With `training=True` an answerable example whose answer covers no token (e.g. only characters the
    normaliser drops) is skipped with a counted warning rather than taught as unanswerable. `desc` names
    the progress shown (data/progress.py), counted in questions; None shows none.
    """
    tok = plain_tokenizer(tokenizer)
    ids = special_ids(tok)
    tokenized: dict[str, TokenizedText] = {}  # each paragraph tokenised once
    features: list[SquadFeature] = []
    unlabelled = 0
    for part in chunks(len(examples), desc, unit="questions"):  # a few thousand questions at a time
        batch = examples[part]
        contexts = [c for c in dict.fromkeys(ex.context for ex in batch) if c not in tokenized]
        tokenized.update(zip(contexts, _tokenize(tok, contexts)))
        questions = _tokenize(tok, [ex.question for ex in batch])
        for i, ex, q in zip(range(part.start, part.stop), batch, questions, strict=True):
            ctx = tokenized[ex.context]
            span = None
            if ex.answers:
                char_start = ex.answer_starts[0]
                span = answer_token_span(ctx.offsets, char_start, char_start + len(ex.answers[0]))
                if span is None:
                    unlabelled += 1
                    if training:
                        continue
            prefix = (ids["cls"], *q.ids[:max_query_length], ids["sep"])
            features.extend(
                build_features(
                    i, ex.qid, prefix, ctx, span, max_seq_length=max_seq_length, doc_stride=doc_stride
                )
            )
    if unlabelled:
        action = "skipped for training" if training else "kept for evaluation"
        warnings.warn(f"{unlabelled} answers cover no token of their context; {action}", stacklevel=2)
    return features


__all__ = [
    "SquadFeature",
    "TokenizedText",
    "answer_token_span",
    "build_features",
    "make_features",
    "max_context_flags",
    "plan_windows",
]
