"""SQuAD v1.1 / v2.0 scores against the official scripts' definitions.

The official scripts cannot be run here, so equality is established three ways:
(a) hand-computed values from the published definitions on crafted cases (normalisation order,
    EM/F1 max over golds, v1 vs v2 empty-answer rules, HasAns/NoAns splits, the `na_prob_thresh`
    rule and the best-threshold sweep), worked out in the comments;
(b) self-consistency on the real dev files: the gold answers scored as predictions give EM = F1 = 100
    (v1, and v2 with "" for unanswerable questions), and "" for everything gives v2 exact = the
    unanswerable share, 5945 / 11873;
(c) v1 EM/F1 on the real dev file with imperfect predictions equal torchmetrics' independent port
    of the official v1 script.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from bertlab.data.squad_reader import gold_answers, read_squad_file
from bertlab.metrics.squad import (
    best_threshold,
    exact_match,
    normalize_answer,
    squad_v1_scores,
    squad_v2_scores,
    token_f1,
)

V1_DEV = "squad/v1.1/dev-v1.1.json"
V2_DEV = "squad/v2.0/dev-v2.0.json"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Quick, Brown Fox!", "quick brown fox"),
        ("  an  apple\ta day\n", "apple day"),
        ("theatre another thematic", "theatre another thematic"),  # articles only as whole words
        ("Anthem of the U.S.A.", "anthem of usa"),
        ("The the THE", ""),
        ("A", ""),
        ("rock'n'roll", "rocknroll"),
        ("the-end", "theend"),  # punctuation goes first, so "the" is no longer a word here
        ("an/the", "anthe"),
        ("1990–1995", "1990–1995"),  # the en dash is not ASCII punctuation: kept
        ("Élan   VITAL", "élan vital"),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_exact_and_f1_hand_cases() -> None:
    assert exact_match("The Broncos.", "broncos") == 1.0
    assert exact_match("Broncos!", "Denver Broncos") == 0.0
    # [cat, sat] vs [cat, sat, on, mat]: 2 shared, precision 1, recall 1/2 -> F1 2/3
    assert token_f1("the cat sat", "cat sat on the mat") == pytest.approx(2 / 3)
    # bags, not sets: [dog, dog, cat] vs [dog, cat, cat] share one dog and one cat -> 2/3
    assert token_f1("dog dog cat", "dog cat cat") == pytest.approx(2 / 3)
    assert token_f1("", "cat") == 0.0 and token_f1("cat", "") == 0.0
    assert token_f1("", "") == 1.0 and token_f1("the", "a") == 1.0  # v2: both empty after normalising
    assert token_f1("", "", empty_matches_empty=False) == 0.0  # v1


def test_v1_max_over_golds_and_missing_prediction() -> None:
    golds = {
        "q1": ["Denver Broncos", "Broncos"],
        "q2": ["Santa Clara, California", "Levi's Stadium"],
        "q3": ["gold"],
    }
    preds = {"q1": "the Broncos", "q2": "Santa Clara"}
    # q1: EM 1 and F1 1 through the second gold; q2: EM 0, F1 vs [santa, clara, california] = 0.8;
    # q3: no prediction, scores 0 but still counts
    with pytest.warns(UserWarning, match="1 of 3 questions have no prediction"):
        scores = squad_v1_scores(golds, preds)
    assert scores == {"exact_match": pytest.approx(100 / 3), "f1": pytest.approx(100 * 1.8 / 3)}
    with pytest.raises(ValueError, match="score SQuAD v2 data with squad_v2_scores"):
        squad_v1_scores({"q": []}, {"q": ""})


V2_GOLDS = {"h1": ["cat"], "h2": ["big dog", "dog"], "n1": [], "n2": []}
V2_PREDS = {"h1": "the cat", "h2": "small dog", "n1": "", "n2": "cat"}
# per question (exact, f1): h1 (1, 1); h2 (0, max(1/2, 2/3) = 2/3); n1 (1, 1); n2 (0, 0)


def test_v2_has_ans_and_no_ans_splits() -> None:
    scores = squad_v2_scores(V2_GOLDS, V2_PREDS)
    assert scores == pytest.approx(
        {
            "exact": 50.0,
            "f1": 100 * (1 + 2 / 3 + 1) / 4,
            "total": 4,
            "HasAns_exact": 50.0,
            "HasAns_f1": 100 * (5 / 3) / 2,
            "HasAns_total": 2,
            "NoAns_exact": 50.0,
            "NoAns_f1": 50.0,
            "NoAns_total": 2,
        }
    )
    only_no_ans = squad_v2_scores({"n1": []}, {"n1": ""})
    assert "HasAns_exact" not in only_no_ans and only_no_ans["NoAns_exact"] == 100.0


def test_v2_best_threshold_sweep() -> None:
    odds = {"h1": -2.0, "h2": 0.5, "n1": 3.0, "n2": 0.8}
    # start: everything "" -> the 2 unanswerable right (threshold 0.0). In order of odds:
    # h1 (-2.0) +1 -> 3 (best, thresh -2.0); h2 (0.5) +0 exact / +2/3 f1; n2 (0.8) "cat" -> -1; n1 (3.0) "" -> 0.
    # exact: best 3/4 at -2.0; f1: 3 + 2/3 at 0.5
    scores = squad_v2_scores(V2_GOLDS, V2_PREDS, odds)
    assert scores["best_exact"] == pytest.approx(75.0) and scores["best_exact_thresh"] == -2.0
    assert scores["best_f1"] == pytest.approx(100 * (11 / 3) / 4) and scores["best_f1_thresh"] == 0.5
    assert scores["exact"] == 50.0  # n1's odds 3.0 > 1.0 score it as "", which it already is
    # the sweep alone, with a nothing-beats-all-empty case: threshold stays 0.0
    assert best_threshold({"n": "x"}, {"n": 0.0}, {"n": -1.0}, {"n": False}) == (100.0, 0.0)


def test_v2_na_prob_thresh_scores_high_odds_as_empty() -> None:
    odds = {"h1": -2.0, "h2": 1.5, "n1": 3.0, "n2": 2.0}
    # odds above 1.0: h2 counts as "" (exact 0, f1 0 instead of 2/3), n2 as "" (1 instead of 0)
    scores = squad_v2_scores(V2_GOLDS, V2_PREDS, odds)
    assert scores["exact"] == pytest.approx(75.0) and scores["f1"] == pytest.approx(75.0)
    relaxed = squad_v2_scores(V2_GOLDS, V2_PREDS, odds, na_prob_thresh=5.0)
    assert relaxed["exact"] == pytest.approx(50.0)
    with pytest.raises(ValueError, match="no null odds"):
        squad_v2_scores(V2_GOLDS, V2_PREDS, {"h1": 0.0})


def test_v2_golds_that_normalise_to_empty_are_dropped() -> None:
    # golds ["the", "cat"] -> ["cat"]; golds ["a"] -> [""], yet the question still counts as answerable
    scores = squad_v2_scores({"q": ["the", "cat"], "r": ["a"]}, {"q": "", "r": ""})
    assert scores["exact"] == 50.0 and scores["HasAns_total"] == 2
    assert squad_v2_scores({"q": ["the", "cat"]}, {"q": "Cat."})["exact"] == 100.0


def test_v2_missing_predictions_leave_the_totals() -> None:
    with pytest.warns(UserWarning, match="1 of 4 questions have no prediction"):
        scores = squad_v2_scores(V2_GOLDS, {k: v for k, v in V2_PREDS.items() if k != "n2"})
    assert scores["total"] == 3 and scores["NoAns_total"] == 1


def test_dataset_forms_agree(shared_data: Path) -> None:
    path = shared_data / V1_DEV
    obj = json.loads(path.read_text(encoding="utf-8"))
    examples, _ = read_squad_file(path, version=1)
    forms = [path, str(path), obj, obj["data"], examples]
    golds = [gold_answers(f) for f in forms]
    assert all(g == golds[0] for g in golds) and len(golds[0]) == 10570


def test_real_dev_self_consistency(shared_data: Path) -> None:
    v1 = gold_answers(shared_data / V1_DEV)
    assert squad_v1_scores(v1, {q: a[0] for q, a in v1.items()}) == {"exact_match": 100.0, "f1": 100.0}

    v2 = gold_answers(shared_data / V2_DEV)
    gold_preds = {q: (a[0] if a else "") for q, a in v2.items()}
    full = squad_v2_scores(v2, gold_preds)
    assert (full["exact"], full["f1"], full["HasAns_total"], full["NoAns_total"]) == (
        100.0,
        100.0,
        5928,
        5945,
    )

    empty = squad_v2_scores(v2, dict.fromkeys(v2, ""))
    assert empty["exact"] == pytest.approx(5945 / 11873 * 100) == empty["f1"]
    assert (empty["HasAns_exact"], empty["NoAns_exact"]) == (0.0, 100.0)

    # answer every answerable question right and every unanswerable one wrongly ("x"), with odds
    # -1 / +1: answering only below odds -1.0 is perfect
    wrong_no_ans = {q: (a[0] if a else "x") for q, a in v2.items()}
    odds = {q: (-1.0 if a else 1.0) for q, a in v2.items()}
    swept = squad_v2_scores(v2, wrong_no_ans, odds)
    assert swept["best_exact"] == 100.0 and swept["best_exact_thresh"] == -1.0
    assert swept["exact"] == pytest.approx(5928 / 11873 * 100)  # odds 1.0 are not above 1.0


def test_v1_equals_torchmetrics_port_on_real_dev(shared_data: Path) -> None:
    """Imperfect predictions (gold, gold + noise, a context prefix, another question's gold) on dev-v1.1."""
    squad_tm = pytest.importorskip("torchmetrics.functional.text").squad
    examples, _ = read_squad_file(shared_data / V1_DEV, version=1)
    examples = examples[::7]  # 1510 questions keep this quick
    preds = {}
    for i, ex in enumerate(examples):
        kind = i % 4
        if kind == 0:
            preds[ex.qid] = ex.answers[-1]
        elif kind == 1:
            preds[ex.qid] = f"{ex.answers[0]}, the one in {ex.title}"
        elif kind == 2:
            preds[ex.qid] = " ".join(ex.context.split()[:6])
        else:
            preds[ex.qid] = examples[i - 1].answers[0]
    ours = squad_v1_scores(gold_answers(examples), preds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = squad_tm(
            [{"prediction_text": p, "id": q} for q, p in preds.items()],
            [
                {"id": ex.qid, "answers": {"text": list(ex.answers), "answer_start": list(ex.answer_starts)}}
                for ex in examples
            ],
        )
    assert 5 < ours["exact_match"] < 95  # a mix, so the comparison is not trivially all-right
    assert ours["exact_match"] == pytest.approx(float(theirs["exact_match"]), abs=1e-3)
    assert ours["f1"] == pytest.approx(float(theirs["f1"]), abs=1e-3)
