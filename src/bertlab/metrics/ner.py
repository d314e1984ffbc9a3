"""Entity-level precision, recall and F1 for NER with conlleval's chunk rules, as a function and a Metric.

Scores are percentages (0-100), as conlleval prints them and as the paper reports CoNLL-2003 F1.
Scoring is micro-averaged over entity chunks; a predicted chunk counts only if its type, first and last
word all match a gold chunk.

Chunks follow conlleval's rules, which read IOB1 and IOB2 the same way:
- `B-X` always starts a chunk (in IOB1 it only appears between two adjacent chunks of type X);
- `I-X` starts a chunk after `O`, after a chunk of another type, or at the start of the sentence
  (so a stray `I-X` in IOB2 output is an entity, not an error), and continues one otherwise;
- in IOBES, `S-X` is a one-word chunk, `E-X` ends one, and `I-X`/`E-X` after `E-`/`S-` start a new one.
`scheme` therefore only decides which prefixes are legal (E-/S- only in IOBES); any other tag raises.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

SCHEMES: tuple[str, ...] = ("IOB1", "IOB2", "IOBES")

Chunk = tuple[str, int, int]  # (type, first word, one past the last word)


def split_tag(tag: str, scheme: str = "IOB2") -> tuple[str, str]:
    """`"B-PER"` -> `("B", "PER")`, `"O"` -> `("O", "")`; raise ValueError on a tag `scheme` does not allow."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tagging scheme {scheme!r}; use one of {SCHEMES}")
    if tag == "O":
        return "O", ""
    prefix, sep, kind = tag.partition("-")
    allowed = "BIES" if scheme == "IOBES" else "BI"
    if not sep or not kind or len(prefix) != 1 or prefix not in allowed:
        raise ValueError(f"tag {tag!r} is not valid in {scheme}; use O or {'/'.join(allowed)}-TYPE")
    return prefix, kind


def get_chunks(tags: Sequence[str], scheme: str = "IOB2") -> list[Chunk]:
    """Entity chunks `(type, start, end)` of one sentence's tags, end exclusive, in order."""
    chunks: list[Chunk] = []
    open_type, open_start = "", -1
    prev_prefix, prev_type = "O", ""
    for i, tag in enumerate(tags):
        prefix, kind = split_tag(tag, scheme)
        if prefix == "O":
            starts = False
        else:
            starts = prefix in "BS" or prev_prefix in "OES" or prev_type != kind
        # a chunk closes whenever the current word does not continue it
        if open_start >= 0 and (prefix == "O" or starts):
            chunks.append((open_type, open_start, i))
            open_start = -1
        if starts:
            open_type, open_start = kind, i
        if prefix in "ES" and open_start >= 0:
            chunks.append((open_type, open_start, i + 1))
            open_start = -1
        prev_prefix, prev_type = prefix, kind
    if open_start >= 0:
        chunks.append((open_type, open_start, len(tags)))
    return chunks


def count_chunks(
    gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], scheme: str = "IOB2"
) -> tuple[Counter[str], Counter[str], Counter[str], int, int]:
    """Per-type counts (correct, predicted, gold) of chunks plus (correct tokens, tokens) over sentences."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted ones")
    correct: Counter[str] = Counter()
    predicted: Counter[str] = Counter()
    expected: Counter[str] = Counter()
    tokens_correct = tokens = 0
    for i, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted tags")
        g_chunks, p_chunks = get_chunks(g, scheme), get_chunks(p, scheme)
        expected.update(c[0] for c in g_chunks)
        predicted.update(c[0] for c in p_chunks)
        correct.update(c[0] for c in set(g_chunks) & set(p_chunks))
        tokens_correct += sum(a == b for a, b in zip(g, p))
        tokens += len(g)
    return correct, predicted, expected, tokens_correct, tokens


def _prf(correct: float, predicted: float, gold: float) -> tuple[float, float, float]:
    """Precision, recall, F1 in percent; 0 where a denominator is 0, as conlleval does."""
    precision = 100.0 * correct / predicted if predicted else 0.0
    recall = 100.0 * correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def entity_f1(
    gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], scheme: str = "IOB2"
) -> dict[str, float]:
    """conlleval scores in percent over word-level tag lists (one list per sentence).

    Keys: `precision`, `recall`, `f1`, `accuracy` (token level), and `precision_X`, `recall_X`, `f1_X`
    for every entity type X found in the gold or the predicted tags.
    """
    correct, predicted, expected, tokens_correct, tokens = count_chunks(gold, pred, scheme)
    p, r, f = _prf(sum(correct.values()), sum(predicted.values()), sum(expected.values()))
    out = {
        "precision": p,
        "recall": r,
        "f1": f,
        "accuracy": 100.0 * tokens_correct / tokens if tokens else 0.0,
    }
    for kind in sorted(set(predicted) | set(expected)):
        p, r, f = _prf(correct[kind], predicted[kind], expected[kind])
        out.update({f"precision_{kind}": p, f"recall_{kind}": r, f"f1_{kind}": f})
    return out


class EntityF1(Metric):
    """Stateful conlleval F1 for a LightningModule: counts are summed tensors, so DDP reduces them exactly.

    `update(preds, target)` takes word-level tag lists (one list of strings per sentence), the torchmetrics
    argument order; `compute()` returns the keys of `entity_f1`, with per-type keys for every type in
    `entity_types` (0 when a type never occurs; CoNLL-2003's are `bertlab.data.conll.CONLL_TYPES`, a task
    passes the types of its label names). Chunks of other types count in the overall scores only.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    correct: Tensor
    predicted: Tensor
    gold: Tensor
    tokens_correct: Tensor
    tokens: Tensor

    def __init__(self, entity_types: Sequence[str], scheme: str = "IOB2", **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        split_tag("O", scheme)  # validates the scheme name now rather than at the first update
        self.entity_types = tuple(entity_types)
        self.scheme = scheme
        # one slot per type plus a last slot for types outside `entity_types`
        for name in ("correct", "predicted", "gold"):
            self.add_state(
                name, torch.zeros(len(self.entity_types) + 1, dtype=torch.long), dist_reduce_fx="sum"
            )
        self.add_state("tokens_correct", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("tokens", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def _as_tensor(self, counts: Counter[str]) -> Tensor:
        """Per-type counts -> `(K + 1,)` long tensor, types outside `entity_types` in the last slot."""
        out = [counts.get(kind, 0) for kind in self.entity_types]
        out.append(sum(v for k, v in counts.items() if k not in self.entity_types))
        return torch.tensor(out, dtype=torch.long, device=self.correct.device)

    def update(self, preds: Sequence[Sequence[str]], target: Sequence[Sequence[str]]) -> None:
        """Add one batch of sentences: predicted and gold word tags, one list per sentence."""
        correct, predicted, expected, tokens_correct, tokens = count_chunks(target, preds, self.scheme)
        self.correct += self._as_tensor(correct)
        self.predicted += self._as_tensor(predicted)
        self.gold += self._as_tensor(expected)
        self.tokens_correct += tokens_correct
        self.tokens += tokens

    def compute(self) -> dict[str, Tensor]:
        """Scores in percent: `precision`, `recall`, `f1`, `accuracy`, and `precision_X`/`recall_X`/`f1_X`."""
        c, p, g = (t.tolist() for t in (self.correct, self.predicted, self.gold))
        scores = dict(zip(("precision", "recall", "f1"), _prf(sum(c), sum(p), sum(g))))
        tokens = int(self.tokens)
        scores["accuracy"] = 100.0 * int(self.tokens_correct) / tokens if tokens else 0.0
        for i, kind in enumerate(self.entity_types):
            scores.update(zip((f"precision_{kind}", f"recall_{kind}", f"f1_{kind}"), _prf(c[i], p[i], g[i])))
        return {
            k: torch.tensor(v, dtype=torch.float32, device=self.correct.device) for k, v in scores.items()
        }
