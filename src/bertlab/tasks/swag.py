"""SWAG multiple choice (section 4.4): each choice's pooled [CLS] -> linear(H, 1), softmax over the 4.

Accuracy is a fraction (0-1), as the GLUE tasks log it. The official test.csv has no labels: testing on
it logs nothing and `mode=predict` writes `<root>/predictions.csv` (idx, prediction) instead.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from bertlab.data.swag import write_swag_predictions
from bertlab.model.heads import BertForMultipleChoice
from bertlab.tasks.base import BertTask, gather_objects

log = logging.getLogger(__name__)


class MultipleChoiceTask(BertTask):
    """Fine-tunes BertForMultipleChoice: ids `(B, C, T)` -> logits `(B, C)`, cross-entropy over the C."""

    def __init__(
        self,
        model_config: dict[str, Any],
        num_choices: int = 4,
        **shared: Any,
    ) -> None:
        super().__init__(model_config, **shared)
        self.num_choices = num_choices
        self.model = self.build_model(BertForMultipleChoice)
        # micro average = plain accuracy; torchmetrics' multiclass default is macro
        self.acc = nn.ModuleDict(
            {stage: MulticlassAccuracy(num_classes=num_choices, average="micro") for stage in ("val", "test")}
        )
        self.predicted: dict[int, int] = {}

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Logits `(B, C)`."""
        logits = self.model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        if logits.shape[1] != self.num_choices:
            raise ValueError(
                f"batch has {logits.shape[1]} choices per example; the task has num_choices="
                f"{self.num_choices}"
            )
        return logits

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        logits = self(batch)
        loss = F.cross_entropy(logits.float(), batch["labels"])
        acc = (logits.argmax(-1) == batch["labels"]).float().mean()
        self.log_metrics("train", {"loss": loss, "acc": acc}, batch["labels"].shape[0], prog_bar=True)
        return loss

    def eval_step(self, stage: str, batch: dict[str, Tensor], dataloader_idx: int) -> None:
        if "labels" not in batch:  # unlabelled (official test.csv): nothing to score
            return
        logits = self(batch)
        self.log_metrics(stage, {"loss": F.cross_entropy(logits.float(), batch["labels"])}, logits.shape[0])
        self.acc[stage].update(logits.argmax(-1), batch["labels"])

    def eval_epoch_start(self, stage: str) -> None:
        if stage == "predict":
            self.predicted = {}
        else:
            self.acc[stage].reset()

    def eval_epoch_end(self, stage: str) -> None:
        """`stage/acc` over the epoch (summed over ranks by torchmetrics), if any batch had labels."""
        if stage == "predict":
            self.write_predictions()
            return
        metric = self.acc[stage]
        if not metric.update_called:
            log.warning(
                "%s split has no labels: no %s/acc (use mode=predict for predictions.csv)", stage, stage
            )
            return
        self.log(f"{stage}/acc", metric.compute(), prog_bar=True)
        metric.reset()

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """Predicted choice `(B,)`, kept by example index for the file."""
        preds = self(batch).argmax(-1)
        self.predicted.update(zip(batch["idx"].tolist(), preds.tolist()))
        return preds

    def write_predictions(self) -> None:
        """Write `<root>/predictions.csv`: header `idx,prediction`, one row per predicted example in order."""
        predicted: dict[int, int] = {}
        for part in gather_objects(self.predicted):
            predicted.update(part)
        self.predicted = {}
        if not self.trainer.is_global_zero:
            return
        path = write_swag_predictions(Path(self.trainer.default_root_dir) / "predictions.csv", predicted)
        log.info("wrote %s (%d rows)", path, len(predicted))
