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
        """Labelled dev splits, e.g. ["val_matched", "val_mismatched"] for MNLI, ["val"] elsewhere."""
        return [s for s in self.splits if s.startswith("val")]

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
                "val_matched": "dev_matched.tsv",
                "val_mismatched": "dev_mismatched.tsv",
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
