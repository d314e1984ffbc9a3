"""GLUE's file formats: the official tsv files and the hub copy (readers), and submission files (writer).

Files are read in the official layout `<data_dir>/<Folder>/{train,dev,test}.tsv` (MNLI:
`dev_matched`, `dev_mismatched`, `test_matched`, `test_mismatched`; the diagnostic set AX at
`<data_dir>/diagnostic/diagnostic.tsv`, `<data_dir>/AX.tsv` or `<data_dir>/MNLI/AX.tsv`), with
`csv.QUOTE_NONE`: GLUE's fields hold unbalanced quotes (MRPC, MNLI) that a quoting reader would merge
across lines, so quotes are kept exactly as written. A UTF-8 byte-order mark (MRPC) is dropped. When the
task folder is absent, splits come from the hub (`nyu-mll/glue`), whose dev splits are named
`validation*` where ours are `val*`.

Where we differ from a plain reader:
- QQP's official files hold a few broken rows (a question with a newline splits one row into two, or
  `is_duplicate` is empty). As GLUE's reference loaders (transformers' `QqpProcessor`, the `glue`
  dataset script) do, those rows are skipped, but counted and reported with a `SkippedRowsWarning`
  naming the lines. In every other task such a row is a `DataError` naming file and line.
- Labels are model ids in the order of `GLUETask.labels`, the file's own vocabulary. Hub datasets,
  whose label order differs (MNLI: entailment, neutral, contradiction), are remapped by name.
- `idx` is the row's 0-based number among the file's data rows (skipped rows keep their number), and
  the file's own `index`/`id` column for unlabelled test files: what a submission file needs.

Submission files follow GLUE's sample submission: `index<TAB>prediction`, rows in index order, the
labels as the task's files write them (text for MNLI/AX, QNLI and RTE; 0/1 for CoLA, SST-2, MRPC, QQP
and WNLI, whose files use 0/1), STS-B scores clipped to [0, 5] with three decimals.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from bertlab.data.errors import DataError, read_utf8, report_skipped
from bertlab.data.glue_tasks import AX, GLUETask, get_task
from bertlab.data.hub import load_hub_split

# the diagnostic set's file and hub layout (scored with MNLI's labels)
_AX_TEXT_COLUMNS = ("sentence1", "sentence2")
_AX_HUB = ("ax", "test", ("premise", "hypothesis"))


def hub_split(split: str) -> str:
    """The hub's name of one of our splits: `val` -> `validation`, `val_matched` -> `validation_matched`."""
    return "validation" + split.removeprefix("val") if split.startswith("val") else split


class SkippedRowsWarning(UserWarning):
    """Malformed rows were skipped (QQP only, as GLUE's reference loaders do)."""


@dataclass
class GLUESplit:
    """One split as columns: texts, labels (ids, floats for STS-B, None when hidden) and row indices."""

    task: str
    split: str
    text_a: list[str]
    text_b: list[str] | None
    labels: list[int] | list[float] | None
    idx: list[int]
    source: str  # file path or "hub_name/config:split"
    skipped_lines: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.text_a)

    def __getitem__(self, rows: slice) -> GLUESplit:
        """The rows of a slice, as a split (the DataModule's caps take `[:n]`)."""
        if not isinstance(rows, slice):
            raise TypeError(f"a GLUESplit is sliced by rows ([:n]), not indexed by {type(rows).__name__}")
        return replace(
            self,
            text_a=self.text_a[rows],
            text_b=None if self.text_b is None else self.text_b[rows],
            labels=None if self.labels is None else self.labels[rows],
            idx=self.idx[rows],
        )

    def head(self, n: int | None) -> GLUESplit:
        """The first `n` examples (all when `n` is None): deterministic slices for quick runs."""
        return self if n is None or n >= len(self) else self[:n]


def _parse_label(spec: GLUETask, value: str, path: Path, line: int) -> int | float:
    """A label string as a model id, or a float score for STS-B; DataError when outside the task's set."""
    if spec.is_regression:
        try:
            score = float(value)
        except ValueError:
            score = float("nan")
        if not 0.0 <= score <= 5.0:  # also catches nan
            raise DataError(
                path, f"score {value!r} is not a number in [0, 5]", "fix or remove this row", line
            )
        return score
    try:
        return spec.labels.index(value)
    except ValueError:
        raise DataError(
            path,
            f"label {value!r} in column {spec.label_column!r} is not one of {list(spec.labels)}",
            f"fix or remove this row (GLUE {spec.folder} labels are {', '.join(spec.labels)})",
            line,
        ) from None


def read_glue_tsv(task: str | GLUETask, path: str | Path, split: str) -> GLUESplit:
    """Read one official GLUE tsv file; `split` says whether it is labelled ("test*"/"ax" are not)."""
    spec, path = get_task(task), Path(path)
    unlabelled = spec.is_unlabelled(split)
    if split == AX:
        text_columns = _AX_TEXT_COLUMNS
    else:
        text_columns = spec.test_text_columns if unlabelled else spec.text_columns
    needed = (spec.test_index_column, *text_columns) if unlabelled else (*text_columns, spec.label_column)
    text_a: list[str] = []
    text_b: list[str] | None = [] if len(text_columns) == 2 else None
    labels: list[Any] | None = None if unlabelled else []
    idx: list[int] = []
    skipped: list[int] = []
    if not path.is_file():
        raise DataError(path, "file not found", f"put the official GLUE {spec.folder} files there")
    # read whole: bad bytes are named by line; read_utf8 drops MRPC's byte-order mark; newline="" hands
    # line endings to csv
    text = read_utf8(path)
    if not text.strip():
        raise DataError(
            path,
            "empty file",
            f"put the official GLUE {spec.folder}/{path.name} there (the download may have failed)",
        )
    with io.StringIO(text, newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        if spec.header_columns is not None and not unlabelled:
            header = list(spec.header_columns)  # CoLA train/dev have no header row
        else:
            header = next(reader, [])
            missing = [c for c in needed if c not in header]
            if missing:
                raise DataError(
                    path,
                    f"header lacks column(s) {missing} (found {header})",
                    f"use the official GLUE {spec.folder} {path.name} (tab-separated, header first)",
                    1,
                )
        pos = {c: header.index(c) for c in needed}
        row_number = 0
        for row in reader:
            if not row:
                continue  # a blank line holds no example
            line, row_number = reader.line_num, row_number + 1
            broken = len(row) != len(header)
            if not broken and spec.skip_malformed and labels is not None:
                broken = not row[pos[spec.label_column]]  # QQP's empty is_duplicate rows
            if broken:
                if spec.skip_malformed:
                    skipped.append(line)
                    continue
                raise DataError(
                    path,
                    f"expected {len(header)} tab-separated fields, found {len(row)}",
                    "fix or remove this row (fields are split on tabs only; quotes are kept as written)",
                    line,
                )
            text_a.append(row[pos[text_columns[0]]])
            if text_b is not None:
                text_b.append(row[pos[text_columns[1]]])
            if labels is not None:
                labels.append(_parse_label(spec, row[pos[spec.label_column]], path, line))
                idx.append(row_number - 1)
            else:
                value = row[pos[spec.test_index_column]]
                try:
                    idx.append(int(value))
                except ValueError:
                    raise DataError(
                        path, f"{spec.test_index_column} {value!r} is not an integer", "fix this row", line
                    ) from None
    report_skipped(
        path,
        len(skipped),
        "malformed row(s)",
        skipped,
        SkippedRowsWarning,
        note=" (a split row or an empty label), as GLUE's reference loaders do",
    )
    if not text_a:
        raise DataError(
            path, "no rows under the header" if skipped == [] else "every row was malformed",
            f"put the official GLUE {spec.folder}/{path.name} there (the download may have failed)",
        )  # fmt: skip
    return GLUESplit(spec.name, split, text_a, text_b, labels, idx, str(path), skipped)


def find_diagnostic(data_dir: str | Path | None) -> Path | None:
    """The GLUE diagnostic file (AX) under `data_dir`, if there is one."""
    if data_dir is None:
        return None
    root = Path(data_dir)
    for path in (root / "diagnostic" / "diagnostic.tsv", root / "AX.tsv", root / "MNLI" / "AX.tsv"):
        if path.is_file():
            return path
    return None


def read_hub_split(
    task: str | GLUETask, split: str, hub_name: str = "nyu-mll/glue", expected: Path | None = None
) -> GLUESplit:
    """Load one split from the Hugging Face hub (`datasets`), mapping its labels to this spec's ids."""
    spec = get_task(task)
    config, where, columns = (
        _AX_HUB if split == AX else (spec.hub_config, hub_split(split), spec.hub_text_columns)
    )
    folder = f"<data_dir>/{spec.folder}" if expected is None else str(Path(expected).expanduser().resolve())
    ds = load_hub_split(
        hub_name,
        config,
        where,
        f"GLUE {spec.folder} files not found (no such folder), and the hub copy {hub_name} ({config}/{where}) "
        "could not be loaded either",
        f"either put the official GLUE files in {folder} (e.g. with download_glue_data.py; or point "
        f"data.data_dir at the folder that holds {spec.folder}/), or go online once so the datasets cache "
        f"holds {hub_name}",
        where=folder,
    )
    source = f"{hub_name}/{config}:{where}"
    text_a = list(ds[columns[0]])
    text_b = list(ds[columns[1]]) if len(columns) == 2 else None
    idx = [int(i) for i in ds["idx"]] if "idx" in ds.column_names else list(range(len(text_a)))
    labels: list[Any] | None = None
    if not spec.is_unlabelled(split):
        raw = list(ds["label"])
        if spec.is_regression:
            labels = [float(x) for x in raw]
        else:
            names = getattr(ds.features["label"], "names", None)
            # hub label order can differ from the files' (MNLI); match by name where the names agree
            remap = (
                [spec.labels.index(n) for n in names]
                if names and sorted(names) == sorted(spec.labels)
                else list(range(spec.num_labels))
            )
            bad = [x for x in raw if not 0 <= int(x) < len(remap)]
            if bad:
                raise DataError(
                    source, f"label {bad[0]} outside 0..{len(remap) - 1}", "check hub_name points at GLUE"
                )
            labels = [remap[int(x)] for x in raw]
    return GLUESplit(spec.name, split, text_a, text_b, labels, idx, source)


def read_glue_split(
    task: str | GLUETask,
    split: str,
    data_dir: str | Path | None = None,
    hub_name: str | None = "nyu-mll/glue",
) -> GLUESplit:
    """One split from `<data_dir>/<Folder>/<file>.tsv`, or from the hub when the task folder is absent."""
    spec = get_task(task)
    valid = [*spec.splits, *([AX] if AX in spec.submission_files else [])]
    if split not in valid:
        raise ValueError(f"GLUE {spec.name} has no split {split!r}; choose one of {', '.join(valid)}")
    folder = None if data_dir is None else Path(data_dir) / spec.folder
    if split == AX:
        path = find_diagnostic(data_dir)
        if path is not None:
            return read_glue_tsv(spec, path, split)
        folder = None if data_dir is None else Path(data_dir) / "diagnostic"
    elif folder is not None and folder.is_dir():
        path = folder / spec.splits[split]
        if not path.is_file():
            raise DataError(
                path,
                f"file not found (needed for the {split} split)",
                f"put the official GLUE {spec.folder}/{path.name} there, or remove the {spec.folder} "
                "folder (or set data_dir to null) to load it from the hub",
            )
        return read_glue_tsv(spec, path, split)
    if hub_name is None:
        raise DataError(
            folder or f"<data_dir>/{spec.folder}",
            "GLUE task folder not found and no hub_name to fall back on",
            f"put the official GLUE files in {folder or f'<data_dir>/{spec.folder}'} or pass hub_name='nyu-mll/glue'",
        )
    return read_hub_split(spec, split, hub_name, expected=folder)


def _flat(values: torch.Tensor | Sequence[float] | Sequence[int]) -> list[float] | list[int]:
    """A flat Python list from a tensor, array or sequence."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().reshape(-1).tolist()
    return torch.as_tensor(values).reshape(-1).tolist()


def write_submission(
    task: str,
    split_name: str,
    idx: torch.Tensor | Sequence[int],
    predictions: torch.Tensor | Sequence[float] | Sequence[int],
    out_dir: str | Path,
) -> Path:
    """Write GLUE's submission file (e.g. `MNLI-m.tsv`) for an unlabelled split; return its path.

    `split_name` is "test" ("test_matched", "test_mismatched" or "ax" for MNLI); `idx` the batches'
    `idx`, `predictions` class ids (floats for STS-B). An index seen twice (DDP pads the last batch by
    repeating examples) keeps its first prediction.
    """
    spec = get_task(task)
    if split_name not in spec.submission_files:
        raise ValueError(
            f"GLUE {spec.name} has no submission for split {split_name!r}; "
            f"choose one of {', '.join(spec.submission_files)}"
        )
    ids, preds = _flat(idx), _flat(predictions)
    if len(ids) != len(preds):
        raise ValueError(f"{len(ids)} indices but {len(preds)} predictions; pass one prediction per example")
    rows: dict[int, str] = {}
    for i, p in zip(ids, preds):
        if int(i) in rows:
            continue
        if spec.is_regression:
            rows[int(i)] = f"{min(max(float(p), 0.0), 5.0):.3f}"
        else:
            if float(p) != int(p) or not 0 <= int(p) < spec.num_labels:
                raise ValueError(
                    f"prediction {p!r} for index {i} is not a class id in 0..{spec.num_labels - 1}; "
                    "pass argmax ids (predictions_from_logits)"
                )
            rows[int(i)] = spec.labels[int(p)]  # AX shares MNLI's labels
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / spec.submission_files[split_name]
    with path.open("w", encoding="utf-8", newline="\n") as f:
        f.write("index\tprediction\n")
        f.writelines(f"{i}\t{rows[i]}\n" for i in sorted(rows))
    return path


__all__ = [
    "GLUESplit",
    "SkippedRowsWarning",
    "find_diagnostic",
    "hub_split",
    "read_glue_split",
    "read_glue_tsv",
    "read_hub_split",
    "write_submission",
]
