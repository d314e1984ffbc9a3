"""SQuAD reading, windows, post-processing and the DataModule, on crafted cases and the real dev files."""

from __future__ import annotations

import itertools
import json
import sys
import types
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from bertlab.data.errors import DataError
from bertlab.data.squad import SquadDataModule
from bertlab.data.squad_postprocess import (
    NO_SPAN_NULL_ODDS,
    postprocess_predictions,
    write_null_odds,
    write_predictions,
)
from bertlab.data.squad_reader import (
    ReadStats,
    SquadExample,
    gold_answers,
    load_squad_hub,
    locate_answer,
    parse_articles,
    parse_squad,
    read_squad_file,
    records_to_squad,
)
from bertlab.data.squad_windows import (
    TokenizedText,
    answer_token_span,
    build_features,
    make_features,
    max_context_flags,
    plan_windows,
)
from bertlab.metrics.squad import normalize_answer, squad_v1_scores, squad_v2_scores

V1_DEV = "squad/v1.1/dev-v1.1.json"
V2_DEV = "squad/v2.0/dev-v2.0.json"


def squad_json(paragraphs: list[tuple[str, list[dict]]], title: str = "T") -> dict:
    """A one-article SQuAD json from (context, qas) pairs."""
    return {
        "version": "test",
        "data": [{"title": title, "paragraphs": [{"context": c, "qas": q} for c, q in paragraphs]}],
    }


# ------------------------------------------------------------------------------------------------ reading


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, None),
        (38, slice(0, 38)),
        ("38", slice(0, 38)),
        ("0:38", slice(0, 38)),
        ("38:48", slice(38, 48)),
        ("-10:", slice(-10, None)),
        ((2, 5), slice(2, 5)),
    ],
)
def test_parse_articles(spec: object, expected: slice | None) -> None:
    assert parse_articles(spec) == expected  # type: ignore[arg-type]


def test_locate_answer_keeps_exact_start_else_nearest_occurrence() -> None:
    ctx = "cat dog cat dog cat"
    assert locate_answer(ctx, "cat", 8) == 8
    assert locate_answer(ctx, "cat", 10) == 8  # off by two: nearest of 0, 8, 16
    assert locate_answer(ctx, "cat", 15) == 16
    assert locate_answer(ctx, "cat", -1) == 0
    assert locate_answer(ctx, "bird", 0) is None
    assert locate_answer(ctx, "  ", 3) is None


def test_answer_start_mismatch_is_fixed_or_skipped_and_counted(tmp_path: Path) -> None:
    ctx = "Denver Broncos beat the Carolina Panthers in Santa Clara."
    qas = [
        {"id": "ok", "question": "Who won?", "answers": [{"text": "Denver Broncos", "answer_start": 0}]},
        {"id": "moved", "question": "Where?", "answers": [{"text": "Santa Clara", "answer_start": 40}]},
        {
            "id": "half",
            "question": "Who lost?",
            "answers": [
                {"text": "Carolina Panthers", "answer_start": 24},
                {"text": "Seattle", "answer_start": 24},
            ],
        },
        {"id": "gone", "question": "Who?", "answers": [{"text": "Green Bay", "answer_start": 3}]},
    ]
    path = tmp_path / "train.json"
    path.write_text(
        json.dumps(squad_json([(ctx, qas), ("   ", [{"id": "e", "question": "?", "answers": []}])]))
    )
    with pytest.warns(UserWarning, match="1 answer_start values fixed"):
        examples, stats = read_squad_file(path, version=1)
    assert [e.qid for e in examples] == ["ok", "moved", "half"]
    assert stats == ReadStats(
        articles=1,
        questions=3,
        fixed_answer_starts=1,
        dropped_answers=2,
        skipped_questions=1,
        skipped_empty_context=1,
    )
    moved = examples[1]
    assert moved.answer_starts == (45,) and ctx[45 : 45 + len("Santa Clara")] == "Santa Clara"
    assert examples[2].answers == ("Carolina Panthers",)


def test_v2_unanswerable_kept_in_v2_and_skipped_in_v1() -> None:
    ctx = "The sky is blue."
    qas = [
        {
            "id": "a",
            "question": "Colour?",
            "answers": [{"text": "blue", "answer_start": 11}],
            "is_impossible": False,
        },
        {"id": "n", "question": "Why?", "answers": [], "is_impossible": True},
    ]
    v2, stats2 = parse_squad(squad_json([(ctx, qas)]), version=2)
    assert [(e.qid, e.is_impossible, e.answers) for e in v2] == [("a", False, ("blue",)), ("n", True, ())]
    assert stats2.skipped_impossible == 0
    v1, stats1 = parse_squad(squad_json([(ctx, qas)]), version=1)
    assert [e.qid for e in v1] == ["a"] and stats1.skipped_impossible == 1


def test_unlabelled_reading_keeps_every_question_and_drops_answers() -> None:
    """labelled=False (mode=predict): no answers, broken answers and unanswerable questions all stay, bare."""
    ctx = "The sky is blue."
    qas = [
        {"id": "a", "question": "Colour?", "answers": [{"text": "blue", "answer_start": 11}]},
        {"id": "b", "question": "Shade?"},
        {"id": "c", "question": "Hue?", "answers": [{"text": "green", "answer_start": 0}]},
        {"id": "n", "question": "Why?", "answers": [], "is_impossible": True},
    ]
    for version in (1, 2):
        examples, stats = parse_squad(squad_json([(ctx, qas)]), version=version, labelled=False)
        assert [(e.qid, e.answers, e.is_impossible) for e in examples] == [
            (q, (), False) for q in ("a", "b", "c", "n")
        ]
        assert stats == ReadStats(articles=1, questions=4)
    labelled, _ = parse_squad(squad_json([(ctx, qas)]), version=1)
    assert [e.qid for e in labelled] == ["a"]  # b and c have no usable answer, n is unanswerable
    with pytest.raises(DataError, match="lacks the key 'id'"):
        parse_squad(squad_json([(ctx, [{"question": "?"}])]), "q.json", labelled=False)


def test_bad_files_raise_one_line_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.json: SQuAD file not found; pass") as err:
        read_squad_file(tmp_path / "nope.json")
    assert "\n" not in str(err.value)
    broken = tmp_path / "broken.json"
    broken.write_text('{"data": [')
    with pytest.raises(DataError, match="not valid JSON"):
        read_squad_file(broken)
    with pytest.raises(DataError, match="no top-level 'data' list"):
        parse_squad({"articles": []}, "x.json")
    all_empty = squad_json([("", [{"id": "q", "question": "?", "answers": []}]), (" \n", [])])
    with pytest.raises(DataError, match="no paragraph with a non-empty context"):
        parse_squad(all_empty, "empty.json")


def test_article_slices_split_the_real_dev_file(shared_data: Path) -> None:
    path = shared_data / V1_DEV
    train, tstats = read_squad_file(path, version=1, first_articles=38)
    val, vstats = read_squad_file(path, version=1, article_slice="38:48")
    assert (tstats.articles, vstats.articles) == (38, 10)
    assert len(train) + len(val) == 10570  # the official count
    assert not {e.title for e in train} & {e.title for e in val}
    assert not {e.qid for e in train} & {e.qid for e in val}


def test_v2_dev_counts(shared_data: Path) -> None:
    examples, stats = read_squad_file(shared_data / V2_DEV, version=2)
    assert len(examples) == 11873 and stats.articles == 35
    assert sum(e.is_impossible for e in examples) == 5945


def test_hub_rows_regroup_by_article_and_errors_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [
        {
            "id": "1",
            "title": "A",
            "context": "x y z",
            "question": "q1",
            "answers": {"text": ["y"], "answer_start": [2]},
        },
        {
            "id": "2",
            "title": "B",
            "context": "u v",
            "question": "q2",
            "answers": {"text": [], "answer_start": []},
        },
        {
            "id": "3",
            "title": "A",
            "context": "x y z",
            "question": "q3",
            "answers": {"text": ["z"], "answer_start": [4]},
        },
    ]
    obj = records_to_squad(rows)
    assert [a["title"] for a in obj["data"]] == ["A", "B"]
    assert [q["id"] for q in obj["data"][0]["paragraphs"][0]["qas"]] == ["1", "3"]

    calls: list[tuple[str, str]] = []

    def fake_load(name: str, split: str) -> list[dict]:
        calls.append((name, split))
        return rows

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=fake_load))
    examples, _ = load_squad_hub("rajpurkar/squad_v2", "validation", version=2, articles="1:2")
    assert calls == [("rajpurkar/squad_v2", "validation")]
    assert [(e.qid, e.is_impossible) for e in examples] == [("2", True)]

    def offline(name: str, split: str) -> list[dict]:
        raise ConnectionError("Couldn't reach\n the hub")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=offline))
    with pytest.raises(
        DataError, match=r"rajpurkar/squad: could not load split 'train'.*ConnectionError"
    ) as err:
        load_squad_hub("rajpurkar/squad", "train", version=1)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------------ windows


def test_plan_windows_cover_the_document_with_stride() -> None:
    assert plan_windows(10, 4, 3) == [(0, 4), (3, 4), (6, 4)]
    assert plan_windows(3, 4, 3) == [(0, 3)]
    assert plan_windows(0, 4, 3) == []
    for n, m, s in [(100, 17, 5), (37, 37, 1), (38, 37, 40), (301, 250, 128)]:
        w = plan_windows(n, m, s)
        assert w[0][0] == 0 and w[-1][0] + w[-1][1] == n
        assert all(length <= m for _, length in w)
        assert all(b[0] - a[0] == min(s, a[1]) for a, b in itertools.pairwise(w))


def test_max_context_picks_the_window_with_most_context_each_side() -> None:
    flags = max_context_flags([(0, 4), (3, 4), (6, 4)])
    # token 3 scores 0.04 in windows 1 and 2 -> the earlier; token 4 scores 1.04 in window 2;
    # token 6 ties (0.04) in windows 2 and 3 -> window 2
    assert [list(f) for f in flags] == [[1, 1, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1]]
    assert sum(sum(f) for f in flags) == 10  # every token exactly once


def test_answer_token_span_overlaps_characters() -> None:
    offsets = [(0, 3), (4, 8), (8, 10), (11, 15)]  # "The Bron cos beat" style pieces
    assert answer_token_span(offsets, 4, 10) == (1, 2)
    assert answer_token_span(offsets, 5, 9) == (1, 2)  # mid-token start and end widen to whole tokens
    assert answer_token_span(offsets, 0, 15) == (0, 3)
    assert answer_token_span(offsets, 10, 11) is None  # only the space between tokens


WORDS = "aa bb cc dd ee ff gg hh"
WORD_CTX = TokenizedText(tuple(range(10, 18)), tuple((3 * i, 3 * i + 2) for i in range(8)))
PREFIX = (101, 7, 8, 102)  # [CLS] q q [SEP]


def test_build_features_layout_and_labels() -> None:
    # 4 prefix + 5 context + [SEP] = 10: windows (0,5) and (3,5) over the 8 context tokens
    feats = build_features(0, "q", PREFIX, WORD_CTX, (4, 5), max_seq_length=10, doc_stride=3)
    assert [(f.doc_start, f.doc_len) for f in feats] == [(0, 5), (3, 5)]
    first, second = feats
    assert first.input_ids == [101, 7, 8, 102, 10, 11, 12, 13, 14, 102]
    assert first.token_type_ids == [0] * 4 + [1] * 6
    assert first.offsets[:4] == [None] * 4 and first.offsets[-1] is None
    assert first.offsets[4] == (0, 2) and second.offsets[4] == (9, 11)
    # answer tokens 4..5 ("ee ff"): only partly in window 1 -> [CLS]; fully in window 2 at 4 + 1
    assert (first.start_position, first.end_position) == (0, 0)
    assert (second.start_position, second.end_position) == (5, 6)
    o = second.offsets
    assert WORDS[o[5][0] : o[6][1]] == "ee ff"  # type: ignore[index]
    assert all(len(f) <= 10 and len(f.input_ids) == len(f) for f in feats)
    none = build_features(0, "q", PREFIX, WORD_CTX, None, max_seq_length=10, doc_stride=3)
    assert all((f.start_position, f.end_position) == (0, 0) for f in none)
    with pytest.raises(ValueError, match="no room for context"):
        build_features(0, "q", PREFIX, WORD_CTX, None, max_seq_length=5)


def test_make_features_real_tokenizer(minilm_tokenizer) -> None:
    filler = " ".join(f"word{i}" for i in range(300))
    ctx = f"{filler} The answer is Zanzibar today."
    start = ctx.index("Zanzibar")
    examples = [
        SquadExample("a", "Where " + "really " * 80 + "?", ctx, ("Zanzibar",), (start,)),
        SquadExample("n", "Nothing?", ctx, (), (), True),
    ]
    # a tokenizer.json may carry truncation and padding (MiniLM's: 128): windows must ignore both, and
    # the caller's tokenizer must not be changed
    tok = Tokenizer.from_str(minilm_tokenizer.to_str())
    tok.enable_truncation(20)
    tok.enable_padding(length=200)
    feats = make_features(examples, tok, max_seq_length=128, doc_stride=64, max_query_length=16)
    assert tok.truncation is not None and tok.padding is not None
    a = [f for f in feats if f.example_index == 0]
    assert len(a) > 3 and all(len(f) <= 128 for f in a)
    assert all(len(f.prefix_ids) == 16 + 2 for f in a)  # question cut to max_query_length
    labelled = [f for f in a if f.start_position > 0]
    assert labelled and labelled[-1] is a[-1]
    for f in labelled:
        o = f.offsets
        assert ctx[o[f.start_position][0] : o[f.end_position][1]] == "Zanzibar"  # type: ignore[index]
    assert all(f.start_position == f.end_position == 0 for f in feats if f.example_index == 1)
    # windows of one example tile its context: each context token is max-context in exactly one
    flags = [0] * len(a[0].context.ids)
    for f in a:
        for i, b in enumerate(f.max_context):
            flags[f.doc_start + i] += b
    assert set(flags) == {1}


def test_training_skips_answers_that_cover_no_token(minilm_tokenizer) -> None:
    ctx = "abc \ufffd def"  # the BERT normaliser deletes U+FFFD, so this answer has no token
    ex = SquadExample("x", "What?", ctx, ("\ufffd",), (4,))
    with pytest.warns(UserWarning, match="1 answers cover no token of their context; skipped for training"):
        assert make_features([ex], minilm_tokenizer, training=True) == []
    with pytest.warns(UserWarning, match="kept for evaluation"):
        assert len(make_features([ex], minilm_tokenizer, training=False)) == 1


def test_offsets_round_trip_on_real_dev(shared_data: Path, minilm_tokenizer) -> None:
    """Every gold answer (all annotators) of dev-v1.1: label it, map labels back through offsets.

    Prints the fraction; misses are answers that begin or end inside a word ("30" of "1930s"),
    which no token-level label can express.
    """
    examples, _ = read_squad_file(shared_data / V1_DEV, version=1)
    feats = make_features(examples, minilm_tokenizer)
    first = {}
    for f in feats:
        first.setdefault(f.example_index, f)
    answers = recovered = examples_ok = no_fit = 0
    for i, ex in enumerate(examples):
        f0 = first[i]
        ok_any = False
        for text, start in zip(ex.answers, ex.answer_starts):
            answers += 1
            span = answer_token_span(f0.context.offsets, start, start + len(text))
            windows = [
                f for f in build_features(i, ex.qid, f0.prefix_ids, f0.context, span) if f.start_position
            ]
            no_fit += not windows
            texts = {
                ex.context[f.offsets[f.start_position][0] : f.offsets[f.end_position][1]]  # type: ignore[index]
                for f in windows
            }
            ok = any(normalize_answer(t) == normalize_answer(text) for t in texts)
            recovered += ok
            ok_any |= ok
        examples_ok += ok_any
    frac_answers, frac_examples = recovered / answers, examples_ok / len(examples)
    print(
        f"round trip: {recovered}/{answers} answers ({frac_answers:.4%}), {examples_ok}/{len(examples)} examples"
    )
    assert answers == 34726 and no_fit == 0  # every dev answer fits a 384-token window
    assert frac_answers > 0.995 and frac_examples > 0.999


# ------------------------------------------------------------------------------------------ post-processing


def logits_for(feature_len: int, **points: float) -> list[float]:
    """A `(T,)` row of -10 with `p<i>=value` entries set."""
    row = [-10.0] * feature_len
    for key, value in points.items():
        row[int(key[1:])] = value
    return row


def one_window_case() -> tuple[list[SquadExample], list]:
    ex = SquadExample("q", "?", WORDS, ("cc dd",), (6,))
    return [ex], build_features(0, "q", PREFIX, WORD_CTX, None, max_seq_length=64)


def test_postprocess_picks_best_valid_span() -> None:
    examples, feats = one_window_case()
    n = len(feats[0])  # context tokens sit at positions 4..11
    # best raw pair is reversed (start 9 > end 5) and question tokens score highest: both ignored
    s = logits_for(n, p0=0.0, p1=9.0, p6=3.0, p9=5.0)
    e = logits_for(n, p0=0.0, p2=9.0, p7=4.0, p5=6.0)
    preds, odds = postprocess_predictions(examples, feats, [s], [e])
    # 6 (cc) + 7 (dd) = 7 beats 9 + 5 (reversed) and 4 + 5 (aa bb, -10 + 6)
    assert preds == {"q": "cc dd"}
    assert odds["q"] == pytest.approx(0.0 - 7.0)


def test_postprocess_respects_max_answer_length() -> None:
    examples, feats = one_window_case()
    n = len(feats[0])
    s, e = logits_for(n, p4=5.0, p8=1.0), logits_for(n, p11=5.0, p9=1.5)
    assert postprocess_predictions(examples, feats, [s], [e])[0]["q"] == "aa bb cc dd ee ff gg hh"
    short = postprocess_predictions(examples, feats, [s], [e], max_answer_length=3)[0]["q"]
    assert short == "ee ff"  # 4..11 is 8 tokens, 4..9 6: the best one of length <= 3 is 8..9 (2.5)
    two = postprocess_predictions(examples, feats, [s], [e], max_answer_length=6)[0]["q"]
    assert two == "aa bb cc dd ee ff"


def test_postprocess_across_windows_and_max_context() -> None:
    ex = SquadExample("q", "?", WORDS, (), ())
    feats = build_features(0, "q", PREFIX, WORD_CTX, None, max_seq_length=10, doc_stride=3)
    n0, n1 = len(feats[0]), len(feats[1])  # window 1: tokens 0-4, window 2: tokens 3-7
    # window 2 holds the best span "gg hh" (tokens 6-7 at positions 7-8)
    s = [logits_for(n0, p5=2.0), logits_for(n1, p7=4.0)]
    e = [logits_for(n0, p6=2.0), logits_for(n1, p8=4.0)]
    assert postprocess_predictions([ex], feats, s, e)[0]["q"] == "gg hh"
    # token 4 ("ee") is in both windows; its max context is window 2, so a start there in window 1
    # counts only when the max-context rule is off
    s = [logits_for(n0, p0=0.0, p8=6.0), logits_for(n1, p0=0.0, p5=1.0)]
    e = [logits_for(n0, p0=0.0, p8=6.0), logits_for(n1, p0=0.0, p5=1.0)]
    assert postprocess_predictions([ex], feats, s, e)[0]["q"] == "ee"
    assert postprocess_predictions([ex], feats, s, e)[1]["q"] == pytest.approx(0.0 - 2.0)
    assert postprocess_predictions([ex], feats, s, e, use_max_context=False)[1]["q"] == pytest.approx(-12.0)
    # rows may arrive permuted, padded and as tensors when feature_index says where they go
    padded = torch.full((2, 12), -5.0)
    padded[0, :n1], padded[1, :n0] = torch.tensor(s[1]), torch.tensor(s[0])
    padded_e = torch.full((2, 12), -5.0)
    padded_e[0, :n1], padded_e[1, :n0] = torch.tensor(e[1]), torch.tensor(e[0])
    out = postprocess_predictions([ex], feats, padded, padded_e, feature_index=torch.tensor([1, 0]))
    assert out == postprocess_predictions([ex], feats, s, e)


def test_postprocess_v2_null_threshold() -> None:
    ex = SquadExample("q", "?", WORDS, (), ())
    feats = build_features(0, "q", PREFIX, WORD_CTX, None, max_seq_length=10, doc_stride=3)
    n0, n1 = len(feats[0]), len(feats[1])
    # [CLS] scores 1+1 in window 1 and 3+3 in window 2: null = min = 2; best span "gg hh" = 1.5
    s = [logits_for(n0, p0=1.0), logits_for(n1, p0=3.0, p7=1.0)]
    e = [logits_for(n0, p0=1.0), logits_for(n1, p0=3.0, p8=0.5)]
    preds, odds = postprocess_predictions([ex], feats, s, e, version_2=True)
    assert preds == {"q": ""} and odds == {"q": pytest.approx(0.5)}
    preds, _ = postprocess_predictions([ex], feats, s, e, version_2=True, null_score_diff_threshold=0.6)
    assert preds == {"q": "gg hh"}
    assert postprocess_predictions([ex], feats, s, e, version_2=False)[0] == {"q": "gg hh"}


def test_postprocess_survives_all_null_or_invalid() -> None:
    examples, feats = one_window_case()
    n = len(feats[0])
    s, e = logits_for(n, p0=9.0), logits_for(n, p0=9.0)
    # max_answer_length 0 leaves no valid span at all
    for v2 in (True, False):
        preds, odds = postprocess_predictions(examples, feats, [s], [e], version_2=v2, max_answer_length=0)
        assert preds == {"q": ""} and odds == {"q": NO_SPAN_NULL_ODDS}
    # an example without any window (its context has no token) still gets an answer
    empty = SquadExample("z", "?", "\ufffd", (), ())
    preds, odds = postprocess_predictions([*examples, empty], feats, [s], [e], version_2=True)
    assert preds == {"q": "", "z": ""} and odds["z"] == NO_SPAN_NULL_ODDS
    with pytest.raises(ValueError, match="pass feature_index"):
        postprocess_predictions(examples, feats, [s, s], [e, e])


def test_writers_produce_official_json(tmp_path: Path) -> None:
    p = write_predictions({"a": "Denver Broncos", "b": ""}, tmp_path / "out" / "predictions.json")
    o = write_null_odds({"a": -3.5, "b": NO_SPAN_NULL_ODDS}, tmp_path / "out" / "null_odds.json")
    assert json.loads(p.read_text()) == {"a": "Denver Broncos", "b": ""}
    assert json.loads(o.read_text()) == {"a": -3.5, "b": NO_SPAN_NULL_ODDS}


# ------------------------------------------------------------------------------------------- DataModule


def oracle_logits(dm: SquadDataModule, split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits `(F, 384)` that point at each eval window's own label, gathered batch by batch."""
    features = dm.split(split).features
    starts, ends, index = [], [], []
    for batch in dm.val_dataloader() if split == "val" else dm.test_dataloader():
        b, t = batch["input_ids"].shape
        s, e = torch.zeros(b, t), torch.zeros(b, t)
        for row, k in enumerate(batch["feature_index"].tolist()):
            s[row, features[k].start_position] = 10.0
            e[row, features[k].end_position] = 10.0
        starts.append(torch.nn.functional.pad(s, (0, 384 - t), value=-1e4))
        ends.append(torch.nn.functional.pad(e, (0, 384 - t), value=-1e4))
        index.append(batch["feature_index"])
    return torch.cat(starts), torch.cat(ends), torch.cat(index)


def test_datamodule_batches_v1(shared_data: Path, minilm_dir: Path) -> None:
    dm = SquadDataModule(
        version=1,
        train_file=shared_data / V1_DEV,
        val_file=shared_data / V1_DEV,
        train_articles="0:38",
        val_articles="38:48",
        tokenizer=minilm_dir,
        batch_size=13,
        eval_batch_size=7,
        max_train_examples=40,
        max_eval_examples=300,
    )
    dm.setup("fit")
    train, val = dm.split("train"), dm.split("val")
    assert len(train.examples) == 40 and len(val.examples) == 300
    assert not {e.qid for e in train.examples} & {e.qid for e in val.examples}
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "start_positions", "end_positions"}
    b, t = batch["input_ids"].shape
    assert b == 13 and t <= 384
    assert all(v.dtype == torch.long for v in batch.values())
    assert batch["start_positions"].shape == batch["end_positions"].shape == (13,)
    assert (batch["input_ids"][:, 0] == 101).all()  # [CLS] first
    lengths = batch["attention_mask"].sum(1)
    assert (batch["input_ids"][torch.arange(b), lengths - 1] == 102).all()  # [SEP] last
    assert ((batch["token_type_ids"] == 1) <= (batch["attention_mask"] == 1)).all()
    val_batch = next(iter(dm.val_dataloader()))
    assert set(val_batch) == {"input_ids", "token_type_ids", "attention_mask", "feature_index"}
    assert val_batch["feature_index"].tolist() == list(range(7))
    # oracle logits through the whole eval path: batches -> feature_index -> postprocess -> score
    s, e, idx = oracle_logits(dm, "val")
    preds, _ = postprocess_predictions(val.examples, val.features, s, e, feature_index=idx)
    scores = squad_v1_scores(gold_answers(val.examples), preds)
    assert scores["exact_match"] > 99.0 and scores["f1"] > 99.0


def test_datamodule_v2_oracle_and_test_split(shared_data: Path, minilm_dir: Path) -> None:
    dm = SquadDataModule(
        version=2,
        test_file=shared_data / V2_DEV,
        tokenizer=minilm_dir,
        max_eval_examples=200,
        eval_batch_size=32,
    )
    dm.setup("test")
    test = dm.split("test")
    assert any(ex.is_impossible for ex in test.examples) and not all(ex.is_impossible for ex in test.examples)
    s, e, idx = oracle_logits(dm, "test")
    preds, odds = postprocess_predictions(
        test.examples, test.features, s, e, feature_index=idx, version_2=True
    )
    assert set(preds) == set(odds) == {ex.qid for ex in test.examples}
    assert all(preds[ex.qid] == "" for ex in test.examples if ex.is_impossible)
    scores = squad_v2_scores(gold_answers(test.examples), preds, odds)
    assert scores["NoAns_exact"] == 100.0 and scores["HasAns_exact"] > 98.0
    with pytest.raises(ValueError, match="no val data"):
        dm.val_dataloader()


def test_batches_are_the_windows_padded_to_the_longest(shared_data: Path, minilm_dir: Path) -> None:
    """The base's padder (`pad_rows`, `attention_mask`) gives each row exactly its window, then padding."""
    dm = SquadDataModule(
        version=2,
        val_file=shared_data / V2_DEV,
        tokenizer=minilm_dir,
        max_eval_examples=60,
        eval_batch_size=9,
    )
    features = dm.split("val").features
    pad = dm.pad_id
    seen = []
    for batch in dm.val_dataloader():
        width = batch["input_ids"].shape[1]
        assert width == max(len(features[k]) for k in batch["feature_index"].tolist())
        for row, k in enumerate(batch["feature_index"].tolist()):
            f, n = features[k], len(features[k])
            assert batch["input_ids"][row].tolist() == f.input_ids + [pad] * (width - n)
            assert batch["token_type_ids"][row].tolist() == f.token_type_ids + [0] * (width - n)
            assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)
            seen.append(k)
    assert seen == list(range(len(features)))
