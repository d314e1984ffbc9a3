"""GLUE end to end through run.main: all nine tasks train, test from a checkpoint, write submissions, and learn.

Real files from ../shared/data for CoLA, SST-2, MRPC, STS-B, RTE, WNLI and QNLI (whose train.tsv is not
there: its dev set stands in), fixtures in the official layouts for MNLI and QQP (tests/fixtures_glue.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from bertlab.data.glue_tasks import get_task, main_metric
from bertlab.renamed import RENAMED_KEYS
from bertlab.run import main
from tests.fixtures_glue import write_mnli, write_qqp
from tests.hydra_helpers import compose_cfg

TASKS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
REAL = ("CoLA", "SST-2", "MRPC", "STS-B", "RTE", "WNLI")
# tiny random model with odd sizes (pretrained=null: not the size's published checkpoint); fp32 so results
# do not depend on the CPU's bf16 support
TINY = ["model=bert_tiny", "model.hidden_size=72", "model.num_attention_heads=3", "model.intermediate_size=101",
        "pretrained=null", "hardware.precision=32-true", "logger=csv", "trainer.enable_model_summary=false",
        "export=false"]  # fmt: skip
# GLUE's test sets: submission file -> rows (the official counts; MNLI and QQP: the fixtures' sizes)
SUBMISSIONS = {
    "cola": {"CoLA.tsv": 1063},
    "sst2": {"SST-2.tsv": 1821},
    "mrpc": {"MRPC.tsv": 1725},
    "stsb": {"STS-B.tsv": 1379},
    "rte": {"RTE.tsv": 3000},
    "wnli": {"WNLI.tsv": 146},
    "qnli": {"QNLI.tsv": 5463},
    "mnli": {"MNLI-m.tsv": 10, "MNLI-mm.tsv": 10, "AX.tsv": 7},
    "qqp": {"QQP.tsv": 10},
}


@pytest.fixture(scope="module")
def glue_dir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data_dir with every task: the shared folders linked, QNLI with dev.tsv as train.tsv, MNLI/QQP fixtures."""
    root = tmp_path_factory.mktemp("glue")
    for folder in REAL:
        (root / folder).symlink_to(shared_data / "glue" / folder, target_is_directory=True)
    qnli = root / "QNLI"
    qnli.mkdir()
    for name, source in (("train.tsv", "dev.tsv"), ("dev.tsv", "dev.tsv"), ("test.tsv", "test.tsv")):
        (qnli / name).symlink_to(shared_data / "glue" / "QNLI" / source)
    write_mnli(root)
    write_qqp(root)
    return root


@pytest.fixture(scope="module")
def vocab(minilm_dir: Path) -> Path:
    return minilm_dir / "vocab.txt"


@pytest.fixture(scope="module")
def fitted(glue_dir: Path, vocab: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """task -> a one-step fine-tuning run's folder (checkpoints/last.ckpt, metrics.json), made once per task."""
    runs: dict[str, Path] = {}

    def fit(task: str) -> Path:
        if task not in runs:
            out = tmp_path_factory.mktemp(f"fit_{task}")
            main(compose_cfg([f"task={task}", *TINY, f"tokenizer={vocab}", f"data.data_dir={glue_dir}",
                              "data.max_train_examples=16", "data.batch_size=16", "data.max_eval_examples=16",
                              "trainer.max_epochs=1"], out))  # fmt: skip
            runs[task] = out
        return runs[task]

    return fit


def test_task_files_name_only_their_task(tmp_path: Path) -> None:
    """Each conf/task/<glue task>.yaml sets task.name; data, labels, head size and main metric follow from it."""
    for task in TASKS:
        cfg = compose_cfg([f"task={task}"], tmp_path / task)
        assert cfg.task.name == cfg.data.task == cfg.task.module.task == task
        assert cfg.task.main_metric == f"val/{main_metric(task)}"  # picks checkpoints/best.ckpt
        assert list(cfg.task.module.label_names) == list(get_task(task).labels)  # [] for STS-B
    # the old cap names point at the new ones (train.py stops an old override with that line)
    for old in ("max_train_samples", "max_eval_samples"):
        new = RENAMED_KEYS[f"data.{old}"].removeprefix("data.")
        assert new in cfg.data and old not in cfg.data


@pytest.mark.parametrize("task", TASKS)
def test_fast_dev_run_every_task(task: str, glue_dir: Path, vocab: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = compose_cfg([f"task={task}", *TINY, f"tokenizer={vocab}", f"data.data_dir={glue_dir}",
                       "data.max_train_examples=64", "data.max_eval_examples=64", "trainer.fast_dev_run=true"], out)  # fmt: skip
    metrics = main(cfg)
    key = f"val/{main_metric(task)}"
    assert key in metrics and math.isfinite(metrics[key]), metrics
    assert math.isfinite(metrics["train/loss"]) and metrics["train/loss"] > 0
    expected = {f"val/{m}" for m in get_task(task).metrics} | ({"val/acc_mm"} if task == "mnli" else set())
    assert expected <= metrics.keys()
    assert json.loads((out / "metrics.json").read_text()) == metrics


def test_mode_test_reads_the_checkpoint_back(fitted: Callable[[str], Path], tmp_path: Path) -> None:
    """mode=test with ckpt=: model, task and data from the checkpoint; the same dev rows give the same score."""
    fit = fitted("rte")
    out = tmp_path / "test"
    # fp32 as the fit (hardware is not stored with the checkpoint): the scores must then agree exactly
    metrics = main(compose_cfg(["task=rte", "mode=test", f"ckpt={fit / 'checkpoints' / 'last.ckpt'}",
                                "logger=csv", "hardware.precision=32-true"], out))  # fmt: skip
    assert {"test/acc", "test/loss"} <= metrics.keys()
    assert json.loads((out / "metrics.json").read_text()) == metrics
    # the fit validated its final weights on these 16 dev rows: a freshly initialised model would differ
    fit_metrics = json.loads((fit / "metrics.json").read_text())
    assert metrics["test/acc"] == fit_metrics["val/acc"]
    assert metrics["test/loss"] == pytest.approx(fit_metrics["val/loss"], abs=1e-5)
    # ProgressLog's speed: 16 training rows in one epoch, at a positive rate; test mode trains nothing
    rate, seconds = fit_metrics["speed/train_examples_per_s"], fit_metrics["speed/train_time_s"]
    assert rate > 0 and round(rate * seconds) == 16
    assert not any(k.startswith("speed/") for k in metrics)


def test_mode_test_reads_a_checkpoint_written_before_the_renames(
    fitted: Callable[[str], Path], tmp_path: Path
) -> None:
    """A .ckpt whose stored config has the old cap names and no label_names still scores, identically."""
    import torch

    fit = fitted("rte")
    ckpt = torch.load(fit / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    stored = ckpt["hyper_parameters"]["run_config"]
    stored["data"]["max_train_samples"] = stored["data"].pop("max_train_examples")
    stored["data"]["max_eval_samples"] = stored["data"].pop("max_eval_examples")
    del stored["task"]["module"]["label_names"]
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    scores = {}
    for name, path in (("new", fit / "checkpoints" / "last.ckpt"), ("old", old)):
        scores[name] = main(compose_cfg(["task=rte", "mode=test", f"ckpt={path}", "logger=csv",
                                         "hardware.precision=32-true"], tmp_path / name))  # fmt: skip
    assert scores["old"] == scores["new"] and "test/acc" in scores["old"]


@pytest.mark.parametrize("task", TASKS)
def test_predict_writes_every_submission_file(
    task: str, fitted: Callable[[str], Path], tmp_path: Path
) -> None:
    """mode=predict: GLUE's files with one row per test example, in index order, labels as GLUE spells them."""
    fit = fitted(task)
    out = tmp_path / "predict"
    # every test row (max_eval_examples=null undoes the fit's 16); short sequences keep it fast
    main(compose_cfg([f"task={task}", "mode=predict", f"ckpt={fit / 'checkpoints' / 'last.ckpt'}", "logger=csv",
                      "data.max_eval_examples=null", "data.eval_batch_size=256", "data.max_seq_length=32"], out))  # fmt: skip
    folder = out / "submission"
    assert sorted(p.name for p in folder.iterdir()) == sorted(SUBMISSIONS[task])
    spec = get_task(task)
    for name, n in SUBMISSIONS[task].items():
        lines = (folder / name).read_text().splitlines()
        assert len(lines) == 1 + n, f"{name}: {len(lines) - 1} rows, GLUE has {n}"
        assert lines[0] == "index\tprediction"
        rows = [line.split("\t") for line in lines[1:]]
        assert [int(i) for i, _ in rows] == sorted(int(i) for i, _ in rows)
        if spec.is_regression:
            assert all(0.0 <= float(p) <= 5.0 for _, p in rows)
        else:
            assert {p for _, p in rows} <= set(spec.labels)
    if task in ("cola", "sst2", "mrpc", "stsb", "rte", "wnli", "qnli"):
        # the official test files number their rows 0..N-1
        name, n = next(iter(SUBMISSIONS[task].items()))
        ids = [int(line.split("\t")[0]) for line in (folder / name).read_text().splitlines()[1:]]
        assert ids == list(range(n))


@pytest.mark.slow
def test_stsb_regression_learns_from_minilm(glue_dir: Path, minilm_dir: Path, tmp_path: Path) -> None:
    """A short real fine-tuning of the pre-trained MiniLM reaches a dev Spearman correlation above 0.5."""
    out = tmp_path / "stsb"
    metrics = main(compose_cfg(["task=stsb", f"pretrained={minilm_dir}", "logger=csv", "hardware.precision=32-true",
                                f"data.data_dir={glue_dir}", "data.max_train_examples=1500", "data.max_seq_length=64",
                                "data.batch_size=16", "data.group_by_length=true", "data.max_eval_examples=500",
                                "task.module.optimizer.lr=1e-4", "trainer.max_epochs=1", "export=false",
                                "trainer.enable_model_summary=false"], out))  # fmt: skip
    assert metrics["val/spearmanr"] > 0.5, metrics
    assert metrics["val/pearson"] > 0.5, metrics
