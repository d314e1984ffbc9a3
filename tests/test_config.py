"""Every config group composes, every preset builds what it names, and bad names fail clearly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from bertlab.model import BertConfig
from tests.hydra_helpers import REPO, compose_cfg

MODELS = {  # layers, hidden, heads as the issue lists them
    "bert_tiny": (2, 128, 2),
    "bert_mini": (4, 256, 4),
    "bert_small": (4, 512, 8),
    "bert_medium": (8, 512, 8),
    "bert_base": (12, 768, 12),
    "bert_large": (24, 1024, 16),
}
HARDWARE = ["cpu", "gpu", "ddp", "fsdp"]
LOGGERS = ["wandb", "csv", "none"]


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("hardware", HARDWARE)
@pytest.mark.parametrize("logger", LOGGERS)
def test_every_model_hardware_logger_composes(tmp_path: Path, model: str, hardware: str, logger: str) -> None:
    cfg = compose_cfg([f"model={model}", f"hardware={hardware}", f"logger={logger}"], tmp_path)
    config = BertConfig(**OmegaConf.to_container(cfg.model))  # type: ignore[arg-type]
    layers, hidden, heads = MODELS[model]
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (
        layers,
        hidden,
        heads,
    )
    assert config.intermediate_size == 4 * hidden and config.vocab_size == 30522
    assert config.max_position_embeddings == 512
    assert cfg.trainer.precision == "bf16-mixed"
    assert {"gpu": "gpu", "cpu": "cpu"}.get(hardware, "auto") == cfg.trainer.accelerator
    if hardware == "fsdp":
        strategy = instantiate(cfg.trainer.strategy)
        assert type(strategy).__name__ == "FSDP2Strategy"
    assert set(cfg.logger or {}) == (
        {"wandb"} if logger == "wandb" else {"csv"} if logger == "csv" else set()
    )


def test_wandb_logger_is_offline_by_default(tmp_path: Path) -> None:
    cfg = compose_cfg([], tmp_path)
    assert cfg.logger.wandb.offline is True


@pytest.mark.parametrize("name", ["pretrain_paper_phase1", "pretrain_paper_phase2"])
def test_experiments_compose(tmp_path: Path, name: str) -> None:
    cfg = compose_cfg([f"experiment={name}", "pretrained=some/phase1/export"], tmp_path)
    assert cfg.model.hidden_size == 768 and cfg.task.module.scheduler.warmup_steps == 10000
    assert cfg.data.max_seq_len == (128 if name.endswith("1") else 512)


def test_unknown_config_name_fails_with_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigCompositionException, match="bert_huge"):
        compose_cfg(["model=bert_huge"], tmp_path)


def test_cli_unknown_task_is_one_clear_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "train.py", "task=nosuchtask", f"hydra.run.dir={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "Could not find 'task/nosuchtask'" in proc.stderr
    assert "Available options" in proc.stderr and "pretrain" in proc.stderr
