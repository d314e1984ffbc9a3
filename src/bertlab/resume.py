"""Resume means continue: a run killed at any point and resumed from its checkpoint goes on as if it
had never stopped (same batches, masks, dropout, learning rate; same run folder and logs).

What a Lightning checkpoint holds already: weights, optimizer and LR-scheduler state, loop progress,
each callback's `state_dict`, the DataModule's `state_dict` (pre-training's masking generator,
`PretrainDataModule.mask_generator`) and the training loader's position (a `StatefulDataLoader`,
`data/loaders.py`: mid-epoch, with worker processes too). What this module adds:

- `ResumeState`, a callback `run.py` gives every fitting Trainer: the global RNG states (torch CPU and
  CUDA, numpy, Python's `random`: dropout draws from them), which Lightning does not store. They are
  put back just before the first training batch after the resume, not at load time, since building
  the loaders and the model in between draws from the global RNG. It also writes the loggers' pending
  rows right after each checkpoint, so the CSV log on disk reaches the checkpoint when a kill follows.
- `ckpt=` in mode=fit (`resolve_fit_checkpoint`): a `.ckpt` file; a run folder, meaning its newest
  checkpoint (`checkpoints/last.ckpt`, or a `checkpoints/step*.ckpt` written later); or `last`, the
  newest run folder of the task (under `outputs/<task.name>/`) holding one. Not found:
  `CheckpointNotFound` naming where it looked.
- The run folder: a resumed run writes into the checkpoint's `<run>/` (the folder holding
  `checkpoints/`). `python train.py ... ckpt=...` adds `hydra.run.dir=<run>` before Hydra starts
  (`train.py`), so Hydra's own files (`.hydra/`, `train.log`, appended) land there too; `run.main`
  called otherwise (tests, multirun jobs) points `paths.output_dir` there (`run.continue_run`).
- The logs: the CSV logger continues the run's latest `csv/version_N/metrics.csv` (Lightning would
  start that file afresh; `continue_csv` re-logs its rows of the steps before the checkpoint, dropping
  those the killed run logged after it, which the resumed run logs again). The W&B run keeps its id,
  stored in `<run>/wandb_id.txt` (`remember_wandb_id`), through `WandbLogger(id=..., resume="allow")`.

Not covered: `metrics.json` holds the final metrics of the run (written at its end), while its
`speed/*` figures measure the resumed process alone; a W&B history resumed online keeps the steps the
killed run logged after its checkpoint (W&B cannot rewind a run); a kill between writing a checkpoint
and the next training batch loses the CSV row of the checkpoint's last step; Lightning's own resume of
a requeued SLURM job (`ckpt=null`, `hpc_ckpt_*.ckpt`) restores the training state exactly but starts a
new CSV version and W&B run.
"""

from __future__ import annotations

import csv
import logging
import random
import shutil
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from bertlab.model.checkpoint import CheckpointError, read_lightning_ckpt
from bertlab.run_folder import CHECKPOINTS, LAST, CheckpointNotFound, checkpoint_folder

log = logging.getLogger("bertlab")

LATEST = "last"  # ckpt=last: the newest run folder of the task with a checkpoint
STEP_GLOB = "step*.ckpt"  # the periodic checkpoints (callbacks.model_checkpoint.filename)
WANDB_ID = "wandb_id.txt"  # in the run folder: the W&B run id a resumed run continues


# -- which checkpoint ----------------------------------------------------------------------------------
def newest_checkpoint(folder: Path) -> Path | None:
    """The newest of `last.ckpt` and `step*.ckpt` in `folder` (a run folder or its `checkpoints/`)."""
    inner = checkpoint_folder(folder)
    found = [p for p in [inner / LAST, *inner.glob(STEP_GLOB)] if p.exists()]
    # by modification time; at a tie (written at the same step) last.ckpt
    return max(found, key=lambda p: (p.stat().st_mtime, p.name == LAST), default=None)


def resolve_fit_checkpoint(ckpt: str | Path, outputs: Path) -> Path:
    """The checkpoint mode=fit resumes for `ckpt=`: a `.ckpt` as given, a run folder's newest, or for
    `last` the newest checkpoint of the run folders under `outputs` (`outputs/<task.name>`).

    Raises `CheckpointNotFound` naming where it looked.
    """
    if str(ckpt) == LATEST:
        runs = [d for d in sorted(outputs.iterdir()) if d.is_dir()] if outputs.is_dir() else []
        found = [c for c in map(newest_checkpoint, runs) if c is not None]
        if not found:
            raise CheckpointNotFound(
                f"ckpt=last: no run folder under {outputs} has {CHECKPOINTS}/{LAST} or {CHECKPOINTS}/"
                f"{STEP_GLOB}; pass ckpt=<run folder> or a .ckpt file"
            )
        newest = max(found, key=lambda p: p.stat().st_mtime)
        log.info("ckpt=last: %s, the newest checkpoint under %s", newest, outputs)
        return newest
    path = Path(ckpt).expanduser()
    if path.is_file() or (path.is_dir() and path.suffix == ".ckpt"):  # a folder: FSDP's sharded checkpoint
        return path
    if not path.exists():
        raise CheckpointNotFound(
            f"ckpt={ckpt}: no such file or folder; pass a run folder (outputs/<task>/<time>), "
            "one of its .ckpt files, or ckpt=last"
        )
    newest = newest_checkpoint(path)
    if newest is None:
        inner = checkpoint_folder(path)
        raise CheckpointNotFound(
            f"ckpt={ckpt}: neither {inner / LAST} nor {inner / STEP_GLOB} exists; pass a run folder "
            "that wrote a checkpoint, or a .ckpt file"
        )
    log.info("ckpt=%s: resuming from %s", ckpt, newest)
    return newest


def run_folder_of(ckpt: Path) -> Path | None:
    """The run folder a checkpoint belongs to (`<run>/checkpoints/x.ckpt` -> `<run>`), None for a
    checkpoint elsewhere."""
    parent = ckpt.parent
    if parent.name == CHECKPOINTS:
        return parent.parent
    return parent if (parent / ".hydra").is_dir() or (parent / CHECKPOINTS).is_dir() else None


def checkpoint_step(ckpt: Path) -> int | None:
    """The optimizer steps before the checkpoint (`global_step`): the `step` of the first row the resumed
    run logs. None for a sharded (folder) checkpoint."""
    if not ckpt.is_file():
        return None
    try:
        state = read_lightning_ckpt(ckpt)
    except CheckpointError as err:  # the key too: the file came from the command line's ckpt=
        raise CheckpointError(f"ckpt={err}") from None
    return int(state.get("global_step", 0))


# -- the global RNG states -----------------------------------------------------------------------------
def rng_states() -> dict[str, Any]:
    """torch (CPU and every CUDA device), numpy and Python `random` states as plain values and tensors
    (so a checkpoint holding them still loads under `weights_only`)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Put back what `rng_states` returned (CUDA states only onto as many devices as were saved)."""
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in states and torch.cuda.is_available():
        for device, state in enumerate(states["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, device)


class ResumeState(Callback):
    """Checkpoints the global RNG states and puts them back before the first training batch of a resumed
    run; writes the loggers' pending rows after each checkpoint (see the module docstring).

    Under DDP every rank resumes with rank 0's states: Lightning seeds all ranks alike (`seed_everything`).
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None
        self._flush = False

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict.get("rng")

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: Any) -> None:
        self._flush = True  # the step's own row is logged after the save: write both at the next batch

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._pending is not None:
            set_rng_states(self._pending)
            self._pending = None
        if self._flush:
            self._flush = False
            for logger in trainer.loggers:
                logger.save()


# -- the logs ------------------------------------------------------------------------------------------
def latest_csv_version(save_dir: Path, name: str) -> int | None:
    """N of the newest `<save_dir>/<name>/version_N` folder, None if there is none."""
    versions = [
        int(d.name.removeprefix("version_"))
        for d in (save_dir / name).glob("version_*")
        if d.name.removeprefix("version_").isdigit() and d.is_dir()
    ]
    return max(versions, default=None)


def logger_resume_kwargs(logger: dict[str, Any]) -> dict[str, Any]:
    """Constructor arguments that make a logger continue the run folder's logs: the CSV logger's latest
    version, the W&B run's id (`<save_dir>/wandb_id.txt`). `logger` is its resolved config."""
    target, save_dir = str(logger.get("_target_", "")), logger.get("save_dir")
    if save_dir is None:
        return {}
    if target.endswith("CSVLogger") and logger.get("version") is None:
        version = latest_csv_version(Path(save_dir), str(logger.get("name") or "lightning_logs"))
        return {} if version is None else {"version": version}
    if target.endswith("WandbLogger") and not logger.get("id") and (Path(save_dir) / WANDB_ID).is_file():
        return {"id": (Path(save_dir) / WANDB_ID).read_text(encoding="utf-8").strip(), "resume": "allow"}
    return {}


def continue_csv(logger: Any, before_step: int | None) -> int:
    """Keep the rows of `logger`'s existing metrics.csv logged before `before_step` (all when None) and
    go on writing after them; returns the number kept. Lightning empties a version's file when its writer
    starts, so the rows are read first and logged again (a copy stays beside it until they are written)."""
    path = Path(logger.log_dir) / "metrics.csv"
    rows: list[dict[str, str]] = []
    if path.is_file():
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        shutil.copyfile(path, path.with_name("metrics.csv.before_resume"))
    with warnings.catch_warnings():  # "Previous log files in this directory will be deleted": as meant
        warnings.filterwarnings("ignore", message="Experiment logs directory")
        writer = logger.experiment  # empties metrics.csv
    kept = [r for r in rows if before_step is None or int(float(r["step"])) < before_step]
    for row in kept:
        writer.log_metrics({k: v for k, v in row.items() if k != "step" and v != ""}, step=int(row["step"]))
    writer.save()
    path.with_name("metrics.csv.before_resume").unlink(missing_ok=True)
    if rows:
        log.info("%s: %d rows kept, %d after the checkpoint dropped", path, len(kept), len(rows) - len(kept))
    return len(kept)


def remember_wandb_id(trainer: L.Trainer) -> None:
    """Write each W&B logger's run id to `<save_dir>/wandb_id.txt` (rank 0), for a later resume."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and trainer.is_global_zero and logger.save_dir:
            path = Path(logger.save_dir) / WANDB_ID
            run_id = str(logger.experiment.id)
            if not path.is_file() or path.read_text(encoding="utf-8").strip() != run_id:
                path.write_text(run_id + "\n", encoding="utf-8")


def prepare_fit(trainer: L.Trainer, resume_step: int | None, resuming: bool) -> None:
    """Before fit: give `trainer` a `ResumeState`; on a resume (`resuming`), continue the CSV logs up to
    `resume_step`; remember the W&B run id."""
    from lightning.pytorch.loggers import CSVLogger

    trainer.callbacks.append(ResumeState())  # type: ignore[attr-defined]
    if resuming and trainer.is_global_zero:
        for logger in trainer.loggers:
            if isinstance(logger, CSVLogger):
                continue_csv(logger, resume_step)
    remember_wandb_id(trainer)


__all__ = [
    "ResumeState",
    "checkpoint_step",
    "continue_csv",
    "logger_resume_kwargs",
    "newest_checkpoint",
    "prepare_fit",
    "resolve_fit_checkpoint",
    "run_folder_of",
]
