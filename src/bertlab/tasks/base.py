"""What every task module shares: encoder build/load, weight-decay groups, warmup-linear schedule, FSDP,
and one evaluation path.

Task modules subclass `BertTask`, build `self.model` with `build_model`, and log `stage/metric` keys.
Lightning's val/test/predict hooks all land in three methods a task overrides: `eval_step(stage, batch,
dataloader_idx)`, `eval_epoch_end(stage)` (stage is "val", "test" or "predict") and `predict_step`.
What a task may ask of its data goes through `self.datamodule` (a `BertDataModule`): `split_names(stage)`
and `split(name)`, declared in `bertlab.data.base`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, TypeVar

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Timer
from torch import nn
from torch.optim import Optimizer

from bertlab.data.base import BertDataModule
from bertlab.model.checkpoint import load_checkpoint
from bertlab.model.config import BertConfig
from bertlab.tasks.continuation import continue_training
from bertlab.tasks.schedule import ScheduleError, warmup_linear

M = TypeVar("M", bound=nn.Module)


def no_decay(name: str, param: nn.Parameter) -> bool:
    """Biases and LayerNorm weights get no weight decay (as the original BERT optimizer)."""
    return param.ndim < 2 or name.endswith(".bias") or "LayerNorm" in name


def is_body(name: str) -> bool:
    """Whether a parameter is the encoder's body (embeddings, transformer layers) rather than a head on it."""
    return ".embeddings." in f".{name}" or ".encoder." in f".{name}"


def gather_objects(obj: Any) -> list[Any]:
    """`[obj]` of every rank (a list of one outside distributed runs); picklable objects of any size."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


class BertTask(L.LightningModule):
    """Base LightningModule: holds `self.model`, builds optimizer groups and the schedule."""

    def __init__(
        self,
        model_config: dict[str, Any],
        pretrained: str | None = None,
        optimizer: Callable[..., Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        continue_from: str | None = None,
        head_lr_scale: float = 1.0,
    ) -> None:
        super().__init__()
        # plain containers only: checkpoints must load under torch's weights_only default
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.model_config = BertConfig.from_dict(dict(model_config))
        self.pretrained = pretrained
        # a .ckpt whose optimizer, schedule and step count fit continues (tasks/continuation.py)
        self.continue_from = continue_from
        if head_lr_scale <= 0:
            raise ScheduleError(
                f"task.module.head_lr_scale={head_lr_scale}: the head's lr is optimizer.lr times this; use a "
                "positive number (1: one lr for every weight)"
            )
        self.head_lr_scale = head_lr_scale
        self.optimizer_factory = optimizer or partial(torch.optim.AdamW, lr=5e-5, weight_decay=0.01)
        self.scheduler_factory = scheduler or partial(warmup_linear, warmup_ratio=0.1)

    def build_model(self, cls: Callable[..., M], **kwargs: Any) -> M:
        """`cls(config, **kwargs)`, with the encoder (and heads it has) from `pretrained` when given."""
        model = cls(self.model_config, **kwargs)
        if self.pretrained:
            load_checkpoint(model, self.pretrained, new_heads=True)
        return model

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Two groups: with weight decay, and without (biases, LayerNorm). With `head_lr_scale` != 1, two more
        for the head (all but the embeddings and encoder layers: pooler, classifier, MLM transform) at
        optimizer.lr × head_lr_scale: a head that starts from random reads features sooner."""
        groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
        for name, param in self.named_parameters():
            if param.requires_grad:
                head = self.head_lr_scale != 1 and not is_body(name)
                groups.setdefault((head, no_decay(name, param)), []).append(param)
        out = [
            {"params": groups.get((False, False), [])},
            {"params": groups.get((False, True), []), "weight_decay": 0.0},
        ]
        if self.head_lr_scale != 1:
            base = getattr(self.optimizer_factory, "keywords", {}).get("lr")
            if base is None:
                raise ScheduleError(
                    f"task.module.head_lr_scale={self.head_lr_scale} scales task.module.optimizer.lr, which is "
                    "not set: set it, or head_lr_scale=1"
                )
            lr = base * self.head_lr_scale
            out += [
                {"params": groups.get((True, False), []), "lr": lr},
                {"params": groups.get((True, True), []), "weight_decay": 0.0, "lr": lr},
            ]
        return out

    def configure_optimizers(self) -> dict[str, Any]:
        """The optimizer over `parameter_groups`, stepped by the schedule per optimizer step; the schedule's
        length is this run's unless `scheduler.total_steps` says otherwise (tasks/schedule.py)."""
        try:
            optimizer = self.optimizer_factory(self.parameter_groups())
        except ValueError as err:  # torch's "Invalid learning rate: -1" names no config key
            raise ScheduleError(
                f"task.module.optimizer: {err}; set task.module.optimizer.lr (and betas, eps, "
                "weight_decay) to valid values"
            ) from None
        total = self.trainer.estimated_stepping_batches  # inf when only max_time bounds the run
        scheduler = self.scheduler_factory(
            optimizer, num_training_steps=total, time_fraction=self.time_fraction()
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def time_fraction(self) -> Callable[[], float] | None:
        """The share of `trainer.max_time` used so far (Lightning's Timer, validation included), for a
        time-budget schedule; None without max_time. Several processes take the furthest rank's share
        (one tiny all-reduce per step), so every rank steps with the same lr."""
        timer = next((cb for cb in self.trainer.callbacks if isinstance(cb, Timer)), None)
        if timer is None or timer._duration is None:
            return None
        duration = float(timer._duration)

        def fraction() -> float:
            used = timer.time_elapsed("train") / duration
            if self.trainer.world_size > 1:
                used = float(
                    self.trainer.strategy.reduce(torch.tensor(used, device=self.device), reduce_op="max")
                )
            return used

        return fraction

    def on_fit_start(self) -> None:
        """With `continue_from`: carry that run's optimizer state, schedule and step count on (the optimizers
        exist by now; the first batch is still to come). Not when resuming this run's own checkpoint (ckpt=),
        whose restore brings all of that back itself."""
        if self.continue_from and not self.trainer.ckpt_path:
            continue_training(self.trainer, self, self.continue_from)

    def configure_gradient_clipping(
        self,
        optimizer: Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip the global gradient norm (1.0 as the original BERT), also for fused optimizers.

        Lightning refuses clipping with fused AdamW because of fp16 loss scaling; bf16 and fp32 have no
        scaler, so the gradients are already true and clipping them here is exact.
        """
        if not gradient_clip_val:
            return
        if getattr(self.trainer.precision_plugin, "scaler", None) is not None:
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        if gradient_clip_algorithm == "value":
            torch.nn.utils.clip_grad_value_(self.parameters(), gradient_clip_val)
        else:
            torch.nn.utils.clip_grad_norm_(self.parameters(), gradient_clip_val)

    def encoder_layers(self) -> Iterator[nn.Module]:
        """The Transformer layers, the unit FSDP shards by."""
        yield from self.model.bert.encoder.layer  # type: ignore[union-attr]

    def configure_model(self) -> None:
        """Under ModelParallelStrategy (hardware=fsdp): FSDP2 `fully_shard` per encoder layer, then the root."""
        mesh = getattr(self, "device_mesh", None)
        if mesh is None:
            return
        from torch.distributed.fsdp import fully_shard

        dp = mesh["data_parallel"]
        for layer in self.encoder_layers():
            fully_shard(layer, mesh=dp)
        fully_shard(self.model, mesh=dp)

    def log_metrics(
        self, stage: str, values: dict[str, torch.Tensor | float], batch_size: int, **kw: Any
    ) -> None:
        """Log `{stage}/{name}` for each value (epoch-averaged, weighted by batch_size)."""
        on_step = stage == "train"
        self.log_dict(
            {f"{stage}/{k}": v for k, v in values.items()},
            batch_size=batch_size,
            on_step=on_step,
            on_epoch=not on_step,
            sync_dist=not on_step,
            **kw,
        )

    # -- one evaluation path -------------------------------------------------------------------------
    @property
    def datamodule(self) -> BertDataModule:
        """The trainer's DataModule, through the interface `bertlab.data.base` declares."""
        dm = getattr(self.trainer, "datamodule", None)
        if not isinstance(dm, BertDataModule):
            raise RuntimeError(f"{type(self).__name__} needs a BertDataModule; got {type(dm).__name__}")
        return dm

    def eval_step(self, stage: str, batch: dict[str, torch.Tensor], dataloader_idx: int) -> Any:
        """One val/test batch: update the stage's metrics (or collect rows for the epoch end)."""
        raise NotImplementedError

    def eval_epoch_start(self, stage: str) -> None:
        """Reset what `eval_step` collects (rows left by an interrupted epoch must not leak)."""

    def eval_epoch_end(self, stage: str) -> None:
        """Compute and log `stage/<metric>` (and write files), then reset."""

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> Any:
        return self.eval_step("val", batch, dataloader_idx)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> Any:
        return self.eval_step("test", batch, dataloader_idx)

    def on_validation_epoch_start(self) -> None:
        self.eval_epoch_start("val")

    def on_test_epoch_start(self) -> None:
        self.eval_epoch_start("test")

    def on_predict_epoch_start(self) -> None:
        self.eval_epoch_start("predict")

    def on_validation_epoch_end(self) -> None:
        self.eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self.eval_epoch_end("test")

    def on_predict_epoch_end(self) -> None:
        self.eval_epoch_end("predict")
