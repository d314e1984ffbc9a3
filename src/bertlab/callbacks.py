"""Training progress as log lines (for runs whose output goes to a file) and the run's training speed.

Lightning's progress bar draws nothing when stderr is not a terminal (a batch job, `nohup`, `> run.log`),
so an hour-long fine-tuning would be silent there. `ProgressLog` logs one line every `every_n_seconds`
instead: step, epoch, percent done, the last training loss, examples/s and the time left. It also
measures the run's training speed, which `run.main` writes to `metrics.json`:

- `speed/train_time_s`: seconds in the training loop, validation excluded (data loading included);
- `speed/train_examples_per_s`: training examples (rows of `input_ids`) per second of that time.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, Timer
from lightning.pytorch.trainer.states import TrainerFn

log = logging.getLogger("bertlab")


def batch_examples(batch: Any) -> int:
    """Examples in a batch: the rows of `input_ids` (B, ...), or of the first tensor; 0 if none."""
    if isinstance(batch, Mapping):
        first = batch.get("input_ids")
        if first is None:
            first = next((v for v in batch.values() if torch.is_tensor(v)), None)
        return int(first.shape[0]) if torch.is_tensor(first) and first.dim() else 0
    if isinstance(batch, (list, tuple)) and batch and torch.is_tensor(batch[0]):
        return int(batch[0].shape[0])
    return 0


def on_terminal() -> bool:
    """Whether stderr is a terminal (where Lightning's progress bar draws)."""
    return sys.stderr.isatty()


def clock(seconds: float) -> str:
    """`1:02:03` or `2:03`."""
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class ProgressLog(Callback):
    """Logs progress every `every_n_seconds` (only without a terminal unless `always`); measures speed."""

    def __init__(self, every_n_seconds: float = 60.0, always: bool = False) -> None:
        self.every_n_seconds, self.always = every_n_seconds, always
        self.examples = 0
        self.train_time = 0.0  # closed intervals of the training loop
        self._since: float | None = None  # start of the open interval, None while paused
        self._last_line = 0.0
        self._first_step = 0  # a resumed run starts past 0; its rate counts this process's steps only

    # -- the clock: runs during training, paused during validation --------------------------------------
    def _resume(self) -> None:
        if self._since is None:
            self._since = time.perf_counter()

    def _pause(self) -> None:
        if self._since is not None:
            self.train_time += time.perf_counter() - self._since
            self._since = None

    def elapsed(self) -> float:
        """Training seconds so far (validation excluded)."""
        open_part = time.perf_counter() - self._since if self._since is not None else 0.0
        return self.train_time + open_part

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.examples, self.train_time, self._since = 0, 0.0, None
        self._last_line = time.perf_counter()
        self._first_step = trainer.global_step
        self._resume()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pause()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING:  # validation inside fit; a lone validate() has no clock
            self._resume()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pause()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # every rank sees its own shard of the batch; the run's rate is that times the world size
        self.examples += batch_examples(batch) * trainer.world_size
        now = time.perf_counter()
        if now - self._last_line < self.every_n_seconds or not self._should_print():
            return
        self._last_line = now
        if trainer.is_global_zero:
            log.info(self.line(trainer))

    def _should_print(self) -> bool:
        return self.always or not on_terminal()

    def line(self, trainer: L.Trainer) -> str:
        """`step 120/2105 (5.7%) epoch 1/3 loss 0.412 | 88.3 examples/s | 1:05 elapsed, 17:52 left`."""
        step, total = trainer.global_step, trainer.estimated_stepping_batches
        elapsed = self.elapsed()
        parts = [f"step {step}"]
        if isinstance(total, int) and total > 0:
            parts = [f"step {step}/{total} ({100 * step / total:.1f}%)"]
        if trainer.max_epochs and trainer.max_epochs > 0:
            parts.append(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")
        loss = trainer.callback_metrics.get("train/loss_step", trainer.callback_metrics.get("train/loss"))
        if loss is not None:
            parts.append(f"loss {float(loss):.4f}")
        text = (
            " ".join(parts)
            + f" | {self.examples / max(elapsed, 1e-9):.1f} examples/s | {clock(elapsed)} elapsed"
        )
        done = step - self._first_step
        left = (
            elapsed / done * (total - step) if isinstance(total, int) and total > step and done > 0 else None
        )
        timer = next((cb for cb in trainer.callbacks if isinstance(cb, Timer)), None)
        remaining = timer.time_remaining() if timer is not None else None
        if remaining is not None and (left is None or remaining < left):  # trainer.max_time stops it first
            left = max(remaining, 0.0)
        if left is not None:
            text += f", {clock(left)} left"
        return text

    def summary(self) -> dict[str, float]:
        """The run's training speed for metrics.json (empty if nothing was trained)."""
        elapsed = self.elapsed()
        if not self.examples or elapsed <= 0:
            return {}
        return {
            "speed/train_time_s": round(elapsed, 3),
            "speed/train_examples_per_s": round(self.examples / elapsed, 3),
        }


__all__ = ["ProgressLog", "batch_examples", "clock", "on_terminal"]
