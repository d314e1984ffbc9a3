"""ProgressLog: log lines without a terminal, examples counted per batch, validation kept off the clock."""

from __future__ import annotations

import logging
import time

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from bertlab.callbacks import ProgressLog, batch_examples, clock
from tests.tiny import quiet_trainer

VAL_SLEEP = 0.4  # seconds per validation batch: far longer than the training steps


class Rows(torch.utils.data.Dataset):
    """`n` dict rows shaped like a token batch: input_ids (7,), labels ()."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.full((7,), i), "labels": torch.tensor(float(i % 2))}


class Tiny(L.LightningModule):
    """A 7 -> 1 linear model; validation sleeps so a clock that kept running through it would show it."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(7, 1)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = torch.nn.functional.mse_loss(self.lin(batch["input_ids"].float()).squeeze(-1), batch["labels"])
        self.log("train/loss", loss, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        time.sleep(VAL_SLEEP)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=1e-3)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(Rows(23), batch_size=5)  # 5+5+5+5+3: the short last batch must count as 3

    def val_dataloader(self) -> DataLoader:
        return DataLoader(Rows(4), batch_size=2)


def fit(tmp_path, callback: ProgressLog, epochs: int = 2) -> L.Trainer:
    trainer = quiet_trainer(max_epochs=epochs, callbacks=[callback], default_root_dir=tmp_path)
    trainer.fit(Tiny())
    return trainer


def test_counts_examples_and_keeps_validation_off_the_clock(tmp_path) -> None:
    cb = ProgressLog(every_n_seconds=3600)
    started = time.perf_counter()
    fit(tmp_path, cb)
    wall = time.perf_counter() - started
    summary = cb.summary()
    assert cb.examples == 2 * 23
    assert summary["speed/train_examples_per_s"] == pytest.approx(46 / cb.elapsed(), rel=1e-3)
    assert summary["speed/train_time_s"] == pytest.approx(cb.elapsed(), abs=1e-3)
    validation = 2 * 2 * VAL_SLEEP  # two epochs, two batches each
    assert summary["speed/train_time_s"] < wall - validation


def test_logs_lines_with_step_epoch_loss_and_time_left(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="bertlab"):
        fit(tmp_path, ProgressLog(every_n_seconds=0, always=True), epochs=2)
    lines = [r.getMessage() for r in caplog.records if r.name == "bertlab"]
    assert len(lines) == 10  # one per training step
    assert lines[0].startswith("step 1/10 (10.0%) epoch 1/2 loss ")
    assert "examples/s" in lines[0] and "left" in lines[0]
    assert lines[-1].startswith("step 10/10 (100.0%) epoch 2/2") and "left" not in lines[-1]


def test_time_left_is_trainer_max_time_when_that_stops_first(
    tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    """A budget run (max_time, a huge max_steps) shows the time budget left, not the steps' estimate."""
    stop = L.pytorch.callbacks.LambdaCallback(
        on_train_batch_end=lambda trainer, *_: setattr(trainer, "should_stop", trainer.global_step >= 3)
    )
    cb = ProgressLog(every_n_seconds=0, always=True)
    trainer = quiet_trainer(
        max_steps=10**6, max_time={"minutes": 10}, callbacks=[cb, stop], default_root_dir=tmp_path
    )
    with caplog.at_level(logging.INFO, logger="bertlab"):
        trainer.fit(Tiny())
    lines = [r.getMessage() for r in caplog.records if r.name == "bertlab"]
    assert len(lines) == 3 and all(line.endswith(("9:59 left", "10:00 left")) for line in lines), lines


def test_quiet_on_a_terminal_unless_always(tmp_path, caplog, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bertlab.callbacks.on_terminal", lambda: True)
    with caplog.at_level(logging.INFO, logger="bertlab"):
        fit(tmp_path, ProgressLog(every_n_seconds=0), epochs=1)
    assert not [r for r in caplog.records if r.name == "bertlab"]


def test_nothing_trained_gives_no_speed() -> None:
    assert ProgressLog().summary() == {}


def test_batch_examples_and_clock() -> None:
    assert batch_examples({"input_ids": torch.zeros(3, 4, 9)}) == 3  # SWAG: (B, choices, T)
    assert batch_examples({"labels": torch.zeros(6)}) == 6
    assert batch_examples([torch.zeros(2, 5)]) == 2
    assert batch_examples({"names": ["a"]}) == 0
    assert (clock(59.6), clock(61), clock(3723)) == ("1:00", "1:01", "1:02:03")
