"""What a run tells its loggers: the W&B job type, the whole resolved config flattened (W&B config, the
CSV logger's hparams.yaml), and the final metrics as the W&B summary and a one-row `results` table."""

from __future__ import annotations

from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from bertlab.resume import logger_resume_kwargs
from bertlab.run_plan import RunPlan


def job_type(cfg: DictConfig) -> str:
    """The W&B job type: pretrain or finetune for mode=fit, else the mode (test, predict)."""
    if cfg.mode != "fit":
        return str(cfg.mode)
    return "pretrain" if cfg.task.name == "pretrain" else "finetune"


def build_logger(cfg: DictConfig, logger: DictConfig) -> Any:
    """A logger from its config; a `job_type: null` (W&B) becomes this run's `job_type(cfg)`. A resumed
    fit continues the run folder's logs (the CSV version, the W&B run id: `resume.logger_resume_kwargs`)."""
    extra: dict[str, Any] = {}
    if cfg.mode == "fit" and cfg.get("ckpt"):
        extra = logger_resume_kwargs(OmegaConf.to_container(logger, resolve=True))  # type: ignore[arg-type]
    if "job_type" in logger and logger.job_type is None:
        return instantiate(logger, job_type=job_type(cfg), **extra)
    return instantiate(logger, **extra)


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


# the `results` table's setting columns (name -> config key): what tells one run of a sweep from another
RESULT_COLUMNS = {
    "task": "task.name",
    "mode": "mode",
    "lr": "task.module.optimizer.lr",
    "batch_size": "data.batch_size",
    "epochs": "trainer.max_epochs",
    "max_steps": "trainer.max_steps",
    "seed": "seed",
    "pretrained": "pretrained",
}


def results_row(cfg: DictConfig, metrics: dict[str, float]) -> tuple[list[str], list[Any]]:
    """The `results` table's columns and its one row: the run's setting (`RESULT_COLUMNS`), then each metric."""
    setting = [OmegaConf.select(cfg, key, default=None) for key in RESULT_COLUMNS.values()]
    return [*RESULT_COLUMNS, *metrics], [*setting, *metrics.values()]


def log_summary(trainer: L.Trainer, metrics: dict[str, float], cfg: DictConfig) -> None:
    """The final metrics (metrics.json) into the W&B run summary, and as a one-row `wandb.Table`
    named `results` (setting, then metrics), which W&B's UI stacks across a sweep's runs."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and metrics:
            columns, row = results_row(cfg, metrics)
            logger.log_table("results", columns=columns, data=[row])
            logger.experiment.summary.update(metrics)


__all__ = ["build_logger", "flat_config", "job_type", "log_config", "log_summary", "results_row"]
