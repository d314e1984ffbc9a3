"""Build everything from the Hydra config, then fit / test / predict, write metrics.json and export.

The only module that knows Hydra. `train.py` is a thin `@hydra.main` over `main`.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf, open_dict

from bertlab.callbacks import ProgressLog
from bertlab.model.convert import CheckpointError, export_state
from bertlab.tasks.base import SIZE_FIELDS, checkpoint_config

log = logging.getLogger("bertlab")
MODES = ("fit", "test", "predict")


class ConfigError(ValueError):
    """A configuration that cannot run, with the fix in the message."""


def task_overrides() -> list[str]:
    """The command-line overrides of this job (empty outside a Hydra app)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


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
    `task.module.*` overrides win (another test file, another null threshold)."""
    path = Path(cfg.ckpt)
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint not found; pass ckpt= the .ckpt of a fine-tuning run")
    stored = (
        torch.load(path, map_location="cpu", weights_only=True).get("hyper_parameters", {}).get("run_config")
    )
    if not stored:
        raise ConfigError(f"{path}: has no run_config; it was not written by bertlab's train.py")
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
        cfg.pretrained = None  # the checkpoint's own weights are loaded below


def size_from_pretrained(cfg: DictConfig) -> None:
    """With pretrained=, the model size comes from the checkpoint; an explicit model= must agree."""
    ckpt_cfg = checkpoint_config(cfg.pretrained)
    explicit = any(o.lstrip("+~").split("=")[0] == "model" for o in task_overrides())
    if explicit:
        wrong = [
            f"{f}={cfg.model[f]} (checkpoint {getattr(ckpt_cfg, f)})"
            for f in SIZE_FIELDS
            if f in cfg.model and cfg.model[f] != getattr(ckpt_cfg, f)
        ]
        if wrong:
            raise ConfigError(
                f"model= does not match pretrained={cfg.pretrained}: {', '.join(wrong)}; "
                "drop model= to take the size from the checkpoint"
            )
    keep = {
        k: cfg.model[k]
        for k in ("hidden_dropout_prob", "attention_probs_dropout_prob", "unpad")
        if k in cfg.model
    }
    values = ckpt_cfg.to_dict() | keep
    values.pop("model_type", None)
    values.pop("position_embedding_type", None)
    with open_dict(cfg):
        cfg.model = OmegaConf.create(values)


def resolve_tokenizer(cfg: DictConfig) -> None:
    """tokenizer: null means the pretrained checkpoint's vocabulary (pre-training trains its own)."""
    if cfg.get("tokenizer") is not None or not cfg.get("pretrained"):
        return
    p = Path(cfg.pretrained)
    if p.is_file():  # a bertlab .ckpt: the run's export/ folder holds its vocab.txt
        stored = torch.load(p, map_location="cpu", weights_only=True).get("hyper_parameters", {})
        tok = stored.get("run_config", {}).get("tokenizer")
    else:
        tok = str(p)
    with open_dict(cfg):
        cfg.tokenizer = tok


def check_vocab(cfg: DictConfig, vocab_size: int, source: str, derived: bool) -> None:
    """The tokenizer and the embedding table must agree; a trained vocabulary sets the size."""
    if derived:
        with open_dict(cfg):
            cfg.model.vocab_size = vocab_size
        return
    if vocab_size != cfg.model.vocab_size:
        raise ConfigError(
            f"{source}: vocabulary has {vocab_size} tokens but the model has vocab_size={cfg.model.vocab_size}; "
            f"use the checkpoint's own vocab.txt, or set model.vocab_size={vocab_size} to train from scratch"
        )


def build_module(cfg: DictConfig, datamodule: L.LightningDataModule) -> L.LightningModule:
    """Instantiate the task module; label counts come from the datamodule."""
    target = get_class(cfg.task.module._target_)
    params = inspect.signature(target.__init__).parameters
    extra: dict[str, Any] = {}
    for name in ("num_labels", "label_names", "val_split_names"):
        if name in params and hasattr(datamodule, name):
            extra[name] = getattr(datamodule, name)
    return instantiate(
        cfg.task.module,
        model_config=OmegaConf.to_container(cfg.model, resolve=True),
        pretrained=cfg.get("pretrained"),
        _convert_="all",
        **extra,
    )


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
    from bertlab.data.tokenizer import save_vocab
    from bertlab.model.convert import save_pretrained

    state = export_state(module.model)
    if module.trainer.is_global_zero:
        vocab = save_vocab(tokenizer, out) if tokenizer is not None else None
        save_pretrained(module.model, out, vocab_file=vocab, lowercase=lowercase, state=state)
    return out


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
    elif cfg.get("pretrained"):
        size_from_pretrained(cfg)
    resolve_tokenizer(cfg)

    datamodule = instantiate(cfg.data, tokenizer=cfg.get("tokenizer"), _convert_="all")
    datamodule.prepare_data()
    tok = getattr(datamodule, "tokenizer", None)
    if tok is not None and hasattr(tok, "get_vocab_size"):
        check_vocab(
            cfg,
            tok.get_vocab_size(),
            str(cfg.get("tokenizer") or "trained vocabulary"),
            derived=cfg.get("tokenizer") is None,
        )
    # a vocabulary trained by this run is recorded, so a .ckpt used as pretrained= finds it again
    trained_vocab = getattr(datamodule, "vocab_path", None)
    if cfg.get("tokenizer") is None and trained_vocab:
        with open_dict(cfg):
            cfg.tokenizer = str(Path(trained_vocab).parent)

    module = build_module(cfg, datamodule)
    # the whole resolved config travels in the checkpoint (plain containers: weights_only loads work)
    module.hparams["run_config"] = OmegaConf.to_container(cfg, resolve=True)
    trainer = build_trainer(cfg)
    metrics: dict[str, float] = {}
    if cfg.mode == "fit":
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt"))
        metrics |= scalar_metrics(trainer.callback_metrics)
        for cb in trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(cb, ProgressLog):
                metrics |= cb.summary()
        if cfg.get("test_after_fit") and hasattr(datamodule, "test_dataloader"):
            metrics |= scalar_metrics(trainer.test(module, datamodule=datamodule)[0])
    else:
        state = torch.load(cfg.ckpt, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
        if cfg.mode == "test":
            results = trainer.test(module, datamodule=datamodule)
            metrics |= {k: v for r in results for k, v in scalar_metrics(r).items()}
        else:
            trainer.predict(module, datamodule=datamodule, return_predictions=False)
    metrics = {k: v for k, v in metrics.items() if not k.endswith("_step")}
    if trainer.is_global_zero:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    if cfg.mode == "fit" and cfg.get("export", True):
        folder = export(module, out / "export", tok, bool(getattr(datamodule, "lowercase", True)))
        ckpt_cb = trainer.checkpoint_callback
        if trainer.is_global_zero:
            best = getattr(ckpt_cb, "last_model_path", "") or getattr(ckpt_cb, "best_model_path", "")
            print(
                f"checkpoint: {best or '(none saved)'}\ntransformers export: {folder}\nmetrics: {out / 'metrics.json'}"
            )
    return metrics


__all__ = ["CheckpointError", "ConfigError", "main"]
