"""From start/end logits over SQuAD windows to answer texts, as the original BERT `run_squad` decides.

Per example, over all its windows: the `n_best_size` best start and end positions, spans that are
inside the context, not reversed, at most `max_answer_length` tokens and (optionally) starting where
the window has the token's maximal context; score = start + end logit. The text is the context's
characters between the span's offsets. SQuAD v2: the null score is the smallest `[CLS]` score
(start[0] + end[0]) over windows, and the answer is "" when null - best non-null > threshold.

Differences from the original: the n-best positions are taken among a window's real tokens (padding
never competes for the 20 places), and text comes from offsets rather than `get_final_text`.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

# null_odds of an example with no valid non-null span: it answers "" at any threshold. Finite so the
# file stays strict JSON; a diff-0 entry never becomes the best threshold in the v2 sweep.
NO_SPAN_NULL_ODDS = 1e9


class _Example(Protocol):
    qid: str
    context: str


class _Feature(Protocol):
    example_index: int

    def __len__(self) -> int: ...

    @property
    def offsets(self) -> list[tuple[int, int] | None]: ...

    @property
    def token_is_max_context(self) -> list[bool]: ...


@dataclass(frozen=True)
class SpanCandidate:
    """A scored answer span: character range in the context and its text."""

    score: float
    start_logit: float
    end_logit: float
    char_start: int
    char_end: int
    text: str


def _rows(logits: Any) -> list[list[float]]:
    """Logits `(F, T)` (tensor, array or nested sequences, rows may differ in length) as lists of floats."""
    if hasattr(logits, "detach"):  # torch: bf16 has no tolist on every version, so go through float
        logits = logits.detach().float().cpu()
    if hasattr(logits, "tolist"):
        logits = logits.tolist()
    return [row.tolist() if hasattr(row, "tolist") else list(row) for row in logits]


def _top(values: Sequence[float], n: int) -> list[int]:
    """Indices of the `n` largest values, best first (earlier index wins ties)."""
    return heapq.nlargest(n, range(len(values)), key=values.__getitem__)


def span_candidates(
    feature: _Feature,
    context: str,
    start_logits: Sequence[float],
    end_logits: Sequence[float],
    *,
    n_best_size: int = 20,
    max_answer_length: int = 30,
    use_max_context: bool = True,
) -> list[SpanCandidate]:
    """Valid non-null spans of one window `(T,)` logits, unsorted."""
    n = len(feature)
    start_logits, end_logits = start_logits[:n], end_logits[:n]
    offsets = feature.offsets
    max_ctx = feature.token_is_max_context
    out = []
    for i in _top(start_logits, n_best_size):
        if offsets[i] is None or (use_max_context and not max_ctx[i]):
            continue
        for j in _top(end_logits, n_best_size):
            if offsets[j] is None or j < i or j - i + 1 > max_answer_length:
                continue
            a, b = offsets[i][0], offsets[j][1]  # type: ignore[index]
            s, e = start_logits[i], end_logits[j]
            out.append(SpanCandidate(s + e, s, e, a, b, context[a:b]))
    return out


def postprocess_predictions(
    examples: Sequence[_Example],
    features: Sequence[_Feature],
    start_logits: Any,
    end_logits: Any,
    *,
    version_2: bool = False,
    n_best_size: int = 20,
    max_answer_length: int = 30,
    null_score_diff_threshold: float = 0.0,
    use_max_context: bool = True,
    feature_index: Any = None,
) -> tuple[dict[str, str], dict[str, float]]:
    """Predictions `{qid: text}` and null odds `{qid: null - best non-null score}` from logits `(F, T)`.

    Row k belongs to `features[k]`, or to `features[feature_index[k]]` when given (any order, repeats
    allowed). An example with no window, or with no valid non-null span, predicts "" with null odds
    `NO_SPAN_NULL_ODDS`. With `version_2=False` the best non-null span is always the answer.
    """
    starts, ends = _rows(start_logits), _rows(end_logits)
    if len(starts) != len(ends):
        raise ValueError(f"{len(starts)} start rows but {len(ends)} end rows")
    if feature_index is None:
        if len(starts) != len(features):
            raise ValueError(f"{len(starts)} logit rows for {len(features)} features; pass feature_index")
        index = list(range(len(features)))
    else:
        raw = feature_index.tolist() if hasattr(feature_index, "tolist") else feature_index
        index = [int(k) for k in raw]
        if len(index) != len(starts):
            raise ValueError(f"{len(index)} feature indices for {len(starts)} logit rows")
    by_example: dict[int, dict[int, int]] = {}  # example -> {feature: row}, later rows replace repeats
    for row, k in enumerate(index):
        by_example.setdefault(features[k].example_index, {})[k] = row

    predictions: dict[str, str] = {}
    null_odds: dict[str, float] = {}
    for e, ex in enumerate(examples):
        null_score = float("inf")
        best: SpanCandidate | None = None
        for k, row in sorted(by_example.get(e, {}).items()):
            s, t = starts[row], ends[row]
            null_score = min(null_score, s[0] + t[0])
            for cand in span_candidates(
                features[k],
                ex.context,
                s,
                t,
                n_best_size=n_best_size,
                max_answer_length=max_answer_length,
                use_max_context=use_max_context,
            ):
                if best is None or cand.score > best.score:
                    best = cand
        if best is None:
            predictions[ex.qid], null_odds[ex.qid] = "", NO_SPAN_NULL_ODDS
            continue
        diff = null_score - best.score  # finite: a span implies at least one window
        null_odds[ex.qid] = float(diff)
        predictions[ex.qid] = "" if version_2 and diff > null_score_diff_threshold else best.text
    return predictions, null_odds


def _write_json(obj: Mapping[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(dict(obj), indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8"
    )
    return path


def write_predictions(predictions: Mapping[str, str], path: str | Path) -> Path:
    """Write `{qid: answer text}` as the official predictions.json; return the path."""
    return _write_json(predictions, path)


def write_null_odds(null_odds: Mapping[str, float], path: str | Path) -> Path:
    """Write `{qid: null score - best non-null score}` as null_odds.json (the v2 scorer's na-prob file)."""
    return _write_json({k: float(v) for k, v in null_odds.items()}, path)


__all__ = [
    "NO_SPAN_NULL_ODDS",
    "SpanCandidate",
    "postprocess_predictions",
    "span_candidates",
    "write_null_odds",
    "write_predictions",
]
