"""Checkpoints a run can count on: atomic writes, periodic `last.ckpt`, a checkpoint when the run is stopped.

- `AtomicCheckpointIO` (run.py's `build_trainer` hands it to every Trainer): a `.ckpt` is written to a
  hidden temporary file in its own folder, fsynced and moved over the old one with `os.replace`, so a
  kill during a write leaves the previous file whole. Lightning's own `TorchCheckpointIO` serialises to
  memory, then writes through an fsspec transaction that stages the file in `$TMPDIR` and `shutil.move`s
  it: a copy into place (not atomic) whenever `$TMPDIR` is another file system, and no fsync.
- `PeriodicCheckpoint` (`callbacks.model_checkpoint`): `last.ckpt` every N optimizer steps and/or every
  N minutes, at the end of training, and on SIGTERM or an error (not on `bertlab.guard.NonFiniteLoss`: the
  last good checkpoint must survive a diverged run). `step{N}.ckpt` files are kept only as `save_top_k`
  says (-1 with `every_n_train_steps`: one per N steps), and at each step of `keep_steps` (the
  training-steps ablation fine-tunes from each: `bertlab.pipeline`).
- `SyncedSigterm` (`callbacks.synced_sigterm`): with several processes, every rank stops at the same
  batch on SIGTERM. A run stopped by SIGTERM exits with `STOPPED_EXIT_CODE`, 143 (`run.stop_after_signal`).

Not covered: `hardware=fsdp` saves a distributed checkpoint (`last.ckpt` is a folder: one shard file per
rank written by `torch.distributed.checkpoint`, and `meta.pt`), which bypasses the CheckpointIO; the
shards are overwritten in place, so a kill during that save leaves a folder mixing two steps.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger("bertlab")

PARTIAL = ".partial"  # suffix of a checkpoint being written: `.<name>.<pid>.partial` beside it
STOPPED_EXIT_CODE = 128 + signal.SIGTERM  # 143, the shell's status of a process ended by SIGTERM


def partial_path(path: Path) -> Path:
    """The temporary file `path` is written to first: hidden, in the same folder (same file system)."""
    return path.with_name(f".{path.name}.{os.getpid()}{PARTIAL}")


def remove_partial_files(folder: Path) -> list[Path]:
    """Delete what a killed save left behind in `folder` (`.<name>.<pid>.partial`); returns the paths."""
    stale = sorted(folder.glob(f".*{PARTIAL}")) if folder.is_dir() else []
    for path in stale:
        log.info("removing %s: a checkpoint write that did not finish", path)
        path.unlink(missing_ok=True)
    return stale


def fsync_folder(folder: Path) -> None:
    """Make a rename inside `folder` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename itself is still atomic
    finally:
        os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """`torch.save` to a temporary file beside the target, fsync, then `os.replace` it into place.

    A failure or a kill at any point leaves the previous checkpoint under the name intact; a failure
    removes the temporary file, a kill leaves it for `remove_partial_files` (run at the next fit).
    Remote paths (`s3://`, ...) fall back to Lightning's own save.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or not _is_local_file_protocol(str(path)):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = partial_path(path)
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_folder(path.parent)


def is_nonfinite_loss(exception: BaseException) -> bool:
    """Whether `exception` is (a subclass of) `bertlab.guard.NonFiniteLoss`, matched by name so this
    module does not import the guard."""
    return any(cls.__name__ == "NonFiniteLoss" for cls in type(exception).__mro__)


class PeriodicCheckpoint(ModelCheckpoint):
    """`last.ckpt` (what a resume reads) every `every_n_train_steps` steps and/or `every_n_minutes`, at
    the end of training, and on SIGTERM or an error; `step{N}.ckpt` as `save_top_k` says.

    Lightning's ModelCheckpoint takes one trigger per instance; here the step trigger works as there
    (top-k files and `last.ckpt`), the time trigger rewrites `last.ckpt` only, so a steps ablation's
    `step{N}.ckpt` files stay at round steps. `keep_steps` (optimizer steps) writes `step{N}.ckpt` at each
    of those steps, whatever the other triggers, and never deletes them. `save_on_exception` (default on)
    writes `last.ckpt` when fit stops on an exception: SIGTERM (Lightning's `SIGTERMException`, at the
    end of the running batch), Ctrl-C, or an error, but not `NonFiniteLoss`; with several processes only
    for SIGTERM, which all ranks see together (an error on one rank would leave the others waiting in the
    save's collectives).
    """

    def __init__(
        self,
        dirpath: _PATH,
        every_n_train_steps: int | None = None,
        every_n_minutes: float | None = None,
        save_top_k: int = 0,
        filename: str = "step{step}",
        save_on_exception: bool = True,
        keep_steps: list[int] | None = None,
        **kwargs: Any,
    ) -> None:
        if keep_steps is not None and any(not isinstance(n, int) or n < 1 for n in keep_steps):
            raise ValueError(
                f"callbacks.model_checkpoint.keep_steps={list(keep_steps)}: must be optimizer steps >= 1, "
                "or null"
            )
        if kwargs.get("save_last", True) is not True:
            raise ValueError(
                f"callbacks.model_checkpoint.save_last={kwargs['save_last']}: PeriodicCheckpoint always "
                "writes last.ckpt itself (a 'link' would point at an older step file); remove the key"
            )
        if kwargs.get("train_time_interval") is not None:
            raise ValueError(
                "callbacks.model_checkpoint.train_time_interval: use every_n_minutes (it rewrites last.ckpt)"
            )
        if every_n_minutes is not None and every_n_minutes <= 0:
            raise ValueError(
                f"callbacks.model_checkpoint.every_n_minutes={every_n_minutes}: must be > 0 or null"
            )
        kwargs.pop("save_last", None)
        kwargs.setdefault("auto_insert_metric_name", False)
        # a new run in a folder that has last.ckpt overwrites it, never writes last-v1.ckpt beside it
        kwargs.setdefault("enable_version_counter", False)
        super().__init__(
            dirpath=dirpath,
            filename=filename,
            save_top_k=save_top_k,
            save_last=True,
            save_on_exception=save_on_exception,
            every_n_train_steps=every_n_train_steps,
            **kwargs,
        )
        self.every_n_minutes = every_n_minutes
        self.keep_steps = sorted(set(keep_steps or ()))
        self._kept_step: int | None = None  # the keep_steps step saved last (accumulation: once per step)
        self._last_periodic = 0.0  # time.monotonic() of the last time-triggered save (or of train start)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit" and trainer.is_global_zero and self.dirpath:
            remove_partial_files(Path(self.dirpath))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._last_periodic = time.monotonic()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)  # the step trigger
        self._keep_step(trainer)
        if self.every_n_minutes is None or self._should_skip_saving_checkpoint(trainer):
            return
        if (batch_idx + 1) % trainer.accumulate_grad_batches:  # not between the micro-batches of a step
            return
        now = time.monotonic()
        due = now - self._last_periodic >= 60 * self.every_n_minutes
        if trainer.strategy.broadcast(due):  # rank 0's clock decides for all: every rank joins the save
            self._last_periodic = now
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def kept_path(self, step: int) -> Path:
        """Where `keep_steps` writes the checkpoint of optimizer step `step`: `<dirpath>/step<step>.ckpt`."""
        return Path(str(self.dirpath)) / f"step{step}{self.FILE_EXTENSION}"

    def _keep_step(self, trainer: L.Trainer) -> None:
        """`step{N}.ckpt` when this batch completed optimizer step N of `keep_steps` (once: with gradient
        accumulation several batches end at the same step). Outside the top-k bookkeeping: never deleted."""
        step = trainer.global_step
        if step not in self.keep_steps or trainer.fast_dev_run or trainer.sanity_checking:
            return
        if self._kept_step == step:
            return
        self._kept_step = step
        path = self.kept_path(step)
        trainer.save_checkpoint(path, self.save_weights_only)  # collective: every rank calls it
        if trainer.is_global_zero:
            log.info("kept %s (callbacks.model_checkpoint.keep_steps)", path)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # ModelCheckpoint writes last.ckpt at the end only if it never wrote one; a periodic last.ckpt
        # from some steps back would otherwise be what the finished run leaves
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if not self.save_on_exception or trainer.state.fn != TrainerFn.FITTING:
            return
        if trainer.fast_dev_run or trainer.sanity_checking:
            return
        name = type(exception).__name__
        if is_nonfinite_loss(exception):
            log.warning("%s: no checkpoint written; the last good one stays %s", name, self.last_model_path)
            return
        sigterm = isinstance(exception, SIGTERMException)
        if trainer.world_size > 1 and not sigterm:
            log.warning("%s on one of %d processes: no checkpoint written", name, trainer.world_size)
            return
        if self._last_global_step_saved != trainer.global_step:  # else last.ckpt holds this step already
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            if trainer.is_global_zero:
                log.info("%s at step %d: wrote %s", name, trainer.global_step, self.last_model_path)
        if sigterm and trainer.is_global_zero and self.last_model_path:
            link_for_requeue(trainer, Path(self.last_model_path))


class SyncedSigterm(Callback):
    """With several processes, stop every rank at the same batch when any of them gets SIGTERM.

    Lightning 2.6's SIGTERM handler broadcasts from inside the signal handler, at whatever point each
    rank was interrupted, and a rank stops at the end of its own batch: under DDP on CPU that was a gloo
    "collective mismatch" crash instead of a checkpoint. Here the handler only notes the signal (and
    forwards it to the processes Lightning started); after each training and validation batch every rank
    joins one all-reduce of the flag, and all set Lightning's `received_sigterm` together, so all raise
    `SIGTERMException` at the same place and `PeriodicCheckpoint` saves with every rank present.
    A single process keeps Lightning's handler (nothing to agree on).
    """

    def __init__(self) -> None:
        self.received = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning registers its handlers just before training starts; this one replaces them for the run
        # (Lightning's teardown restores what was there before fit)
        if trainer.world_size == 1 or threading.current_thread() is not threading.main_thread():
            return
        self.received = False
        before = trainer._signal_connector._original_handlers.get(signal.SIGTERM)  # e.g. submitit's
        launcher = trainer.strategy.launcher

        def note(signum: int, frame: FrameType | None) -> None:
            if not self.received:
                log.info(
                    "rank %d: SIGTERM; stopping with the other ranks after this batch", trainer.global_rank
                )
                if launcher is not None:
                    launcher.kill(signum)  # the ranks Lightning started itself (ddp on one machine)
            self.received = True
            if callable(before):
                before(signum, frame)

        signal.signal(signal.SIGTERM, note)

    def _agree(self, trainer: L.Trainer) -> None:
        if trainer.world_size > 1 and trainer.strategy.reduce_boolean_decision(self.received, all=False):
            trainer._signal_connector.received_sigterm = True

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._agree(trainer)

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            self._agree(trainer)


def link_for_requeue(trainer: L.Trainer, last: Path) -> Path | None:
    """Under SLURM (rank 0), also offer `last` as the next `hpc_ckpt_<n>.ckpt` of the run folder (hard link).

    A job that SLURM requeues after preemption runs its command again with `ckpt=null`; Lightning then
    resumes from the newest `hpc_ckpt_*.ckpt`, which without this would be an older one (its own
    SIGUSR1 save) or none. Returns the link, or None when not under SLURM or `last` is a folder (FSDP).
    """
    environment = trainer._accelerator_connector.cluster_environment
    if not isinstance(environment, SLURMEnvironment) or not environment.auto_requeue or not last.is_file():
        return None
    target = Path(trainer._checkpoint_connector.hpc_save_path(trainer.default_root_dir))
    tmp = partial_path(target)
    os.link(last, tmp)  # later saves os.replace last.ckpt with a new file; this name keeps this one
    os.replace(tmp, target)
    log.info("SLURM: %s will resume a requeued job (the same file as %s)", target, last)
    return target
