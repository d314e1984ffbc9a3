"""Entity-level NER scores: conlleval chunk rules and hand-computed precision/recall/F1."""

from __future__ import annotations

import random

import pytest
import torch

from bertlab.data.conll import CONLL_TYPES
from bertlab.metrics.ner import EntityF1, entity_f1, get_chunks


@pytest.mark.parametrize(
    ("tags", "scheme", "chunks"),
    [
        # IOB1: B- only separates two adjacent chunks of the same type
        (["I-PER", "I-PER", "B-PER"], "IOB1", [("PER", 0, 2), ("PER", 2, 3)]),
        (["I-LOC", "I-LOC", "B-LOC", "O", "I-ORG"], "IOB1", [("LOC", 0, 2), ("LOC", 2, 3), ("ORG", 4, 5)]),
        # IOB2 read as conlleval does: I- after O (or at the start) opens a chunk
        (["O", "I-PER", "I-PER"], "IOB2", [("PER", 1, 3)]),
        (["I-PER", "O"], "IOB2", [("PER", 0, 1)]),
        # a type change splits, whatever the prefix
        (["B-PER", "I-ORG"], "IOB2", [("PER", 0, 1), ("ORG", 1, 2)]),
        (["B-PER", "I-PER", "I-LOC", "I-LOC"], "IOB2", [("PER", 0, 2), ("LOC", 2, 4)]),
        (["B-PER", "B-PER", "I-PER", "O", "O"], "IOB2", [("PER", 0, 1), ("PER", 1, 3)]),
        (["B-MISC", "I-MISC", "I-MISC"], "IOB2", [("MISC", 0, 3)]),
        (["O", "O"], "IOB2", []),
        ([], "IOB2", []),
        # IOBES: E- closes, S- is a single word, I- after E- opens a new chunk
        (
            ["B-PER", "E-PER", "S-LOC", "I-ORG", "E-ORG", "E-ORG"],
            "IOBES",
            [("PER", 0, 2), ("LOC", 2, 3), ("ORG", 3, 5), ("ORG", 5, 6)],
        ),
    ],
)
def test_chunks_follow_conlleval(tags: list[str], scheme: str, chunks: list[tuple[str, int, int]]) -> None:
    assert get_chunks(tags, scheme) == chunks


@pytest.mark.parametrize(
    ("tag", "scheme"), [("PER", "IOB2"), ("X-PER", "IOB2"), ("B-", "IOB2"), ("S-PER", "IOB2")]
)
def test_illegal_tags_raise(tag: str, scheme: str) -> None:
    with pytest.raises(ValueError, match="not valid"):
        get_chunks(["O", tag], scheme)


def test_unknown_scheme_raises() -> None:
    with pytest.raises(ValueError, match="scheme"):
        get_chunks(["O"], "BILOU")


def test_scores_by_hand() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O"]]
    # gold chunks PER LOC ORG, predicted PER ORG ORG, correct PER ORG: 2/3 both ways
    scores = entity_f1(gold, pred)
    assert scores["precision"] == pytest.approx(200 / 3)
    assert scores["recall"] == pytest.approx(200 / 3)
    assert scores["f1"] == pytest.approx(200 / 3)
    assert scores["accuracy"] == pytest.approx(500 / 6)
    assert (scores["precision_PER"], scores["recall_PER"], scores["f1_PER"]) == (100.0, 100.0, 100.0)
    assert scores["precision_ORG"] == pytest.approx(50.0)
    assert scores["recall_ORG"] == pytest.approx(100.0)
    assert scores["f1_ORG"] == pytest.approx(200 / 3)
    assert (scores["precision_LOC"], scores["recall_LOC"], scores["f1_LOC"]) == (0.0, 0.0, 0.0)
    assert "f1_MISC" not in scores


def test_boundary_errors_count_as_wrong() -> None:
    gold = [["B-PER", "I-PER", "O", "B-ORG", "O", "B-LOC", "B-LOC"]]  # PER ORG LOC LOC
    pred = [["B-PER", "I-PER", "O", "O", "O", "B-LOC", "I-LOC"]]  # PER, and LOC spanning both gold LOCs
    scores = entity_f1(gold, pred)
    assert scores["precision"] == pytest.approx(50.0)  # 1 of 2
    assert scores["recall"] == pytest.approx(25.0)  # 1 of 4
    assert scores["f1"] == pytest.approx(2 * 50 * 25 / 75)
    assert scores["recall_LOC"] == 0.0
    assert scores["precision_ORG"] == 0.0  # no ORG predicted: 0, as conlleval prints


def test_iob1_and_iob2_boundaries() -> None:
    gold_iob1 = [["I-PER", "I-PER", "B-PER", "O"]]
    assert entity_f1(gold_iob1, [["B-PER", "I-PER", "B-PER", "O"]], "IOB1")["f1"] == 100.0
    merged = entity_f1(gold_iob1, [["I-PER", "I-PER", "I-PER", "O"]], "IOB1")  # one chunk against two
    assert (merged["precision"], merged["recall"], merged["f1"]) == (0.0, 0.0, 0.0)
    # a stray I- in IOB2 output is an entity, so it matches a gold B-
    assert entity_f1([["O", "B-PER", "I-PER"]], [["O", "I-PER", "I-PER"]])["f1"] == 100.0
    split = entity_f1([["B-PER", "I-PER"]], [["B-PER", "I-ORG"]])
    assert (split["precision"], split["recall"]) == (0.0, 0.0)
    assert split["precision_ORG"] == 0.0 and split["recall_PER"] == 0.0


def test_empty_and_mismatched_inputs() -> None:
    scores = entity_f1([["O", "O"]], [["O", "O"]])
    assert (scores["precision"], scores["recall"], scores["f1"], scores["accuracy"]) == (0.0, 0.0, 0.0, 100.0)
    with pytest.raises(ValueError, match="sentence 0"):
        entity_f1([["O", "O"]], [["O"]])
    with pytest.raises(ValueError, match="gold sentences"):
        entity_f1([["O"]], [])


def _reference_chunks(tags: list[str]) -> set[tuple[str, int, int]]:
    """conlleval's two predicates, written as the spec states them, to cross-check get_chunks."""

    def parts(tag: str) -> tuple[str, str]:
        return ("O", "") if tag == "O" else (tag[0], tag[2:])

    def ends(prev: str, prev_type: str, cur: str, cur_type: str) -> bool:
        if prev in "ES":
            return True
        if prev in "BI":
            return cur in "BOS" or prev_type != cur_type
        return False

    def starts(prev: str, prev_type: str, cur: str, cur_type: str) -> bool:
        if cur in "BS":
            return True
        if cur in "IE":
            return prev in "OES" or prev_type != cur_type
        return False

    chunks, start, kind = set(), None, ""
    padded = [*tags, "O"]
    prev, prev_type = "O", ""
    for i, tag in enumerate(padded):
        cur, cur_type = parts(tag)
        if start is not None and ends(prev, prev_type, cur, cur_type):
            chunks.add((kind, start, i))
            start = None
        if starts(prev, prev_type, cur, cur_type):
            start, kind = i, cur_type
        prev, prev_type = cur, cur_type
    return chunks


def test_chunks_match_reference_on_random_tags() -> None:
    rng = random.Random(0)
    for scheme, prefixes in (("IOB2", "BI"), ("IOBES", "BIES")):
        tags_pool = ["O"] + [f"{p}-{t}" for p in prefixes for t in ("PER", "ORG")]
        for _ in range(500):
            tags = [rng.choice(tags_pool) for _ in range(rng.randint(0, 12))]
            assert set(get_chunks(tags, scheme)) == _reference_chunks(tags), tags


def test_metric_accumulates_and_merges_like_the_function() -> None:
    rng = random.Random(1)
    pool = ["O", "O", "O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-DATE"]
    gold = [[rng.choice(pool) for _ in range(rng.randint(1, 15))] for _ in range(60)]
    pred = [[t if rng.random() < 0.7 else rng.choice(pool) for t in g] for g in gold]
    expected = entity_f1(gold, pred)

    whole = EntityF1(CONLL_TYPES)
    whole.update(pred[:25], gold[:25])
    whole.update(pred[25:], gold[25:])
    got = whole.compute()
    for key in ("precision", "recall", "f1", "accuracy", "f1_PER", "precision_ORG", "recall_MISC"):
        assert got[key].item() == pytest.approx(expected[key], abs=1e-4), key
    assert whole.correct.dtype == torch.long and whole.correct.shape == (5,)  # 4 types + DATE's slot

    # two ranks' states summed, as DDP's "sum" reduction does, give the same scores
    rank0, rank1 = EntityF1(CONLL_TYPES), EntityF1(CONLL_TYPES)
    rank0.update(pred[:40], gold[:40])
    rank1.update(pred[40:], gold[40:])
    rank0.merge_state(rank1)
    assert rank0.compute()["f1"].item() == pytest.approx(expected["f1"], abs=1e-4)

    whole.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):
        empty = whole.compute()
    assert empty["f1"].item() == 0.0
    assert set(empty) >= {"f1_PER", "f1_ORG", "f1_LOC", "f1_MISC"}
