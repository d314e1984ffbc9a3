"""Best checkpoint by the task's main dev metric: each task names its metric, fine-tuning keeps
checkpoints/best.ckpt beside last.ckpt, `ckpt=<run folder>` evaluates best.ckpt, and early stopping on
the same metric is one option away."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, EarlyStopping

from bertlab.model.checkpoint import CheckpointError
from bertlab.run import main
from bertlab.run_folder import BestCheckpoint, CheckpointNotFound, resolve_eval_checkpoint
from tests.hydra_helpers import compose_cfg

MAIN_METRICS = {
    "cola": "val/mcc",
    "sst2": "val/acc",
    "mrpc": "val/f1",
    "stsb": "val/spearmanr",
    "qqp": "val/f1",
    "mnli": "val/acc",  # the matched dev set; mismatched is val/acc_mm
    "qnli": "val/acc",
    "rte": "val/acc",
    "wnli": "val/acc",
    "squad_v1": "val/f1",
    "squad_v2": "val/f1",
    "conll2003": "val/f1",
    "conll2003_feature": "val/f1",
    "swag": "val/acc",
}
# a tiny odd-sized random model, fp32 (the scores must agree exactly between fit and test)
TINY = ["model=bert_tiny", "model.hidden_size=72", "model.num_attention_heads=3", "model.intermediate_size=101",
        "pretrained=null", "hardware.precision=32-true", "logger=csv", "trainer.enable_model_summary=false",
        "export=false"]  # fmt: skip


# ------------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize(("task", "key"), sorted(MAIN_METRICS.items()))
def test_each_fine_tuning_task_keeps_the_best_by_its_main_metric(task: str, key: str, tmp_path: Path) -> None:
    cfg = compose_cfg([f"task={task}"], tmp_path)
    assert cfg.task.main_metric == key
    best = instantiate(cfg.callbacks.best_checkpoint)
    assert isinstance(best, BestCheckpoint)
    assert (best.monitor, best.mode, best.save_top_k, best.save_last) == (key, "max", 1, False)
    assert Path(best.dirpath) == (tmp_path / "checkpoints").resolve()
    assert best.format_checkpoint_name({}) == str(Path(best.dirpath) / "best.ckpt")
    assert "early_stopping" not in cfg.callbacks  # off unless asked for


def test_pretraining_keeps_no_best_checkpoint(tmp_path: Path) -> None:
    """No main metric: the callback saves nothing, so pre-training keeps last and step*.ckpt only."""
    cfg = compose_cfg(["task=pretrain"], tmp_path)
    assert cfg.task.main_metric is None
    best = instantiate(cfg.callbacks.best_checkpoint)
    assert best.monitor is None and best.save_top_k == 0
    assert cfg.callbacks.model_checkpoint.save_last is True


def test_early_stopping_preset_watches_the_main_metric(tmp_path: Path) -> None:
    cfg = compose_cfg(
        ["task=cola", "callbacks=early_stopping", "callbacks.early_stopping.patience=1"], tmp_path
    )
    stop = instantiate(cfg.callbacks.early_stopping)
    assert isinstance(stop, EarlyStopping)
    assert (stop.monitor, stop.mode, stop.patience) == ("val/mcc", "max", 1)
    assert {"model_checkpoint", "best_checkpoint", "progress_log"} <= cfg.callbacks.keys()


# ------------------------------------------------------------------------------------------ ckpt= folders


def test_run_folder_gives_best_then_last_and_a_file_itself(tmp_path: Path) -> None:
    run = tmp_path / "run"
    folder = run / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "last.ckpt").touch()
    assert resolve_eval_checkpoint(run) == resolve_eval_checkpoint(str(folder)) == folder / "last.ckpt"
    (folder / "best.ckpt").touch()
    (folder / "step100.ckpt").touch()
    assert resolve_eval_checkpoint(run) == resolve_eval_checkpoint(folder) == folder / "best.ckpt"
    assert resolve_eval_checkpoint(folder / "last.ckpt") == folder / "last.ckpt"  # named: used as given
    assert resolve_eval_checkpoint(str(folder / "step100.ckpt")) == folder / "step100.ckpt"


def test_missing_checkpoints_name_where_they_were_looked_for(tmp_path: Path) -> None:
    assert issubclass(CheckpointNotFound, CheckpointError) and issubclass(CheckpointNotFound, ValueError)
    with pytest.raises(CheckpointNotFound, match=f"ckpt={tmp_path / 'nowhere'}: no such file or folder"):
        resolve_eval_checkpoint(tmp_path / "nowhere")
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    with pytest.raises(CheckpointNotFound) as err:
        resolve_eval_checkpoint(tmp_path / "run")
    assert str(folder / "best.ckpt") in str(err.value) and str(folder / "last.ckpt") in str(err.value)


# ------------------------------------------------------------------------------ end to end (SST-2 format)
FILLER = ("the", "a", "film", "story", "actors", "plot", "scene", "music", "moment", "ending", "director",
          "script", "cast", "camera")  # fmt: skip


def write_keyword_sst2(root: Path, n_train: int = 128, n_dev: int = 48, n_test: int = 20) -> Path:
    """An SST-2-format folder whose label is one keyword ("wonderful" 1, "terrible" 0) among filler words:
    the tiny random model learns it within two epochs, so a later, worse epoch stands out."""
    rng = random.Random(0)

    def sentence() -> tuple[str, int]:
        label = rng.randrange(2)
        words = rng.choices(FILLER, k=6)
        words.insert(rng.randrange(7), ("terrible", "wonderful")[label])
        return " ".join(words), label

    folder = root / "SST-2"
    folder.mkdir(parents=True)
    for name, n in (("train.tsv", n_train), ("dev.tsv", n_dev)):
        rows = [sentence() for _ in range(n)]
        (folder / name).write_text("sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows))
    test = "".join(f"{i}\t{sentence()[0]}\n" for i in range(n_test))
    (folder / "test.tsv").write_text("index\tsentence\n" + test)
    return root


class FlipLabelsInLastEpoch(Callback):
    """Trains the final epoch on inverted labels at the peak lr (not the decayed one): a bad last epoch,
    after the model has learned the task, whatever order the batches came in."""

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, i: int
    ) -> None:
        if trainer.current_epoch == trainer.max_epochs - 1:
            batch["labels"].copy_(1 - batch["labels"])
            for group in trainer.optimizers[0].param_groups:
                group["lr"] = group["initial_lr"]


def val_rows(run: Path) -> list[dict[str, float]]:
    """The per-validation rows of the run's CSV log: epoch, val/acc, val/loss."""
    rows = csv.DictReader((next(run.glob("csv/version_*")) / "metrics.csv").open())
    keys = ("epoch", "val/acc", "val/loss")
    return [{k: float(r[k]) for k in keys} for r in rows if r.get("val/acc")]


def fit(out: Path, data_dir: Path, vocab: Path, *extra: str) -> list[dict[str, float]]:
    """Fine-tune the tiny model on the keyword task (lr 1e-2: learned by the second epoch); its validations."""
    main(compose_cfg(["task=sst2", *TINY, f"tokenizer={vocab}", f"data.data_dir={data_dir}",
                      "data.max_seq_length=16", "data.batch_size=16", "task.module.optimizer.lr=1e-2",
                      *extra], out))  # fmt: skip
    return val_rows(out)


@pytest.fixture(scope="module")
def keyword_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_keyword_sst2(tmp_path_factory.mktemp("keyword_sst2"))


@pytest.fixture(scope="module")
def spoiled_run(
    keyword_data: Path, minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[dict[str, float]]]:
    """A 3-epoch fit whose last epoch (inverted labels) scores below its best: run folder, validations.
    With test_after_fit (GLUE's test stage scores the dev set)."""
    run = tmp_path_factory.mktemp("spoiled") / "fit"
    flip = f"+callbacks.flip_labels._target_={__name__}.FlipLabelsInLastEpoch"
    epochs = fit(
        run, keyword_data, minilm_dir / "vocab.txt", "trainer.max_epochs=3", flip, "test_after_fit=true"
    )
    accs = [e["val/acc"] for e in epochs]
    assert len(accs) == 3 and max(accs[:2]) == 1.0 and accs[2] < 0.9, accs
    return run, epochs


def best_epoch(epochs: list[dict[str, float]]) -> dict[str, float]:
    """The first validation with the highest accuracy (a later tie does not replace it)."""
    return max(epochs, key=lambda e: (e["val/acc"], -e["epoch"]))


def test_fit_keeps_the_best_epoch_beside_the_last(spoiled_run: tuple[Path, list[dict[str, float]]]) -> None:
    run, epochs = spoiled_run
    folder = run / "checkpoints"
    assert {"best.ckpt", "last.ckpt"} <= {p.name for p in folder.iterdir()}
    best, last = (
        torch.load(folder / n, map_location="cpu", weights_only=True) for n in ("best.ckpt", "last.ckpt")
    )
    assert best["epoch"] == best_epoch(epochs)["epoch"] < epochs[-1]["epoch"] < last["epoch"]


def test_test_after_fit_scores_best_ckpt(spoiled_run: tuple[Path, list[dict[str, float]]]) -> None:
    """test_after_fit tests best.ckpt's weights: the best epoch's dev scores, beside the last epoch's val/*."""
    run, epochs = spoiled_run
    metrics = json.loads((run / "metrics.json").read_text())
    best = best_epoch(epochs)
    assert metrics["test/acc"] == best["val/acc"] == 1.0 > epochs[-1]["val/acc"]
    assert metrics["test/loss"] == pytest.approx(best["val/loss"], abs=1e-5)
    assert metrics["val/acc"] == pytest.approx(epochs[-1]["val/acc"], abs=1e-6)  # val/*: the last epoch


def test_mode_test_scores_best_ckpt(spoiled_run: tuple[Path, list[dict[str, float]]], tmp_path: Path) -> None:
    """best.ckpt (as `resolve_eval_checkpoint` picks it) scores the best epoch's dev accuracy, not the last's."""
    run, epochs = spoiled_run
    ckpt = resolve_eval_checkpoint(run)
    assert ckpt == run / "checkpoints" / "best.ckpt"
    metrics = main(compose_cfg(["task=sst2", "mode=test", f"ckpt={ckpt}", "logger=csv",
                                "hardware.precision=32-true"], tmp_path / "test"))  # fmt: skip
    best = best_epoch(epochs)
    assert metrics["test/acc"] == best["val/acc"] == 1.0 > epochs[-1]["val/acc"]
    assert metrics["test/loss"] == pytest.approx(best["val/loss"], abs=1e-5)


# Needs the one line in bertlab.run.main (mode=test|predict: `cfg.ckpt = str(resolve_eval_checkpoint(cfg.ckpt))`
# before `read_back_checkpoint(cfg)`): `ckpt=<run folder>` evaluates best.ckpt.
def test_run_folder_as_ckpt_evaluates_the_best_epoch(
    spoiled_run: tuple[Path, list[dict[str, float]]], tmp_path: Path
) -> None:
    run, epochs = spoiled_run
    common = ["task=sst2", "logger=csv", "hardware.precision=32-true"]
    metrics = main(compose_cfg([*common, "mode=test", f"ckpt={run}"], tmp_path / "test"))
    best = best_epoch(epochs)
    assert metrics["test/acc"] == best["val/acc"] == 1.0 > epochs[-1]["val/acc"]
    assert metrics["test/loss"] == pytest.approx(best["val/loss"], abs=1e-5)
    # predict too: the submission of best.ckpt, not last.ckpt's
    for name, ckpt in (("folder", run), ("best", run / "checkpoints" / "best.ckpt"),
                       ("last", run / "checkpoints" / "last.ckpt")):  # fmt: skip
        main(compose_cfg([*common, "mode=predict", f"ckpt={ckpt}"], tmp_path / name))
    rows = {d: (tmp_path / d / "submission" / "SST-2.tsv").read_text() for d in ("folder", "best", "last")}
    assert rows["folder"] == rows["best"] != rows["last"]
    assert len(rows["folder"].splitlines()) == 1 + 20


def test_early_stopping_stops_after_a_validation_without_gain(
    keyword_data: Path, minilm_dir: Path, tmp_path: Path
) -> None:
    """patience=1: training stops at the first validation that does not beat every earlier one."""
    run = tmp_path / "run"
    epochs = fit(run, keyword_data, minilm_dir / "vocab.txt", "trainer.max_epochs=8",
                 "task.module.scheduler.warmup_ratio=null", "task.module.scheduler.warmup_steps=2",
                 "callbacks=early_stopping", "callbacks.early_stopping.patience=1")  # fmt: skip
    accs = [e["val/acc"] for e in epochs]
    # the keyword task is learned within a few epochs, so a validation without gain comes well before 8
    stop = next(i for i in range(1, len(accs)) if accs[i] <= max(accs[:i]))
    assert 2 <= len(accs) == stop + 1 < 8, accs
    assert json.loads((run / "metrics.json").read_text())["val/acc"] == pytest.approx(accs[-1], abs=1e-6)
