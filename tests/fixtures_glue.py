"""Small MNLI and QQP folders in the official GLUE tsv layouts, written by code (neither is in ../shared/data).

Layouts, as in GLUE's MNLI.zip / QQP.zip:
- MNLI train.tsv (12 columns): index promptID pairID genre sentence1_binary_parse sentence2_binary_parse
  sentence1_parse sentence2_parse sentence1 sentence2 label1 gold_label
- MNLI dev_{matched,mismatched}.tsv (16): the same with label1 … label5 before gold_label
- MNLI test_{matched,mismatched}.tsv (10): the same without labels
- diagnostic/diagnostic.tsv (AX, beside the task folders): index sentence1 sentence2
- QQP train.tsv / dev.tsv: id qid1 qid2 question1 question2 is_duplicate; test.tsv: id question1 question2
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

MNLI_COLUMNS = (
    "index",
    "promptID",
    "pairID",
    "genre",
    "sentence1_binary_parse",
    "sentence2_binary_parse",
    "sentence1_parse",
    "sentence2_parse",
    "sentence1",
    "sentence2",
)
MNLI_TRAIN_HEADER = (*MNLI_COLUMNS, "label1", "gold_label")
MNLI_DEV_HEADER = (*MNLI_COLUMNS, "label1", "label2", "label3", "label4", "label5", "gold_label")
MNLI_TEST_HEADER = MNLI_COLUMNS
AX_HEADER = ("index", "sentence1", "sentence2")
QQP_HEADER = ("id", "qid1", "qid2", "question1", "question2", "is_duplicate")
QQP_TEST_HEADER = ("id", "question1", "question2")

NLI_LABELS = ("entailment", "neutral", "contradiction")  # as the files write them (any order)
MATCHED_GENRES = ("fiction", "government", "slate", "telephone", "travel")
MISMATCHED_GENRES = ("facetoface", "letters", "nineeleven", "oup", "verbatim")

# includes an unbalanced quote and a quoted phrase: a quoting csv reader would merge or strip them
_SENTENCES = (
    "Conceptually cream skimming has two basic dimensions - product and geography.",
    "Product and geography are what make cream skimming work.",
    'He said "the witness" had lied to everyone.',
    '"You know during the season and I guess at at your level',
    "The new rights are nice enough.",
    "Everyone really likes the newest benefits.",
    "One of our number will carry out your instructions minutely.",
    "How do you know? All this is their information again.",
    "yeah i tell you what though if you go price some of those tennis shoes",
    "The tennis shoes have a range of prices.",
    "I don't know um do you do a lot of camping?",
    "Gays and lesbians.",
)


@dataclass
class Written:
    """What a fixture writer put on disk: per split, the (text_a, text_b, label-or-None) rows in order."""

    root: Path
    rows: dict[str, list[tuple[str, str, str | None]]] = field(default_factory=dict)
    skipped_lines: dict[str, list[int]] = field(default_factory=dict)  # QQP: malformed line numbers


def _write(path: Path, header: tuple[str, ...] | None, rows: list[list[str]]) -> None:
    """Write a tab-separated file (no quoting), header first, newline-terminated."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ([] if header is None else ["\t".join(header)]) + ["\t".join(r) for r in rows]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _parses(sentence: str) -> tuple[str, str]:
    """Stand-ins for the Stanford binary parse and full parse columns."""
    words = sentence.replace("(", "-LRB-").replace(")", "-RRB-").split()
    return "( " + " ".join(words) + " )", "(ROOT (S " + " ".join(f"(NN {w})" for w in words) + "))"


def write_mnli(
    root: Path, n_train: int = 30, n_dev: int = 12, n_test: int = 10, diagnostic: bool = True, seed: int = 0
) -> Written:
    """Write `<root>/MNLI/*.tsv` (and `<root>/diagnostic/diagnostic.tsv`) in GLUE's MNLI layout."""
    rng = random.Random(seed)
    out = Written(root)
    folder = root / "MNLI"

    def base(i: int, genres: tuple[str, ...]) -> tuple[list[str], tuple[str, str]]:
        # every file's first row carries the unbalanced and the paired quotes
        s1, s2 = (
            (_SENTENCES[3], _SENTENCES[2]) if i == 0 else (rng.choice(_SENTENCES), rng.choice(_SENTENCES))
        )
        prompt = 10000 + i
        b1, p1 = _parses(s1)
        b2, p2 = _parses(s2)
        return [str(i), str(prompt), f"{prompt}x", rng.choice(genres), b1, b2, p1, p2, s1, s2], (s1, s2)

    rows, written = [], []
    for i in range(n_train):
        cols, (s1, s2) = base(i, MATCHED_GENRES)
        gold = rng.choice(NLI_LABELS)
        cols[2] = f"{cols[1]}{gold[0]}"
        rows.append([*cols, gold, gold])
        written.append((s1, s2, gold))
    _write(folder / "train.tsv", MNLI_TRAIN_HEADER, rows)
    out.rows["train"] = written

    for split, genres in (("matched", MATCHED_GENRES), ("mismatched", MISMATCHED_GENRES)):
        rows, written = [], []
        for i in range(n_dev):
            cols, (s1, s2) = base(i, genres)
            gold = rng.choice(NLI_LABELS)
            # five annotator labels whose majority is gold, as in the official dev sets
            annot = [gold, gold, gold, rng.choice(NLI_LABELS), rng.choice(NLI_LABELS)]
            rows.append([*cols, *annot, gold])
            written.append((s1, s2, gold))
        _write(folder / f"dev_{split}.tsv", MNLI_DEV_HEADER, rows)
        out.rows[f"val_{split}"] = written

        rows, written = [], []
        for i in range(n_test):
            cols, (s1, s2) = base(i, genres)
            rows.append(cols)
            written.append((s1, s2, None))
        _write(folder / f"test_{split}.tsv", MNLI_TEST_HEADER, rows)
        out.rows[f"test_{split}"] = written

    if diagnostic:
        rows, written = [], []
        for i in range(7):
            s1, s2 = rng.choice(_SENTENCES), rng.choice(_SENTENCES)
            rows.append([str(i), s1, s2])
            written.append((s1, s2, None))
        _write(root / "diagnostic" / "diagnostic.tsv", AX_HEADER, rows)
        out.rows["ax"] = written
    return out


def write_qqp(
    root: Path, n_train: int = 30, n_dev: int = 10, n_test: int = 10, malformed: bool = True
) -> Written:
    """Write `<root>/QQP/*.tsv`; with `malformed`, train.tsv gets the official files' kinds of broken rows.

    Those are a question holding a newline (one row split into a 4-field and a 3-field line) and a row
    whose `is_duplicate` is empty; their line numbers go to `skipped_lines["train"]`.
    """
    rng = random.Random(1)
    out = Written(root)
    folder = root / "QQP"
    for split, n, fname in (("train", n_train, "train.tsv"), ("val", n_dev, "dev.tsv")):
        rows, written, lines = [], [], []
        for i in range(n):
            q1, q2 = rng.choice(_SENTENCES), rng.choice(_SENTENCES)
            label = rng.choice("01")
            rows.append([str(100000 + i), str(2 * i + 1), str(2 * i + 2), q1, q2, label])
            written.append((q1, q2, label))
        if malformed and split == "train":
            # after row 5: a split row (2 lines), after row 9 (shifted by 2): an empty label
            rows.insert(5, ["363000", "1", "2", "What is the best way to"])
            rows.insert(6, ["learn Python?", "How do I learn Python?", "1"])
            rows.insert(11, ["363001", "3", "4", "Why is the sky blue?", "What makes the sky blue?", ""])
            lines = [5 + 2, 6 + 2, 11 + 2]  # 1-based, after the header
        _write(folder / fname, QQP_HEADER, rows)
        out.rows[split] = written
        out.skipped_lines[split] = lines
    rows, written = [], []
    for i in range(n_test):
        q1, q2 = rng.choice(_SENTENCES), rng.choice(_SENTENCES)
        rows.append([str(i), q1, q2])
        written.append((q1, q2, None))
    _write(folder / "test.tsv", QQP_TEST_HEADER, rows)
    out.rows["test"] = written
    return out
