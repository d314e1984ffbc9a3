"""SWAG multiple choice end to end through run.main: fit, test on a labelled file, predictions.csv."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from bertlab.run import main
from bertlab.tasks.swag import MultipleChoiceTask
from tests.hydra_helpers import compose_cfg
from tests.test_swag_data import ROWS, _write

TINY = [
    "task=swag",
    "model=bert_tiny",
    "model.hidden_size=72",
    "model.num_attention_heads=3",
    "model.intermediate_size=101",
    "model.num_hidden_layers=2",
    "pretrained=null",  # random initialisation: no published checkpoint offline
    "logger=csv",
    "trainer.precision=32-true",
    "trainer.log_every_n_steps=1",
]
CONFIG = dict(vocab_size=99, hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=37)


@pytest.fixture
def swag_csvs(tmp_path: Path) -> dict[str, Path]:
    """Official-format files: 15 labelled training rows, 5 labelled dev rows, 3 unlabelled test rows."""
    folder = tmp_path / "swag"
    folder.mkdir()
    return {
        "train": _write(folder / "train.csv", ROWS * 3),
        "val": _write(folder / "val.csv", ROWS),
        "test": _write(folder / "test.csv", ROWS[2:], labelled=False),
    }


def test_fit_test_and_predict(swag_csvs: dict[str, Path], minilm_dir: Path, tmp_path: Path) -> None:
    data = [
        f"tokenizer={minilm_dir / 'vocab.txt'}",
        f"data.train_file={swag_csvs['train']}",
        f"data.val_file={swag_csvs['val']}",
        f"data.test_file={swag_csvs['test']}",
        "data.batch_size=4",
    ]
    fit = tmp_path / "fit"
    metrics = main(compose_cfg([*TINY, *data, "trainer.max_epochs=1", "export=false"], fit))
    assert {"val/acc", "val/loss", "train/loss", "train/acc"} <= metrics.keys()
    assert 0.0 <= metrics["val/acc"] <= 1.0
    ckpt = fit / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["global_step"] == 4  # 15 rows in batches of 4

    # test on a labelled file: accuracy of the predictions written for that same file
    scored_run, pred_run = tmp_path / "test", tmp_path / "predict"
    labelled = [*TINY, f"ckpt={ckpt}", f"data.test_file={swag_csvs['val']}"]
    scored = main(compose_cfg([*labelled, "mode=test"], scored_run))
    assert json.loads((scored_run / "metrics.json").read_text()) == scored and "test/acc" in scored
    main(compose_cfg([*labelled, "mode=predict"], pred_run))
    rows = list(csv.DictReader((pred_run / "predictions.csv").open()))
    assert [int(r["idx"]) for r in rows] == [0, 1, 2, 3, 4]
    assert {int(r["prediction"]) for r in rows} <= {0, 1, 2, 3}
    gold = [int(row[-1]) for row in ROWS]
    accuracy = sum(int(r["prediction"]) == g for r, g in zip(rows, gold)) / len(gold)
    assert scored["test/acc"] == pytest.approx(accuracy, abs=1e-6)
    assert scored["test/acc"] == pytest.approx(metrics["val/acc"], abs=1e-6)  # the same rows, the final model

    # the official, unlabelled test.csv: predictions, but nothing to score
    unlabelled = tmp_path / "unlabelled"
    assert main(compose_cfg([*TINY, f"ckpt={ckpt}", "mode=test"], unlabelled)) == {}
    main(compose_cfg([*TINY, f"ckpt={ckpt}", "mode=predict"], unlabelled))
    assert (unlabelled / "predictions.csv").read_text().splitlines() == [
        "idx,prediction",
        *(f"{i},{r['prediction']}" for i, r in enumerate(rows[2:])),
    ]


def test_few_steps_fit_the_training_rows(
    swag_csvs: dict[str, Path], minilm_dir: Path, tmp_path: Path
) -> None:
    """A few steps fit five questions: cross-entropy over the four choices learns."""
    data = [
        f"tokenizer={minilm_dir / 'vocab.txt'}",
        f"data.train_file={swag_csvs['val']}",
        f"data.val_file={swag_csvs['val']}",
        "data.batch_size=5",
        "export=false",
        "task.module.optimizer.lr=3e-3",
        "task.module.scheduler.warmup_ratio=0",
        "trainer.max_steps=12",
        "model.hidden_dropout_prob=0",
        "model.attention_probs_dropout_prob=0",
    ]
    # one step per epoch: no checkpoint every epoch, validation after the last
    metrics = main(
        compose_cfg(
            [
                *TINY,
                *data,
                "trainer.max_epochs=null",
                "trainer.check_val_every_n_epoch=12",
                "~callbacks.model_checkpoint",
            ],
            tmp_path,
        )
    )
    assert metrics["val/acc"] == 1.0 and metrics["val/loss"] < 0.5


def test_logits_are_a_softmax_over_the_choices() -> None:
    task = MultipleChoiceTask(CONFIG).eval()
    ids = torch.randint(5, 99, (3, 4, 9))
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
    }
    logits = task(batch)
    assert logits.shape == (3, 4)
    # each choice is scored on its own: permuting the choices permutes the logits
    perm = torch.tensor([2, 0, 3, 1])
    permuted = task({k: v[:, perm] for k, v in batch.items()})
    torch.testing.assert_close(permuted, logits[:, perm], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="num_choices=5"):
        MultipleChoiceTask(CONFIG, num_choices=5)(batch)


def test_swag_config_follows_the_paper(tmp_path: Path) -> None:
    cfg = compose_cfg(["task=swag"], tmp_path)
    assert cfg.task.module._target_ == "bertlab.tasks.swag.MultipleChoiceTask"
    assert cfg.trainer.max_epochs == 3 and cfg.task.module.optimizer.lr == 2e-5 and cfg.data.batch_size == 16
    assert cfg.data._target_ == "bertlab.data.swag.SWAGDataModule" and cfg.data.hub_name is None
    assert [cfg.data[f"{s}_file"].split("/")[-2:] for s in ("train", "val", "test")] == [
        ["swag", "train.csv"],
        ["swag", "val.csv"],
        ["swag", "test.csv"],
    ]
