"""Build everything from the Hydra config, then fit / test / predict, write metrics.json and export.

The only module that runs a job from Hydra's config; `train.py` is a thin `@hydra.main` over `main`.
What the run derives before building (encoder size, vocabulary, the evaluated checkpoint) is
`bertlab.run_plan`; what it tells the loggers is `bertlab.run_logging`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, NoReturn

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, open_dict

from bertlab.acceleration import apply_knobs, check_knobs, cpu_precision, set_threads
from bertlab.callbacks import ProgressLog
from bertlab.checkpointing import STOPPED_EXIT_CODE, AtomicCheckpointIO
from bertlab.data.base import BertDataModule
from bertlab.data.tokenizer import save_vocab
from bertlab.model.checkpoint import (
    CheckpointError,
)
from bertlab.model.convert import export_state, write_folder
from bertlab.resume import (
    checkpoint_step,
    prepare_fit,
    resolve_fit_checkpoint,
    run_folder_of,
)
from bertlab.run_folder import BestCheckpoint
from bertlab.run_logging import build_logger, job_type, log_config, log_summary
from bertlab.run_plan import ConfigError, RunPlan, evaluated_checkpoint, plan_run

log = logging.getLogger("bertlab")
MODES = ("fit", "test", "predict")


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
        # SDPA's cuDNN backend builds a graph per new shape, and the padding-free path's length buckets
        # (and dynamic padding) bring new shapes nearly every batch: on an H200, bert_base pre-training ran
        # at 0.11x its model-only step (~450 ms/step building graphs), 0.91x with cuDNN attention off
        # (bench/pretrain_e2e.py --hardware gpu; README). Flash and memory-efficient kernels remain.
        torch.backends.cuda.enable_cudnn_sdp(False)


def build_trainer(cfg: DictConfig) -> L.Trainer:
    """Trainer from cfg.trainer (hardware presets write there), loggers and callbacks; checkpoint files
    are written atomically (`AtomicCheckpointIO`: a kill during a save leaves the previous one whole)."""
    loggers = [build_logger(cfg, c) for c in (cfg.get("logger") or {}).values() if c and "_target_" in c]
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c and "_target_" in c]
    if not loggers:  # LearningRateMonitor refuses a Trainer without a logger; metrics.json still has the rest
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    return instantiate(
        cfg.trainer,
        logger=loggers or False,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        _convert_="all",
    )


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


def best_checkpoint(trainer: L.Trainer) -> str | None:
    """checkpoints/best.ckpt if `BestCheckpoint` wrote one (None: no main metric, or no validation yet)."""
    for cb in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(cb, BestCheckpoint) and cb.best_model_path and Path(cb.best_model_path).is_file():
            return str(cb.best_model_path)
    return None


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    return {
        k: round(float(v), 6)
        for k, v in sorted(metrics.items())
        if torch.is_tensor(v) or isinstance(v, float)
    }


def stop_after_signal(trainer: L.Trainer, out: Path) -> NoReturn:
    """End a run that SIGTERM stopped: `metrics.json` of the part that ran, marked unfinished (no metric
    at its top level, so tables count the run as not finished), one line saying where the checkpoint is
    and how to resume, and exit status 143 (128 + SIGTERM), never 0."""
    partial = scalar_metrics(trainer.callback_metrics)
    for cb in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(cb, ProgressLog):
            partial |= cb.summary()
    ckpt = getattr(trainer.checkpoint_callback, "last_model_path", "") or None
    if trainer.is_global_zero:
        stopped = {"signal": "SIGTERM", "step": trainer.global_step, "checkpoint": ckpt}
        text = json.dumps({"stopped": stopped, "partial": partial}, indent=2) + "\n"
        (out / "metrics.json").write_text(text, encoding="utf-8")
        where = f"checkpoint {ckpt}; resume with the same command and ckpt={out}" if ckpt else "no checkpoint"
        log.warning("stopped by SIGTERM at step %d: %s", trainer.global_step, where)
    raise SystemExit(STOPPED_EXIT_CODE)


def continue_run(cfg: DictConfig) -> int | None:
    """mode=fit with ckpt=: the checkpoint to resume (a .ckpt; a run folder's newest; `last`, the newest
    of this task's run folders beside this one) into `cfg.ckpt`, and the run continues in the checkpoint's
    run folder (`paths.output_dir`; `python train.py` points Hydra there already). Returns the
    checkpoint's step (None: unknown). The second documented edit of the composed config.
    """
    here = Path(cfg.paths.output_dir)
    ckpt = resolve_fit_checkpoint(str(cfg.ckpt), outputs=here.parent)
    step = checkpoint_step(ckpt)  # first: a file that is no checkpoint stops here, in one line
    folder = run_folder_of(ckpt)
    with open_dict(cfg):
        cfg.ckpt = str(ckpt)
        if folder is not None and folder.resolve() != here.resolve():
            cfg.paths.output_dir = str(folder)
    log.info("resuming %s: the run continues in %s", ckpt, folder or here)
    return step


def main(cfg: DictConfig) -> dict[str, float]:
    """Run one job; returns the final metrics (also written to `<run dir>/metrics.json`)."""
    if cfg.mode not in MODES:
        raise ConfigError(f"mode={cfg.mode} is not one of {MODES}")
    set_environment(cfg)
    knobs = check_knobs(cfg.get("hardware") or {})  # compile, threads, activation_checkpointing
    if cfg.get("hardware") and cfg.hardware.get("precision") == "auto":
        with open_dict(cfg):
            cfg.hardware.precision = cpu_precision("auto", cfg.hardware.get("accelerator"))
    set_threads(knobs.threads)  # before the data and the model are built
    resume_step = continue_run(cfg) if cfg.mode == "fit" and cfg.get("ckpt") else None
    out = run_dir(cfg)
    evaluated_checkpoint(cfg)  # mode=test|predict: ckpt= is read back, or pretrained= scored as it is
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
    if cfg.mode == "fit" or plan.tokenizer is None:  # else trainer.test/predict prepares its stage's data
        datamodule.prepare_data()
    plan = plan.with_vocabulary(datamodule)

    module = instantiate(
        cfg.task.module, model_config=plan.model, pretrained=cfg.get("pretrained"), _convert_="all"
    )
    apply_knobs(knobs, module)
    if cfg.mode != "fit" and hasattr(module, "check_heads"):
        module.check_heads()  # before any data is read: a head the checkpoint lacks would score at random
    module.hparams["run_config"] = plan.run_config(cfg)
    trainer = build_trainer(cfg)
    if cfg.mode == "fit":  # RNG states in checkpoints; a resume continues the run's logs
        prepare_fit(trainer, resume_step, resuming=bool(cfg.get("ckpt")))
    log_config(trainer, cfg, plan)
    metrics: dict[str, float] = {}
    if cfg.mode == "fit":
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt"))
        except SIGTERMException:  # preemption: last.ckpt is written (PeriodicCheckpoint); no test, no export
            stop_after_signal(trainer, out)
        metrics |= scalar_metrics(trainer.callback_metrics)
        for cb in trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(cb, ProgressLog):
                metrics |= cb.summary()
        if cfg.get("test_after_fit") and has_test_data(datamodule):
            # the best validation's weights when best.ckpt was kept (as mode=test scores a run folder);
            # the export below stays the final weights, as without test_after_fit
            best = trainer.strategy.broadcast(best_checkpoint(trainer))
            final = {k: v.detach().clone() for k, v in module.state_dict().items()} if best else None
            kept = {"ckpt_path": best, "weights_only": True} if best else {}
            results = trainer.test(module, datamodule=datamodule, **kept)
            metrics |= {k: v for r in results for k, v in scalar_metrics(r).items()}
            if final is not None:
                module.load_state_dict(final)
    elif cfg.mode == "test":
        results = trainer.test(module, datamodule=datamodule, ckpt_path=cfg.ckpt, weights_only=True)
        metrics |= {k: v for r in results for k, v in scalar_metrics(r).items()}
        log.info("test: %s", ", ".join(f"{k}={v:.6g}" for k, v in metrics.items()) or "no metrics")
    else:
        trainer.predict(
            module, datamodule=datamodule, ckpt_path=cfg.ckpt, weights_only=True, return_predictions=False
        )
    metrics = {k: v for k, v in metrics.items() if not k.endswith("_step")}
    if trainer.is_global_zero:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        log_summary(trainer, metrics, cfg)
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
