"""Guarded training (bertlab.guard): a NaN loss at a chosen step stops the run before the optimizer step
(weights and last.ckpt from before it; one-line error, exit 2), or, with action=skip, that batch is skipped
and counted (train/skipped_nonfinite, metrics.json)."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from bertlab.guard import GuardConfigError, NonFiniteGuard, NonFiniteLoss
from bertlab.run import main
from bertlab.tasks.classification import SequenceClassificationTask
from tests.cli import offline_env, run_train
from tests.hydra_helpers import compose_cfg
from tests.test_best_checkpoint import TINY, write_keyword_sst2

STEPS_PER_EPOCH = 5  # 37 training rows at batch 8


class Snapshots(Callback):
    """The weights before each training batch (by global step) and when an exception ends the run."""

    before: ClassVar[dict[int, dict[str, torch.Tensor]]] = {}
    at_error: ClassVar[dict[str, torch.Tensor]] = {}

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, i: int
    ) -> None:
        Snapshots.before[trainer.global_step] = clone(pl_module)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        Snapshots.at_error.update(clone(pl_module))


class PoisonWeightsAtStep2(Callback):
    """Sets one classifier weight to NaN before the batch of global step 2 (for the train.py run)."""

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, i: int
    ) -> None:
        if trainer.global_step == 2:
            with torch.no_grad():
                pl_module.model.classifier.weight[0, 0] = float("nan")


def clone(module: L.LightningModule) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def finite(state: dict[str, torch.Tensor]) -> bool:
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def nan_loss_at(steps: set[int]) -> Callable[..., torch.Tensor]:
    """SequenceClassificationTask.loss, NaN in training at the given global steps."""
    original = SequenceClassificationTask.loss

    def loss(self: SequenceClassificationTask, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        value = original(self, logits, labels)
        return value * float("nan") if self.training and self.trainer.global_step in steps else value

    return loss


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_keyword_sst2(tmp_path_factory.mktemp("sst2"), n_train=37, n_dev=11, n_test=5)


def fit(out: Path, data: Path, vocab: Path, *extra: str) -> dict[str, float]:
    Snapshots.before.clear()
    Snapshots.at_error.clear()
    return main(compose_cfg([
        "task=sst2", *TINY, f"tokenizer={vocab}", f"data.data_dir={data}", "data.max_seq_length=16",
        "data.batch_size=8", "trainer.max_epochs=3", "trainer.log_every_n_steps=1",
        "task.module.optimizer.lr=1e-3", f"+callbacks.snapshots._target_={__name__}.Snapshots", *extra,
    ], out))  # fmt: skip


def test_nan_loss_stops_before_the_step_and_keeps_the_last_good_checkpoint(
    data: Path, minilm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = STEPS_PER_EPOCH + 2  # in the second epoch, after last.ckpt was written at step 3 and 6
    monkeypatch.setattr(SequenceClassificationTask, "loss", nan_loss_at({bad}))
    with pytest.raises(NonFiniteLoss, match=rf"training loss is nan at step {bad} \(epoch 1, batch 2\);"):
        fit(
            tmp_path / "run",
            data,
            minilm_dir / "vocab.txt",
            "callbacks.model_checkpoint.every_n_train_steps=3",
        )
    assert max(Snapshots.before) == bad
    # the weights when the run stopped are those before the bad batch (and those changed every step before)
    assert same(Snapshots.at_error, Snapshots.before[bad]) and finite(Snapshots.at_error)
    assert not same(Snapshots.before[bad], Snapshots.before[bad - 1])
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    # last.ckpt holds the weights of a step before the bad one (6; a save on the error would hold bad's)
    assert 3 <= last["global_step"] <= bad
    assert same(last["state_dict"], Snapshots.before[last["global_step"]]) and finite(last["state_dict"])
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_skip_mode_skips_bad_batches_counts_them_and_trains_on(
    data: Path, minilm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = {2, STEPS_PER_EPOCH + 3}
    monkeypatch.setattr(SequenceClassificationTask, "loss", nan_loss_at(bad))
    run = tmp_path / "run"
    metrics = fit(run, data, minilm_dir / "vocab.txt", "callbacks.nonfinite_guard.action=skip")
    assert metrics["train/skipped_nonfinite"] == 2
    steps = 3 * STEPS_PER_EPOCH
    assert sorted(Snapshots.before) == list(range(steps))  # every batch ran, the skipped ones included
    # a skipped batch changes nothing (no weight decay, no moment); the others do (step 0's warmup lr is 0)
    for step in range(1, steps - 1):
        assert same(Snapshots.before[step], Snapshots.before[step + 1]) == (step in bad), step
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == steps and finite(last["state_dict"])
    rows = list(csv.DictReader((next(run.glob("csv/version_*")) / "metrics.csv").open()))
    counts = [float(r["train/skipped_nonfinite"]) for r in rows if r.get("train/skipped_nonfinite")]
    assert counts[0] == 0 and counts[-1] == 2 and sorted(counts) == counts
    assert metrics["val/acc"] >= 0  # validation ran on finite weights


def test_unknown_action_is_refused() -> None:
    with pytest.raises(GuardConfigError, match="action='ignore' must be one of stop, skip"):
        NonFiniteGuard("ignore")  # type: ignore[arg-type]


def test_train_py_prints_one_line_and_exits_2(data: Path, minilm_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [
        "task=sst2", *TINY, f"tokenizer={minilm_dir / 'vocab.txt'}", f"data.data_dir={data}",
        "data.max_seq_length=16", "data.batch_size=8", "trainer.max_epochs=1",
        f"+callbacks.poison._target_={__name__}.PoisonWeightsAtStep2",
        f"hydra.run.dir={run}", f"paths.cache_dir={tmp_path / 'cache'}",
    ]  # fmt: skip
    proc = run_train(args, env=offline_env())
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert errors[0].startswith("error: training loss is nan at step 2 (epoch 0, batch 2); stopped before")
    assert "callbacks.nonfinite_guard.action=skip" in errors[0]
