"""Config values and resume files that used to escape as another library's error: each is now bertlab's
one-line error naming the key or file (train.py prints it as `error: ...`, exit 2)."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import pytest
import torch

from bertlab.data.errors import DataConfigError
from bertlab.data.pretrain import PretrainDataModule
from bertlab.data.squad_windows import plan_windows
from bertlab.model.checkpoint import CheckpointError
from bertlab.resume import checkpoint_step
from bertlab.tasks.pretrain import PreTrainingTask
from bertlab.tasks.schedule import ScheduleError
from tests.tiny import TINY


@pytest.mark.parametrize(
    ("key", "value"), [("mlm_probability", 1.5), ("mask_token_prob", -0.1), ("nsp_prob", 2.0)]
)
def test_probabilities_outside_0_1_name_their_data_key(key: str, value: float) -> None:
    with pytest.raises(DataConfigError, match=rf"data\.{key}={value} must lie in \[0, 1\]"):
        PretrainDataModule(corpus="pydoc", **{key: value})


def test_mask_and_random_shares_above_one_are_refused() -> None:
    with pytest.raises(DataConfigError, match=r"data\.mask_token_prob \+ data\.random_token_prob"):
        PretrainDataModule(corpus="pydoc", mask_token_prob=0.8, random_token_prob=0.3)


def test_a_zero_doc_stride_is_a_config_error() -> None:
    with pytest.raises(DataConfigError, match="stride 0"):
        plan_windows(100, 30, 0)


def test_a_negative_learning_rate_names_the_optimizer_key() -> None:
    task = PreTrainingTask(dict(TINY), optimizer=partial(torch.optim.AdamW, lr=-1.0))
    with pytest.raises(ScheduleError, match=r"task\.module\.optimizer: Invalid learning rate: -1"):
        task.configure_optimizers()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all" * 50])
def test_a_junk_file_as_fit_ckpt_names_the_file(tmp_path: Path, content: bytes) -> None:
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(content)
    with pytest.raises(CheckpointError, match=re.escape(f"ckpt={junk}: cannot be read")):
        checkpoint_step(junk)


def test_a_torch_file_without_weights_is_not_a_checkpoint(tmp_path: Path) -> None:
    other = tmp_path / "other.ckpt"
    torch.save({"global_step": 3}, other)
    with pytest.raises(CheckpointError, match="has no state_dict"):
        checkpoint_step(other)
