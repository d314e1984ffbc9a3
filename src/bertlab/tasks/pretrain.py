"""Pre-training: masked language modelling + next sentence prediction (loss = MLM + NSP)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric

from bertlab.model.heads import BertForPreTraining
from bertlab.tasks.base import BertTask


class PreTrainingTask(BertTask):
    """Trains BertForPreTraining; logs mlm_loss, nsp_loss, mlm_acc, nsp_acc and perplexity."""

    def __init__(
        self,
        model_config: dict[str, Any],
        **shared: Any,
    ) -> None:
        super().__init__(model_config, **shared)
        self.model = self.build_model(BertForPreTraining)
        # token-weighted mean MLM loss per evaluation stage, for that stage's perplexity
        self.eval_mlm_loss = nn.ModuleDict({stage: MeanMetric() for stage in ("val", "test")})

    def step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Losses and accuracies of one batch; the vocabulary projection runs on masked positions only."""
        labels = batch["mlm_labels"]
        masked = labels != -100
        mlm_logits, nsp_logits = self.model(
            batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], masked_positions=masked
        )
        targets = labels[masked]  # (M,)
        mlm_loss = F.cross_entropy(mlm_logits.float(), targets)
        nsp_loss = F.cross_entropy(nsp_logits.float(), batch["next_sentence_label"])
        return {
            "loss": mlm_loss + nsp_loss,
            "mlm_loss": mlm_loss,
            "nsp_loss": nsp_loss,
            "mlm_acc": (mlm_logits.argmax(-1) == targets).float().mean(),
            "nsp_acc": (nsp_logits.argmax(-1) == batch["next_sentence_label"]).float().mean(),
            "num_masked": targets.new_tensor(targets.numel()),
        }

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        out = self.step(batch)
        size = batch["input_ids"].shape[0]
        self.log_metrics(
            "train", {k: out[k] for k in ("loss", "mlm_loss", "nsp_loss", "nsp_acc")}, size, prog_bar=True
        )
        self.log_metrics(
            "train",
            {"mlm_acc": out["mlm_acc"], "perplexity": out["mlm_loss"].detach().exp()},
            int(out["num_masked"]),
        )
        return out["loss"]

    def eval_step(self, stage: str, batch: dict[str, Tensor], dataloader_idx: int) -> None:
        """Log one val/test batch's losses and accuracies; accumulate its MLM loss for the perplexity."""
        out = self.step(batch)
        size, masked = batch["input_ids"].shape[0], int(out["num_masked"])
        self.eval_mlm_loss[stage].update(out["mlm_loss"], weight=masked)
        self.log_metrics(
            stage, {"loss": out["loss"], "nsp_loss": out["nsp_loss"], "nsp_acc": out["nsp_acc"]}, size
        )
        self.log_metrics(
            stage, {"mlm_loss": out["mlm_loss"], "mlm_acc": out["mlm_acc"]}, masked, prog_bar=True
        )

    def eval_epoch_end(self, stage: str) -> None:
        """Log `stage/perplexity` of the epoch's token-weighted mean MLM loss, then reset it."""
        if stage not in self.eval_mlm_loss:  # predict: nothing was scored
            return
        # of the token-weighted mean loss, not the mean of per-batch perplexities
        self.log(f"{stage}/perplexity", torch.exp(self.eval_mlm_loss[stage].compute()), sync_dist=False)
        self.eval_mlm_loss[stage].reset()
