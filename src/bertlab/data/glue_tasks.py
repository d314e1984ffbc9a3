"""GLUE (Wang et al., 2019): what each of the nine tasks is, as one table of `GLUETask` specs.

A spec says where a task lives on disk (official folder and file names, columns) and on the hub
(`nyu-mll/glue` config and columns), its labels in model-id order, its metrics and the one the BERT
paper's Table 1 reports (`main_metric`), and its GLUE submission file names. Readers and the submission
writer (`bertlab.data.glue_files`), the DataModule (`bertlab.data.glue`), the task module and the
`${labels:<task>}` resolver all read it from here.

Split names are bertlab's: `train`, `val`, `test` (MNLI: `val_matched`, `val_mismatched`,
`test_matched`, `test_mismatched`) and `ax`, GLUE's diagnostic set, predicted with the MNLI model.
Labels are the files' own vocabulary in the order BERT's `run_classifier.py` uses (MNLI:
`contradiction, entailment, neutral`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

AX = "ax"  # the diagnostic split, predicted with the MNLI model
_DEFAULT_SPLITS = {"train": "train.tsv", "val": "dev.tsv", "test": "test.tsv"}


@dataclass(frozen=True, eq=False)
class GLUETask:
    """How one GLUE task is laid out on disk and on the hub, scored and submitted.

    Fields left None take the common GLUE layout: test.tsv and the hub use the train/dev text columns,
    the hub config is the task name, the main metric is the first, and test.tsv is submitted as
    `<Folder>.tsv`.
    """

    name: str  # lower-case key: "mnli"
    folder: str  # official folder name: "MNLI"
    text_columns: tuple[str, ...]  # train/dev header names of sentence (A, B)
    labels: tuple[str, ...]  # label strings as written in the files, in model-id order; () = regression
    label_column: str = "label"
    metrics: tuple[str, ...] = ("acc",)  # keys of `bertlab.metrics.glue.glue_metrics`
    main_metric: str = None  # type: ignore[assignment]  # the one the BERT paper's Table 1 reports
    test_text_columns: tuple[str, ...] = None  # type: ignore[assignment]  # in test.tsv (after `index`)
    hub_config: str = None  # type: ignore[assignment]  # config name in `nyu-mll/glue`
    hub_text_columns: tuple[str, ...] = None  # type: ignore[assignment]
    submission_files: dict[str, str] = None  # type: ignore[assignment]  # unlabelled split -> file name
    splits: dict[str, str] = field(default_factory=lambda: dict(_DEFAULT_SPLITS))  # split -> file name
    test_index_column: str = "index"
    header_columns: tuple[str, ...] | None = None  # names for header-less train/dev files (CoLA)
    skip_malformed: bool = False  # skip and report broken rows instead of failing (QQP)

    def __post_init__(self) -> None:
        defaults = {
            "main_metric": self.metrics[0],
            "test_text_columns": self.text_columns,
            "hub_config": self.name,
            "hub_text_columns": self.text_columns,
            "submission_files": {"test": f"{self.folder}.tsv"},
        }
        for key, value in defaults.items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)  # frozen: set once, here

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
        """Labelled dev splits, e.g. ["val_matched", "val_mismatched"] for MNLI, ["val"] elsewhere."""
        return [s for s in self.splits if s.startswith("val")]

    @property
    def test_split_names(self) -> list[str]:
        """Unlabelled test splits with a file of their own (AX, found separately, not included)."""
        return [s for s in self.splits if s.startswith("test")]

    def is_unlabelled(self, split: str) -> bool:
        """Whether `split` is a GLUE test split, whose labels are hidden."""
        return split.startswith("test") or split == AX


BINARY = ("0", "1")
ENTAILMENT = ("entailment", "not_entailment")
PAIR = ("sentence1", "sentence2")
GLUE_TASKS: dict[str, GLUETask] = {
    t.name: t
    for t in (
        GLUETask("cola", "CoLA", ("sentence",), BINARY, metrics=("mcc",),
                 header_columns=("source", "label", "original_label", "sentence")),
        GLUETask("sst2", "SST-2", ("sentence",), BINARY),
        GLUETask("mrpc", "MRPC", ("#1 String", "#2 String"), BINARY, label_column="Quality",
                 metrics=("f1", "acc"), hub_text_columns=PAIR),
        GLUETask("stsb", "STS-B", PAIR, (), label_column="score", metrics=("pearson", "spearmanr"),
                 main_metric="spearmanr"),
        GLUETask("qqp", "QQP", ("question1", "question2"), BINARY, label_column="is_duplicate",
                 metrics=("f1", "acc"), test_index_column="id", skip_malformed=True),
        GLUETask("mnli", "MNLI", PAIR, ("contradiction", "entailment", "neutral"), label_column="gold_label",
                 hub_text_columns=("premise", "hypothesis"),
                 submission_files={"test_matched": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv", AX: "AX.tsv"},
                 splits={"train": "train.tsv", "val_matched": "dev_matched.tsv",
                         "val_mismatched": "dev_mismatched.tsv", "test_matched": "test_matched.tsv",
                         "test_mismatched": "test_mismatched.tsv"}),
        GLUETask("qnli", "QNLI", ("question", "sentence"), ENTAILMENT),
        GLUETask("rte", "RTE", PAIR, ENTAILMENT),
        GLUETask("wnli", "WNLI", PAIR, BINARY),
    )
}  # fmt: skip


def get_task(task: str | GLUETask) -> GLUETask:
    """The spec of a GLUE task by name ("mnli", "SST-2", "sts-b" … case and dashes ignored)."""
    if isinstance(task, GLUETask):
        return task
    key = str(task).lower().replace("-", "").replace("_", "")
    if key not in GLUE_TASKS:
        raise ValueError(f"unknown GLUE task {task!r}; choose one of {', '.join(GLUE_TASKS)}")
    return GLUE_TASKS[key]


# the metric the BERT paper reports per task: checkpoint selection and summaries
MAIN_METRIC: dict[str, str] = {name: spec.main_metric for name, spec in GLUE_TASKS.items()}


def main_metric(task: str) -> str:
    """Key of the metric used to select checkpoints and report the task (e.g. "mcc" for CoLA)."""
    return get_task(task).main_metric


__all__ = ["AX", "GLUE_TASKS", "MAIN_METRIC", "GLUETask", "get_task", "main_metric"]
