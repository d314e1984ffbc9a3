"""Build everything from the Hydra config, then fit / test / predict, write metrics.json and export.

The only module that knows Hydra. `train.py` is a thin `@hydra.main` over `main`.

The composed config is read, never rewritten, with one documented exception: `mode=test|predict` reads
`model`, `task`, `data` (and `tokenizer`) back from the checkpoint (`read_back_checkpoint`). What a run
derives (the encoder size from `pretrained=`, the vocabulary from the checkpoint or the one pre-training
trains) is a `RunPlan`, computed and handed to the builders; the checkpoint's `run_config` records it in
place of `model` and `tokenizer`, so a `.ckpt` used later as `pretrained=` or `ckpt=` finds both.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf, open_dict

from bertlab.callbacks import ProgressLog
from bertlab.data.base import BertDataModule
from bertlab.data.tokenizer import save_vocab
from bertlab.model.checkpoint import (
    CheckpointError,
    check_size,
    checkpoint_vocabulary,
    read_model_config,
    read_run_config,
)
from bertlab.model.config import BertConfig
from bertlab.model.convert import export_state, write_folder
from bertlab.renamed import upgrade_run_config

log = logging.getLogger("bertlab")
MODES = ("fit", "test", "predict")
# model fields a fine-tuning run keeps from its own config when the size comes from pretrained=
RUN_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "unpad")


class ConfigError(ValueError):
    """A configuration that cannot run, with the fix in the message."""


def task_overrides() -> list[str]:
    """The command-line overrides of this job (empty outside a Hydra app)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def override_key(override: str) -> str:
    """`data.x` of `+data.x=1`, `~data.x` or `data.x=1`."""
    return override.lstrip("+~").split("=", 1)[0]


def run_dir(cfg: DictConfig) -> Path:
    """The run's output folder (hydra.run.dir / the sweep job's folder)."""
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out


def set_environment(cfg: DictConfig) -> None:
    """Keep W&B offline unless the user opted in, and every cache inside folders the user controls."""
    online = bool(cfg.get("logger") and cfg.logger.get("wandb", {}).get("offline") is False)
    os.environ.setdefault("WANDB_MODE", "online" if online else "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    cache = Path(cfg.paths.cache_dir)
    os.environ.setdefault("HF_HOME", str(cache / "huggingface"))
    os.environ.setdefault("HF_DATASETS_CACHE", str(cache / "datasets"))
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")


def read_back_checkpoint(cfg: DictConfig) -> None:
    """mode=test/predict with ckpt=: take model, task and data from the checkpoint; CLI `data.*` and
    `task.module.*` overrides win (another test file, another null threshold).

    The one place the composed config is edited: the checkpoint's run is what gets evaluated.
    """
    path = Path(cfg.ckpt)
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint not found; pass ckpt= the .ckpt of a fine-tuning run")
    stored = read_run_config(path)
    if not stored:
        raise ConfigError(f"{path}: has no run_config; it was not written by bertlab's train.py")
    stored = upgrade_run_config(stored)
    with open_dict(cfg):
        for key in ("model", "task", "data"):
            cfg[key] = OmegaConf.create(stored[key])
        if cfg.get("tokenizer") is None:
            cfg.tokenizer = stored.get("tokenizer")
        for override in task_overrides():
            if override.lstrip("+~").startswith(("data.", "task.module.")):
                # typed as Hydra types the command line (256 -> int, null -> None), not kept as a string
                parsed = OverridesParser.create().parse_override(override)
                OmegaConf.update(
                    cfg, parsed.key_or_group, None if parsed.is_delete() else parsed.value(), merge=True
                )
        cfg.pretrained = None  # the checkpoint's own weights are loaded by the trainer


@dataclass(frozen=True)
class RunPlan:
    """What a run derives from its config, handed to the builders instead of written back into it.

    model: the encoder config the task is built with. tokenizer: the vocabulary the data is read with
    (None: pre-training trains one, and `with_vocabulary` then records where it went).
    """

    model: dict[str, Any]
    tokenizer: str | None

    def with_vocabulary(self, datamodule: L.LightningDataModule) -> RunPlan:
        """Check the tokenizer against the embedding table; a trained vocabulary sets vocab_size and is
        recorded by its folder, so a .ckpt used as pretrained= finds it again."""
        if not isinstance(datamodule, BertDataModule):
            return self
        size = datamodule.tokenizer.get_vocab_size()
        if self.tokenizer is not None:
            if size != self.model["vocab_size"]:
                raise ConfigError(
                    f"{self.tokenizer}: vocabulary has {size} tokens but the model has "
                    f"vocab_size={self.model['vocab_size']}; use the checkpoint's own vocab.txt, "
                    f"or set model.vocab_size={size} to train from scratch"
                )
            return self
        trained = getattr(datamodule, "vocab_path", None)
        return replace(
            self,
            model=self.model | {"vocab_size": size},
            tokenizer=str(Path(trained).parent) if trained else None,
        )

    def run_config(self, cfg: DictConfig) -> dict[str, Any]:
        """The resolved config as the checkpoint stores it (plain containers: weights_only loads work)."""
        resolved = OmegaConf.to_container(cfg, resolve=True)
        return resolved | {"model": dict(self.model), "tokenizer": self.tokenizer}  # type: ignore[operator]


def model_config(cfg: DictConfig) -> dict[str, Any]:
    """cfg.model; with pretrained= the size is the checkpoint's (an explicit model= must agree), and the
    run keeps its own dropout and `unpad`."""
    configured: dict[str, Any] = OmegaConf.to_container(cfg.model, resolve=True)  # type: ignore[assignment]
    if not cfg.get("pretrained"):
        return configured
    found = read_model_config(cfg.pretrained)
    if any(override_key(o) == "model" for o in task_overrides()):
        check_size(found, BertConfig.from_dict(configured), f"pretrained={cfg.pretrained}")
    values = found.to_dict() | {k: configured[k] for k in RUN_FIELDS if k in configured}
    for key in ("model_type", "position_embedding_type"):
        values.pop(key, None)
    return values


def tokenizer_source(cfg: DictConfig) -> str | None:
    """tokenizer=, else the pretrained checkpoint's vocabulary, else None (pre-training trains one)."""
    if cfg.get("tokenizer") is not None or not cfg.get("pretrained"):
        return cfg.get("tokenizer")
    return checkpoint_vocabulary(cfg.pretrained)


def plan_run(cfg: DictConfig) -> RunPlan:
    """The encoder config and tokenizer of this run, before the data is prepared."""
    return RunPlan(model=model_config(cfg), tokenizer=tokenizer_source(cfg))


def build_trainer(cfg: DictConfig) -> L.Trainer:
    """Trainer from cfg.trainer (hardware presets write there), loggers and callbacks."""
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c and "_target_" in c]
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c and "_target_" in c]
    if not loggers:  # LearningRateMonitor refuses a Trainer without a logger; metrics.json still has the rest
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    return instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks, _convert_="all")


def export(module: L.LightningModule, out: Path, tokenizer: Any, lowercase: bool) -> Path:
    """Write the transformers-format folder with the run's vocabulary (vocab.txt + tokenizer.json).

    Collective under FSDP: every rank gathers the shards, rank 0 writes.
    """
    state = export_state(module.model)
    if module.trainer.is_global_zero:
        vocab = save_vocab(tokenizer, out) if tokenizer is not None else None
        write_folder(module.model, out, vocab_file=vocab, lowercase=lowercase, state=state)
    return out


def has_test_data(datamodule: L.LightningDataModule) -> bool:
    """Whether the data has a test split to score after fit (pre-training and file-less splits have none)."""
    if not isinstance(datamodule, BertDataModule):
        return hasattr(datamodule, "test_dataloader")
    return any(datamodule.has_split(name) for name in datamodule.split_names("test"))


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    return {
        k: round(float(v), 6)
        for k, v in sorted(metrics.items())
        if torch.is_tensor(v) or isinstance(v, float)
    }


def main(cfg: DictConfig) -> dict[str, float]:
    """Run one job; returns the final metrics (also written to `<run dir>/metrics.json`)."""
    if cfg.mode not in MODES:
        raise ConfigError(f"mode={cfg.mode} is not one of {MODES}")
    set_environment(cfg)
    L.seed_everything(cfg.seed, workers=True)
    out = run_dir(cfg)
    if cfg.mode != "fit":
        if not cfg.get("ckpt"):
            raise ConfigError(f"mode={cfg.mode} needs ckpt=PATH of a fine-tuned .ckpt")
        read_back_checkpoint(cfg)
    plan = plan_run(cfg)

    datamodule = instantiate(cfg.data, tokenizer=plan.tokenizer, _convert_="all")
    datamodule.prepare_data()
    plan = plan.with_vocabulary(datamodule)

    module = instantiate(
        cfg.task.module, model_config=plan.model, pretrained=cfg.get("pretrained"), _convert_="all"
    )
    module.hparams["run_config"] = plan.run_config(cfg)
    trainer = build_trainer(cfg)
    metrics: dict[str, float] = {}
    if cfg.mode == "fit":
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt"))
        metrics |= scalar_metrics(trainer.callback_metrics)
        for cb in trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(cb, ProgressLog):
                metrics |= cb.summary()
        if cfg.get("test_after_fit") and has_test_data(datamodule):
            metrics |= scalar_metrics(trainer.test(module, datamodule=datamodule)[0])
    elif cfg.mode == "test":
        results = trainer.test(module, datamodule=datamodule, ckpt_path=cfg.ckpt, weights_only=True)
        metrics |= {k: v for r in results for k, v in scalar_metrics(r).items()}
    else:
        trainer.predict(
            module, datamodule=datamodule, ckpt_path=cfg.ckpt, weights_only=True, return_predictions=False
        )
    metrics = {k: v for k, v in metrics.items() if not k.endswith("_step")}
    if trainer.is_global_zero:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    if cfg.mode == "fit" and cfg.get("export", True):
        tokenizer = datamodule.tokenizer if isinstance(datamodule, BertDataModule) else None
        folder = export(module, out / "export", tokenizer, bool(getattr(datamodule, "lowercase", True)))
        ckpt_cb = trainer.checkpoint_callback
        if trainer.is_global_zero:
            best = getattr(ckpt_cb, "last_model_path", "") or getattr(ckpt_cb, "best_model_path", "")
            log.info("checkpoint: %s", best or "(none saved)")
            log.info("transformers export: %s", folder)
            log.info("metrics: %s", out / "metrics.json")
    return metrics


__all__ = ["CheckpointError", "ConfigError", "RunPlan", "main"]
