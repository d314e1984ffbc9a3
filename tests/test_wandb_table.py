"""Result tables in W&B: every run logs its metrics.json as a one-row `wandb.Table` named `results`, and
`python -m bertlab.report SWEEP --wandb` logs each printed table to a `report` run in the sweep's group.
Read back from the offline runs' records (`run-*.wandb`) and the table files they name."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bertlab import report
from bertlab.report_wandb import report_tables
from bertlab.run import main
from tests.fixtures_glue import write_mnli
from tests.hydra_helpers import compose_cfg
from tests.test_report import make_run
from tests.test_wandb_config import complete_records


@pytest.fixture(autouse=True)
def _offline_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """W&B writing nothing outside tmp_path; WANDB_MODE unset (the code's own default must be offline)."""
    for name in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    yield
    import wandb

    if wandb.run is not None:
        wandb.finish()


def read_offline_run(folder: Path) -> tuple[Any, dict[str, dict[str, Any]]]:
    """(the run record, {key: {"columns", "data"}} of every logged table) of one `offline-run-*` folder.

    A table's history entry (`_type: table-file`) names its JSON file under the run's `files/`.
    """
    (file,) = folder.glob("run-*.wandb")
    run, tables = None, {}
    for record in complete_records(file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
        elif kind == "history":
            items = {tuple(i.nested_key) or (i.key,): json.loads(i.value_json) for i in record.history.item}
            for key, value in items.items():
                if len(key) == 2 and key[1] == "path" and items.get((key[0], "_type")) == "table-file":
                    tables[key[0]] = json.loads((folder / "files" / value).read_text())
    return run, tables


def test_each_run_logs_its_metrics_as_a_results_table(minilm_dir: Path, tmp_path: Path) -> None:
    write_mnli(tmp_path / "data" / "glue", n_train=15, n_dev=7, n_test=3)
    run = tmp_path / "run"
    cfg = compose_cfg(
        [
            "task=mnli", "pretrained=null", "logger=wandb", "model.hidden_size=36", "model.num_attention_heads=3",
            "model.intermediate_size=41", "hardware.precision=32-true", "trainer.enable_model_summary=false",
            f"tokenizer={minilm_dir / 'vocab.txt'}", f"paths.data_dir={tmp_path / 'data'}", "data.max_seq_length=32",
            "data.batch_size=8", "trainer.max_epochs=1", "task.module.optimizer.lr=3e-4", "seed=7", "export=false",
        ],
        run,
    )  # fmt: skip
    metrics = main(cfg)
    import wandb

    wandb.finish()
    assert json.loads((run / "metrics.json").read_text()) == metrics
    (folder,) = run.glob("wandb/offline-run-*")  # offline: nobody opted in
    record, tables = read_offline_run(folder)
    assert record.job_type == "finetune"
    table = tables["results"]
    setting = ["task", "mode", "lr", "batch_size", "epochs", "max_steps", "seed", "pretrained"]
    assert table["columns"] == [*setting, *metrics]
    assert {"val/acc", "val/acc_mm", "val/loss"} <= set(metrics)
    (row,) = table["data"]
    assert row[: len(setting)] == ["mnli", "fit", 3e-4, 8, 1, -1, 7, None]
    assert row[len(setting) :] == pytest.approx(list(metrics.values()))


def fake_wandb_run(folder: Path, group: str) -> None:
    """A finished offline W&B run inside a job folder, as train.py's logger leaves it (project bertlab)."""
    import wandb

    run = wandb.init(project="bertlab", group=group, job_type="finetune", dir=str(folder), mode="offline")
    run.finish()
    (file,) = folder.glob(f"wandb/offline-run-*-{run.id}/run-*.wandb")
    assert complete_records(file)  # written to the end, as a finished sweep's runs are


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """An RTE and a CoLA sweep folder's jobs (one failed), each job with its W&B run in group rte-base."""
    root = tmp_path / "multirun" / "glue" / "base"
    n = iter(range(100))
    for lr, seed, acc in ((2e-5, 1, 0.61), (2e-5, 2, 0.65), (3e-5, 1, 0.7), (3e-5, 2, 0.55)):
        make_run(root / "rte" / str(next(n)), "rte", lr, 32, 3, seed, {"val/acc": acc})
    make_run(root / "rte" / str(next(n)), "rte", 5e-5, 32, 3, 1, None)  # killed
    make_run(root / "cola" / str(next(n)), "cola", 2e-5, 16, 2, 1, {"val/mcc": 0.41})
    for job in (root / "rte").iterdir():
        fake_wandb_run(job, "rte-base")
    return root


def test_report_logs_every_printed_table_to_a_report_run(
    sweep: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the CoLA job logged nowhere: the one group the runs used is still the sweep's
    assert report.main([str(sweep), "--wandb"]) == 0
    out = capsys.readouterr()
    assert "group rte-base" in out.err and "offline" in out.err
    summary = report.summarise([sweep])
    (folder,) = sweep.glob("wandb/offline-run-*")  # in the sweep folder, not taken for a job
    assert report.summarise([sweep]) == summary and summary["runs"] == 6
    record, tables = read_offline_run(folder)
    assert (record.job_type, record.run_group, record.project) == ("report", "rte-base", "bertlab")
    assert set(tables) == {"glue_table", "tasks", "settings", "failed"}
    expected = report_tables(summary)
    for name, (columns, rows) in expected.items():
        assert tables[name] == {"columns": columns, "data": rows}, name

    # Table 1 exactly as printed: the header and both rows of the markdown table
    printed = [line.strip("| ").split(" | ") for line in out.out.splitlines() if line.startswith("| ")]
    assert [tables["glue_table"]["columns"], *tables["glue_table"]["data"]] == printed
    # RTE's best setting: median 63.0 (61, 65) over 62.5 (70, 55); averaged with CoLA's 41.0
    assert printed[1][-2:] == ["63.0", "52.0"] and printed[2][-2:] == ["70.0", "55.5"]
    tasks = {
        row[0]: dict(zip(tables["tasks"]["columns"], row, strict=True)) for row in tables["tasks"]["data"]
    }
    assert tasks["rte"]["best_setting"] == "lr=2e-05 batch_size=32 epochs=3"
    assert (tasks["rte"]["median"], tasks["rte"]["best_run"], tasks["rte"]["failed"]) == (63.0, 70.0, 1)
    assert tasks["cola"]["metric"] == "mcc" and tasks["cola"]["best_run"] == 41.0
    assert [r[:3] for r in tables["settings"]["data"]] == [
        ["cola", 1, "lr=2e-05 batch_size=16 epochs=2"], ["rte", 1, "lr=2e-05 batch_size=32 epochs=3"],
        ["rte", 2, "lr=3e-05 batch_size=32 epochs=3"],
    ]  # fmt: skip
    assert tables["failed"]["data"] == [[str(sweep / "rte" / "4"), "rte", "no metrics.json"]]


def test_report_group_option_and_mixed_groups(sweep: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake_wandb_run(sweep / "cola" / "5", "cola-base")  # two groups: the sweep folder's name
    assert report.main([str(sweep), "--wandb"]) == 0
    assert report.main([str(sweep), "--wandb", "--group", "mine"]) == 0
    groups = sorted(read_offline_run(f)[0].run_group for f in sweep.glob("wandb/offline-run-*"))
    assert groups == ["base", "mine"]
    capsys.readouterr()
