"""The CoNLL-2003 file format: the label set, IOB1/IOB2 tags, the reader (files and hub) and the writer.

Tags are read with conlleval's chunk rules, which agree for IOB1 (the original CoNLL-2003 files) and
IOB2/BIO files, and are rewritten in one `scheme` (IOB2 by default), so files in either scheme load:
`B-X` always opens an entity; `I-X` opens one after `O`, after another type or at the sentence start,
and continues one otherwise. The entity scorer (`bertlab.metrics.ner`) reads tags by the same rules.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bertlab.data.errors import DataError, read_utf8
from bertlab.data.hub import load_hub_split

CONLL_TYPES: tuple[str, ...] = ("PER", "ORG", "LOC", "MISC")
LABEL_NAMES: tuple[str, ...] = ("O", *(f"{p}-{t}" for t in CONLL_TYPES for p in "BI"))
TAG_SCHEMES: tuple[str, ...] = ("IOB1", "IOB2")
# bertlab split -> the hub's split; predict reads the test split, as it reads test's file
HUB_SPLITS: dict[str, str] = {"train": "train", "val": "validation", "test": "test", "predict": "test"}


@dataclass(frozen=True)
class Sentence:
    """One sentence: its words, one tag per word, its document's index and the file line of its first word."""

    words: tuple[str, ...]
    tags: tuple[str, ...]
    doc: int
    line: int | None = None


# ---------------------------------------------------------------------------------------------- tags


def _split_tag(tag: str) -> tuple[str, str]:
    """`"B-PER"` -> `("B", "PER")`, `"O"` -> `("O", "")`; ValueError on a tag IOB1/IOB2 do not allow."""
    if tag == "O":
        return "O", ""
    prefix, sep, kind = tag.partition("-")
    if not sep or not kind or prefix not in ("B", "I"):
        raise ValueError(f"tag {tag!r} is not valid in IOB1 or IOB2; use O or B/I-TYPE")
    return prefix, kind


def convert_tags(tags: Sequence[str], scheme: str = "IOB2") -> list[str]:
    """Rewrite IOB1 or IOB2 tags `(N,)` in `scheme`, keeping the entities conlleval reads from them."""
    if scheme not in TAG_SCHEMES:
        raise ValueError(f"unknown NER scheme {scheme!r}; use one of {TAG_SCHEMES}")
    out = []
    prev_prefix, prev_kind = "O", ""
    for tag in tags:
        prefix, kind = _split_tag(tag)
        if prefix == "O":
            out.append("O")
        else:
            opens = prefix == "B" or prev_prefix == "O" or prev_kind != kind
            # IOB1 writes B- only where an entity directly follows one of the same type
            begin = opens and (scheme == "IOB2" or prev_kind == kind)
            out.append(f"{'B' if begin else 'I'}-{kind}")
        prev_prefix, prev_kind = prefix, kind
    return out


def _check_tag(tag: str, label_names: Sequence[str], path: str | Path | None, line: int | None) -> None:
    """Raise DataError naming the file and line when `tag` is outside the label set."""
    if tag not in label_names:
        raise DataError(
            path,
            f"unknown NER tag {tag!r}",
            f"use one of {', '.join(label_names)} (IOB1 or IOB2 tags)",
            line=line,
        )


# ---------------------------------------------------------------------------------------------- reading


def read_conll(
    path: str | Path,
    scheme: str = "IOB2",
    columns: int | None = 4,
    label_names: Sequence[str] = LABEL_NAMES,
) -> list[Sentence]:
    """Read a CoNLL-2003 file (`word POS chunk NER` per line, blank lines between sentences).

    `-DOCSTART-` lines start a new document; the word is the first column and the tag the last.
    `columns=None` takes the column count from the first word line; every word line must have it.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found", "pass the path of a CoNLL-2003 file such as eng.train")
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    first_line = 0
    doc = -1

    def close() -> None:
        if words:
            sentences.append(
                Sentence(tuple(words), tuple(convert_tags(tags, scheme)), max(doc, 0), first_line)
            )
            words.clear()
            tags.clear()

    convert_tags([], scheme)  # validates `scheme` before reading
    # read whole (a BOM dropped, bad bytes named by line); StringIO splits lines as a text file does
    for number, raw in enumerate(io.StringIO(read_utf8(path)), start=1):
        parts = raw.split()
        if not parts:
            close()
            continue
        if parts[0] == "-DOCSTART-":
            close()
            doc += 1
            continue
        if columns is None:
            columns = len(parts)
        if len(parts) != columns or len(parts) < 2:
            expected = columns if columns >= 2 else "at least 2"
            raise DataError(
                path,
                f"expected {expected} space-separated columns (word ... NER tag), found {len(parts)}",
                "fix the line or pass the file's column count as `columns`",
                line=number,
            )
        _check_tag(parts[-1], label_names, path, number)
        if not words:
            first_line = number
            doc = max(doc, 0)  # a file without -DOCSTART- lines is one document
        words.append(parts[0])
        tags.append(parts[-1])
    close()
    if not sentences:
        raise DataError(path, "no sentences found", "pass a CoNLL file with one `word ... tag` line per word")
    return sentences


def load_hub_conll(hub_name: str, split: str, scheme: str = "IOB2") -> list[Sentence]:
    """Read a split ("train", "val", "test"; "predict" = test) of a hub copy such as `eriktks/conll2003`.

    The hub copies drop the -DOCSTART- lines, so every sentence is its own document there.
    """
    fix = "pass local CoNLL files as train_file/val_file/test_file, or check the connection"
    data = load_hub_split(
        hub_name,
        None,
        HUB_SPLITS[split],
        f"could not load the {split!r} split from the Hugging Face hub",
        fix,
    )
    if "ner_tags" not in data.features:
        raise DataError(hub_name, f"the {split!r} split has no ner_tags column (not a CoNLL-2003 copy)", fix)
    names = data.features["ner_tags"].feature.names
    sentences = []
    for i, row in enumerate(data):
        tags = [names[t] for t in row["ner_tags"]]
        for tag in tags:
            _check_tag(tag, LABEL_NAMES, f"{hub_name}[{HUB_SPLITS[split]}]", i)
        sentences.append(Sentence(tuple(row["tokens"]), tuple(convert_tags(tags, scheme)), doc=i, line=None))
    return sentences


# ---------------------------------------------------------------------------------------------- writing


def write_conll_predictions(
    path: str | Path, sentences: Sequence[Sentence], predicted: Mapping[int, Sequence[str]]
) -> Path:
    """Write `word gold pred` per line and a blank line after each sentence, as conlleval reads.

    `predicted` maps a sentence's index in `sentences` to its word tags; sentences come out in index order.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for s in sorted(predicted):
            sentence = sentences[s]
            for word, gold, pred in zip(sentence.words, sentence.tags, predicted[s]):
                f.write(f"{word} {gold} {pred}\n")
            f.write("\n")
    return path


__all__ = [
    "CONLL_TYPES",
    "HUB_SPLITS",
    "LABEL_NAMES",
    "TAG_SCHEMES",
    "Sentence",
    "convert_tags",
    "load_hub_conll",
    "read_conll",
    "write_conll_predictions",
]
