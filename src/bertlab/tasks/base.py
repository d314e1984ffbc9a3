"""What every task module shares: encoder build/load, weight-decay groups, warmup-linear schedule, FSDP.

Task modules subclass `BertTask`, build `self.model` with `build_model`, and log `stage/metric` keys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import lightning as L
import torch
from torch import nn
from torch.optim import Optimizer

from bertlab.model.config import BertConfig
from bertlab.model.convert import CheckpointError, load_state, read_config
from bertlab.tasks.schedule import warmup_linear

log = logging.getLogger(__name__)
M = TypeVar("M", bound=nn.Module)

SIZE_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")


def no_decay(name: str, param: nn.Parameter) -> bool:
    """Biases and LayerNorm weights get no weight decay (as the original BERT optimizer)."""
    return param.ndim < 2 or name.endswith(".bias") or "LayerNorm" in name


def lightning_checkpoint_state(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(model config dict, encoder+heads state with transformers names) from a bertlab .ckpt file."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    hparams = ckpt.get("hyper_parameters", {})
    if "model_config" not in hparams:
        raise CheckpointError(f"{path}: not a bertlab checkpoint (no model_config in hyper_parameters)")
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    return dict(hparams["model_config"]), state


def checkpoint_config(path: str | Path) -> BertConfig:
    """The encoder config stored in a transformers folder or a bertlab .ckpt."""
    p = Path(path)
    if p.is_file():
        return BertConfig.from_dict(lightning_checkpoint_state(p)[0])
    from bertlab.model.convert import resolve

    return read_config(resolve(p))


class BertTask(L.LightningModule):
    """Base LightningModule: holds `self.model`, builds optimizer groups and the schedule."""

    def __init__(
        self,
        model_config: dict[str, Any],
        pretrained: str | None = None,
        optimizer: Callable[..., Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__()
        # plain containers only: checkpoints must load under torch's weights_only default
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.model_config = BertConfig.from_dict(dict(model_config))
        self.pretrained = pretrained
        self.optimizer_factory = optimizer or partial(torch.optim.AdamW, lr=5e-5, weight_decay=0.01)
        self.scheduler_factory = scheduler or partial(warmup_linear, warmup_ratio=0.1)

    def build_model(self, cls: Callable[..., M], **kwargs: Any) -> M:
        """`cls(config, **kwargs)`, with the encoder (and heads it has) from `pretrained` when given."""
        model = cls(self.model_config, **kwargs)
        if self.pretrained:
            self.load_pretrained(model, self.pretrained)
        return model

    def load_pretrained(self, model: nn.Module, path: str) -> None:
        """Load a transformers folder, hub name or bertlab .ckpt into `model`; new heads stay fresh."""
        p = Path(path)
        if p.is_file():
            cfg_dict, state = lightning_checkpoint_state(p)
            cfg = BertConfig.from_dict(cfg_dict)
        else:
            from bertlab.model.convert import read_state_dict, resolve

            folder = resolve(path)
            cfg, state = read_config(folder), read_state_dict(folder)
        wrong = [
            f"{f}: checkpoint {getattr(cfg, f)} vs model {getattr(self.model_config, f)}"
            for f in SIZE_FIELDS
            if getattr(cfg, f) != getattr(self.model_config, f)
        ]
        if wrong:
            raise CheckpointError(
                f"{path} does not fit the configured model ({'; '.join(wrong)}); "
                "leave model= unset so the size is read from the checkpoint"
            )
        fresh = load_state(model, state, new_heads=True, source=str(path))
        log.info("loaded %s (fresh: %s)", path, fresh or "none")

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Two groups: with weight decay, and without (biases, LayerNorm)."""
        decay, plain = [], []
        for name, param in self.named_parameters():
            if param.requires_grad:
                (plain if no_decay(name, param) else decay).append(param)
        return [{"params": decay}, {"params": plain, "weight_decay": 0.0}]

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.optimizer_factory(self.parameter_groups())
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, num_training_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

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
