"""What a run derives from its config before anything is built: the encoder size and vocabulary
(`RunPlan`), and for mode=test|predict the checkpoint whose run is evaluated.

The composed config is read, never rewritten, with two documented exceptions: `mode=test|predict` reads
`model`, `task`, `data` (and `tokenizer`) back from the checkpoint (`read_back_checkpoint`), and a
resumed fit continues in its checkpoint's run folder (`run.continue_run`). What a run derives (the
encoder size from `pretrained=`, the vocabulary from the checkpoint or the one pre-training trains) is a
`RunPlan`, handed to the builders; the checkpoint's `run_config` records it in place of `model` and
`tokenizer`, so a `.ckpt` used later as `pretrained=` or `ckpt=` finds both.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from bertlab.data.base import BertDataModule
from bertlab.model.checkpoint import (
    SIZE_FIELDS,
    MissingCheckpointError,
    check_size,
    checkpoint_vocabulary,
    read_model_config,
    read_run_config,
)
from bertlab.model.config import BertConfig
from bertlab.renamed import upgrade_run_config
from bertlab.run_folder import resolve_eval_checkpoint

# model fields a fine-tuning run keeps from its own config when the size comes from pretrained=
RUN_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "unpad", "pooling")
# model keys that are not BertConfig fields: the preset's published checkpoint (fine-tuning's pretrained=)
PRESET_ONLY = ("hub_name",)
# tasks that score a pre-trained checkpoint with its own MLM/NSP heads, and the mode they do it in:
# there `pretrained=` stands in for a fine-tuned `ckpt=`
SCORES_PRETRAINED = {"pretrain": "test", "fill_mask": "predict"}


class ConfigError(ValueError):
    """A configuration that cannot run, with the fix in the message."""


def task_overrides() -> list[str]:
    """The command-line overrides of this job (empty outside a Hydra app)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def override_key(override: str) -> str:
    """`data.x` of `+data.x=1`, `~data.x` or `data.x=1`."""
    return override.lstrip("+~").split("=", 1)[0]


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


def evaluated_checkpoint(cfg: DictConfig) -> None:
    """mode=test|predict: `ckpt=` (a run folder: its best, else last checkpoint) is read back
    (`read_back_checkpoint`); the tasks of `SCORES_PRETRAINED` score `pretrained=` (a transformers folder
    or bertlab .ckpt) as it is instead. A ConfigError names what is missing."""
    task = cfg.task.name
    if task == "fill_mask" and (cfg.mode != "predict" or cfg.get("ckpt") or not cfg.get("pretrained")):
        raise ConfigError(
            "task=fill_mask runs with mode=predict on pretrained=<transformers folder or bertlab .ckpt> "
            f"(got mode={cfg.mode}, ckpt={cfg.get('ckpt')}, pretrained={cfg.get('pretrained')}); "
            "pass pretrained=<run>/export or pretrained=<run>/checkpoints/last.ckpt"
        )
    if cfg.mode == "fit":
        return
    if cfg.get("ckpt"):
        with open_dict(cfg):  # a run folder means its best checkpoint (else last.ckpt)
            cfg.ckpt = str(resolve_eval_checkpoint(cfg.ckpt))
        read_back_checkpoint(cfg)
    elif not (SCORES_PRETRAINED.get(task) == cfg.mode and cfg.get("pretrained")):
        also = (
            " (task=pretrain: or pretrained=<transformers folder or bertlab .ckpt>)"
            if task == "pretrain"
            else ""
        )
        raise ConfigError(f"mode={cfg.mode} needs ckpt= a run's folder or one of its .ckpt files{also}")


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
    model= or model.<size>= must agree), and the run keeps its own dropout, `unpad` and `pooling` (scoring a
    pre-trained model with its own heads keeps the checkpoint's pooling unless `model.pooling=` is given)."""
    configured: dict[str, Any] = OmegaConf.to_container(cfg.model, resolve=True)  # type: ignore[assignment]
    for key in PRESET_ONLY:
        configured.pop(key, None)
    if not cfg.get("pretrained"):
        return configured
    found = read_pretrained_config(cfg.pretrained)
    sized = ("model", *(f"model.{f}" for f in SIZE_FIELDS))
    overridden = {override_key(o) for o in task_overrides()}
    if overridden & set(sized):
        check_size(found, BertConfig.from_dict(configured), f"pretrained={cfg.pretrained}")
    kept = RUN_FIELDS
    if SCORES_PRETRAINED.get(cfg.task.name) == cfg.mode and "model.pooling" not in overridden:
        # scoring a pre-trained model with its own heads (NSP reads the pooled output): it is read the way
        # it was trained, as `ckpt=` is (read_back_checkpoint), unless the command line says otherwise
        kept = tuple(k for k in RUN_FIELDS if k != "pooling")
    values = found.to_dict() | {k: configured[k] for k in kept if k in configured}
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
    plan = RunPlan(model=model_config(cfg), tokenizer=tokenizer_source(cfg))
    check_model_values(plan.model, cfg)
    return plan


def check_model_values(model: dict[str, Any], cfg: DictConfig) -> None:
    """ConfigError naming the key when the encoder config is invalid (a dropout of 1.5, a size of 0) or
    `data.max_seq_length` exceeds its position embeddings (positions past them have no embedding)."""
    source = f"pretrained={cfg.pretrained}" if cfg.get("pretrained") else "model"
    try:
        config = BertConfig.from_dict(model)
    except (TypeError, ValueError) as err:  # BertConfig's messages start with the field's name
        sizes = f" (sizes come from {source}; dropout from model.*)" if cfg.get("pretrained") else ""
        raise ConfigError(f"model.{err}; set a valid value on the command line{sizes}") from None
    length = (cfg.get("data") or {}).get("max_seq_length")
    if isinstance(length, int) and length > config.max_position_embeddings:
        fix = (
            "or pre-train a model with more positions"
            if cfg.get("pretrained")
            else f"or set model.max_position_embeddings={length} (training from scratch)"
        )
        raise ConfigError(
            f"data.max_seq_length={length} exceeds the {config.max_position_embeddings} position embeddings "
            f"of {source}; set data.max_seq_length<={config.max_position_embeddings}, {fix}"
        )


__all__ = ["ConfigError", "RunPlan", "evaluated_checkpoint", "model_config", "plan_run", "task_overrides"]
