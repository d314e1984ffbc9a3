"""bertlab.report on sweep folders written by hand: selection, medians, Table 1 order, failed runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bertlab.report import find_run_dirs, main, summarise, table


def make_run(
    folder: Path,
    task: str,
    lr: float,
    batch: int,
    epochs: int,
    seed: int,
    metrics: dict[str, float] | None,
    extra: dict[str, Any] | None = None,
    mode: str = "fit",
) -> Path:
    """A job folder as `train.py -m` leaves it: .hydra/config.yaml, .hydra/overrides.yaml, metrics.json."""
    hydra = folder / ".hydra"
    hydra.mkdir(parents=True)
    extra = extra or {}
    config = (
        f"mode: {mode}\nseed: {seed}\npretrained: /models/bert\n"
        f"task:\n  name: {task}\n  module:\n    optimizer:\n      lr: {lr}\n"
        f"data:\n  batch_size: {batch}\n  data_dir: ${{paths.data_dir}}/glue\n"
        f"trainer:\n  max_epochs: {epochs}\n"
    )
    (hydra / "config.yaml").write_text(config)
    overrides = [
        f"task.module.optimizer.lr={lr}", f"data.batch_size={batch}", f"trainer.max_epochs={epochs}",
        f"seed={seed}", "experiment=glue_paper", f"task={task}", "pretrained=/models/bert",
        "hardware=gpu", f"hydra.sweep.dir={folder.parent}", *(f"{k}={v}" for k, v in extra.items()),
    ]  # fmt: skip
    (hydra / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


@pytest.fixture
def sweeps(tmp_path: Path) -> Path:
    """Two sweeps below one folder: RTE/CoLA/STS-B/MRPC/WNLI in one, MNLI in the other, plus noise."""
    a, b = tmp_path / "glue" / "sweep_a", tmp_path / "glue" / "sweep_b"
    n = iter(range(100))

    def job(root: Path, task: str, *args: Any, **kw: Any) -> Path:
        return make_run(root / task / str(next(n)), task, *args, **kw)

    # RTE: A has the best median (65), B the best single run (80), C an even number of seeds
    for seed, acc in zip((1, 2, 3), (0.60, 0.70, 0.65)):
        job(a, "rte", 2e-5, 32, 3, seed, {"val/acc": acc, "val/loss": 0.6})
    for seed, acc in zip((1, 2, 3), (0.50, 0.80, 0.55)):
        job(a, "rte", 3e-5, 16, 2, seed, {"val/acc": acc})
    for seed, acc in zip((1, 2), (0.62, 0.66)):
        job(a, "rte", 5e-5, 16, 4, seed, {"val/acc": acc})
    job(a, "rte", 2e-5, 32, 3, 4, None)  # killed: no metrics.json
    job(a, "rte", 4e-5, 32, 3, 1, {"train/loss": 0.7})  # crashed before validation
    # CoLA scored by MCC, STS-B by Spearman (not Pearson), MRPC by F1 (not accuracy)
    for seed, mcc in zip((1, 2, 3), (0.5, 0.4, 0.45)):
        job(a, "cola", 2e-5, 32, 3, seed, {"val/mcc": mcc, "val/loss": 0.1})
    job(a, "stsb", 2e-5, 32, 3, 1, {"val/spearmanr": 0.80, "val/pearson": 0.90})
    job(a, "mrpc", 2e-5, 32, 3, 1, {"val/f1": 0.90, "val/acc": 0.85})
    job(a, "wnli", 2e-5, 32, 3, 1, {"val/acc": 0.5634})
    # MNLI selected on matched accuracy: Y's median 83.0 beats X's 82.0; X's seed 2 is the best run
    for seed, (m, mm) in zip((1, 2), ((0.80, 0.79), (0.84, 0.83))):
        job(b, "mnli", 2e-5, 32, 3, seed, {"val/acc": m, "val/acc_mm": mm})
    job(b, "mnli", 3e-5, 32, 3, 1, {"val/acc": 0.83, "val/acc_mm": 0.85})
    # not fine-tuning runs of GLUE: left out, neither finished nor failed
    job(b, "rte", 2e-5, 32, 3, 1, {"test/acc": 0.99}, mode="test")
    job(b, "pretrain", 1e-4, 256, 1, 1, {"val/mlm_loss": 2.0})
    (a / "multirun.yaml").write_text("hydra: {}\n")
    return tmp_path / "glue"


def test_best_setting_by_median_and_best_single_run(sweeps: Path) -> None:
    s = summarise([sweeps])
    rte = s["tasks"]["rte"]
    assert rte["metric"] == "acc" and rte["runs"] == 10 and rte["finished"] == 8 and rte["failed"] == 2
    best = rte["best_setting"]
    assert best["label"] == "lr=2e-05 batch_size=32 epochs=3"
    assert best["seeds"] == [1, 2, 3] and best["values"] == [0.60, 0.70, 0.65]
    assert best["median"] == pytest.approx(0.65)
    assert rte["best_run"]["value"] == 0.80 and rte["best_run"]["seed"] == 2
    assert rte["best_run"]["label"] == "lr=3e-05 batch_size=16 epochs=2"
    assert rte["best_run"]["path"].endswith("/rte/4")
    medians = {x["label"]: x["median"] for x in rte["settings"]}
    assert medians == pytest.approx(
        {"lr=2e-05 batch_size=32 epochs=3": 0.65, "lr=5e-05 batch_size=16 epochs=4": 0.64,
         "lr=3e-05 batch_size=16 epochs=2": 0.55}
    )  # fmt: skip
    assert rte["settings"][0]["label"] == best["label"]
    mnli = s["tasks"]["mnli"]
    assert mnli["best_setting"]["label"] == "lr=3e-05 batch_size=32 epochs=3"
    assert mnli["best_setting"]["median_mm"] == 0.85
    assert (mnli["best_run"]["value"], mnli["best_run"]["value_mm"]) == (0.84, 0.83)
    assert s["tasks"]["stsb"]["best_run"]["value"] == 0.80  # Spearman, not Pearson
    assert s["tasks"]["mrpc"]["best_run"]["value"] == 0.90  # F1, not accuracy
    assert list(s["tasks"]) == ["mnli", "cola", "stsb", "mrpc", "rte", "wnli"]  # Table 1 order, WNLI last


def test_failed_and_foreign_runs_are_listed_not_fatal(sweeps: Path) -> None:
    s = summarise([sweeps])
    failed = {Path(f["path"]).name: f["reason"] for f in s["failed"]}
    assert failed == {"8": "no metrics.json", "9": "metrics.json has no val/acc"}
    skipped = sorted(f["reason"] for f in s["skipped"])
    assert skipped == ["mode=test", "task=pretrain is not a GLUE task"]
    assert s["runs"] == 19 and s["finished"] == 17


def test_table_in_paper_column_order_with_exact_numbers(sweeps: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([str(sweeps)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = "| Dev (x100) | MNLI-(m/mm) | QQP | QNLI | SST-2 | CoLA | STS-B | MRPC | RTE | Average |"
    i = lines.index(header)
    assert lines[i + 1] == "|---|---|---|---|---|---|---|---|---|---|"
    # median row: mean(83, 85, 45, 80, 90, 65) = 74.67; best row: mean(84, 83, 50, 80, 90, 80) = 77.83
    assert (
        lines[i + 2]
        == "| best setting, median over seeds | 83.0/85.0 | - | - | - | 45.0 | 80.0 | 90.0 | 65.0 | 74.7 |"
    )
    assert lines[i + 3] == "| best single run | 84.0/83.0 | - | - | - | 50.0 | 80.0 | 90.0 | 80.0 | 77.8 |"
    assert "WNLI (left out of Table 1, as in the paper): median 56.3, best run 56.3" in out
    assert (
        "  best setting  lr=2e-05 batch_size=32 epochs=3: median 65.0 over seeds 1,2,3 (60.0, 70.0, 65.0)"
        in out
    )
    assert "failed (2):" in out and "rte/8: no metrics.json" in out


def test_several_dirs_and_json(sweeps: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([str(sweeps / "sweep_a"), str(sweeps / "sweep_b"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["table"]["rows"]["median"][0] == "83.0/85.0"
    assert data["table"]["average"]["median"] == pytest.approx((0.83 + 0.85 + 0.45 + 0.80 + 0.90 + 0.65) / 6)
    assert data["tasks"]["rte"]["best_setting"]["median"] == pytest.approx(0.65)
    # a single job folder is a valid argument too
    assert find_run_dirs([sweeps / "sweep_a" / "rte" / "0"]) == [sweeps / "sweep_a" / "rte" / "0"]


def test_other_varying_overrides_split_settings(tmp_path: Path) -> None:
    for i, drop in enumerate((0.1, 0.1, 0.2)):
        make_run(tmp_path / str(i), "sst2", 2e-5, 32, 3, 1 + i % 2, {"val/acc": 0.9 + i / 100},
                 extra={"model.hidden_dropout_prob": drop})  # fmt: skip
    make_run(tmp_path / "3", "sst2", 2e-5, 32, 3, 1, None)  # failed, without the extra override
    sst2 = summarise([tmp_path])["tasks"]["sst2"]
    assert [x["label"] for x in sst2["settings"]] == [
        "lr=2e-05 batch_size=32 epochs=3 model.hidden_dropout_prob=0.2",
        "lr=2e-05 batch_size=32 epochs=3 model.hidden_dropout_prob=0.1",
    ]
    assert sst2["settings"][1]["median"] == pytest.approx(0.905)  # median of two seeds: their mean


def test_average_counts_mnli_twice_as_the_paper() -> None:
    """BERT-base's Table 1 row averages to the paper's 79.6 only with MNLI-m and MNLI-mm both counted."""
    base = {"mnli": (0.846, 0.834), "qqp": 0.712, "qnli": 0.905, "sst2": 0.935, "cola": 0.521, "stsb": 0.858,
            "mrpc": 0.889, "rte": 0.664}  # fmt: skip
    tasks = {}
    for task, v in base.items():
        m, mm = v if isinstance(v, tuple) else (v, None)
        entry = {"value": m, "median": m} | ({"value_mm": mm, "median_mm": mm} if mm else {})
        tasks[task] = {"best_setting": entry, "best_run": entry}
    tab = table(tasks)
    assert tab["rows"]["best"] == [
        "84.6/83.4",
        "71.2",
        "90.5",
        "93.5",
        "52.1",
        "85.8",
        "88.9",
        "66.4",
        "79.6",
    ]


def test_no_runs_is_exit_1_and_a_missing_folder_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([str(tmp_path)]) == 1
    assert "no finished GLUE run" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "nope")])
    assert e.value.code == 2
