"""SQuAD v1.1 / v2.0 json files and hub rows as `SquadExample`s, with answer offsets verified.

Where we differ from the original BERT `run_squad.py`: an `answer_start` that does not point at its
text is moved to the nearest occurrence of the text (and counted) instead of being trusted, and every
repair or skip is counted in `ReadStats` and reported in one warning (and log line) per file. What no
annotator slip explains is a `DataError` naming the file, the entry's place in the json
(`data[3].paragraphs[0].qas[7]`) and its id: entries of the wrong type, a missing id or question, an
`answer_start` that is not an integer or lies outside its context, and an id seen twice (scores are
keyed by id, so a second question would silently replace the first).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertlab.data.errors import DataConfigError, DataError, read_utf8, warn_and_log
from bertlab.data.hub import load_hub_split


@dataclass(frozen=True)
class SquadExample:
    """One question over one context; `answers` holds every annotator's text (empty when unanswerable)."""

    qid: str
    question: str
    context: str
    answers: tuple[str, ...] = ()
    answer_starts: tuple[int, ...] = ()
    is_impossible: bool = False
    title: str = ""


@dataclass
class ReadStats:
    """What a reader repaired or skipped, so no label is dropped or moved silently."""

    articles: int = 0
    questions: int = 0  # questions kept
    fixed_answer_starts: int = 0  # answer_start did not match the text; moved to the nearest occurrence
    dropped_answers: int = 0  # answer text absent from its context
    skipped_questions: int = 0  # answerable questions left with no usable answer
    skipped_empty_context: int = 0  # questions whose paragraph has an empty context
    skipped_impossible: int = 0  # unanswerable questions met while reading as v1

    def warn(self, source: str | Path) -> None:
        """Emit one warning that counts every repair and skip, if there were any."""
        parts = [
            f"{n} {what}"
            for n, what in (
                (self.fixed_answer_starts, "answer_start values fixed to the nearest occurrence of the text"),
                (self.dropped_answers, "answers dropped (text not in the context)"),
                (self.skipped_questions, "questions skipped (no usable answer)"),
                (self.skipped_empty_context, "questions skipped (empty context)"),
                (self.skipped_impossible, "unanswerable questions skipped (reading as SQuAD v1)"),
            )
            if n
        ]
        if parts:
            warn_and_log(f"{source}: " + "; ".join(parts))


def parse_articles(spec: str | int | slice | Sequence[int] | None) -> slice | None:
    """Turn an article selection into a slice: 38 or "38" = first 38, "38:48", "-10:", (0, 38), slice."""
    if spec is None or isinstance(spec, slice):
        return spec
    if isinstance(spec, bool):
        raise DataConfigError(f"article selection {spec!r}: expected an int, 'start:stop' or a slice")
    if isinstance(spec, int):
        return slice(0, spec)
    if isinstance(spec, str):
        text = spec.strip()
        if ":" not in text:
            return slice(0, int(text))
        parts = [p.strip() for p in text.split(":")]
        if len(parts) != 2:
            raise DataConfigError(f"article selection {spec!r}: expected 'start:stop', e.g. '0:38'")
        return slice(*(int(p) if p else None for p in parts))
    if len(spec) == 2:
        return slice(int(spec[0]), int(spec[1]))
    raise DataConfigError(f"article selection {spec!r}: expected an int, 'start:stop' or a slice")


def locate_answer(context: str, text: str, start: int) -> int | None:
    """Character start of `text` in `context`: `start` when it matches, else the nearest occurrence, else None."""
    if not text.strip():
        return None
    if start >= 0 and context.startswith(text, start):
        return start
    hits: list[int] = []
    pos = context.find(text)
    while pos != -1:
        hits.append(pos)
        pos = context.find(text, pos + 1)
    if not hits:
        return None
    return min(hits, key=lambda h: (abs(h - start), h))


def _entries(value: Any, kind: type, source: str | Path, where: str, what: str) -> Any:
    """`value` when it is a `kind` (list or Mapping), else a DataError naming its place in the json."""
    if not isinstance(value, kind):
        raise DataError(
            source,
            f"{where} is a {type(value).__name__}, not a {what}",
            "pass an official SQuAD json file (data -> paragraphs -> qas -> answers)",
        )
    return value


def parse_squad(
    obj: Any,
    source: str | Path = "<squad>",
    *,
    version: int = 2,
    articles: str | int | slice | Sequence[int] | None = None,
    labelled: bool = True,
) -> tuple[list[SquadExample], ReadStats]:
    """Examples from an already-loaded official SQuAD json object (`data` → `paragraphs` → `qas`).

    `labelled=False` reads every question and ignores answers (a hidden test set, or mode=predict).
    """
    if version not in (1, 2):
        raise DataConfigError(f"SQuAD version must be 1 or 2, got {version!r}")
    if not isinstance(obj, Mapping) or not isinstance(obj.get("data"), list):
        raise DataError(
            source, "not a SQuAD json (no top-level 'data' list)", "pass an official train/dev-v1.1/v2.0 file"
        )
    data = obj["data"]
    if (sl := parse_articles(articles)) is not None:
        indices = range(len(data))[sl]
    else:
        indices = range(len(data))
    stats = ReadStats(articles=len(indices))
    examples: list[SquadExample] = []
    seen: dict[str, str] = {}  # qid -> where it was first met
    contexts_seen = 0
    for a in indices:
        article = _entries(data[a], Mapping, source, f"data[{a}]", "json object (an article)")
        title = str(article.get("title", ""))
        paragraphs = _entries(article.get("paragraphs", []), list, source, f"data[{a}].paragraphs", "list")
        for p, paragraph in enumerate(paragraphs):
            here = f"data[{a}].paragraphs[{p}]"
            paragraph = _entries(paragraph, Mapping, source, here, "json object (a paragraph)")
            context = paragraph.get("context")
            qas = _entries(paragraph.get("qas", []), list, source, f"{here}.qas", "list")
            if context is not None and not isinstance(context, str):
                _entries(context, str, source, f"{here}.context", "string")
            if not context or not context.strip():
                stats.skipped_empty_context += len(qas)
                continue
            contexts_seen += 1
            for q, qa in enumerate(qas):
                at = f"{here}.qas[{q}]"
                qa = _entries(qa, Mapping, source, at, "json object (a question)")
                ex = (
                    _parse_qa(qa, context, title, version, stats, source, at)
                    if labelled
                    else _parse_unlabelled(qa, context, title, source, at)
                )
                if ex is not None:
                    if ex.qid in seen:
                        raise DataError(
                            source,
                            f"question id {ex.qid!r} at {at} was already used at {seen[ex.qid]}",
                            "give every question its own id (predictions and scores are keyed by id)",
                        )
                    seen[ex.qid] = at
                    examples.append(ex)
    if contexts_seen == 0:
        raise DataError(
            source,
            f"no paragraph with a non-empty context in the {len(indices)} selected articles",
            "check the file and the article selection",
        )
    stats.questions = len(examples)
    return examples, stats


def _question(qa: Mapping[str, Any], source: str | Path, at: str) -> tuple[str, str]:
    """(id, question) of a `qas` entry; DataError naming its place when either is missing."""
    missing = [k for k in ("id", "question") if k not in qa]
    if missing:
        raise DataError(
            source,
            f"the question at {at} lacks the key {missing[0]!r}",
            "every qas entry needs 'id' and 'question'",
        )
    return str(qa["id"]), str(qa["question"])


def _parse_unlabelled(
    qa: Mapping[str, Any], context: str, title: str, source: str | Path, at: str = "qas"
) -> SquadExample:
    """One `qas` entry as a question to answer; any answers in the file are ignored."""
    qid, question = _question(qa, source, at)
    return SquadExample(qid, question, context, title=title)


def _answer_start(ans: Mapping[str, Any], context: str, source: str | Path, where: str, qid: str) -> int:
    """An answer's `answer_start`: an integer inside the context, else a DataError (no slip explains it)."""
    value = ans.get("answer_start")
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(
            source,
            f"answer_start {value!r} of question {qid!r} ({where}) is not an integer",
            "give every answer its character offset in the context as an integer",
        )
    if not 0 <= value < len(context):
        raise DataError(
            source,
            f"answer_start {value} of question {qid!r} ({where}) lies outside its context "
            f"({len(context)} characters)",
            "fix the offset, or check the answers belong to this paragraph",
        )
    return value


def _parse_qa(
    qa: Mapping[str, Any],
    context: str,
    title: str,
    version: int,
    stats: ReadStats,
    source: str | Path,
    at: str = "qas",
) -> SquadExample | None:
    """One `qas` entry as an example with verified answer offsets, or None (counted in `stats`)."""
    qid, question = _question(qa, source, at)
    raw_answers = _entries(qa.get("answers", []), list, source, f"{at}.answers", "list")
    impossible = bool(qa.get("is_impossible", False)) or (version == 2 and not raw_answers)
    if impossible:
        if version == 1:
            stats.skipped_impossible += 1
            return None
        # v2 train files list "plausible" answers separately; an unanswerable question has no gold span
        return SquadExample(qid, question, context, (), (), True, title)
    texts: list[str] = []
    starts: list[int] = []
    for i, ans in enumerate(raw_answers):
        where = f"{at}.answers[{i}]"
        ans = _entries(ans, Mapping, source, where, "json object (an answer)")
        text = ans.get("text")
        if not isinstance(text, str):
            _entries(text, str, source, f"{where}.text", "string")
        given = _answer_start(ans, context, source, where, qid)
        found = locate_answer(context, text, given)
        if found is None:
            stats.dropped_answers += 1
            continue
        stats.fixed_answer_starts += found != given
        texts.append(text)
        starts.append(found)
    if not texts:
        stats.skipped_questions += 1
        return None
    return SquadExample(qid, question, context, tuple(texts), tuple(starts), False, title)


def read_squad_file(
    path: str | Path,
    *,
    version: int = 2,
    first_articles: int | None = None,
    article_slice: str | slice | Sequence[int] | None = None,
    labelled: bool = True,
) -> tuple[list[SquadExample], ReadStats]:
    """Read an official SQuAD json file; optionally only its first N articles or a slice of them.

    `labelled=False` keeps every question and ignores answers (see `parse_squad`)."""
    path = Path(path)
    if first_articles is not None and article_slice is not None:
        raise DataConfigError("give first_articles or article_slice, not both")
    if not path.is_file():
        raise DataError(path, "SQuAD file not found", "pass the path of a SQuAD json (e.g. dev-v1.1.json)")
    text = read_utf8(path)
    if not text.strip():
        raise DataError(path, "empty file", "pass an official SQuAD json file (the download may have failed)")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        ends_early = err.pos >= len(text.rstrip()) or err.msg.startswith("Unterminated string")
        truncated = " (the file ends early: truncated?)" if ends_early else ""
        raise DataError(
            path,
            f"not valid JSON ({err.msg}){truncated}",
            "pass an official SQuAD json file",
            line=err.lineno,
        ) from None
    articles = first_articles if first_articles is not None else article_slice
    examples, stats = parse_squad(obj, path, version=version, articles=articles, labelled=labelled)
    stats.warn(path)
    return examples, stats


def records_to_squad(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Regroup flat hub rows (id, title, context, question, answers{text, answer_start}) into the json layout.

    Articles are grouped by title and paragraphs by context, in order of first appearance, so article
    slices mean the same on hub data as on the official files.
    """
    articles: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for rec in records:
        paragraphs = articles.setdefault(str(rec.get("title", "")), {})
        answers = rec.get("answers") or {"text": [], "answer_start": []}
        qa = {
            "id": rec["id"],
            "question": rec["question"],
            "answers": [
                {"text": t, "answer_start": s} for t, s in zip(answers["text"], answers["answer_start"])
            ],
        }
        paragraphs.setdefault(str(rec["context"]), []).append(qa)
    return {
        "data": [
            {"title": title, "paragraphs": [{"context": c, "qas": qas} for c, qas in paras.items()]}
            for title, paras in articles.items()
        ]
    }


def load_squad_hub(
    name: str,
    split: str,
    *,
    version: int = 2,
    articles: str | int | slice | Sequence[int] | None = None,
) -> tuple[list[SquadExample], ReadStats]:
    """Read a split of `rajpurkar/squad` / `rajpurkar/squad_v2` through `datasets` (needs the internet)."""
    rows = load_hub_split(
        name,
        None,
        split,
        f"could not load split '{split}' from the Hugging Face hub",
        "pass local SQuAD json files (train_file / val_file) or connect to the internet",
    )
    source = f"{name}[{split}]"
    examples, stats = parse_squad(records_to_squad(rows), source, version=version, articles=articles)
    stats.warn(source)
    return examples, stats


def gold_answers(dataset: Any) -> dict[str, list[str]]:
    """`{qid: gold texts}` (empty list when unanswerable): the references `bertlab.metrics.squad` scores.

    Accepted: a path to an official json, its loaded object (`{"data": [...]}`), its list of articles,
    a sequence of examples with `.qid` and `.answers`, or a mapping `{qid: [texts]}`.
    """
    if isinstance(dataset, (str, Path)):
        dataset = json.loads(Path(dataset).read_text(encoding="utf-8"))
    if isinstance(dataset, Mapping) and isinstance(dataset.get("data"), list):
        dataset = dataset["data"]
    if isinstance(dataset, Mapping):
        return {str(q): [str(a) for a in answers] for q, answers in dataset.items()}
    golds: dict[str, list[str]] = {}
    for item in dataset:
        if isinstance(item, Mapping):  # an official article
            for paragraph in item["paragraphs"]:
                for qa in paragraph["qas"]:
                    golds[str(qa["id"])] = [str(a["text"]) for a in qa["answers"]]
        else:
            golds[str(item.qid)] = [str(a) for a in item.answers]
    return golds


__all__ = [
    "ReadStats",
    "SquadExample",
    "gold_answers",
    "load_squad_hub",
    "locate_answer",
    "parse_articles",
    "parse_squad",
    "read_squad_file",
    "records_to_squad",
]
