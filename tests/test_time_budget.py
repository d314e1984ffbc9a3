"""The wall-clock budget schedule (task.module.scheduler.budget=time) and held-out masking (data.eval_masking)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from bertlab.data.errors import DataConfigError
from bertlab.data.pretrain import PretrainDataModule
from bertlab.tasks.schedule import ScheduleError, time_budget_factor, warmup_linear


def lr_after(fractions: list[float], **kwargs: object) -> list[float]:
    """The lr before each of len(fractions) steps when `time_fraction()` returns those shares of the budget."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    now = iter([0.0, *fractions])  # LambdaLR evaluates the factor once at construction
    sched = warmup_linear(opt, float("inf"), budget="time", time_fraction=lambda: next(now), **kwargs)
    lrs = []
    for _ in fractions:
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def test_time_budget_decays_with_the_clock_not_the_steps() -> None:
    # warmup over 4 steps, then linear in the remaining time: the same step count at a slower clock
    # has a higher lr, and the lr is 0 once the time is used up
    assert lr_after([0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.2], warmup_steps=4) == pytest.approx(
        [0.25, 0.5, 0.7, 0.6, 0.5, 0.25, 0.0, 0.0]
    )
    # a ratio warms up over that share of the time, then decays over the rest
    assert time_budget_factor(3, 0.05, None, 0.1) == pytest.approx(0.5)
    assert time_budget_factor(3, 0.55, None, 0.1) == pytest.approx(0.5)
    assert time_budget_factor(3, 1.0, None, 0.1) == 0.0


def test_time_budget_also_stops_at_max_steps() -> None:
    # 10 steps bound the run as well as the clock: at step 5 of 10 with 10% of the time used, the lr is half
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_linear(opt, 10, warmup_steps=0, budget="time", time_fraction=lambda: 0.1)
    for _ in range(5):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)


def test_time_budget_needs_max_time_and_a_known_budget() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ScheduleError, match=r"trainer\.max_time"):
        warmup_linear(opt, 100, warmup_steps=10, budget="time")
    with pytest.raises(ScheduleError, match=r"budget='wall'"):
        warmup_linear(opt, 100, budget="wall")
    with pytest.raises(ScheduleError, match=r"trainer\.max_steps"):
        warmup_linear(opt, float("inf"), warmup_steps=10)


def test_task_reads_the_trainer_timer() -> None:
    """BertTask.time_fraction is the share of trainer.max_time that Lightning's Timer has counted."""
    from bertlab.tasks.base import BertTask
    from tests.tiny import TINY

    task = BertTask(dict(TINY))
    trainer = L.Trainer(max_time={"seconds": 100}, logger=False, enable_progress_bar=False)
    task.trainer = trainer
    fraction = task.time_fraction()
    assert fraction is not None and fraction() == 0.0  # not started
    timer = next(cb for cb in trainer.callbacks if isinstance(cb, L.pytorch.callbacks.Timer))
    timer._offset = 25.0  # as a resumed run restores it
    assert fraction() == pytest.approx(0.25)
    task.trainer = L.Trainer(max_steps=3, logger=False, enable_progress_bar=False)
    assert task.time_fraction() is None


def test_held_out_masking_is_the_papers_whatever_training_uses(tmp_path: Path) -> None:
    """With data.eval_masking the val split is masked 15% 80/10/10 while training masks 40% 100/0/0, and
    a training masking change under dynamic masking reuses the cache (same key)."""
    paper = {"mlm_probability": 0.15, "mask_token_prob": 0.8, "random_token_prob": 0.1}
    kw = {"cache_dir": tmp_path, "max_train_examples": 60, "val_docs": 20, "max_seq_length": 64, "seed": 3}
    kw |= {"vocab_size": 600, "batch_size": 8}
    dm = PretrainDataModule(
        mlm_probability=0.4, mask_token_prob=1.0, random_token_prob=0.0, eval_masking=paper, **kw
    )
    dm.prepare_data()
    dm.setup("fit")
    val = dm.split("val").features
    labels = torch.tensor([x for row in val["mlm_labels"] for x in row])
    ids = torch.tensor([x for row in val["input_ids"] for x in row])
    selected = labels != -100
    share = float(selected.float().mean())
    assert 0.10 < share < 0.17, share  # 15% of the real non-special tokens, not 40%
    mask_id = dm.tokenizer.token_to_id("[MASK]")
    assert 0.6 < float((ids[selected] == mask_id).float().mean()) < 0.95  # 80% [MASK], not 100%
    train = next(iter(dm.train_dataloader()))
    assert float((train["mlm_labels"] != -100).sum() / train["attention_mask"].sum()) > 0.3
    other = PretrainDataModule(mlm_probability=0.2, eval_masking=paper, **kw)
    assert other._settings() == dm._settings()
    with pytest.raises(DataConfigError, match=r"data\.eval_masking: unknown \['p'\]"):
        PretrainDataModule(eval_masking={"p": 0.1})
    with pytest.raises(DataConfigError, match=r"data\.eval_masking: mlm_probability"):
        PretrainDataModule(eval_masking={**paper, "mlm_probability": 1.5})
