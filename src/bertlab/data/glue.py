"""GLUE (Wang et al., 2019): task specs, readers for the official tsv files, and a LightningDataModule.

Files are read in the official layout `<data_dir>/<Folder>/{train,dev,test}.tsv` (MNLI:
`dev_matched`, `dev_mismatched`, `test_matched`, `test_mismatched`; the diagnostic set AX at
`<data_dir>/diagnostic/diagnostic.tsv`, `<data_dir>/AX.tsv` or `<data_dir>/MNLI/AX.tsv`), with
`csv.QUOTE_NONE`: GLUE's fields hold unbalanced quotes (MRPC, MNLI) that a quoting reader would merge
across lines, so quotes are kept exactly as written. A UTF-8 byte-order mark (MRPC) is dropped.

Where we differ from a plain reader:
- QQP's official files hold a few broken rows (a question with a newline splits one row into two, or
  `is_duplicate` is empty). As GLUE's reference loaders (transformers' `QqpProcessor`, the `glue`
  dataset script) do, those rows are skipped, but counted and reported with a `SkippedRowsWarning`
  naming the lines. In every other task such a row is a `DataError` naming file and line.
- Labels are model ids in the order of `GLUETask.labels`, the file's own vocabulary (MNLI:
  `contradiction, entailment, neutral`, as BERT's `run_classifier.py`). Hub datasets, whose label
  order differs (MNLI: entailment, neutral, contradiction), are remapped by name.
- `idx` is the row's 0-based number among the file's data rows (skipped rows keep their number), and
  the file's own `index`/`id` column for unlabelled test files: what a submission file needs.
- GLUE's test labels are hidden, so the DataModule's `test_dataloader` serves the labelled dev sets
  and `predict_dataloader` the unlabelled test sets (for `write_submission`).
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from tokenizers import Tokenizer
from torch.utils.data import DataLoader, Dataset

from bertlab.data.errors import DataError
from bertlab.data.sampler import LengthGroupedSampler
from bertlab.data.tokenizer import LazyTokenizer, plain_tokenizer, special_ids

AX = "ax"  # the diagnostic split, predicted with the MNLI model
_DEFAULT_SPLITS = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}


@dataclass(frozen=True, eq=False)
class GLUETask:
    """How one GLUE task is laid out on disk and on the hub, scored and submitted."""

    name: str  # lower-case key: "mnli"
    folder: str  # official folder name: "MNLI"
    text_columns: tuple[str, ...]  # train/dev header names of sentence (A, B)
    test_text_columns: tuple[str, ...]  # the same in test.tsv, which starts with an `index` column
    label_column: str
    labels: tuple[str, ...]  # label strings as written in the files, in model-id order; () = regression
    hub_config: str  # config name in `nyu-mll/glue`
    hub_text_columns: tuple[str, ...]
    metrics: tuple[str, ...]  # keys of `bertlab.metrics.glue.glue_metrics`
    main_metric: str  # the one the BERT paper's Table 1 reports
    submission_files: dict[str, str]  # unlabelled split -> GLUE submission file name
    splits: dict[str, str] = field(default_factory=lambda: dict(_DEFAULT_SPLITS))  # split -> file name
    test_index_column: str = "index"
    header_columns: tuple[str, ...] | None = None  # names for header-less train/dev files (CoLA)
    skip_malformed: bool = False  # skip and report broken rows instead of failing (QQP)

    @property
    def is_regression(self) -> bool:
        """True for STS-B (a float similarity score 0-5)."""
        return not self.labels

    @property
    def num_labels(self) -> int:
        """Classifier outputs: 1 for regression."""
        return len(self.labels) or 1

    @property
    def val_split_names(self) -> list[str]:
        """Labelled dev splits, e.g. ["validation_matched", "validation_mismatched"] for MNLI."""
        return [s for s in self.splits if s.startswith("validation")]

    @property
    def test_split_names(self) -> list[str]:
        """Unlabelled test splits with a file of their own (AX, found separately, not included)."""
        return [s for s in self.splits if s.startswith("test")]

    def is_unlabelled(self, split: str) -> bool:
        """Whether `split` is a GLUE test split, whose labels are hidden."""
        return split.startswith("test") or split == AX


GLUE_TASKS: dict[str, GLUETask] = {
    t.name: t
    for t in (
        GLUETask(
            name="cola",
            folder="CoLA",
            text_columns=("sentence",),
            test_text_columns=("sentence",),
            label_column="label",
            labels=("0", "1"),
            hub_config="cola",
            hub_text_columns=("sentence",),
            metrics=("mcc",),
            main_metric="mcc",
            submission_files={"test": "CoLA.tsv"},
            header_columns=("source", "label", "original_label", "sentence"),
        ),
        GLUETask(
            name="sst2",
            folder="SST-2",
            text_columns=("sentence",),
            test_text_columns=("sentence",),
            label_column="label",
            labels=("0", "1"),
            hub_config="sst2",
            hub_text_columns=("sentence",),
            metrics=("acc",),
            main_metric="acc",
            submission_files={"test": "SST-2.tsv"},
        ),
        GLUETask(
            name="mrpc",
            folder="MRPC",
            text_columns=("#1 String", "#2 String"),
            test_text_columns=("#1 String", "#2 String"),
            label_column="Quality",
            labels=("0", "1"),
            hub_config="mrpc",
            hub_text_columns=("sentence1", "sentence2"),
            metrics=("f1", "acc"),
            main_metric="f1",
            submission_files={"test": "MRPC.tsv"},
        ),
        GLUETask(
            name="stsb",
            folder="STS-B",
            text_columns=("sentence1", "sentence2"),
            test_text_columns=("sentence1", "sentence2"),
            label_column="score",
            labels=(),
            hub_config="stsb",
            hub_text_columns=("sentence1", "sentence2"),
            metrics=("pearson", "spearmanr"),
            main_metric="spearmanr",
            submission_files={"test": "STS-B.tsv"},
        ),
        GLUETask(
            name="qqp",
            folder="QQP",
            text_columns=("question1", "question2"),
            test_text_columns=("question1", "question2"),
            label_column="is_duplicate",
            labels=("0", "1"),
            hub_config="qqp",
            hub_text_columns=("question1", "question2"),
            metrics=("f1", "acc"),
            main_metric="f1",
            submission_files={"test": "QQP.tsv"},
            test_index_column="id",
            skip_malformed=True,
        ),
        GLUETask(
            name="mnli",
            folder="MNLI",
            text_columns=("sentence1", "sentence2"),
            test_text_columns=("sentence1", "sentence2"),
            label_column="gold_label",
            labels=("contradiction", "entailment", "neutral"),
            hub_config="mnli",
            hub_text_columns=("premise", "hypothesis"),
            metrics=("acc",),
            main_metric="acc",
            submission_files={"test_matched": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv", AX: "AX.tsv"},
            splits={
                "train": "train.tsv",
                "validation_matched": "dev_matched.tsv",
                "validation_mismatched": "dev_mismatched.tsv",
                "test_matched": "test_matched.tsv",
                "test_mismatched": "test_mismatched.tsv",
            },
        ),
        GLUETask(
            name="qnli",
            folder="QNLI",
            text_columns=("question", "sentence"),
            test_text_columns=("question", "sentence"),
            label_column="label",
            labels=("entailment", "not_entailment"),
            hub_config="qnli",
            hub_text_columns=("question", "sentence"),
            metrics=("acc",),
            main_metric="acc",
            submission_files={"test": "QNLI.tsv"},
        ),
        GLUETask(
            name="rte",
            folder="RTE",
            text_columns=("sentence1", "sentence2"),
            test_text_columns=("sentence1", "sentence2"),
            label_column="label",
            labels=("entailment", "not_entailment"),
            hub_config="rte",
            hub_text_columns=("sentence1", "sentence2"),
            metrics=("acc",),
            main_metric="acc",
            submission_files={"test": "RTE.tsv"},
        ),
        GLUETask(
            name="wnli",
            folder="WNLI",
            text_columns=("sentence1", "sentence2"),
            test_text_columns=("sentence1", "sentence2"),
            label_column="label",
            labels=("0", "1"),
            hub_config="wnli",
            hub_text_columns=("sentence1", "sentence2"),
            metrics=("acc",),
            main_metric="acc",
            submission_files={"test": "WNLI.tsv"},
        ),
    )
}

# the diagnostic set's file and hub layout (scored with MNLI's labels)
_AX_TEXT_COLUMNS = ("sentence1", "sentence2")
_AX_HUB = ("ax", "test", ("premise", "hypothesis"))


def get_task(task: str | GLUETask) -> GLUETask:
    """The spec of a GLUE task by name ("mnli", "SST-2", "sts-b" … case and dashes ignored)."""
    if isinstance(task, GLUETask):
        return task
    key = str(task).lower().replace("-", "").replace("_", "")
    if key not in GLUE_TASKS:
        raise ValueError(f"unknown GLUE task {task!r}; choose one of {', '.join(GLUE_TASKS)}")
    return GLUE_TASKS[key]


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

    def head(self, n: int | None) -> GLUESplit:
        """The first `n` examples (all when `n` is None): deterministic slices for quick runs."""
        if n is None or n >= len(self):
            return self
        return GLUESplit(
            self.task,
            self.split,
            self.text_a[:n],
            None if self.text_b is None else self.text_b[:n],
            None if self.labels is None else self.labels[:n],  # type: ignore[arg-type]
            self.idx[:n],
            self.source,
            self.skipped_lines,
        )


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
    # utf-8-sig drops MRPC's byte-order mark; newline="" hands line endings to csv
    with path.open(encoding="utf-8-sig", newline="") as f:
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
    if skipped:
        shown = ", ".join(map(str, skipped[:10])) + (", …" if len(skipped) > 10 else "")
        warnings.warn(
            f"{path}: skipped {len(skipped)} malformed row(s) at line(s) {shown}, as GLUE's reference loaders do",
            SkippedRowsWarning,
            stacklevel=2,
        )
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
    import datasets  # only here: importing it is slow and offline users never need it

    spec = get_task(task)
    config, hub_split, columns = _AX_HUB if split == AX else (spec.hub_config, split, spec.hub_text_columns)
    try:
        ds = datasets.load_dataset(hub_name, config, split=hub_split)
    except Exception as err:  # offline, missing and auth errors come in many types
        reason = (str(err).strip().splitlines() or [""])[0][:200]
        raise DataError(
            expected or hub_name,
            f"GLUE {spec.folder} files not found, and the hub dataset {hub_name} ({config}/{hub_split}) "
            f"could not be loaded ({type(err).__name__}: {reason})",
            f"put the official GLUE files in {expected or f'<data_dir>/{spec.folder}'} "
            "(e.g. with download_glue_data.py), or go online once so the datasets cache holds it",
        ) from err
    source = f"{hub_name}/{config}:{hub_split}"
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


def truncate_pair_lengths(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """Lengths after BERT's `_truncate_seq_pair`: drop one token at a time from the longer (ties: from B)."""
    if len_a + len_b <= budget:
        return len_a, len_b
    # the longer loses tokens until both are equal, then they shrink in turn, B first
    excess = len_a + len_b - budget
    if len_a > len_b:
        len_a -= min(len_a - len_b, excess)
    elif len_b > len_a:
        len_b -= min(len_b - len_a, excess)
    if len_a + len_b > budget:
        len_a, len_b = (budget + 1) // 2, budget // 2
    return len_a, len_b


def encode_pairs(
    tok: Tokenizer, text_a: Sequence[str], text_b: Sequence[str] | None, max_seq_length: int
) -> tuple[list[list[int]], list[int]]:
    """Ids of `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]` truncated as BERT does, and each A-part length.

    The A-part length (`[CLS] a [SEP]`) is where token type 1 starts.
    """
    n_special = 2 if text_b is None else 3
    if max_seq_length < n_special + 1:
        raise ValueError(
            f"max_seq_length={max_seq_length} leaves no room for text; use at least {n_special + 1}"
        )
    ids = special_ids(tok)
    cls, sep = ids["cls"], ids["sep"]
    plain = plain_tokenizer(tok)
    enc_a = [e.ids for e in plain.encode_batch(list(text_a), add_special_tokens=False)]
    budget = max_seq_length - n_special
    if text_b is None:
        out = [[cls, *a[:budget], sep] for a in enc_a]
        return out, [len(x) for x in out]
    enc_b = [e.ids for e in plain.encode_batch(list(text_b), add_special_tokens=False)]
    out, seg_a = [], []
    for a, b in zip(enc_a, enc_b, strict=True):
        la, lb = truncate_pair_lengths(len(a), len(b), budget)
        out.append([cls, *a[:la], sep, *b[:lb], sep])
        seg_a.append(la + 2)
    return out, seg_a


class GLUEDataset(Dataset):
    """Tokenised examples kept as id lists; padding happens per batch in `collate_glue`."""

    def __init__(
        self,
        input_ids: list[list[int]],
        segment_a_lengths: list[int],
        idx: list[int],
        labels: list[int] | list[float] | None = None,
    ) -> None:
        self.input_ids, self.segment_a_lengths, self.idx, self.labels = (
            input_ids,
            segment_a_lengths,
            idx,
            labels,
        )

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item: dict[str, Any] = {
            "input_ids": self.input_ids[i],
            "n_a": self.segment_a_lengths[i],
            "idx": self.idx[i],
        }
        if self.labels is not None:
            item["label"] = self.labels[i]
        return item

    @property
    def lengths(self) -> list[int]:
        """Token count of every example, for length-grouped batching."""
        return [len(x) for x in self.input_ids]


def collate_glue(
    features: list[dict[str, Any]], pad_id: int = 0, regression: bool = False
) -> dict[str, torch.Tensor]:
    """Pad to the longest example: input_ids, token_type_ids, attention_mask (B, T), idx and labels (B,).

    `labels` is long (float32 for regression) and absent when the examples are unlabelled (GLUE test).
    """
    lengths = [len(f["input_ids"]) for f in features]
    B, T = len(features), max(lengths)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    token_type_ids = torch.zeros((B, T), dtype=torch.long)
    attention_mask = torch.zeros((B, T), dtype=torch.long)
    for r, (f, n) in enumerate(zip(features, lengths)):
        input_ids[r, :n] = torch.tensor(f["input_ids"], dtype=torch.long)
        token_type_ids[r, f["n_a"] : n] = 1  # segment B and its [SEP]; padding keeps type 0 as BERT's
        attention_mask[r, :n] = 1
    batch = {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": attention_mask,
        "idx": torch.tensor([f["idx"] for f in features], dtype=torch.long),
    }
    if "label" in features[0]:
        batch["labels"] = torch.tensor(
            [f["label"] for f in features], dtype=torch.float32 if regression else torch.long
        )
    return batch


class GLUEDataModule(LazyTokenizer, L.LightningDataModule):
    """One GLUE task: reads, tokenises once in `setup`, and serves dynamically padded batches.

    `val_dataloader` and `test_dataloader` serve the labelled dev sets (a list for MNLI m/mm, since
    GLUE's test labels are hidden); `predict_dataloader` serves the unlabelled test sets as a list in
    `test_split_names` order (MNLI: matched, mismatched and AX when present), batches without `labels`.
    Splits come from `<data_dir>/<Folder>/`, or from `hub_name` when that folder is absent.
    `max_train_samples` keeps the first rows of train, `max_eval_samples` of every other split (dev and
    test alike: for quick runs, not for submissions). `group_by_length` batches training examples of
    similar length (`LengthGroupedSampler`); otherwise training batches are shuffled with `seed`.
    """

    def __init__(
        self,
        task: str,
        data_dir: str | None,
        tokenizer: str | Path | Tokenizer,
        max_seq_length: int = 128,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        num_workers: int = 0,
        group_by_length: bool = False,
        hub_name: str | None = "nyu-mll/glue",
        max_train_samples: int | None = None,
        max_eval_samples: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        # only plain values go to hparams: checkpoints are loaded with weights_only=True
        plain = (str, int, float, bool, type(None))
        args = {"data_dir": data_dir, "tokenizer": tokenizer, "hub_name": hub_name}
        self.save_hyperparameters(ignore=[k for k, v in args.items() if not isinstance(v, plain)])
        self.spec = get_task(task)
        self.data_dir = data_dir
        self._tokenizer_source = tokenizer
        self.max_seq_length = max_seq_length
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers = num_workers
        self.group_by_length = group_by_length
        self.hub_name = hub_name
        self.max_train_samples, self.max_eval_samples = max_train_samples, max_eval_samples
        self.seed = seed
        self.datasets: dict[str, GLUEDataset] = {}

    @property
    def num_labels(self) -> int:
        """Classifier outputs (1 for STS-B)."""
        return self.spec.num_labels

    @property
    def label_names(self) -> list[str]:
        """Label strings in model-id order ([] for STS-B)."""
        return list(self.spec.labels)

    @property
    def is_regression(self) -> bool:
        """True for STS-B."""
        return self.spec.is_regression

    @property
    def val_split_names(self) -> list[str]:
        """Names of the loaders `val_dataloader` and `test_dataloader` return, in order."""
        return self.spec.val_split_names

    @property
    def test_split_names(self) -> list[str]:
        """Names of the unlabelled loaders `predict_dataloader` returns, in order (AX when present)."""
        names = self.spec.test_split_names
        has_ax = find_diagnostic(self.data_dir) is not None or (
            self._uses_hub() and self.hub_name is not None
        )
        if AX in self.spec.submission_files and has_ax:
            names = [*names, AX]
        return names

    def _load(self, split: str) -> GLUEDataset:
        """Read, slice and tokenise one split once."""
        if split not in self.datasets:
            raw = read_glue_split(self.spec, split, self.data_dir, self.hub_name)
            raw = raw.head(self.max_train_samples if split == "train" else self.max_eval_samples)
            ids, seg_a = encode_pairs(self.tokenizer, raw.text_a, raw.text_b, self.max_seq_length)
            self.datasets[split] = GLUEDataset(ids, seg_a, raw.idx, raw.labels)
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        """Tokenise the splits `stage` needs: fit -> train+dev, validate/test -> dev, predict -> test."""
        splits: list[str] = []
        if stage in (None, "fit"):
            splits += ["train", *self.val_split_names]
        if stage in (None, "validate", "test"):
            splits += self.val_split_names
        if stage in (None, "predict"):
            splits += self.test_split_names
        for split in dict.fromkeys(splits):
            self._load(split)

    def _uses_hub(self) -> bool:
        """Whether splits come from the hub (no local task folder)."""
        return self.data_dir is None or not (Path(self.data_dir) / self.spec.folder).is_dir()

    def prepare_data(self) -> None:
        """Download the hub copy once (Lightning runs this on one process); local files need nothing."""
        if self._uses_hub() and self.hub_name is not None:
            # loading one split fetches and caches the whole config, so setup() on every rank reads the cache
            read_hub_split(self.spec, self.val_split_names[0], self.hub_name)

    def _loader(self, split: str, train: bool = False) -> DataLoader:
        ds = self._load(split)
        # a partial, not a bound method: workers receive the pad id, not the whole DataModule
        collate = partial(
            collate_glue, pad_id=special_ids(self.tokenizer)["pad"], regression=self.is_regression
        )
        common: dict[str, Any] = {"collate_fn": collate, "num_workers": self.num_workers}
        if not train:
            return DataLoader(ds, batch_size=self.eval_batch_size, shuffle=False, **common)
        if self.group_by_length:
            sampler = LengthGroupedSampler(ds.lengths, self.batch_size, seed=self.seed)
            return DataLoader(ds, batch_size=self.batch_size, sampler=sampler, **common)
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(ds, batch_size=self.batch_size, shuffle=True, generator=generator, **common)

    def train_dataloader(self) -> DataLoader:
        """Shuffled (or length-grouped) training batches."""
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """Dev-set batches; a list [matched, mismatched] for MNLI."""
        loaders = [self._loader(s) for s in self.val_split_names]
        return loaders if len(loaders) > 1 else loaders[0]

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        """The labelled dev sets again (GLUE test labels are hidden): same shape as `val_dataloader`."""
        return self.val_dataloader()

    def predict_dataloader(self) -> list[DataLoader]:
        """Unlabelled GLUE test sets in `test_split_names` order, for submission files."""
        return [self._loader(s) for s in self.test_split_names]
