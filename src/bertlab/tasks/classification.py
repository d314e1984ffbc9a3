"""Sequence classification and regression (GLUE): pooled [CLS] -> dropout -> linear, or with `bilstm`
(Table 5's "+ BiLSTM") a fresh BiLSTM over the last hidden states -> dropout -> linear.

STS-B has one output trained with MSE and is scored as a number, never through argmax. The dev sets
come from the GLUE task table: MNLI validates on both, keys `val/acc` (matched) and `val/acc_mm`
(mismatched). GLUE's test labels are hidden, so `test` scores the dev sets again and `predict` writes
the submission files.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bertlab.data.glue_files import write_submission
from bertlab.data.glue_tasks import get_task
from bertlab.metrics.glue import glue_metrics, predictions_from_logits
from bertlab.model.heads import BertBiLSTMForSequenceClassification, BertForSequenceClassification
from bertlab.tasks.base import BertTask, gather_objects

log = logging.getLogger(__name__)

# suffix of each dev set's logged keys: MNLI's matched set is the task's plain `val/acc`
SPLIT_SUFFIX = {"val_matched": "", "val_mismatched": "_mm"}


class SequenceClassificationTask(BertTask):
    """Fine-tunes BertForSequenceClassification on one GLUE task; writes submission files in predict.

    `label_names` are the task's labels in model-id order (`${labels:<task>}` in conf/task/_glue.yaml);
    the classifier has one output per label, or one for a regression (STS-B: an empty list). `bilstm`:
    a randomly initialised BiLSTM reads the encoder's outputs (`BertBiLSTMForSequenceClassification`);
    the encoder still loads from `pretrained`, and the export holds it alone.
    """

    def __init__(
        self,
        model_config: dict[str, Any],
        task: str,
        label_names: Sequence[str],
        bilstm: bool = False,
        **shared: Any,
    ) -> None:
        super().__init__(model_config, **shared)
        spec = get_task(task)
        if list(label_names) != list(spec.labels):
            raise ValueError(
                f"label_names {list(label_names)} are not GLUE {spec.name}'s {list(spec.labels)}; "
                f"set task.module.label_names: ${{labels:{spec.name}}}"
            )
        self.task, self.label_names = spec.name, list(label_names)
        self.num_labels = len(self.label_names) or 1
        self.is_regression = not self.label_names
        self.val_split_names = spec.val_split_names
        head = BertBiLSTMForSequenceClassification if bilstm else BertForSequenceClassification
        self.model = self.build_model(head, num_labels=self.num_labels)
        # stage -> dev set -> metrics; the test stage scores the dev sets too (GLUE's test labels are hidden)
        self.metrics = nn.ModuleDict(
            {
                stage: nn.ModuleDict(
                    {s: glue_metrics(spec.metrics, self.num_labels) for s in self.val_split_names}
                )
                for stage in ("val", "test")
            }
        )
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

    def eval_epoch_start(self, stage: str) -> None:
        if stage == "predict":
            self.predictions.clear()
            return
        for metrics in self.metrics[stage].values():
            metrics.reset()

    def eval_step(self, stage: str, batch: dict[str, Tensor], dataloader_idx: int) -> None:
        """Log `stage/loss<suffix>` and update the dev set's metrics."""
        logits = self(batch)
        split = self.val_split_names[dataloader_idx]
        self.log(
            f"{stage}/loss{SPLIT_SUFFIX.get(split, '')}",
            self.loss(logits, batch["labels"]),
            batch_size=logits.shape[0],
            add_dataloader_idx=False,
            sync_dist=True,
        )
        preds = predictions_from_logits(logits.float(), self.is_regression)
        self.metrics[stage][split].update(preds, batch["labels"])

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        preds = predictions_from_logits(self(batch).float(), self.is_regression)
        self.predictions.setdefault(dataloader_idx, []).append((batch["idx"].cpu(), preds.cpu()))
        return preds

    def eval_epoch_end(self, stage: str) -> None:
        """val/test: log `stage/<metric><suffix>` per dev set; predict: write the submission files."""
        if stage == "predict":
            self.write_submissions(Path(self.trainer.default_root_dir) / "submission")
            return
        for split, metrics in self.metrics[stage].items():
            suffix = SPLIT_SUFFIX.get(split, "")
            self.log_dict({f"{stage}/{k}{suffix}": v.float() for k, v in metrics.compute().items()})
            metrics.reset()

    def write_submissions(self, out: Path) -> None:
        """One GLUE submission file per predicted test split, from every rank's rows, written by rank 0."""
        names = self.datamodule.split_names("predict")
        local = {
            i: (torch.cat([r[0] for r in rows]), torch.cat([r[1] for r in rows]))
            for i, rows in self.predictions.items()
        }
        self.predictions.clear()
        gathered = gather_objects(local)
        if not self.trainer.is_global_zero:
            return
        for i in sorted(local):
            idx = torch.cat([part[i][0] for part in gathered])
            preds = torch.cat([part[i][1] for part in gathered])
            path = write_submission(self.task, names[i], idx, preds, out)
            log.info("wrote %s (%d rows)", path, len(idx))
