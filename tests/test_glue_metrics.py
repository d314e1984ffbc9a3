"""GLUE metrics against sklearn/scipy, main-metric names (the task table), and submission files (data/)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from scipy import stats
from sklearn import metrics as skm

from bertlab.data.glue_files import read_glue_split, write_submission
from bertlab.data.glue_tasks import GLUE_TASKS, MAIN_METRIC, get_task, main_metric
from bertlab.metrics.glue import glue_metrics, predictions_from_logits


def task_metrics(task: str, prefix: str | None = None):
    """The metrics of a GLUE task, as the task module builds them from the task table."""
    spec = get_task(task)
    return glue_metrics(spec.metrics, spec.num_labels, prefix=prefix)


def _update_in_batches(
    collection, preds: torch.Tensor, target: torch.Tensor, batch: int = 37
) -> dict[str, float]:
    """Feed uneven batches, as an epoch does, and compute."""
    for start in range(0, len(preds), batch):
        collection.update(preds[start : start + batch], target[start : start + batch])
    return {k: float(v) for k, v in collection.compute().items()}


def test_metric_keys_and_main_metrics() -> None:
    keys = {name: sorted(task_metrics(name).keys()) for name in GLUE_TASKS}
    assert keys == {
        "cola": ["mcc"],
        "sst2": ["acc"],
        "mrpc": ["acc", "f1"],
        "stsb": ["pearson", "spearmanr"],
        "qqp": ["acc", "f1"],
        "mnli": ["acc"],
        "qnli": ["acc"],
        "rte": ["acc"],
        "wnli": ["acc"],
    }
    assert MAIN_METRIC == {
        "cola": "mcc",
        "sst2": "acc",
        "mrpc": "f1",
        "stsb": "spearmanr",
        "qqp": "f1",
        "mnli": "acc",
        "qnli": "acc",
        "rte": "acc",
        "wnli": "acc",
    }
    assert main_metric("STS-B") == "spearmanr" and all(MAIN_METRIC[t] in keys[t] for t in GLUE_TASKS)
    assert sorted(task_metrics("rte", prefix="val/rte_").keys()) == ["val/rte_acc"]
    with pytest.raises(ValueError, match="unknown GLUE metric 'auc'; choose one of acc, f1, mcc"):
        glue_metrics(["auc"], 2)


def test_classification_metrics_match_sklearn() -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 2, (500,), generator=g)
    # correlated with the target, so MCC and F1 are far from trivial values
    preds = torch.where(torch.rand(500, generator=g) < 0.7, target, torch.randint(0, 2, (500,), generator=g))
    y, p = target.numpy(), preds.numpy()
    cola = _update_in_batches(task_metrics("cola"), preds, target)
    assert cola["mcc"] == pytest.approx(skm.matthews_corrcoef(y, p), abs=1e-6)
    mrpc = _update_in_batches(task_metrics("mrpc"), preds, target)
    assert mrpc["f1"] == pytest.approx(skm.f1_score(y, p, pos_label=1), abs=1e-6)
    assert mrpc["acc"] == pytest.approx(skm.accuracy_score(y, p), abs=1e-6)
    # F1 is of class 1: swapping the classes changes it
    assert mrpc["f1"] != pytest.approx(skm.f1_score(y, p, pos_label=0), abs=1e-3)
    # MNLI: plain (micro) accuracy over three unbalanced classes, not a per-class (macro) average
    target3 = torch.multinomial(torch.tensor([0.6, 0.3, 0.1]), 700, replacement=True, generator=g)
    preds3 = torch.where(
        torch.rand(700, generator=g) < 0.5, target3, torch.randint(0, 3, (700,), generator=g)
    )
    mnli = _update_in_batches(task_metrics("mnli"), preds3, target3)
    assert mnli["acc"] == pytest.approx(skm.accuracy_score(target3.numpy(), preds3.numpy()), abs=1e-6)
    assert mnli["acc"] != pytest.approx(
        skm.balanced_accuracy_score(target3.numpy(), preds3.numpy()), abs=1e-3
    )


def test_regression_metrics_match_scipy() -> None:
    g = torch.Generator().manual_seed(1)
    target = torch.randint(0, 26, (400,), generator=g).float() / 5  # 0..5 in steps of 0.2: many ties
    preds = target + torch.randn(400, generator=g)
    stsb = _update_in_batches(task_metrics("stsb"), preds, target)
    assert stsb["pearson"] == pytest.approx(stats.pearsonr(preds.numpy(), target.numpy())[0], abs=1e-5)
    assert stsb["spearmanr"] == pytest.approx(stats.spearmanr(preds.numpy(), target.numpy())[0], abs=1e-5)
    assert stsb["spearmanr"] != pytest.approx(stsb["pearson"], abs=1e-4)


def test_predictions_from_logits() -> None:
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5]])
    assert predictions_from_logits(logits, regression=False).tolist() == [1, 0]
    scores = predictions_from_logits(torch.tensor([[4.2], [0.3]]), regression=True)
    assert scores.shape == (2,) and scores.tolist() == pytest.approx([4.2, 0.3])


def _read(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]


def test_submission_files(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(2)
    idx = torch.randperm(20, generator=g)  # batches arrive in any order
    # MNLI: text labels, GLUE's file names for matched, mismatched and the diagnostic set
    preds = torch.randint(0, 3, (20,), generator=g)
    for split, name in (("test_matched", "MNLI-m.tsv"), ("test_mismatched", "MNLI-mm.tsv"), ("ax", "AX.tsv")):
        path = write_submission("mnli", split, idx, preds, tmp_path)
        rows = _read(path)
        assert path.name == name and rows[0] == ["index", "prediction"] and len(rows) == 21
        assert [int(r[0]) for r in rows[1:]] == list(range(20))
        labels = get_task("mnli").labels
        assert [r[1] for r in rows[1:]] == [labels[int(preds[idx.tolist().index(i)])] for i in range(20)]
    # RTE/QNLI write text labels; CoLA, SST-2, MRPC, QQP and WNLI write 0/1 as their files do
    binary = torch.randint(0, 2, (20,), generator=g)
    vocab = {}
    for task in ("rte", "qnli", "cola", "sst2", "mrpc", "qqp", "wnli"):
        rows = _read(write_submission(task, "test", idx, binary, tmp_path))
        vocab[task] = {r[1] for r in rows[1:]}
        assert len(rows) == 21
    assert vocab["rte"] == vocab["qnli"] == {"entailment", "not_entailment"}
    assert all(vocab[t] == {"0", "1"} for t in ("cola", "sst2", "mrpc", "qqp", "wnli"))
    official = ["MNLI-m", "MNLI-mm", "AX", "RTE", "QNLI", "CoLA", "SST-2", "MRPC", "QQP", "WNLI"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.tsv" for n in official)
    # STS-B: clipped to [0, 5], three decimals
    rows = _read(write_submission("stsb", "test", [2, 0, 1, 0], [5.7, -0.2, 3.14159, 9.0], tmp_path))
    assert rows == [
        ["index", "prediction"],
        ["0", "0.000"],
        ["1", "3.142"],
        ["2", "5.000"],
    ]  # first of a repeat kept


def test_submission_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no submission for split 'test'; choose one of test_matched"):
        write_submission("mnli", "test", [0], [0], tmp_path)
    with pytest.raises(ValueError, match=r"not a class id in 0\.\.1"):
        write_submission("rte", "test", [0, 1], [0, 2], tmp_path)
    with pytest.raises(ValueError, match="2 indices but 1 predictions"):
        write_submission("rte", "test", [0, 1], [0], tmp_path)


def test_submission_for_real_test_set(shared_data: Path, tmp_path: Path) -> None:
    test = read_glue_split("rte", "test", shared_data / "glue", hub_name=None)
    path = write_submission("rte", "test", test.idx, [i % 2 for i in test.idx], tmp_path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3001 and lines[1] == "0\tentailment" and lines[-1] == "2999\tnot_entailment"
