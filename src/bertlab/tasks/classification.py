"""Sequence classification and regression (GLUE): pooled [CLS] -> dropout -> linear.

STS-B has one output trained with MSE and is scored as a number, never through argmax. MNLI validates
on both dev sets: keys `val/acc` (matched) and `val/acc_mm` (mismatched).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Optimizer

from bertlab.metrics.glue import glue_metrics, predictions_from_logits, write_submission
from bertlab.model.heads import BertForSequenceClassification
from bertlab.tasks.base import BertTask

SPLIT_SUFFIX = {"validation_matched": "", "validation_mismatched": "_mm"}


class SequenceClassificationTask(BertTask):
    """Fine-tunes BertForSequenceClassification on one GLUE task; writes submission files in predict."""

    def __init__(
        self,
        model_config: dict[str, Any],
        task: str,
        num_labels: int,
        label_names: Sequence[str] | None = None,
        val_split_names: Sequence[str] = ("validation",),
        pretrained: str | None = None,
        optimizer: Callable[..., Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__(model_config, pretrained, optimizer, scheduler)
        self.task, self.num_labels = task, num_labels
        self.is_regression = num_labels == 1
        self.val_split_names = list(val_split_names)
        self.model = self.build_model(BertForSequenceClassification, num_labels=num_labels)
        self.val_metrics = nn.ModuleList(glue_metrics(task) for _ in self.val_split_names)
        self.test_metrics = nn.ModuleList(glue_metrics(task) for _ in self.val_split_names)
        self.predictions: dict[int, list[tuple[Tensor, Tensor]]] = {}

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Logits `(B, num_labels)`."""
        return self.model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        if self.is_regression:
            return F.mse_loss(logits.squeeze(-1).float(), labels.float())
        return F.cross_entropy(logits.float(), labels)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.loss(self(batch), batch["labels"])
        self.log_metrics("train", {"loss": loss}, batch["input_ids"].shape[0], prog_bar=True)
        return loss

    def _eval_step(self, stage: str, batch: dict[str, Tensor], dataloader_idx: int) -> None:
        logits = self(batch)
        suffix = SPLIT_SUFFIX.get(self.val_split_names[dataloader_idx], "")
        self.log(
            f"{stage}/loss{suffix}",
            self.loss(logits, batch["labels"]),
            batch_size=logits.shape[0],
            add_dataloader_idx=False,
            sync_dist=True,
        )
        metrics = (self.val_metrics if stage == "val" else self.test_metrics)[dataloader_idx]
        metrics.update(predictions_from_logits(logits.float(), self.task), batch["labels"])

    def _eval_epoch_end(self, stage: str) -> None:
        for split, metrics in zip(
            self.val_split_names, self.val_metrics if stage == "val" else self.test_metrics
        ):
            suffix = SPLIT_SUFFIX.get(split, "")
            values = metrics.compute()
            self.log_dict({f"{stage}/{k}{suffix}": v.float() for k, v in values.items()})
            metrics.reset()

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("val", batch, dataloader_idx)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("test", batch, dataloader_idx)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        preds = predictions_from_logits(self(batch).float(), self.task)
        self.predictions.setdefault(dataloader_idx, []).append((batch["idx"].cpu(), preds.cpu()))
        return preds

    def on_predict_epoch_end(self) -> None:
        """Write one GLUE submission file per test split into `<run dir>/submission/`."""
        names = self.trainer.datamodule.test_split_names  # type: ignore[attr-defined]
        out = Path(self.trainer.default_root_dir) / "submission"
        for i, rows in sorted(self.predictions.items()):
            idx = torch.cat([r[0] for r in rows])
            preds = torch.cat([r[1] for r in rows])
            path = write_submission(self.task, names[i], idx, preds, out)
            print(f"wrote {path} ({len(idx)} rows)")
        self.predictions.clear()
