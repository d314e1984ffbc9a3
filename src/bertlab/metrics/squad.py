"""SQuAD v1.1 and v2.0 scores (EM, token F1, v2 HasAns/NoAns splits and best null threshold).

Written from the published definitions of the official evaluation scripts (torchmetrics has v1 only):
- normalise: lower-case, delete ASCII punctuation, replace the words a/an/the by a space, collapse
  whitespace; EM compares normalised strings, F1 is the bag-of-tokens F1 of the normalised strings;
  both take the max over a question's gold answers.
- v1: every question of the data set counts (a missing prediction scores 0); F1 of two empty token
  lists is 0.
- v2: golds that normalise to "" are dropped and a question left with none has gold [""]; F1 is 1 when
  both sides are empty; questions without a prediction are left out of every total (as the official
  script, with a warning). With null odds, a question whose odds exceed `na_prob_thresh` (1.0 by
  default, the script's default) is scored as if it answered "". The best-threshold sweep orders
  questions by null odds and answers them one by one, keeping the first strictly best running score.

References are `{qid: gold answer texts}`; `bertlab.data.squad_reader.gold_answers` builds them from an
official json file or from read examples.
"""

from __future__ import annotations

import re
import string
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence

_DROP_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, drop articles a/an/the, collapse whitespace (official order)."""
    text = text.lower().translate(_DROP_PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    """1.0 when the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str, *, empty_matches_empty: bool = True) -> float:
    """Bag-of-tokens F1 of the normalised strings; two empty answers score 1 (v2) or 0 (v1: False)."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:
        return float(empty_matches_empty and pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def squad_v1_scores(
    references: Mapping[str, Sequence[str]], predictions: Mapping[str, str]
) -> dict[str, float]:
    """SQuAD v1.1 `exact_match` and `f1` (0–100) over every question of `references` ({qid: gold texts})."""
    if not references:
        raise ValueError("no questions in the data set")
    em = f1 = 0.0
    missing = 0
    for qid, answers in references.items():
        if not answers:
            raise ValueError(f"question {qid} has no gold answer; score SQuAD v2 data with squad_v2_scores")
        if qid not in predictions:
            missing += 1
            continue
        pred = predictions[qid]
        em += max(exact_match(pred, a) for a in answers)
        f1 += max(token_f1(pred, a, empty_matches_empty=False) for a in answers)
    if missing:
        warnings.warn(
            f"{missing} of {len(references)} questions have no prediction; they score 0", stacklevel=2
        )
    return {"exact_match": 100.0 * em / len(references), "f1": 100.0 * f1 / len(references)}


def best_threshold(
    predictions: Mapping[str, str],
    raw_scores: Mapping[str, float],
    null_odds: Mapping[str, float],
    has_answer: Mapping[str, bool],
) -> tuple[float, float]:
    """Best score (0–100) and the null-odds threshold reaching it, answering "" where odds > threshold.

    Starts from everything answered "" (all unanswerable questions right, threshold 0.0); then, in
    increasing order of null odds, lets each scored question keep its prediction: an answerable one
    gains its raw score, an unanswerable one loses 1 if its prediction is non-empty.
    """
    running = float(sum(not h for h in has_answer.values()))
    best, best_thresh = running, 0.0
    for qid in sorted(null_odds, key=null_odds.__getitem__):
        if qid not in raw_scores:
            continue
        running += raw_scores[qid] if has_answer[qid] else -float(bool(predictions[qid]))
        if running > best:
            best, best_thresh = running, float(null_odds[qid])
    return 100.0 * best / len(raw_scores), best_thresh


def squad_v2_scores(
    references: Mapping[str, Sequence[str]],
    predictions: Mapping[str, str],
    null_odds: Mapping[str, float] | None = None,
    *,
    na_prob_thresh: float = 1.0,
) -> dict[str, float]:
    """SQuAD v2.0 scores (0–100) with the official keys; `best_*` only when `null_odds` is given.

    `references` is `{qid: gold texts}`, an empty list for an unanswerable question.
    Keys: exact, f1, total, HasAns_exact/_f1/_total and NoAns_exact/_f1/_total (each split only when
    it has questions), best_exact, best_exact_thresh, best_f1, best_f1_thresh.
    """
    has_answer = {qid: bool(answers) for qid, answers in references.items()}
    exact_raw: dict[str, float] = {}
    f1_raw: dict[str, float] = {}
    for qid, answers in references.items():
        if qid not in predictions:
            continue
        refs = [a for a in answers if normalize_answer(a)] or [""]
        pred = predictions[qid]
        exact_raw[qid] = max(exact_match(pred, a) for a in refs)
        f1_raw[qid] = max(token_f1(pred, a) for a in refs)
    if not exact_raw:
        raise ValueError("no prediction matches a question of the data set")
    if len(exact_raw) < len(references):
        warnings.warn(
            f"{len(references) - len(exact_raw)} of {len(references)} questions have no prediction; left out of the totals",
            stacklevel=2,
        )
    odds = {qid: 0.0 for qid in exact_raw} if null_odds is None else dict(null_odds)
    lacking = [qid for qid in exact_raw if qid not in odds]
    if lacking:
        raise ValueError(f"{len(lacking)} predicted questions have no null odds (e.g. {lacking[0]})")

    def thresholded(raw: Mapping[str, float]) -> dict[str, float]:
        return {q: float(not has_answer[q]) if odds[q] > na_prob_thresh else s for q, s in raw.items()}

    exact, f1 = thresholded(exact_raw), thresholded(f1_raw)
    out: dict[str, float] = {
        "exact": 100.0 * sum(exact.values()) / len(exact),
        "f1": 100.0 * sum(f1.values()) / len(f1),
        "total": len(exact),
    }
    for name, wanted in (("HasAns", True), ("NoAns", False)):
        qids = [q for q in exact if has_answer[q] is wanted]
        if qids:
            out[f"{name}_exact"] = 100.0 * sum(exact[q] for q in qids) / len(qids)
            out[f"{name}_f1"] = 100.0 * sum(f1[q] for q in qids) / len(qids)
            out[f"{name}_total"] = len(qids)
    if null_odds is not None:
        out["best_exact"], out["best_exact_thresh"] = best_threshold(predictions, exact_raw, odds, has_answer)
        out["best_f1"], out["best_f1_thresh"] = best_threshold(predictions, f1_raw, odds, has_answer)
    return out


__all__ = [
    "best_threshold",
    "exact_match",
    "normalize_answer",
    "squad_v1_scores",
    "squad_v2_scores",
    "token_f1",
]
