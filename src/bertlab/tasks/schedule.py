"""Learning-rate schedule of the paper: linear warmup to the peak, then linear decay to zero.

The schedule's length is the run's (`trainer.estimated_stepping_batches`) unless `total_steps` says
otherwise: the paper's pre-training is one schedule of 1M steps over two runs (900k steps at length 128,
then 100k at 512), so phase 1 stops at 900k while its learning rate decays towards 1M, and phase 2
continues the same schedule (`task.module.continue_from`, tasks/continuation.py).

`budget="time"` decays over the wall clock instead (a budget recipe, `trainer.max_time`): after warmup the
lr falls linearly with the fraction of `max_time` used (or of the steps, whichever is further along), so it
reaches zero as the time runs out whatever speed the machine has (cramming's budget-based schedules).
"""

from __future__ import annotations

import math
from collections.abc import Callable

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


BUDGETS = ("steps", "time")


def time_budget_factor(
    step: int, fraction: float, warmup_steps: int | None, warmup_ratio: float | None
) -> float:
    """The peak lr's multiplier under a time budget: `fraction` of it used (0..1). Warmup is `warmup_steps`
    steps or `warmup_ratio` of the time; then linear decay over the rest of the time, 0 at its end."""
    fraction = min(max(fraction, 0.0), 1.0)
    if warmup_steps is not None:
        return max(0.0, min(step / max(warmup_steps, 1), 1.0 - fraction))
    ratio = warmup_ratio or 0.0
    if fraction < ratio:
        return fraction / ratio
    return max(0.0, (1.0 - fraction) / max(1.0 - ratio, 1e-9))


def warmup_linear(
    optimizer: Optimizer,
    num_training_steps: int | float,
    warmup_steps: int | None = None,
    warmup_ratio: float | None = None,
    total_steps: int | None = None,
    budget: str = "steps",
    time_fraction: Callable[[], float] | None = None,
) -> LambdaLR:
    """LambdaLR scaling the peak lr by `warmup_linear_factor` (budget="steps") or `time_budget_factor`
    (budget="time", with `time_fraction()` the share of `trainer.max_time` used, which the task passes).

    num_training_steps: this run's optimizer steps (the task passes the trainer's estimate; inf when only
    max_time bounds the run). total_steps: the schedule's length when it is not this run's (None:
    num_training_steps); a warmup_ratio is a fraction of it (of the time under budget="time").
    """
    if budget not in BUDGETS:
        raise ScheduleError(f"task.module.scheduler.budget={budget!r}: use steps or time")
    if budget == "time":
        if time_fraction is None:
            raise ScheduleError(
                "task.module.scheduler.budget=time decays over trainer.max_time, which is not set: set "
                "trainer.max_time=DD:HH:MM:SS, or task.module.scheduler.budget=steps"
            )
        if warmup_steps is not None and warmup_ratio is not None:
            warmup_steps_for(1, warmup_steps, warmup_ratio)  # raises the one-line error
        steps = num_training_steps if math.isfinite(num_training_steps) else None
        length = schedule_length(int(steps), total_steps) if steps is not None or total_steps else None

        def by_time(step: int) -> float:
            # the steps bound the run too: decay by whichever budget is further along
            used = max(time_fraction(), step / length if length else 0.0)
            return time_budget_factor(step, used, warmup_steps, warmup_ratio)

        return LambdaLR(optimizer, by_time)
    if not math.isfinite(num_training_steps) and total_steps is None:
        raise ScheduleError(
            "the lr schedule decays over the run's steps, but neither trainer.max_steps nor max_epochs "
            "bounds it: set one, task.module.scheduler.total_steps, or budget=time with trainer.max_time"
        )
    total = schedule_length(int(num_training_steps) if math.isfinite(num_training_steps) else 1, total_steps)
    warmup = warmup_steps_for(total, warmup_steps, warmup_ratio)

    def factor(step: int) -> float:
        return warmup_linear_factor(step, warmup, total)

    return LambdaLR(optimizer, factor)
