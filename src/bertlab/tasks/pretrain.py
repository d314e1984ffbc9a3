"""Pre-training: masked language modelling + next sentence prediction (loss = MLM + NSP), or with
`objective=mlm` (the paper's "No NSP" ablation, Table 5) MLM alone: a `BertForMaskedLM` with no pooler and
no NSP classifier, loss = MLM loss, fed by `data.nsp=false` segments (`task=pretrain_mlm` sets both).
With `objective=ltr` ("LTR & No NSP") a `BertLMHeadModel` (causal encoder, `model.is_decoder=true`) predicts
every next token of unmasked segments (`data.mlm_probability=0`): loss = LM loss, logged as `lm_loss`,
`lm_acc` and `perplexity` (`task=pretrain_ltr` sets all four).

`mode=test` scores a checkpoint as it is (`pretrained=` a transformers folder or bertlab .ckpt, or `ckpt=`):
`test/mlm_acc`, `test/perplexity`, `test/nsp_acc` and the losses on held-out documents. A checkpoint
without the MLM head (an encoder-only BertModel, e.g. a sentence-embedding model) is refused in one line
rather than scored with a random head; one with the MLM head but no NSP head (BertForMaskedLM) is scored
on MLM only, NSP skipped (no `test/nsp_*` or `test/loss`), with a warning.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric

from bertlab.model.checkpoint import CheckpointError, load_checkpoint
from bertlab.model.heads import BertForMaskedLM, BertForPreTraining, BertLMHeadModel, next_token_targets
from bertlab.tasks.base import BertTask

log = logging.getLogger(__name__)
MLM_HEAD = ("cls.predictions.",)
NSP_HEAD = ("cls.seq_relationship.", "bert.pooler.")  # the NSP classifier reads the pooled [CLS]
OBJECTIVES = ("mlm_nsp", "mlm", "ltr")
MODELS = {"mlm_nsp": BertForPreTraining, "mlm": BertForMaskedLM, "ltr": BertLMHeadModel}


class ObjectiveError(ValueError):
    """`task.module.objective` does not fit the model config or the data: one line naming the keys to set."""


def pretraining_model(task: BertTask) -> tuple[nn.Module, list[str]]:
    """The objective's model (`MODELS`) with `task.pretrained` loaded (heads it lacks start fresh), and
    those fresh keys. A causal encoder (`is_decoder`) goes with `objective=ltr` and only with it."""
    objective = getattr(task, "objective", "mlm_nsp")
    causal = bool(task.model_config.is_decoder)
    if causal != (objective == "ltr"):
        why = "a left-to-right LM needs" if objective == "ltr" else "a masked LM must not have"
        # with pretrained= the checkpoint's config.json decides is_decoder (run_plan.model_config)
        fix = (
            f"use a checkpoint with is_decoder {str(not causal).lower()} or pretrained=null, or "
            f"{'task=pretrain_ltr' if causal else 'task=pretrain_mlm (or pretrain)'} to use it as it is"
            if task.pretrained
            else f"set model.is_decoder={str(not causal).lower()} (task=pretrain_ltr sets up the LTR model)"
        )
        flag = f"is_decoder={str(causal).lower()}"
        where = f"pretrained={task.pretrained} ({flag} in its config)" if task.pretrained else f"model.{flag}"
        # fill_mask (no objective of its own) scores a masked LM too
        what = f"task.module.objective={objective}" if hasattr(task, "objective") else "masked-LM scoring"
        raise ObjectiveError(f"{what} with {where}: {why} causal attention; {fix}")
    model = MODELS[objective](task.model_config)
    fresh = load_checkpoint(model, task.pretrained, new_heads=True) if task.pretrained else []
    return model, fresh


def check_mlm_head(pretrained: str | None, fresh: list[str], use: str) -> None:
    """Raise a one-line CheckpointError when `pretrained` had no MLM head (`use` says what needed it)."""
    missing = [k for k in fresh if k.startswith(MLM_HEAD)]
    if missing:
        raise CheckpointError(
            f"pretrained={pretrained} has no masked-LM head (missing {', '.join(missing)}): it is an "
            f"encoder-only checkpoint, and {use} with a random head would be meaningless; pass a checkpoint "
            "saved with its pre-training heads (a bertlab pre-training .ckpt or export folder, or a "
            "transformers BertForPreTraining / BertForMaskedLM folder such as bert-base-uncased)"
        )


class PreTrainingTask(BertTask):
    """Trains BertForPreTraining; logs mlm_loss, nsp_loss, mlm_acc, nsp_acc and perplexity (`objective=ltr`:
    lm_loss, lm_acc and perplexity)."""

    def __init__(
        self,
        model_config: dict[str, Any],
        objective: str = "mlm_nsp",
        **shared: Any,
    ) -> None:
        if objective not in OBJECTIVES:
            raise ObjectiveError(f"task.module.objective={objective!r}: use one of {', '.join(OBJECTIVES)}")
        super().__init__(model_config, **shared)
        self.objective = objective
        self.model, self.fresh = pretraining_model(self)
        # False: MLM only, or the evaluated checkpoint has no NSP head (check_heads)
        self.score_nsp = objective == "mlm_nsp"
        self.lm = "lm" if objective == "ltr" else "mlm"  # the LM metrics' prefix
        # token-weighted mean MLM loss per evaluation stage, for that stage's perplexity
        self.eval_mlm_loss = nn.ModuleDict({stage: MeanMetric() for stage in ("val", "test")})

    def check_heads(self) -> None:
        """Before mode=test scores `pretrained` as it is: no MLM head is an error, no NSP head skips NSP."""
        check_mlm_head(self.pretrained, self.fresh, "held-out MLM accuracy and perplexity")
        if not self.score_nsp:
            return
        missing = [k for k in self.fresh if k.startswith(NSP_HEAD)]
        if missing:
            self.score_nsp = False
            log.warning(
                "pretrained=%s has no next-sentence head (missing %s): NSP skipped, MLM only "
                "(no test/nsp_acc, test/nsp_loss or test/loss)",
                self.pretrained,
                ", ".join(missing),
            )

    def ltr_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Next-token loss and accuracy of one batch of unmasked segments; the vocabulary projection runs
        where a next token exists (`next_token_targets`)."""
        if "next_sentence_label" in batch:
            raise ObjectiveError(
                "task.module.objective=ltr reads whole segments, but data.nsp=true built sentence pairs with "
                "random next sentences: set data.nsp=false (or use task=pretrain_ltr)"
            )
        if "mlm_labels" in batch and bool((batch["mlm_labels"] != -100).any()):
            raise ObjectiveError(
                "task.module.objective=ltr must read the original tokens, but the batch was masked for MLM: "
                "set data.mlm_probability=0 (or use task=pretrain_ltr)"
            )
        ids, mask = batch["input_ids"], batch["attention_mask"]
        positions, targets = next_token_targets(ids, mask)  # (B, T) bool, (M,)
        logits = self.model(ids, mask, batch["token_type_ids"], masked_positions=positions)  # (M, V)
        loss = F.cross_entropy(logits.float(), targets)
        return {
            "loss": loss,
            "lm_loss": loss,
            "lm_acc": (logits.argmax(-1) == targets).float().mean(),
            "num_masked": targets.new_tensor(targets.numel()),  # tokens predicted
        }

    def step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Losses and accuracies of one batch; the vocabulary projection runs on masked positions only."""
        if self.objective == "ltr":
            return self.ltr_step(batch)
        labels = batch["mlm_labels"]
        masked = labels != -100
        inputs = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        if self.objective == "mlm":
            mlm_logits, nsp_logits = self.model(*inputs, masked_positions=masked), None
        else:
            if "next_sentence_label" not in batch:
                raise ObjectiveError(
                    "task.module.objective=mlm_nsp needs next-sentence pairs, but data.nsp=false built "
                    "none: set data.nsp=true, or task.module.objective=mlm (or use task=pretrain_mlm)"
                )
            mlm_logits, nsp_logits = self.model(*inputs, masked_positions=masked)
        targets = labels[masked]  # (M,)
        mlm_loss = F.cross_entropy(mlm_logits.float(), targets)
        out = {
            "loss": mlm_loss,
            "mlm_loss": mlm_loss,
            "mlm_acc": (mlm_logits.argmax(-1) == targets).float().mean(),
            "num_masked": targets.new_tensor(targets.numel()),
        }
        if nsp_logits is not None:
            nsp_loss = F.cross_entropy(nsp_logits.float(), batch["next_sentence_label"])
            out["loss"] = mlm_loss + nsp_loss
            out["nsp_loss"] = nsp_loss
            out["nsp_acc"] = (nsp_logits.argmax(-1) == batch["next_sentence_label"]).float().mean()
        return out

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        out = self.step(batch)
        size = batch["input_ids"].shape[0]
        lm = self.lm
        keys = ("loss", f"{lm}_loss", "nsp_loss", "nsp_acc")
        self.log_metrics("train", {k: out[k] for k in keys if k in out}, size, prog_bar=True)
        self.log_metrics(
            "train",
            {f"{lm}_acc": out[f"{lm}_acc"], "perplexity": out[f"{lm}_loss"].detach().exp()},
            int(out["num_masked"]),
        )
        return out["loss"]

    def eval_step(self, stage: str, batch: dict[str, Tensor], dataloader_idx: int) -> None:
        """Log one val/test batch's losses and accuracies; accumulate its (M)LM loss for the perplexity."""
        out = self.step(batch)
        size, masked, lm = batch["input_ids"].shape[0], int(out["num_masked"]), self.lm
        self.eval_mlm_loss[stage].update(out[f"{lm}_loss"], weight=masked)
        if self.score_nsp:
            nsp = {"loss": out["loss"], "nsp_loss": out["nsp_loss"], "nsp_acc": out["nsp_acc"]}
            self.log_metrics(stage, nsp, size)
        scores = {f"{lm}_loss": out[f"{lm}_loss"], f"{lm}_acc": out[f"{lm}_acc"]}
        self.log_metrics(stage, scores, masked, prog_bar=True)

    def eval_epoch_end(self, stage: str) -> None:
        """Log `stage/perplexity` of the epoch's token-weighted mean (M)LM loss, then reset it."""
        if stage not in self.eval_mlm_loss:  # predict: nothing was scored
            return
        # of the token-weighted mean loss, not the mean of per-batch perplexities
        self.log(f"{stage}/perplexity", torch.exp(self.eval_mlm_loss[stage].compute()), sync_dist=False)
        self.eval_mlm_loss[stage].reset()
