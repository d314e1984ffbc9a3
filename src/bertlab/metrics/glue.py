"""GLUE metrics as the benchmark scores them: functions of predictions and references only.

CoLA: Matthews correlation (`mcc`); MRPC and QQP: F1 of class 1 (`f1`) and accuracy (`acc`); STS-B:
Pearson (`pearson`) and Spearman (`spearmanr`); the rest: accuracy. Which task uses which, and the one
the BERT paper reports, is the task table's business (`bertlab.data.glue_tasks`): callers pass the
names. Metrics take predicted class ids or regression scores, not logits: see `predictions_from_logits`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import BinaryF1Score, BinaryMatthewsCorrCoef, MulticlassAccuracy
from torchmetrics.regression import PearsonCorrCoef, SpearmanCorrCoef

METRIC_NAMES = ("acc", "f1", "mcc", "pearson", "spearmanr")


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
    raise ValueError(f"unknown GLUE metric {name!r}; choose one of {', '.join(METRIC_NAMES)}")


def glue_metrics(names: Sequence[str], num_labels: int, prefix: str | None = None) -> MetricCollection:
    """The metrics `names` (e.g. `("f1", "acc")`) for `num_labels` classes (1: regression).

    `update(preds (B,), target (B,))` with class ids or float scores.
    """
    return MetricCollection({m: _metric(m, num_labels) for m in names}, prefix=prefix)


def predictions_from_logits(logits: torch.Tensor, regression: bool) -> torch.Tensor:
    """Class ids (B,) from logits (B, C), or scores (B,) from regression outputs (B, 1)."""
    if regression:
        return logits.reshape(logits.shape[0], -1)[:, 0].float()
    return logits.argmax(dim=-1)


__all__ = ["METRIC_NAMES", "glue_metrics", "predictions_from_logits"]
