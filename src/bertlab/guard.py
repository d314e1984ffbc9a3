"""Guarded training: a non-finite loss stops the run before the optimizer step, or skips that batch.

One NaN or inf loss, stepped on, turns every weight into NaN (Adam divides by the gradient's running
square) and every checkpoint saved after it is worthless. `NonFiniteGuard` looks at each training loss
before its backward pass (Lightning's `on_before_backward`), so:

- `action: stop` (the default) raises `NonFiniteLoss` naming the step, before backward and the optimizer
  step: the weights in memory, and `checkpoints/last.ckpt` on disk, are those from before the bad batch
  (the checkpoint-on-exception callback skips this error, so the last good checkpoint survives).
  `train.py` prints it as one line `error: ...` and exits 2.
- `action: skip` lets backward run, then drops that step's gradients before the optimizer sees them
  (`on_before_optimizer_step` sets every `.grad` to None: AdamW and LAMB skip parameters without a
  gradient, weight decay and moments included, as Lightning does for a `training_step` returning None).
  The count is logged as `train/skipped_nonfinite` and lands in `metrics.json`. With gradient
  accumulation the whole accumulated step is skipped. The learning-rate schedule still advances.

Under DDP every rank takes the same decision (one all-reduce of a flag per batch): a NaN on one rank
reaches every rank's gradients through the all-reduce anyway. The check reads the loss on the host once
per batch (one device sync), the price of never stepping on a NaN.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch.optim import Optimizer

log = logging.getLogger("bertlab")

ACTIONS = ("stop", "skip")
SKIPPED_KEY = "train/skipped_nonfinite"


class NonFiniteLoss(ValueError):
    """The training loss was NaN or inf at a step; the message names the step and the fixes."""


class GuardConfigError(ValueError):
    """`callbacks.nonfinite_guard` set to something it cannot do (train.py prints it as one line)."""


class NonFiniteGuard(Callback):
    """Stops (`action="stop"`) or skips (`action="skip"`) a training batch whose loss is not finite."""

    def __init__(self, action: Literal["stop", "skip"] = "stop") -> None:
        if action not in ACTIONS:
            raise GuardConfigError(
                f"callbacks.nonfinite_guard.action={action!r} must be one of {', '.join(ACTIONS)}"
            )
        self.action = action
        self.skipped = 0  # batches skipped so far (kept in checkpoints: a resumed run counts on)
        self._bad = False  # the current batch's loss was not finite (skip mode: drop its gradients)
        self._batch_idx = -1

    # -- the check ------------------------------------------------------------------------------------
    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._batch_idx = batch_idx

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor
    ) -> None:
        here = not bool(torch.isfinite(loss.detach()).all())
        # every rank decides alike: a rank that raised alone would leave the others waiting in all-reduce
        if not trainer.strategy.reduce_boolean_decision(here, all=False):
            return
        value = loss.detach().float().flatten()[0].item() if here else "non-finite on another rank"
        where = f"step {trainer.global_step} (epoch {trainer.current_epoch}, batch {self._batch_idx})"
        if self.action == "stop":
            raise NonFiniteLoss(
                f"training loss is {value} at {where}; stopped before the optimizer step, so the weights "
                "and checkpoints/last.ckpt are from before it. Lower task.module.optimizer.lr, check the "
                "data, or set callbacks.nonfinite_guard.action=skip to skip such batches"
            )
        self.skipped += 1
        log.warning("training loss is %s at %s: skipping this batch (%d so far)", value, where, self.skipped)
        self._bad = True  # its gradients (and those accumulated with it) never reach the optimizer

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Optimizer
    ) -> None:
        if not self._bad:
            return
        self._bad = False
        # no gradient, no update: torch's optimizers (and pytorch_optimizer's LAMB) skip such parameters
        for group in optimizer.param_groups:
            for param in group["params"]:
                param.grad = None

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.action == "skip":
            # on_step only: callback_metrics keeps the plain key, so run.main writes it to metrics.json
            pl_module.log(SKIPPED_KEY, float(self.skipped), on_step=True, on_epoch=False, batch_size=1)

    # -- resume ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = int(state_dict.get("skipped", 0))


__all__ = ["ACTIONS", "SKIPPED_KEY", "GuardConfigError", "NonFiniteGuard", "NonFiniteLoss"]
