"""Pre-training corpora as documents: each document is a list of sentences (str), in reading order.

Formats: the original BERT text format (one sentence per line, blank line between documents), WikiExtractor
output (`<doc ...>` blocks, first line the title, one paragraph a line), JSON lines with a text field, any
`datasets` hub name, and Python's bundled documentation (`"pydoc"`), which every Python install carries and
which makes offline runs possible. Paragraphs are cut into sentences by `sentences.split_sentences`.

Next-sentence prediction needs documents of at least two sentences: shorter ones are skipped with one
counted warning, and a corpus with no usable document raises `DataError`.
"""

from __future__ import annotations

import glob
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bertlab.data.errors import DataError, not_utf8, warn_and_log
from bertlab.data.sentences import paragraph_sentences, split_sentences

CorpusFormat = Literal["auto", "text", "wiki", "jsonl", "hub", "pydoc"]
FORMATS: tuple[str, ...] = ("auto", "text", "wiki", "jsonl", "hub", "pydoc")
PYDOC = "pydoc"

# reStructuredText heading underlines and table rules in the pydoc topics: structure, not prose
_UNDERLINE = re.compile(r"^([*=\-~^\"'`#+])\1{2,}\s*$")
_TABLE_RULE = re.compile(r"^\s*[=+\-]{2,}(\s+[=+\-]{2,})+\s*$|^\s*\+[=\-+]+\+\s*$")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 file, streamed; DataError naming line and byte offset on bad bytes."""
    offset = 0
    try:
        f = path.open("rb")
    except OSError as err:
        raise DataError(
            path, f"cannot be read ({err.strerror})", "check the path and its permissions"
        ) from None
    with f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"PK\x03\x04")):
                raise DataError(
                    path, "is a compressed archive, not text", "decompress it (gunzip, xz -d, unzip)"
                )
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise not_utf8(path, raw, err, offset).with_line(lineno) from None
            if lineno == 1:
                line = line.removeprefix("\ufeff")
            offset += len(raw)
            yield lineno, line.rstrip("\r\n")


def text_documents(path: str | Path) -> Iterator[list[str]]:
    """Documents of the original BERT format: one sentence per line, blank lines between documents."""
    doc: list[str] = []
    for _, line in _lines(Path(path)):
        sentence = line.strip()
        if sentence:
            doc.append(sentence)
        elif doc:
            yield doc
            doc = []
    if doc:
        yield doc


def wiki_documents(path: str | Path) -> Iterator[list[str]]:
    """Documents of a WikiExtractor file: `<doc ...>` blocks; the title line is dropped, paragraphs split."""
    path = Path(path)
    paragraphs: list[str] = []
    opened_at: int | None = None
    title_pending = False
    for lineno, line in _lines(path):
        if line.startswith("<doc"):
            if opened_at is not None:
                raise DataError(
                    path,
                    f"<doc> opened at line {opened_at} is not closed before this one",
                    "close every <doc ...> with </doc> (is the file a WikiExtractor output?)",
                    line=lineno,
                )
            opened_at, title_pending, paragraphs = lineno, True, []
        elif line.startswith("</doc>"):
            if opened_at is None:
                raise DataError(
                    path,
                    "</doc> closes no <doc ...> (its opening line is missing)",
                    "restore the <doc ...> line, or re-run WikiExtractor",
                    line=lineno,
                )
            yield [s for p in paragraphs for s in split_sentences(p)]
            opened_at = None
        elif opened_at is None and line.strip():
            # WikiExtractor writes nothing between documents: text here would be silently dropped
            raise DataError(
                path,
                "text outside any <doc ...> block",
                "restore the <doc ...> line above it (is the file a WikiExtractor output? else use format=text)",
                line=lineno,
            )
        elif opened_at is not None and line.strip():
            if title_pending:  # WikiExtractor repeats the title as the first line
                title_pending = False
            else:
                paragraphs.append(line)
    if opened_at is not None:
        raise DataError(
            path,
            f"<doc> opened at line {opened_at} is never closed",
            "the file looks truncated; re-run WikiExtractor or remove the partial document",
        )


def jsonl_documents(path: str | Path, text_field: str = "text") -> Iterator[list[str]]:
    """Documents of a JSON-lines file: one object a line; its `text_field` (lines = paragraphs) is split."""
    path = Path(path)
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(
                path,
                f"not valid JSON ({err.msg})",
                "write one JSON object per line (JSON lines)",
                line=lineno,
            ) from None
        if not isinstance(record, dict) or text_field not in record:
            keys = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise DataError(
                path,
                f"record has no field {text_field!r} (found {keys})",
                "pass text_field=<the field holding the text>",
                line=lineno,
            )
        value = record[text_field]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = "\n".join(value)  # already split into paragraphs or sentences
        if not isinstance(value, str):
            raise DataError(
                path,
                f"field {text_field!r} holds {type(value).__name__} {str(value)[:40]!r}, not text",
                f"give every record's {text_field!r} a string (or a list of strings)",
                line=lineno,
            )
        yield paragraph_sentences(value)


def _rst_sections(text: str) -> Iterator[list[str]]:
    """Sentences of a reStructuredText-like pydoc topic, one document per section; code blocks dropped."""
    blocks: list[list[str]] = [[]]
    for line in text.splitlines():
        if not line.strip():
            blocks.append([])
        else:
            blocks[-1].append(line)
    doc: list[str] = []
    for block in filter(None, blocks):
        if _UNDERLINE.match(block[-1]):  # a heading: start a new section
            if doc:
                yield doc
            doc = []
            continue
        if block[0][:1].isspace():  # indented: grammar, code or a quoted example, not prose
            continue
        if any(_TABLE_RULE.match(line) for line in block):  # an RST table, not sentences
            continue
        doc.extend(split_sentences(" ".join(line.strip() for line in block)))
    if doc:
        yield doc


# test suites, demos and vendored code are not prose worth learning from
_STDLIB_SKIP = {
    "test",
    "tests",
    "idlelib",
    "site-packages",
    "dist-packages",
    "lib2to3",
    "turtledemo",
    "__pycache__",
}


def stdlib_documents(min_chars: int = 200) -> Iterator[list[str]]:
    """Docstrings of the standard library's modules, one document per module (parsed with ast, never imported)."""
    import ast
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    for file in sorted(root.rglob("*.py")):
        if _STDLIB_SKIP.intersection(file.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        texts = [
            doc
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and (doc := ast.get_docstring(node)) is not None
            and len(doc) >= min_chars
        ]
        doc_sentences = [s for text in texts for section in _rst_sections(text) for s in section]
        if doc_sentences:
            yield doc_sentences


def pydoc_documents() -> Iterator[list[str]]:
    """Python's own documentation, on every machine: the pydoc topics (one document per section), then
    the standard library's docstrings (one document per module), about 1.7 MB of English in all."""
    from pydoc_data.topics import topics

    for key in sorted(topics):
        yield from _rst_sections(topics[key])
    yield from stdlib_documents()


def hub_documents(
    name: str, text_field: str = "text", split: str = "train", cache_dir: str | Path | None = None
) -> Iterator[list[str]]:
    """Documents of a `datasets` hub data set (`name` or `name:config`): one record, one document."""
    import datasets

    path, _, config = name.partition(":")
    try:
        ds = datasets.load_dataset(
            path, config or None, split=split, cache_dir=None if cache_dir is None else str(cache_dir)
        )
    except Exception as err:  # the hub client raises many types
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise DataError(
            name,
            f"not a local file, folder or glob, and the datasets hub could not load it "
            f"({type(err).__name__}: {first})",
            "check the path, or connect to the internet for hub data sets",
        ) from None
    if text_field not in ds.column_names:
        raise DataError(
            name,
            f"has no column {text_field!r} (columns: {ds.column_names})",
            "pass text_field=<the column holding the text>",
        )
    for record in ds:
        yield paragraph_sentences(str(record[text_field]))


@dataclass
class CorpusSource:
    """A resolved corpus: local files with their formats, a hub data set, or the pydoc topics."""

    label: str
    kind: Literal["files", "hub", "pydoc"]
    files: list[tuple[str, str]] = field(default_factory=list)  # (path, "text" | "wiki" | "jsonl")

    def documents(
        self, text_field: str = "text", split: str = "train", cache_dir: str | Path | None = None
    ) -> Iterator[list[str]]:
        """Every document, whatever its length (see `usable_documents` for the NSP filter)."""
        if self.kind == "pydoc":
            yield from pydoc_documents()
        elif self.kind == "hub":
            yield from hub_documents(self.label, text_field, split, cache_dir)
        else:
            yield from file_documents(self.files, text_field)


def file_documents(files: Iterable[tuple[str, str]], text_field: str = "text") -> Iterator[list[str]]:
    """Every document of the given (path, format) files in order."""
    readers: dict[str, Callable[[str], Iterator[list[str]]]] = {
        "text": text_documents,
        "wiki": wiki_documents,
        "jsonl": lambda p: jsonl_documents(p, text_field),
    }
    for path, fmt in files:
        yield from readers[fmt](path)


def detect_format(path: str | Path) -> str:
    """Guess a file's format: .jsonl/.json -> jsonl, a first line starting `<doc` -> wiki, else text."""
    path = Path(path)
    if path.suffix.lower() in {".jsonl", ".json"}:
        return "jsonl"
    for _, line in _lines(path):
        if line.strip():
            return "wiki" if line.lstrip().startswith("<doc") else "text"
    return "text"


def _looks_like_path(name: str) -> bool:
    """True for strings meant as local paths (not hub names), so a typo gives 'not found', not a hub query."""
    return (
        name.startswith((".", "/", "~"))
        or "\\" in name
        or name.count("/") > 1
        or Path(name).suffix.lower() in {".txt", ".jsonl", ".json", ".gz", ".xml"}
    )


def resolve_corpus(path_or_name: str | Path, format: str = "auto") -> CorpusSource:
    """Resolve a file, folder (all files under it, sorted), glob, hub name or "pydoc" to its source."""
    if format not in FORMATS:
        raise DataError(str(path_or_name), f"unknown corpus format {format!r}", f"use one of {FORMATS}")
    name = str(path_or_name)
    if format == "pydoc" or (format == "auto" and name == PYDOC):
        return CorpusSource(PYDOC, "pydoc")
    if format == "hub":
        return CorpusSource(name, "hub")
    path = Path(name).expanduser()
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise DataError(
                path, "folder holds no files", "point at a folder of text, WikiExtractor or jsonl files"
            )
    elif glob.has_magic(name):
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not files:
            raise DataError(
                name, "glob matches no files", "check the pattern (quote it so the shell leaves it)"
            )
    elif format == "auto" and not _looks_like_path(name):
        return CorpusSource(name, "hub")
    else:
        raise DataError(
            path, "corpus not found", "pass an existing file, folder or glob, a hub name, or 'pydoc'"
        )
    return CorpusSource(
        name, "files", [(str(p), detect_format(p) if format == "auto" else format) for p in files]
    )


def no_usable_documents(label: str, total: int) -> DataError:
    """The error for a corpus of `total` documents none of which has the 2 sentences NSP pairs need."""
    if total == 0:
        return DataError(
            label,
            "the corpus holds no documents",
            "check the file is not empty and the format (text, wiki, jsonl) is right",
        )
    return DataError(
        label,
        f"none of its {total} documents has 2 or more sentences, which next-sentence pairs need",
        "put one sentence per line and a blank line between documents",
    )


def usable_documents(
    docs: Iterable[list[str]], label: str, max_docs: int | None = None, raise_if_none: bool = True
) -> Iterator[list[str]]:
    """Documents with at least two sentences (NSP needs them), at most `max_docs`; one counted warning."""
    total = kept = 0
    for doc in docs:
        if max_docs is not None and kept >= max_docs:
            break
        total += 1
        if len(doc) >= 2:
            kept += 1
            yield doc
    if kept == 0 and raise_if_none:
        raise no_usable_documents(label, total)
    if total > kept:
        warn_and_log(
            f"{label}: skipped {total - kept} of {total} documents with fewer than 2 sentences "
            "(next-sentence pairs need 2)"
        )


def read_corpus(
    path_or_name: str | Path,
    format: str = "auto",
    text_field: str = "text",
    split: str = "train",
    max_docs: int | None = None,
    cache_dir: str | Path | None = None,
) -> Iterator[list[str]]:
    """Stream the usable documents (lists of >= 2 sentences) of a file, folder, glob, hub name or "pydoc".

    A missing path raises `DataError` at once; bad bytes, bad records and a corpus with no usable document
    raise it while iterating.
    """
    source = resolve_corpus(path_or_name, format)
    return usable_documents(source.documents(text_field, split, cache_dir), source.label, max_docs)
