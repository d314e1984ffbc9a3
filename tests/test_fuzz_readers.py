"""Random corruptions of real-format files: every reader parses exactly what the bytes say, or raises
bertlab's own error. Nothing else may escape, and nothing may be dropped or relabelled silently.

Each reader is checked against a small reference reading of the same bytes written from the format's
definition (GLUE tsv, CoNLL, SWAG's labels, text/jsonl/wiki corpora, vocab.txt), or, for SQuAD json,
against invariants: every kept answer sits at its offset, every question is kept or counted as skipped.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bertlab.data.conll import convert_tags, read_conll
from bertlab.data.corpus import jsonl_documents, read_corpus, text_documents, wiki_documents
from bertlab.data.errors import DataError
from bertlab.data.glue_files import read_glue_tsv
from bertlab.data.sentences import paragraph_sentences, split_sentences
from bertlab.data.squad_reader import parse_squad, read_squad_file
from bertlab.data.swag import read_swag_csv
from bertlab.data.tokenizer import TokenizerError, from_vocab

FUZZ = settings(
    max_examples=int(os.environ.get("BERTLAB_FUZZ_EXAMPLES", 60)),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ERROR = "error"  # what the reference reading says a reader must raise on

# text of a field: letters, digits, punctuation, a few non-ASCII letters; no tabs or line breaks
WORD = st.text(alphabet=st.sampled_from("abcdefXYZ019 .,'\"-éßж中"), min_size=1, max_size=12)
JUNK = st.one_of(
    st.text(alphabet=st.sampled_from("abcxyz019_-+. \"'é"), max_size=8),
    st.integers(-3, 12).map(str),
    st.floats(-2, 7).map(lambda f: f"{f:.2f}"),
    st.sampled_from(["nan", "inf", "", " ", "1e9"]),
)
INVALID_UTF8 = st.sampled_from([b"\xff", b"\xfe\xff", b"\xc3", b"\xe2\x82", b"\x80", b"\xed\xa0\x80"])


def corrupt_bytes(data: bytes, draw: Any) -> bytes:
    """One byte-level corruption: truncate, insert invalid UTF-8, add a BOM, CRLF endings, or none."""
    kind = draw(st.sampled_from(["none", "truncate", "invalid", "bom", "crlf"]))
    if kind == "truncate":
        return data[: draw(st.integers(0, len(data)))]
    if kind == "invalid":
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(INVALID_UTF8) + data[at:]
    if kind == "bom":
        return b"\xef\xbb\xbf" + data
    if kind == "crlf":
        return data.replace(b"\n", b"\r\n")
    return data


def corrupt_lines(lines: list[str], draw: Any, field_sep: str) -> list[str]:
    """One line-level corruption: drop/duplicate/insert lines or separators, blank lines, or none."""
    if not lines:
        return lines
    i = draw(st.integers(0, len(lines) - 1))
    kind = draw(st.sampled_from(["none", "drop", "dup", "blank", "drop_sep", "dup_sep", "insert_field"]))
    line = lines[i]
    if kind == "drop":
        return lines[:i] + lines[i + 1 :]
    if kind == "dup":
        return [*lines[: i + 1], line, *lines[i + 1 :]]
    if kind == "blank":
        return [*lines[:i], "", *lines[i:]]
    if kind in ("drop_sep", "dup_sep") and field_sep in line:
        at = [m.start() for m in re.finditer(re.escape(field_sep), line)]
        j = draw(st.sampled_from(at))
        new = line[:j] + line[j + len(field_sep) :] if kind == "drop_sep" else line[:j] + field_sep + line[j:]
        return [*lines[:i], new, *lines[i + 1 :]]
    if kind == "insert_field":
        return [*lines[:i], line + field_sep + draw(WORD), *lines[i + 1 :]]
    return lines


def reference_text(data: bytes) -> str | None:
    """The file's text (BOM dropped), or None when it is not UTF-8."""
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        return None


def outcome(read: Any, *errors: type[Exception]) -> Any:
    """`read()`, or ERROR when it raises one of bertlab's `errors` (any other exception fails the test)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return read()
    except errors:
        return ERROR


# ---------------------------------------------------------------------------------------------- GLUE

RTE_LABELS = ("entailment", "not_entailment")


def glue_reference(data: bytes) -> Any:
    """RTE's train.tsv read from its definition: a header, then index, sentence1, sentence2, label
    split on tabs; blank lines are no rows; any other row with the wrong field count or label is an error."""
    text = reference_text(data)
    if text is None or not text.strip():
        return ERROR
    lines = re.split(r"\r\n|\r|\n", text)
    if lines and lines[-1] == "":
        lines.pop()
    header = lines[0].split("\t") if lines[0] else []
    if not {"sentence1", "sentence2", "label"} <= set(header):
        return ERROR
    a, b, labels, idx = [], [], [], []
    for line in lines[1:]:
        if line == "":
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            return ERROR
        row = dict(zip(header, fields))
        if row["label"] not in RTE_LABELS:
            return ERROR
        a.append(row["sentence1"])
        b.append(row["sentence2"])
        labels.append(RTE_LABELS.index(row["label"]))
        idx.append(len(idx))
    return (a, b, labels, idx) if a else ERROR


GLUE_ROW = st.tuples(WORD, WORD, st.sampled_from(RTE_LABELS))


@FUZZ
@given(rows=st.lists(GLUE_ROW, min_size=1, max_size=6), data=st.data())
def test_glue_tsv_reads_what_the_bytes_say(
    tmp_path: Path, rows: list[tuple[str, str, str]], data: Any
) -> None:
    lines = ["index\tsentence1\tsentence2\tlabel"] + [
        f"{i}\t{a}\t{b}\t{y}" for i, (a, b, y) in enumerate(rows)
    ]
    if data.draw(st.booleans()):  # a label replaced by a random string or number
        i = data.draw(st.integers(1, len(lines) - 1))
        lines[i] = lines[i].rsplit("\t", 1)[0] + "\t" + data.draw(JUNK)
    lines = corrupt_lines(lines, data.draw, "\t")
    raw = corrupt_bytes(("\n".join(lines) + "\n").encode(), data.draw)
    path = tmp_path / "train.tsv"
    path.write_bytes(raw)
    got = outcome(lambda: read_glue_tsv("rte", path, "train"), DataError)
    if got != ERROR:
        got = (got.text_a, got.text_b, got.labels, got.idx)
    assert got == glue_reference(raw)


# ---------------------------------------------------------------------------------------------- CoNLL

TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
TOKEN = st.text(alphabet=st.sampled_from("abcXYZ019.,'-é中"), min_size=1, max_size=8)


def conll_reference(data: bytes) -> Any:
    """CoNLL-2003 from its definition: 4 whitespace-separated columns a word, tag last and in the set,
    blank lines between sentences, -DOCSTART- lines opening documents."""
    text = reference_text(data)
    if text is None:
        return ERROR
    sentences, words, tags = [], [], []
    for line in io.StringIO(text):
        parts = line.split()
        if not parts or parts[0] == "-DOCSTART-":
            if words:
                sentences.append((tuple(words), tuple(convert_tags(tags))))
            words, tags = [], []
            continue
        if len(parts) != 4 or parts[-1] not in TAGS:
            return ERROR
        words.append(parts[0])
        tags.append(parts[-1])
    if words:
        sentences.append((tuple(words), tuple(convert_tags(tags))))
    return sentences or ERROR


@FUZZ
@given(
    sentences=st.lists(
        st.lists(st.tuples(TOKEN, st.sampled_from(TAGS)), min_size=1, max_size=5), min_size=1, max_size=4
    ),
    data=st.data(),
)
def test_conll_reads_what_the_bytes_say(
    tmp_path: Path, sentences: list[list[tuple[str, str]]], data: Any
) -> None:
    lines = ["-DOCSTART- -X- O O", ""]
    for sentence in sentences:
        lines += [f"{w} NN I-NP {t}" for w, t in sentence] + [""]
    if data.draw(st.booleans()):  # a tag replaced by a random string
        word_lines = [i for i, line in enumerate(lines) if line and not line.startswith("-DOCSTART-")]
        i = data.draw(st.sampled_from(word_lines))
        lines[i] = lines[i].rsplit(" ", 1)[0] + " " + (data.draw(JUNK).replace(" ", "") or "x")
    lines = corrupt_lines(lines, data.draw, " ")
    raw = corrupt_bytes("\n".join(lines).encode(), data.draw)
    path = tmp_path / "eng.train"
    path.write_bytes(raw)
    got = outcome(lambda: read_conll(path), DataError)
    if got != ERROR:
        got = [(s.words, s.tags) for s in got]
    assert got == conll_reference(raw)


# ---------------------------------------------------------------------------------------------- SQuAD


def squad_json(draw: Any) -> dict[str, Any]:
    """A small SQuAD v1.1 object whose answers are real spans of their contexts."""
    articles = []
    n = 0
    for a in range(draw(st.integers(1, 2))):
        paragraphs = []
        for _ in range(draw(st.integers(1, 2))):
            context = " ".join(draw(st.lists(TOKEN, min_size=3, max_size=12)))
            qas = []
            for _ in range(draw(st.integers(1, 3))):
                start = draw(st.integers(0, len(context) - 1))
                end = draw(st.integers(start + 1, min(len(context), start + 15)))
                answer = {"text": context[start:end], "answer_start": start}
                qas.append({"id": f"q{n}", "question": draw(WORD), "answers": [answer]})
                n += 1
            paragraphs.append({"context": context, "qas": qas})
        articles.append({"title": f"T{a}", "paragraphs": paragraphs})
    return {"version": "1.1", "data": articles}


def corrupt_squad(obj: dict[str, Any], draw: Any) -> None:
    """One structural corruption of one question, in place."""
    qas = [qa for art in obj["data"] for p in art["paragraphs"] for qa in p["qas"]]
    qa = draw(st.sampled_from(qas))
    answer = qa["answers"][0]
    kind = draw(
        st.sampled_from(
            ["none", "shift", "text", "start_type", "drop_key", "answers_type", "dup_id", "empty"]
        )
    )
    if kind == "shift":
        answer["answer_start"] += draw(st.integers(-40, 40))
    elif kind == "text":
        answer["text"] = draw(JUNK)
    elif kind == "start_type":
        answer["answer_start"] = draw(st.sampled_from([str(answer["answer_start"]), None, 1.5, True, [1]]))
    elif kind == "drop_key":
        del qa[draw(st.sampled_from(["id", "question", "answers"]))]
    elif kind == "answers_type":
        qa["answers"] = draw(st.sampled_from(["text", 3, {"text": "a"}, [None]]))
    elif kind == "dup_id":
        qa["id"] = qas[0]["id"]
    elif kind == "empty":
        qa["answers"] = []


@FUZZ
@given(data=st.data())
def test_squad_keeps_verified_answers_and_counts_the_rest(tmp_path: Path, data: Any) -> None:
    obj = squad_json(data.draw)
    corrupt_squad(obj, data.draw)
    raw = corrupt_bytes(json.dumps(obj, ensure_ascii=False).encode(), data.draw)
    path = tmp_path / "train.json"
    path.write_bytes(raw)
    got = outcome(lambda: read_squad_file(path, version=1), DataError)
    if got == ERROR:
        return
    examples, stats = got
    # the bytes were valid: the reader read the same object (a truncated json cannot parse)
    assert json.loads(raw.decode("utf-8").removeprefix("\ufeff")) == obj
    total = sum(len(p["qas"]) for art in obj["data"] for p in art["paragraphs"])
    assert (
        stats.questions + stats.skipped_questions + stats.skipped_impossible
        == total
        == len(examples) + (stats.skipped_questions + stats.skipped_impossible)
    )
    assert len({e.qid for e in examples}) == len(examples)
    for e in examples:
        for text, start in zip(e.answers, e.answer_starts, strict=True):
            assert e.context[start : start + len(text)] == text  # never a label that is not there
    kept = {e.qid: e for e in examples}
    for art in obj["data"]:
        for p in art["paragraphs"]:
            for qa in p["qas"]:
                if qa["id"] in kept:
                    assert kept[qa["id"]].answers == tuple(a["text"] for a in qa["answers"])


# ---------------------------------------------------------------------------------------------- SWAG

SWAG_HEADER = (
    ["", "video-id", "fold-ind", "startphrase", "sent1", "sent2", "gold-source"]
    + [f"ending{i}" for i in range(4)]
    + ["label"]
)
CSV_TEXT = st.text(alphabet=st.sampled_from("abcXY 019.,\"'é"), min_size=1, max_size=10)


def swag_reference(data: bytes) -> Any:
    """SWAG's csv from its definition: the stdlib csv module's rows (strict quoting), 12 columns a row,
    label an integer 0-3; blank lines are no rows; anything else is an error."""
    text = reference_text(data)
    if text is None:
        return ERROR
    try:
        rows = [r for r in csv.reader(io.StringIO(text, newline=""), strict=True)]
    except csv.Error:
        return ERROR
    if not rows or [c.strip() for c in rows[0]] != SWAG_HEADER:
        return ERROR
    out = []
    for r in rows[1:]:
        if not r:
            continue
        if len(r) != 12:
            return ERROR
        try:
            label = int(r[11])
        except ValueError:
            return ERROR
        if not 0 <= label <= 3:
            return ERROR
        out.append((r[4], r[5], tuple(r[7:11]), label))
    return out or ERROR


@FUZZ
@given(
    rows=st.lists(
        st.tuples(st.lists(CSV_TEXT, min_size=6, max_size=6), st.integers(0, 3)), min_size=1, max_size=5
    ),
    data=st.data(),
)
def test_swag_reads_what_the_bytes_say(tmp_path: Path, rows: list[tuple[list[str], int]], data: Any) -> None:
    table = [
        [str(i), "v", str(i), "s", t[0], t[1], "gold", *t[2:], str(label)]
        for i, (t, label) in enumerate(rows)
    ]
    i = data.draw(st.integers(0, len(table) - 1))
    kind = data.draw(st.sampled_from(["none", "label", "drop_field", "add_field"]))
    if kind == "label":
        table[i][-1] = data.draw(JUNK)
    elif kind == "drop_field":
        del table[i][data.draw(st.integers(0, 10))]
    elif kind == "add_field":
        table[i].append(data.draw(CSV_TEXT))
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([SWAG_HEADER, *table])
    raw = corrupt_bytes(buf.getvalue().encode(), data.draw)
    path = tmp_path / "train.csv"
    path.write_bytes(raw)
    got = outcome(lambda: read_swag_csv(path), DataError)
    if got != ERROR:
        got = [(e.context, e.start, e.endings, e.label) for e in got]
    assert got == swag_reference(raw)
    if kind == "none" and raw == buf.getvalue().encode():  # the reference itself reads the clean file
        assert got == [(t[0], t[1], tuple(t[2:]), label) for t, label in rows]


# ---------------------------------------------------------------------------------------------- corpora

SENTENCE = st.lists(TOKEN, min_size=1, max_size=5).map(lambda ws: " ".join(ws).capitalize() + ".")


def text_reference(data: bytes) -> Any:
    """The BERT text format: lines split at \\n, one sentence a stripped line, blank lines end documents."""
    text = reference_text(data)
    if text is None or data[:2] == b"\x1f\x8b":
        return ERROR
    docs, doc = [], []
    for line in text.split("\n"):
        if line.strip():
            doc.append(line.strip())
        elif doc:
            docs.append(doc)
            doc = []
    return [*docs, doc] if doc else docs


@FUZZ
@given(docs=st.lists(st.lists(SENTENCE, min_size=1, max_size=4), min_size=1, max_size=4), data=st.data())
def test_text_corpus_reads_what_the_bytes_say(tmp_path: Path, docs: list[list[str]], data: Any) -> None:
    lines = [line for doc in docs for line in [*doc, ""]]
    lines = corrupt_lines(lines, data.draw, " ")
    raw = corrupt_bytes("\n".join(lines).encode(), data.draw)
    path = tmp_path / "corpus.txt"
    path.write_bytes(raw)
    assert outcome(lambda: list(text_documents(path)), DataError) == text_reference(raw)
    # the NSP filter keeps documents of 2+ sentences and says how many it skipped
    expected = text_reference(raw)
    if expected == ERROR:
        return
    usable = [d for d in expected if len(d) >= 2]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            got: Any = list(read_corpus(path, format="text"))
        except DataError:
            got = ERROR
    assert got == (usable or ERROR)
    if usable and len(usable) < len(expected):
        skipped = f"skipped {len(expected) - len(usable)} of {len(expected)} documents"
        assert any(skipped in str(w.message) for w in caught)


def jsonl_reference(data: bytes) -> Any:
    text = reference_text(data)
    if text is None:
        return ERROR
    docs = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            return ERROR
        value = record.get("text") if isinstance(record, dict) else None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = "\n".join(value)
        if not isinstance(value, str):
            return ERROR
        docs.append(paragraph_sentences(value))
    return docs


@FUZZ
@given(docs=st.lists(st.lists(SENTENCE, min_size=1, max_size=3), min_size=1, max_size=4), data=st.data())
def test_jsonl_corpus_reads_what_the_bytes_say(tmp_path: Path, docs: list[list[str]], data: Any) -> None:
    records: list[Any] = [{"text": " ".join(d)} for d in docs]
    if data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(records) - 1))
        records[i] = data.draw(
            st.sampled_from(
                [{"text": None}, {"text": 3}, {"body": "A. B."}, {"text": ["A.", "B."]}, {"text": [1]}, [1]]
            )
        )
    lines = corrupt_lines([json.dumps(r, ensure_ascii=False) for r in records], data.draw, ", ")
    raw = corrupt_bytes("\n".join(lines).encode(), data.draw)
    path = tmp_path / "c.jsonl"
    path.write_bytes(raw)
    assert outcome(lambda: list(jsonl_documents(path)), DataError) == jsonl_reference(raw)


def wiki_reference(data: bytes) -> Any:
    """WikiExtractor: `<doc ...>`, a title line, paragraph lines, `</doc>`; nothing between documents."""
    text = reference_text(data)
    if text is None:
        return ERROR
    docs, paragraphs, inside, title = [], [], False, False
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if line.startswith("<doc"):
            if inside:
                return ERROR
            inside, title, paragraphs = True, True, []
        elif line.startswith("</doc>"):
            if not inside:
                return ERROR
            docs.append([s for p in paragraphs for s in split_sentences(p)])
            inside = False
        elif line.strip():
            if not inside:
                return ERROR
            if title:
                title = False
            else:
                paragraphs.append(line)
    return ERROR if inside else docs


@FUZZ
@given(docs=st.lists(st.lists(SENTENCE, min_size=1, max_size=3), min_size=1, max_size=3), data=st.data())
def test_wiki_corpus_reads_what_the_bytes_say(tmp_path: Path, docs: list[list[str]], data: Any) -> None:
    lines = []
    for i, doc in enumerate(docs):
        lines += [f'<doc id="{i}" url="u" title="T{i}">', f"T{i}", "", *doc, "</doc>"]
    lines = corrupt_lines(lines, data.draw, " ")
    raw = corrupt_bytes(("\n".join(lines) + "\n").encode(), data.draw)
    path = tmp_path / "wiki_00"
    path.write_bytes(raw)
    assert outcome(lambda: list(wiki_documents(path)), DataError) == wiki_reference(raw)


# ---------------------------------------------------------------------------------------------- vocab.txt

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB_TOKEN = st.text(alphabet=st.sampled_from("abcxyz#019é中"), min_size=1, max_size=6)


def vocab_reference(data: bytes) -> Any:
    """vocab.txt: one token a line (lines as a text file splits them), id = line number, last duplicate wins."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return ERROR
    vocab = {}
    for i, line in enumerate(io.StringIO(text)):
        vocab[line.rstrip("\n").rstrip("\r")] = i
    if not any(t.strip() for t in vocab) or any(t not in vocab for t in SPECIAL):
        return ERROR
    return vocab


@FUZZ
@given(tokens=st.lists(VOCAB_TOKEN, min_size=1, max_size=12, unique=True), data=st.data())
def test_vocab_reads_what_the_bytes_say(tmp_path: Path, tokens: list[str], data: Any) -> None:
    lines = corrupt_lines(SPECIAL + [t for t in tokens if t not in SPECIAL], data.draw, "#")
    raw = corrupt_bytes(("\n".join(lines) + "\n").encode(), data.draw)
    path = tmp_path / "vocab.txt"
    path.write_bytes(raw)
    expected = vocab_reference(raw)
    got = outcome(lambda: from_vocab(path), TokenizerError)
    if expected == ERROR:
        assert got == ERROR
    else:
        assert got != ERROR
        assert {t: got.token_to_id(t) for t in expected} == expected


def test_squad_reference_cases_parse_unchanged() -> None:
    """The generator's uncorrupted objects read back exactly (the fuzz's baseline holds)."""
    obj = {
        "data": [
            {
                "title": "T",
                "paragraphs": [
                    {
                        "context": "ab cd",
                        "qas": [{"id": "1", "question": "q", "answers": [{"text": "cd", "answer_start": 3}]}],
                    }
                ],
            }
        ]
    }
    examples, stats = parse_squad(obj, "x.json", version=1)
    assert [(e.qid, e.answers, e.answer_starts) for e in examples] == [("1", ("cd",), (3,))]
    assert stats.questions == 1
    with pytest.raises(DataError):
        parse_squad(
            {"data": [{"paragraphs": [{"context": "ab", "qas": [{"id": "1"}]}]}]}, "x.json", version=1
        )
