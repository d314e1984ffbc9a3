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
    SIZE_FIELDS,
    CheckpointError,
    MissingCheckpointError,
    check_size,
    checkpoint_vocabulary,
    read_model_config,
    read_run_config,
)
from bertlab.model.config import BertConfig
from bertlab.model.convert import export_state, write_folder
from bertlab.renamed import upgrade_run_config
from bertlab.run_folder import resolve_eval_checkpoint

log = logging.getLogger("bertlab")
MODES = ("fit", "test", "predict")
# model fields a fine-tuning run keeps from its own config when the size comes from pretrained=
RUN_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "unpad")
# model keys that are not BertConfig fields: the preset's published checkpoint (fine-tuning's pretrained=)
PRESET_ONLY = ("hub_name",)


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
    path = Path(cfg.ckpt)  # an existing file: resolve_eval_checkpoint said where it looked otherwise
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


def read_pretrained_config(name: str) -> BertConfig:
    """The encoder config of pretrained=; a checkpoint that cannot be had is one line with the run's fixes."""
    try:
        return read_model_config(name)
    except MissingCheckpointError as err:
        online = " or go online to download it," if err.online else ""
        fix = (
            f"pass pretrained=<local folder with config.json and weights>{online} "
            "or pretrained=null to fine-tune from random initialisation (no pre-training)"
        )
        raise MissingCheckpointError(f"pretrained={name}", err.reason, err.where, err.online, fix) from err


def model_config(cfg: DictConfig) -> dict[str, Any]:
    """cfg.model without the preset's `hub_name`; with pretrained= the size is the checkpoint's (an explicit
    model= or model.<size>= must agree), and the run keeps its own dropout and `unpad`."""
    configured: dict[str, Any] = OmegaConf.to_container(cfg.model, resolve=True)  # type: ignore[assignment]
    for key in PRESET_ONLY:
        configured.pop(key, None)
    if not cfg.get("pretrained"):
        return configured
    found = read_pretrained_config(cfg.pretrained)
    sized = ("model", *(f"model.{f}" for f in SIZE_FIELDS))
    if any(override_key(o) in sized for o in task_overrides()):
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


def job_type(cfg: DictConfig) -> str:
    """The W&B job type: pretrain or finetune for mode=fit, else the mode (test, predict)."""
    if cfg.mode != "fit":
        return str(cfg.mode)
    return "pretrain" if cfg.task.name == "pretrain" else "finetune"


def build_logger(cfg: DictConfig, logger: DictConfig) -> Any:
    """A logger from its config; a `job_type: null` (W&B) becomes this run's `job_type(cfg)`."""
    if "job_type" in logger and logger.job_type is None:
        return instantiate(logger, job_type=job_type(cfg))
    return instantiate(logger)


def flat_config(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys (`task.module.optimizer.lr`); lists and `{}` stay values."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            out |= flat_config(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def log_config(trainer: L.Trainer, cfg: DictConfig, plan: RunPlan) -> None:
    """Every logger (W&B config, the CSV logger's hparams.yaml) gets the whole resolved config, flattened,
    with the encoder and tokenizer the run actually uses (`plan`) over the configured ones."""
    resolved: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    values = flat_config(resolved) | flat_config({"model": plan.model, "tokenizer": plan.tokenizer})
    for logger in trainer.loggers:
        logger.log_hyperparams(values)


def log_summary(trainer: L.Trainer, metrics: dict[str, float]) -> None:
    """The final metrics (metrics.json) into the W&B run summary."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and metrics:
            logger.experiment.summary.update(metrics)


def build_trainer(cfg: DictConfig) -> L.Trainer:
    """Trainer from cfg.trainer (hardware presets write there), loggers and callbacks."""
    loggers = [build_logger(cfg, c) for c in (cfg.get("logger") or {}).values() if c and "_target_" in c]
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c and "_target_" in c]
    if not loggers:  # LearningRateMonitor refuses a Trainer without a logger; metrics.json still has the rest
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    return instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks, _convert_="all")


def export(module: L.LightningModule, out: Path, tokenizer: Any, lowercase: bool) -> Path:
    """Write the transformers-format folder with the run's vocabulary (vocab.txt + tokenizer.json) and
    the task's label names (config.json `id2label`, for classification and NER).

    Collective under FSDP: every rank gathers the shards, rank 0 writes.
    """
    state = export_state(module.model)
    if module.trainer.is_global_zero:
        vocab = save_vocab(tokenizer, out) if tokenizer is not None else None
        labels = getattr(module, "label_names", None)
        write_folder(
            module.model, out, vocab_file=vocab, lowercase=lowercase, state=state, label_names=labels
        )
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
    out = run_dir(cfg)
    if cfg.mode != "fit":
        if not cfg.get("ckpt"):
            raise ConfigError(
                f"mode={cfg.mode} needs ckpt= a fine-tuning run's folder or one of its .ckpt files"
            )
        with open_dict(cfg):  # a run folder means its best checkpoint (else last.ckpt)
            cfg.ckpt = str(resolve_eval_checkpoint(cfg.ckpt))
        read_back_checkpoint(cfg)
    plan = plan_run(cfg)  # first: a checkpoint that cannot be had stops the run before anything is printed
    if cfg.mode == "fit" and job_type(cfg) == "finetune" and not cfg.get("pretrained"):
        if plan.tokenizer is None:
            raise ConfigError(
                "pretrained=null fine-tunes from random initialisation, which brings no vocabulary; pass "
                "tokenizer=<vocab.txt, tokenizer.json or a checkpoint folder>"
            )
        log.info("no pre-training: random initialisation (pretrained=null)")
    L.seed_everything(cfg.seed, workers=True, verbose=False)  # the seed is in the logged config

    datamodule = instantiate(cfg.data, tokenizer=plan.tokenizer, _convert_="all")
    datamodule.prepare_data()
    plan = plan.with_vocabulary(datamodule)

    module = instantiate(
        cfg.task.module, model_config=plan.model, pretrained=cfg.get("pretrained"), _convert_="all"
    )
    module.hparams["run_config"] = plan.run_config(cfg)
    trainer = build_trainer(cfg)
    log_config(trainer, cfg, plan)
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
        log_summary(trainer, metrics)
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
