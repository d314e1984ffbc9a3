"""Which checkpoint of a run folder to evaluate, and the callback that keeps the best one.

A fine-tuning run keeps two checkpoints in `<run>/checkpoints/`: `last.ckpt` (the end of training,
for resuming) and `best.ckpt` (the validation with the best `task.main_metric`, e.g. `val/acc`;
`BestCheckpoint` writes it). `mode=test` and `mode=predict` score `best.ckpt` when `ckpt=` names the
run folder; a `.ckpt` file given by name is used as it is. Pre-training has no main metric and keeps
`last.ckpt` (and the periodic `step*.ckpt`) only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint

from bertlab.model.checkpoint import CheckpointError

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"  # the run folder's checkpoint folder (callbacks.*.dirpath)
BEST = "best.ckpt"
LAST = "last.ckpt"


class CheckpointNotFound(CheckpointError):
    """`ckpt=` names no checkpoint file, nor a run folder holding one; the message says where it looked."""


def checkpoint_folder(path: Path) -> Path:
    """`path/checkpoints` when `path` is a run folder that has one, else `path` itself."""
    inner = path / CHECKPOINTS
    return inner if inner.is_dir() else path


def resolve_eval_checkpoint(ckpt: str | Path) -> Path:
    """The `.ckpt` that `mode=test|predict` evaluates for `ckpt=`.

    A file is returned as given. A run folder, or its `checkpoints/` folder, gives `best.ckpt` (the best
    validation by the task's main metric) when present, else `last.ckpt`.
    Raises `CheckpointNotFound` naming the paths it looked at.
    """
    path = Path(ckpt).expanduser()
    if path.is_file():
        return path
    if not path.exists():
        raise CheckpointNotFound(
            f"ckpt={ckpt}: no such file or folder; pass a run folder (outputs/<task>/<time>) or a .ckpt file"
        )
    folder = checkpoint_folder(path)
    for name in (BEST, LAST):
        if (folder / name).is_file():
            log.info("ckpt=%s: evaluating %s", ckpt, folder / name)
            return folder / name
    raise CheckpointNotFound(
        f"ckpt={ckpt}: neither {folder / BEST} nor {folder / LAST} exists; "
        "pass a fine-tuning run's folder or one of its .ckpt files"
    )


class BestCheckpoint(ModelCheckpoint):
    """Keeps `<dirpath>/best.ckpt`: the weights of the validation with the best `monitor` (mode max).

    `monitor=None` (pre-training: no main metric) saves nothing, so a run keeps `last.ckpt` only.
    Saved after each validation, so a run validating mid-epoch (`val_check_interval`) picks among those.
    """

    def __init__(self, dirpath: str | Path, monitor: str | None, mode: str = "max", **kwargs: Any) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=BEST.removesuffix(".ckpt"),
            monitor=monitor,
            mode=mode,
            save_top_k=1 if monitor else 0,
            save_last=False,
            auto_insert_metric_name=False,
            enable_version_counter=False,  # one best.ckpt, overwritten when a validation beats it
            save_on_train_epoch_end=False,
            **kwargs,
        )


__all__ = ["BEST", "CHECKPOINTS", "LAST", "BestCheckpoint", "CheckpointNotFound", "resolve_eval_checkpoint"]
