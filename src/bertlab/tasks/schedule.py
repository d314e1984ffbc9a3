"""Learning-rate schedule of the paper: linear warmup to the peak, then linear decay to zero.

The schedule's length is the run's (`trainer.estimated_stepping_batches`) unless `total_steps` says
otherwise: the paper's pre-training is one schedule of 1M steps over two runs (900k steps at length 128,
then 100k at 512), so phase 1 stops at 900k while its learning rate decays towards 1M, and phase 2
continues the same schedule (`task.module.continue_from`, tasks/continuation.py).
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


class ScheduleError(ValueError):
    """A schedule setting that cannot run (train.py prints it as one line)."""


def warmup_steps_for(num_training_steps: int, warmup_steps: int | None, warmup_ratio: float | None) -> int:
    """Warmup length from an absolute count (pre-training: 10k) or a fraction (fine-tuning: 0.1)."""
    if warmup_steps is not None and warmup_ratio is not None:
        raise ScheduleError(
            "task.module.scheduler: give warmup_steps or warmup_ratio, not both (set the other to null)"
        )
    if warmup_steps is not None:
        return int(warmup_steps)
    return int((warmup_ratio or 0.0) * num_training_steps)  # floor, as the original run_classifier.py


def warmup_linear_factor(step: int, warmup: int, total: int) -> float:
    """The peak lr's multiplier before optimizer step `step` (0-based): step/warmup while warming up,
    then (total-step)/(total-warmup), 0 from `total` on."""
    if step < warmup:
        return step / max(warmup, 1)
    return max(0.0, (total - step) / max(total - warmup, 1))


def schedule_length(num_training_steps: int, total_steps: int | None) -> int:
    """The steps the schedule decays over: `total_steps` when given, else the run's own."""
    if total_steps is not None and int(total_steps) < 1:
        raise ScheduleError(
            f"task.module.scheduler.total_steps={total_steps} must be >= 1 (or null: the run's)"
        )
    return max(int(total_steps if total_steps is not None else num_training_steps), 1)


def warmup_linear(
    optimizer: Optimizer,
    num_training_steps: int,
    warmup_steps: int | None = None,
    warmup_ratio: float | None = None,
    total_steps: int | None = None,
) -> LambdaLR:
    """LambdaLR scaling the peak lr by `warmup_linear_factor`.

    num_training_steps: this run's optimizer steps (the task passes the trainer's estimate).
    total_steps: the schedule's length when it is not this run's (None: num_training_steps); a
    warmup_ratio is a fraction of it.
    """
    total = schedule_length(num_training_steps, total_steps)
    warmup = warmup_steps_for(total, warmup_steps, warmup_ratio)

    def factor(step: int) -> float:
        return warmup_linear_factor(step, warmup, total)

    return LambdaLR(optimizer, factor)
