"""Learning-rate schedule of the paper: linear warmup to the peak, then linear decay to zero."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_steps_for(num_training_steps: int, warmup_steps: int | None, warmup_ratio: float | None) -> int:
    """Warmup length from an absolute count (pre-training: 10k) or a fraction (fine-tuning: 0.1)."""
    if warmup_steps is not None and warmup_ratio is not None:
        raise ValueError("give warmup_steps or warmup_ratio, not both (set the other to null)")
    if warmup_steps is not None:
        return int(warmup_steps)
    return int((warmup_ratio or 0.0) * num_training_steps)  # floor, as the original run_classifier.py


def warmup_linear(
    optimizer: Optimizer,
    num_training_steps: int,
    warmup_steps: int | None = None,
    warmup_ratio: float | None = None,
) -> LambdaLR:
    """LambdaLR scaling the peak lr: step/warmup while warming up, then (total-step)/(total-warmup)."""
    warmup = warmup_steps_for(num_training_steps, warmup_steps, warmup_ratio)
    total = max(int(num_training_steps), 1)

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(warmup, 1)
        return max(0.0, (total - step) / max(total - warmup, 1))

    return LambdaLR(optimizer, factor)
