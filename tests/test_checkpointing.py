"""Checkpoints a run can count on: atomic writes, periodic last.ckpt by steps and by time, a checkpoint
when fit stops on SIGTERM or an error (but not on a non-finite loss), the SLURM requeue link."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.utilities.exceptions import SIGTERMException

from bertlab.checkpointing import AtomicCheckpointIO, PeriodicCheckpoint, partial_path
from bertlab.guard import NonFiniteLoss
from bertlab.run import build_trainer
from tests.hydra_helpers import compose_cfg


class RecordingIO(AtomicCheckpointIO):
    """AtomicCheckpointIO that records (file name, global_step) of every save."""

    def __init__(self) -> None:
        super().__init__()
        self.saves: list[tuple[str, int]] = []

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        super().save_checkpoint(checkpoint, path, storage_options)
        self.saves.append((Path(path).name, int(checkpoint["global_step"])))


class RaiseAt(Callback):
    """Raises `error` (or sends this process SIGTERM) at the end of training batch `step` (global step)."""

    def __init__(self, step: int, error: BaseException | None = None) -> None:
        self.step, self.error = step, error

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            if self.error is None:
                os.kill(os.getpid(), signal.SIGTERM)  # handled at the end of this batch, as from outside
            else:
                raise self.error


def fit(folder: Path, max_steps: int = 10, extra: list[Callback] | None = None, **ckpt: Any) -> RecordingIO:
    """A small fit (BoringModel, CPU) with a PeriodicCheckpoint in `folder`; returns the saves made."""
    io = RecordingIO()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        plugins=[io],
        callbacks=[PeriodicCheckpoint(dirpath=folder, **ckpt), *(extra or [])],
        default_root_dir=folder.parent,
    )
    trainer.fit(BoringModel())
    return io


def step_of(path: Path) -> int:
    """global_step of a checkpoint, loaded as resuming and evaluation load it (weights_only)."""
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def leftovers(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.partial"))


# ------------------------------------------------------------------------------------------- atomic writes


def test_a_failed_write_leaves_the_previous_checkpoint_whole(tmp_path: Path, monkeypatch) -> None:
    io = AtomicCheckpointIO()
    last = tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 7, "w": torch.arange(5.0)}, last)
    before = last.read_bytes()

    def dies_halfway(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        f.write(b"PK\x03\x04 half a zip file")  # what a torch.save killed mid-write leaves
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"global_step": 8, "w": torch.zeros(5)}, last)
    monkeypatch.undo()

    assert last.read_bytes() == before
    loaded = torch.load(last, weights_only=True)
    assert loaded["global_step"] == 7 and torch.equal(loaded["w"], torch.arange(5.0))
    assert leftovers(tmp_path) == []


def test_the_new_file_replaces_the_old_and_loads(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    last = tmp_path / "sub" / "last.ckpt"  # the folder is made
    io.save_checkpoint({"global_step": 1}, last)
    io.save_checkpoint({"global_step": 2}, last)
    assert step_of(last) == 2
    assert partial_path(last).parent == last.parent and partial_path(last).name.startswith(".last.ckpt.")
    assert leftovers(last.parent) == []


def test_a_killed_write_is_cleaned_up_at_the_next_fit(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    stale = folder / ".last.ckpt.4242.partial"  # a process killed (SIGKILL) during a save leaves this
    stale.write_bytes(b"PK\x03\x04 truncated")
    fit(folder, max_steps=2)
    assert not stale.exists()
    assert step_of(folder / "last.ckpt") == 2


def test_run_builds_its_trainer_with_atomic_writes(tmp_path: Path) -> None:
    cfg = compose_cfg(["logger=none", "hardware.precision=32-true"], tmp_path)
    trainer = build_trainer(cfg)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert isinstance(trainer.checkpoint_callback, PeriodicCheckpoint)  # the model_checkpoint entry


# ------------------------------------------------------------------------------------ periodic checkpoints


def test_every_n_steps_keeps_step_files_and_updates_last(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    io = fit(folder, max_steps=10, every_n_train_steps=3, save_top_k=-1)
    assert sorted(p.name for p in folder.glob("*.ckpt")) == [
        "last.ckpt",
        "step3.ckpt",
        "step6.ckpt",
        "step9.ckpt",
    ]
    for n in (3, 6, 9):
        assert step_of(folder / f"step{n}.ckpt") == n
    # last.ckpt at each of those steps, and at the end of training (not left at step 9)
    assert [s for name, s in io.saves if name == "last.ckpt"] == [3, 6, 9, 10]
    assert step_of(folder / "last.ckpt") == 10


def test_every_n_steps_without_step_files(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    io = fit(folder, max_steps=7, every_n_train_steps=2)  # save_top_k=0: last.ckpt only
    assert [p.name for p in folder.glob("*.ckpt")] == ["last.ckpt"]
    assert io.saves == [("last.ckpt", s) for s in (2, 4, 6, 7)]


def test_time_interval_rewrites_last_only(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    io = fit(folder, max_steps=6, every_n_minutes=1e-9, every_n_train_steps=4, save_top_k=-1)
    last_steps = [s for name, s in io.saves if name == "last.ckpt"]
    assert 1 in last_steps and len(last_steps) >= 3  # the time trigger fired long before the end
    assert sorted(p.name for p in folder.glob("*.ckpt")) == ["last.ckpt", "step4.ckpt"]  # never step1.ckpt
    assert step_of(folder / "last.ckpt") == 6


def test_default_writes_last_once_at_the_end(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    io = fit(folder, max_steps=5, every_n_minutes=30)
    assert io.saves == [("last.ckpt", 5)]


@pytest.mark.parametrize(
    ("key", "value"), [("save_last", "link"), ("save_last", False), ("every_n_minutes", 0)]
)
def test_settings_that_would_lose_last_are_refused(tmp_path: Path, key: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"callbacks.model_checkpoint.{key}"):
        PeriodicCheckpoint(dirpath=tmp_path, **{key: value})


# ------------------------------------------------------------------------------- stopped: signal or error


def test_sigterm_writes_last_at_the_step_reached(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    with pytest.raises(SIGTERMException):
        fit(folder, max_steps=50, every_n_train_steps=4, extra=[RaiseAt(6)])
    assert step_of(folder / "last.ckpt") == 6  # not the periodic one of step 4


def test_an_error_writes_last(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    with pytest.raises(RuntimeError, match="data went away"):
        fit(folder, max_steps=50, extra=[RaiseAt(5, RuntimeError("data went away"))])
    assert step_of(folder / "last.ckpt") == 5


def test_a_nonfinite_loss_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    with pytest.raises(NonFiniteLoss):
        fit(folder, max_steps=50, every_n_train_steps=3, extra=[RaiseAt(5, NonFiniteLoss("loss is nan"))])
    assert step_of(folder / "last.ckpt") == 3


def test_save_on_exception_false_writes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    with pytest.raises(RuntimeError):
        fit(folder, max_steps=50, save_on_exception=False, extra=[RaiseAt(5, RuntimeError("x"))])
    assert not (folder / "last.ckpt").exists()


def test_under_slurm_sigterm_also_leaves_the_checkpoint_a_requeued_job_resumes(
    tmp_path: Path, monkeypatch
) -> None:
    """A job SLURM requeues runs again with ckpt=null; Lightning resumes the newest hpc_ckpt_*.ckpt."""
    slurm = {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "pretrain", "SLURM_JOB_ID": "1234", "SLURM_PROCID": "0",
             "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NODELIST": "127.0.0.1"}  # fmt: skip
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    assert SLURMEnvironment.detect()
    folder = tmp_path / "checkpoints"
    with pytest.raises(SIGTERMException):
        fit(folder, max_steps=50, extra=[RaiseAt(4)])
    hpc = tmp_path / "hpc_ckpt_1.ckpt"
    assert hpc.stat().st_ino == (folder / "last.ckpt").stat().st_ino  # a hard link: no copy
    # the requeued job: same folder, no ckpt=; Lightning picks the hpc checkpoint and goes on from step 4
    io = fit(folder, max_steps=6)
    assert io.saves == [("last.ckpt", 6)]
    assert step_of(hpc) == 4  # later saves replaced last.ckpt by a new file; the link kept step 4


def test_config_composes_the_periodic_checkpoint(tmp_path: Path) -> None:
    cfg = compose_cfg(
        [
            "callbacks.model_checkpoint.every_n_train_steps=100",
            "callbacks.model_checkpoint.save_top_k=-1",
            "callbacks.model_checkpoint.every_n_minutes=15",
        ],
        tmp_path,
    )
    cb = instantiate(cfg.callbacks.model_checkpoint)
    assert isinstance(cb, PeriodicCheckpoint)
    assert (cb._every_n_train_steps, cb.save_top_k, cb.every_n_minutes, cb.save_last) == (100, -1, 15, True)
    assert cb.dirpath == str(tmp_path / "checkpoints")
