"""GLUE metrics as the benchmark scores them, and its submission files.

CoLA: Matthews correlation; MRPC and QQP: F1 of class 1 and accuracy; STS-B: Pearson and Spearman;
the rest: accuracy. The "main" metric of each task is the one the BERT paper's Table 1 reports (F1 for
MRPC/QQP, Spearman for STS-B, MCC for CoLA, accuracy otherwise; MNLI on both dev sets), used for
checkpoint selection. Metrics take predicted class ids or regression scores, not logits: see
`predictions_from_logits`.

Submission files follow GLUE's sample submission: `index<TAB>prediction`, rows in index order, the
labels as the task's files write them (text for MNLI/AX, QNLI and RTE; 0/1 for CoLA, SST-2, MRPC, QQP
and WNLI, whose files use 0/1), STS-B scores clipped to [0, 5] with three decimals.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import BinaryF1Score, BinaryMatthewsCorrCoef, MulticlassAccuracy
from torchmetrics.regression import PearsonCorrCoef, SpearmanCorrCoef

from bertlab.data.glue import AX, GLUE_TASKS, get_task

# the metric the BERT paper reports per task: checkpoint selection and summaries
MAIN_METRIC: dict[str, str] = {name: spec.main_metric for name, spec in GLUE_TASKS.items()}


def main_metric(task: str) -> str:
    """Key of the metric used to select checkpoints and report the task (e.g. "mcc" for CoLA)."""
    return get_task(task).main_metric


def _metric(name: str, num_labels: int) -> Metric:
    """One torchmetrics metric by GLUE key."""
    if name == "acc":
        # micro average = plain accuracy; torchmetrics' multiclass default is macro
        return MulticlassAccuracy(num_classes=max(num_labels, 2), average="micro")
    if name == "f1":
        return BinaryF1Score()  # F1 of the positive class 1, as GLUE
    if name == "mcc":
        return BinaryMatthewsCorrCoef()
    if name == "pearson":
        return PearsonCorrCoef()
    if name == "spearmanr":
        with warnings.catch_warnings():
            # it warns that it keeps every prediction: GLUE's STS-B sets hold 1.4k-5.7k rows
            warnings.filterwarnings("ignore", message=".*will save all targets and predictions")
            return SpearmanCorrCoef()
    raise ValueError(f"unknown GLUE metric {name!r}; choose one of acc, f1, mcc, pearson, spearmanr")


def glue_metrics(task: str, prefix: str | None = None) -> MetricCollection:
    """The task's GLUE metrics; `update(preds (B,), target (B,))` with class ids or float scores."""
    spec = get_task(task)
    return MetricCollection({m: _metric(m, spec.num_labels) for m in spec.metrics}, prefix=prefix)


def predictions_from_logits(logits: torch.Tensor, task: str) -> torch.Tensor:
    """Class ids (B,) from logits (B, C), or scores (B,) from regression outputs (B, 1)."""
    if get_task(task).is_regression:
        return logits.reshape(logits.shape[0], -1)[:, 0].float()
    return logits.argmax(dim=-1)


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


__all__ = ["AX", "MAIN_METRIC", "glue_metrics", "main_metric", "predictions_from_logits", "write_submission"]
