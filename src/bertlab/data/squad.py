"""SQuAD v1.1 / v2.0: reading, sliding windows over long contexts, and the Lightning DataModule.

Where we differ from the original BERT `run_squad.py`:
- Windows are cut from the fast tokenizer's character offsets, not from whitespace words plus
  `_improve_answer_span`: an answer's labels are the first and last context tokens overlapping its
  character span, and predictions map back through the same offsets (exact substrings of the context).
- A feature keeps references to its paragraph's token ids and offsets instead of copies, because
  copies of every window's offsets cost hundreds of MB on full SQuAD; `input_ids`, `offsets` … are
  built on access.
- Batches are padded to their longest window, not always to `max_seq_length`.
"""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from lightning.pytorch import LightningDataModule
from tokenizers import Tokenizer
from torch.utils.data import DataLoader, Dataset

from bertlab.data.errors import DataError
from bertlab.data.tokenizer import LazyTokenizer, plain_tokenizer, special_ids

# ---------------------------------------------------------------------------------------------------
# Examples and reading
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SquadExample:
    """One question over one context; `answers` holds every annotator's text (empty when unanswerable)."""

    qid: str
    question: str
    context: str
    answers: tuple[str, ...] = ()
    answer_starts: tuple[int, ...] = ()
    is_impossible: bool = False
    title: str = ""


@dataclass
class ReadStats:
    """What a reader repaired or skipped, so no label is dropped or moved silently."""

    articles: int = 0
    questions: int = 0  # questions kept
    fixed_answer_starts: int = 0  # answer_start did not match the text; moved to the nearest occurrence
    dropped_answers: int = 0  # answer text absent from its context
    skipped_questions: int = 0  # answerable questions left with no usable answer
    skipped_empty_context: int = 0  # questions whose paragraph has an empty context
    skipped_impossible: int = 0  # unanswerable questions met while reading as v1

    def warn(self, source: str | Path) -> None:
        """Emit one warning that counts every repair and skip, if there were any."""
        parts = [
            f"{n} {what}"
            for n, what in (
                (self.fixed_answer_starts, "answer_start values fixed to the nearest occurrence of the text"),
                (self.dropped_answers, "answers dropped (text not in the context)"),
                (self.skipped_questions, "questions skipped (no usable answer)"),
                (self.skipped_empty_context, "questions skipped (empty context)"),
                (self.skipped_impossible, "unanswerable questions skipped (reading as SQuAD v1)"),
            )
            if n
        ]
        if parts:
            warnings.warn(f"{source}: " + "; ".join(parts), stacklevel=3)


def parse_articles(spec: str | int | slice | Sequence[int] | None) -> slice | None:
    """Turn an article selection into a slice: 38 or "38" = first 38, "38:48", "-10:", (0, 38), slice."""
    if spec is None or isinstance(spec, slice):
        return spec
    if isinstance(spec, bool):
        raise ValueError(f"article selection {spec!r}: expected an int, 'start:stop' or a slice")
    if isinstance(spec, int):
        return slice(0, spec)
    if isinstance(spec, str):
        text = spec.strip()
        if ":" not in text:
            return slice(0, int(text))
        parts = [p.strip() for p in text.split(":")]
        if len(parts) != 2:
            raise ValueError(f"article selection {spec!r}: expected 'start:stop', e.g. '0:38'")
        return slice(*(int(p) if p else None for p in parts))
    if len(spec) == 2:
        return slice(int(spec[0]), int(spec[1]))
    raise ValueError(f"article selection {spec!r}: expected an int, 'start:stop' or a slice")


def locate_answer(context: str, text: str, start: int) -> int | None:
    """Character start of `text` in `context`: `start` when it matches, else the nearest occurrence, else None."""
    if not text.strip():
        return None
    if start >= 0 and context.startswith(text, start):
        return start
    hits: list[int] = []
    pos = context.find(text)
    while pos != -1:
        hits.append(pos)
        pos = context.find(text, pos + 1)
    if not hits:
        return None
    return min(hits, key=lambda h: (abs(h - start), h))


def parse_squad(
    obj: Any,
    source: str | Path = "<squad>",
    *,
    version: int = 2,
    articles: str | int | slice | Sequence[int] | None = None,
    labelled: bool = True,
) -> tuple[list[SquadExample], ReadStats]:
    """Examples from an already-loaded official SQuAD json object (`data` → `paragraphs` → `qas`).

    `labelled=False` reads every question and ignores answers (a hidden test set, or mode=predict).
    """
    if version not in (1, 2):
        raise ValueError(f"SQuAD version must be 1 or 2, got {version!r}")
    if not isinstance(obj, Mapping) or not isinstance(obj.get("data"), list):
        raise DataError(
            source, "not a SQuAD json (no top-level 'data' list)", "pass an official train/dev-v1.1/v2.0 file"
        )
    chosen = obj["data"] if (sl := parse_articles(articles)) is None else obj["data"][sl]
    stats = ReadStats(articles=len(chosen))
    examples: list[SquadExample] = []
    contexts_seen = 0
    for article in chosen:
        title = str(article.get("title", ""))
        for paragraph in article.get("paragraphs", []):
            context = paragraph.get("context")
            qas = paragraph.get("qas", [])
            if not isinstance(context, str) or not context.strip():
                stats.skipped_empty_context += len(qas)
                continue
            contexts_seen += 1
            for qa in qas:
                ex = (
                    _parse_qa(qa, context, title, version, stats, source)
                    if labelled
                    else _parse_unlabelled(qa, context, title, source)
                )
                if ex is not None:
                    examples.append(ex)
    if contexts_seen == 0:
        raise DataError(
            source,
            f"no paragraph with a non-empty context in the {len(chosen)} selected articles",
            "check the file and the article selection",
        )
    stats.questions = len(examples)
    return examples, stats


def _parse_unlabelled(qa: Mapping[str, Any], context: str, title: str, source: str | Path) -> SquadExample:
    """One `qas` entry as a question to answer; any answers in the file are ignored."""
    try:
        return SquadExample(str(qa["id"]), str(qa["question"]), context, title=title)
    except KeyError as err:
        raise DataError(
            source, f"a question lacks the key {err}", "every qas entry needs 'id' and 'question'"
        ) from err


def _parse_qa(
    qa: Mapping[str, Any], context: str, title: str, version: int, stats: ReadStats, source: str | Path
) -> SquadExample | None:
    """One `qas` entry as an example with verified answer offsets, or None (counted in `stats`)."""
    try:
        qid, question = str(qa["id"]), str(qa["question"])
        raw_answers = qa.get("answers", [])
        impossible = bool(qa.get("is_impossible", False)) or (version == 2 and not raw_answers)
    except KeyError as err:
        raise DataError(
            source, f"a question lacks the key {err}", "every qas entry needs 'id' and 'question'"
        ) from err
    if impossible:
        if version == 1:
            stats.skipped_impossible += 1
            return None
        # v2 train files list "plausible" answers separately; an unanswerable question has no gold span
        return SquadExample(qid, question, context, (), (), True, title)
    texts: list[str] = []
    starts: list[int] = []
    for ans in raw_answers:
        text, given = str(ans.get("text", "")), int(ans.get("answer_start", -1))
        found = locate_answer(context, text, given)
        if found is None:
            stats.dropped_answers += 1
            continue
        stats.fixed_answer_starts += found != given
        texts.append(text)
        starts.append(found)
    if not texts:
        stats.skipped_questions += 1
        return None
    return SquadExample(qid, question, context, tuple(texts), tuple(starts), False, title)


def read_squad_file(
    path: str | Path,
    *,
    version: int = 2,
    first_articles: int | None = None,
    article_slice: str | slice | Sequence[int] | None = None,
    labelled: bool = True,
) -> tuple[list[SquadExample], ReadStats]:
    """Read an official SQuAD json file; optionally only its first N articles or a slice of them.

    `labelled=False` keeps every question and ignores answers (see `parse_squad`)."""
    path = Path(path)
    if first_articles is not None and article_slice is not None:
        raise ValueError("give first_articles or article_slice, not both")
    if not path.is_file():
        raise DataError(path, "SQuAD file not found", "pass the path of a SQuAD json (e.g. dev-v1.1.json)")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(
            path, f"not valid JSON ({err.msg})", "pass an official SQuAD json file", line=err.lineno
        ) from err
    articles = first_articles if first_articles is not None else article_slice
    examples, stats = parse_squad(obj, path, version=version, articles=articles, labelled=labelled)
    stats.warn(path)
    return examples, stats


def records_to_squad(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Regroup flat hub rows (id, title, context, question, answers{text, answer_start}) into the json layout.

    Articles are grouped by title and paragraphs by context, in order of first appearance, so article
    slices mean the same on hub data as on the official files.
    """
    articles: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for rec in records:
        paragraphs = articles.setdefault(str(rec.get("title", "")), {})
        answers = rec.get("answers") or {"text": [], "answer_start": []}
        qa = {
            "id": rec["id"],
            "question": rec["question"],
            "answers": [
                {"text": t, "answer_start": s} for t, s in zip(answers["text"], answers["answer_start"])
            ],
        }
        paragraphs.setdefault(str(rec["context"]), []).append(qa)
    return {
        "data": [
            {"title": title, "paragraphs": [{"context": c, "qas": qas} for c, qas in paras.items()]}
            for title, paras in articles.items()
        ]
    }


def load_squad_hub(
    name: str,
    split: str,
    *,
    version: int = 2,
    articles: str | int | slice | Sequence[int] | None = None,
) -> tuple[list[SquadExample], ReadStats]:
    """Read a split of `rajpurkar/squad` / `rajpurkar/squad_v2` through `datasets` (needs the internet)."""
    try:
        import datasets

        rows = datasets.load_dataset(name, split=split)
    except Exception as err:  # the hub client raises many types
        reason = " ".join(str(err).split())[:200]
        raise DataError(
            name,
            f"could not load split '{split}' from the Hugging Face hub ({type(err).__name__}: {reason})",
            "pass local SQuAD json files (train_file / val_file) or connect to the internet",
        ) from err
    source = f"{name}[{split}]"
    examples, stats = parse_squad(records_to_squad(rows), source, version=version, articles=articles)
    stats.warn(source)
    return examples, stats


# ---------------------------------------------------------------------------------------------------
# Windows (features)
# ---------------------------------------------------------------------------------------------------


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
        raise ValueError(f"window of {max_tokens} tokens with stride {doc_stride}: both must be >= 1")
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
) -> list[SquadFeature]:
    """Windows of every example, labelled with the first gold answer (or [CLS] when there is none).

    With `training=True` an answerable example whose answer covers no token (e.g. only characters the
    normaliser drops) is skipped with a counted warning rather than taught as unanswerable.
    """
    tok = plain_tokenizer(tokenizer)
    ids = special_ids(tok)
    contexts = list(dict.fromkeys(ex.context for ex in examples))  # each paragraph tokenised once
    tokenized = dict(zip(contexts, _tokenize(tok, contexts)))
    questions = _tokenize(tok, [ex.question for ex in examples])
    features: list[SquadFeature] = []
    unlabelled = 0
    for i, (ex, q) in enumerate(zip(examples, questions)):
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
            build_features(i, ex.qid, prefix, ctx, span, max_seq_length=max_seq_length, doc_stride=doc_stride)
        )
    if unlabelled:
        action = "skipped for training" if training else "kept for evaluation"
        warnings.warn(f"{unlabelled} answers cover no token of their context; {action}", stacklevel=2)
    return features


# ---------------------------------------------------------------------------------------------------
# Torch datasets and the DataModule
# ---------------------------------------------------------------------------------------------------


class SquadFeatureDataset(Dataset):
    """Features as dicts of lists; `training` adds the labels, otherwise the feature's index."""

    def __init__(self, features: Sequence[SquadFeature], training: bool) -> None:
        self.features, self.training = features, training

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        f = self.features[index]
        item: dict[str, Any] = {"input_ids": f.input_ids, "token_type_ids": f.token_type_ids}
        if self.training:
            item["start_positions"], item["end_positions"] = f.start_position, f.end_position
        else:
            item["feature_index"] = index
        return item


@dataclass
class SquadCollator:
    """Pad a list of items to the longest: `input_ids`, `token_type_ids`, `attention_mask` `(B, T)` long."""

    pad_id: int = 0

    def __call__(self, items: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(it["input_ids"]) for it in items)
        input_ids = torch.full((len(items), width), self.pad_id, dtype=torch.long)
        token_type_ids = torch.zeros((len(items), width), dtype=torch.long)
        attention_mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, it in enumerate(items):
            n = len(it["input_ids"])
            input_ids[row, :n] = torch.tensor(it["input_ids"])
            token_type_ids[row, :n] = torch.tensor(it["token_type_ids"])
            attention_mask[row, :n] = 1
        batch = {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}
        for key in ("start_positions", "end_positions", "feature_index"):
            if key in items[0]:
                batch[key] = torch.tensor([it[key] for it in items], dtype=torch.long)
        return batch


@dataclass
class _Split:
    """Examples, their windows and what the reader counted, for one split."""

    examples: list[SquadExample] = field(default_factory=list)
    features: list[SquadFeature] = field(default_factory=list)
    stats: ReadStats = field(default_factory=ReadStats)


def _source(split: str) -> str:
    """The configured split a split reads: predict reads test's file and articles (without answers)."""
    return "test" if split == "predict" else split


class SquadDataModule(LazyTokenizer, LightningDataModule):
    """SQuAD v1.1 / v2.0 from local json files (article slices allowed) or the hub, as BERT windows.

    Splits: train, val and test are read with their answers (test = `mode=test`, scored); predict reads
    `test_file` without them, so any file of questions, e.g. one with no answers, can be answered.
    Eval batches carry `feature_index (B,)` into `val_features` / `test_features`; feed the gathered
    logits to `postprocess` for `{qid: text}` predictions and `{qid: null_odds}`.
    """

    HUB_SPLITS: ClassVar[dict[str, str]] = {"train": "train", "val": "validation"}

    def __init__(
        self,
        version: int = 1,
        train_file: str | Path | None = None,
        val_file: str | Path | None = None,
        test_file: str | Path | None = None,
        hub_name: str | None = None,
        train_articles: str | int | None = None,
        val_articles: str | int | None = None,
        tokenizer: str | Path | Tokenizer = "bert-base-uncased",
        max_seq_length: int = 384,
        doc_stride: int = 128,
        max_query_length: int = 64,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        num_workers: int = 0,
        max_train_examples: int | None = None,
        max_eval_examples: int | None = None,
        test_articles: str | int | None = None,
    ) -> None:
        super().__init__()
        if version not in (1, 2):
            raise ValueError(f"SQuAD version must be 1 or 2, got {version!r}")
        if max_query_length + 3 >= max_seq_length:
            raise ValueError(
                f"max_query_length {max_query_length} + 3 special tokens must be < max_seq_length {max_seq_length}"
            )
        self.version = version
        self.files = {"train": train_file, "val": val_file, "test": test_file}
        self.articles = {"train": train_articles, "val": val_articles, "test": test_articles}
        self.hub_name = hub_name
        self._tokenizer_source = tokenizer
        self.max_seq_length, self.doc_stride, self.max_query_length = (
            max_seq_length,
            doc_stride,
            max_query_length,
        )
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.max_train_examples, self.max_eval_examples = max_train_examples, max_eval_examples
        self.splits: dict[str, _Split] = {}

    # -- reading -----------------------------------------------------------------------------------
    def _has(self, split: str) -> bool:
        return self.files[_source(split)] is not None or (
            self.hub_name is not None and split in self.HUB_SPLITS
        )

    def _load(self, split: str) -> _Split:
        """Read, cap and window one split."""
        path, articles = self.files[_source(split)], self.articles[_source(split)]
        if path is not None:
            examples, stats = read_squad_file(
                path,
                version=self.version,
                article_slice=parse_articles(articles),
                labelled=split != "predict",
            )
        elif self.hub_name is not None and split in self.HUB_SPLITS:
            examples, stats = load_squad_hub(
                self.hub_name, self.HUB_SPLITS[split], version=self.version, articles=articles
            )
        else:
            raise ValueError(f"no {split} data: set data.{_source(split)}_file (or hub_name for train/val)")
        cap = self.max_train_examples if split == "train" else self.max_eval_examples
        if cap is not None:
            examples = examples[:cap]
        features = make_features(
            examples,
            self.tokenizer,
            max_seq_length=self.max_seq_length,
            doc_stride=self.doc_stride,
            max_query_length=self.max_query_length,
            training=split == "train",
        )
        return _Split(examples, features, stats)

    def setup(self, stage: str | None = None) -> None:
        """Read the splits this stage needs (once)."""
        wanted = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"], "predict": ["predict"]}
        for split in wanted.get(stage or "", ["train", "val", "test"]):
            if split not in self.splits and self._has(split):
                self.splits[split] = self._load(split)

    def _split(self, split: str) -> _Split:
        if split not in self.splits:
            self.setup({"train": "fit", "val": "validate", "test": "test", "predict": "predict"}[split])
        if split not in self.splits:
            raise ValueError(f"no {split} data: set data.{_source(split)}_file (or hub_name for train/val)")
        return self.splits[split]

    @property
    def train_examples(self) -> list[SquadExample]:
        return self._split("train").examples

    @property
    def train_features(self) -> list[SquadFeature]:
        return self._split("train").features

    @property
    def val_examples(self) -> list[SquadExample]:
        return self._split("val").examples

    @property
    def val_features(self) -> list[SquadFeature]:
        return self._split("val").features

    @property
    def test_examples(self) -> list[SquadExample]:
        return self._split("test").examples

    @property
    def test_features(self) -> list[SquadFeature]:
        return self._split("test").features

    # -- loaders -----------------------------------------------------------------------------------
    def _loader(self, split: str, training: bool) -> DataLoader:
        return DataLoader(
            SquadFeatureDataset(self._split(split).features, training),
            batch_size=self.batch_size if training else self.eval_batch_size,
            shuffle=training,
            num_workers=self.num_workers,
            collate_fn=SquadCollator(special_ids(self.tokenizer)["pad"]),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", training=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", training=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", training=False)

    def predict_dataloader(self) -> DataLoader:
        """`test_file`'s questions, read without answers, in file order."""
        return self._loader("predict", training=False)

    # -- evaluation --------------------------------------------------------------------------------
    def postprocess(
        self,
        split: str,
        start_logits: Any,
        end_logits: Any,
        feature_index: Any = None,
        **kwargs: Any,
    ) -> tuple[dict[str, str], dict[str, float]]:
        """Predictions `{qid: text}` and `{qid: null_odds}` from logits `(F, T)` over the split's features.

        Rows may be longer than a feature (padding is ignored); with `feature_index (F,)` rows may come in
        any order or repeat (DDP samplers pad). Extra keyword arguments go to `postprocess_predictions`.
        """
        from bertlab.data.squad_postprocess import postprocess_predictions

        data = self._split(split)
        kwargs.setdefault("version_2", self.version == 2)
        return postprocess_predictions(
            data.examples, data.features, start_logits, end_logits, feature_index=feature_index, **kwargs
        )

    def evaluate(
        self, split: str, predictions: Mapping[str, str], null_odds: Mapping[str, float] | None = None
    ) -> dict[str, float]:
        """Official-style scores of `predictions` on a split: v1 `exact_match`/`f1`, v2 the full dict."""
        from bertlab.metrics.squad import squad_v1_scores, squad_v2_scores

        examples = self._split(split).examples
        if self.version == 1:
            return squad_v1_scores(examples, predictions)
        return squad_v2_scores(examples, predictions, null_odds)


__all__ = [
    "ReadStats",
    "SquadCollator",
    "SquadDataModule",
    "SquadExample",
    "SquadFeature",
    "SquadFeatureDataset",
    "TokenizedText",
    "answer_token_span",
    "build_features",
    "load_squad_hub",
    "locate_answer",
    "make_features",
    "max_context_flags",
    "parse_articles",
    "parse_squad",
    "plain_tokenizer",
    "plan_windows",
    "read_squad_file",
    "records_to_squad",
]
