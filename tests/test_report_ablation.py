"""`python -m bertlab.report` on ablation pipeline folders written by hand: the paper's Tables 5, 6, 8 and
Figure 5 in the paper's row order and names, our numbers beside the paper's, medians, failures, W&B."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bertlab import report
from bertlab.paper_numbers import PAPER_TABLES
from bertlab.report_ablation import summarise_ablations, wandb_tables
from tests.test_wandb_table import read_offline_run

OK = "ok"


def task(score: float, metric: str = "val/acc", wall: float = 60.0, **extra: Any) -> dict[str, Any]:
    return {"status": OK, "metric": metric, "score": score, "wall_s": wall, **extra}


def write_job(
    folder: Path,
    ablation: str,
    label: str,
    tasks: dict[str, Any] | None = None,
    pretrain: dict[str, Any] | None = None,
    steps: dict[int, dict[str, Any]] | None = None,
    variant: str = "v",
    scale: str = "cpu",
) -> Path:
    """One pipeline job's `pipeline.json` as the ablation pipeline writes it."""
    rows = [{"step": s, "tasks": t} for s, t in (steps or {1000: tasks or {}}).items()]
    metrics = {"val/mlm_acc": 0.2512, "val/perplexity": 41.237}
    pre = {"status": OK, "run_dir": str(folder / "pretrain"), "wall_s": 3600.0,
           "step": max(r["step"] for r in rows), "metrics": metrics} | (pretrain or {})  # fmt: skip
    data = {
        "ablation": ablation,
        "variant": variant,
        "label": label,
        "scale": scale,
        "pretrain": pre,
        "rows": rows,
    }
    folder.mkdir(parents=True)
    (folder / "pipeline.json").write_text(json.dumps(data))
    return folder


@pytest.fixture
def pipelines(tmp_path: Path) -> Path:
    """Jobs of every ablation; `+ BiLSTM` and `24/1024/16` never ran, No NSP's MRPC failed."""
    root = tmp_path / "ablation"
    t5 = root / "table5"
    # BERT_BASE, three seeds: SST-2 median of (80, 90, 82) = 82.0 (mean 84.0); MRPC recorded as F1,
    # reported as accuracy (the paper's Table 5 metric) from the run's metrics.json
    for seed, sst2 in enumerate((0.80, 0.90, 0.82)):
        mrpc_dir = t5 / f"base-{seed}" / "mrpc"
        mrpc_dir.mkdir(parents=True)
        (mrpc_dir / "metrics.json").write_text(json.dumps({"val/f1": 0.9, "val/acc": 0.7 + seed / 100}))
        tasks = {"mnli": task(0.61), "qnli": task(0.7), "sst2": task(sst2, wall=30 + seed),
                 "mrpc": task(0.9, "val/f1", run_dir=str(mrpc_dir)), "squad_v1": task(0.55, "val/f1"),
                 "cola": task(0.123, "val/mcc")}  # fmt: skip
        write_job(
            t5 / f"base-{seed}" / "job", "table5", "BERT", tasks, variant="bert"
        )  # the pipeline's label
    mrpc_failed = {"status": "failed", "error": "CUDA out of memory\nTraceback ...", "wall_s": 3.1}
    write_job(t5 / "nonsp", "table5", "No NSP", {"sst2": task(0.83), "mrpc": mrpc_failed}, variant="no_nsp")
    write_job(t5 / "ltr", "table5", "LTR & No NSP", {"sst2": task(0.79)}, variant="ltr_no_nsp")
    write_job(t5 / "odd", "table5", "MLM + extra", {"sst2": task(0.5)}, variant="odd")  # not a paper row
    # Table 6 spelled every way a label may be; 12/768/12 twice: an even number of seeds
    for i, label in enumerate(("L=3/H=768/A=12", "6/768/3", "l6-h768-a12", "BERT_BASE", "12/1024/16")):
        write_job(root / "table6" / str(i), "table6", label, {"mnli": task(0.5 + i / 100)},
                  pretrain={"metrics": {"val/perplexity": 40.0 - i}})  # fmt: skip
    write_job(root / "table6" / "5", "table6", "BERT_BASE", {"mnli": task(0.5)},
              pretrain={"metrics": {"val/perplexity": 50.0}})  # fmt: skip
    for i, label in enumerate(("mask0_same0_rnd100", "80/10/10", "100/0/0", "80/0/20", "80/20/0", "0/20/80")):
        tasks = {"mnli": task(0.6 + i / 100), "conll2003": task(0.7, "val/f1"),
                 "conll2003_feature": task(0.65, "val/f1")}  # fmt: skip
        write_job(root / "table8" / str(i), "table8", label, tasks)
    for name in ("BERT (Masked LM)", "ltr"):
        write_job(
            root / "steps" / name, "steps", name, steps={200: {"mnli": task(0.55)}, 100: {"mnli": task(0.5)}}
        )
    write_job(root / "smoke" / "base", "table5", "BERT_BASE", {"sst2": task(0.51)}, scale="smoke")
    (root / "broken").mkdir()
    (root / "broken" / "pipeline.json").write_text('{"ablation": "tab')  # killed mid-write
    return root


def table_rows(out: str, first_header: str) -> tuple[list[str], list[list[str]]]:
    """(header cells, row cells) of the printed markdown table whose header starts with `first_header`."""
    lines = out.splitlines()
    i = next(
        i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |") and " | n | " in line
    )
    rows = []
    for line in lines[i + 2 :]:
        if not line.startswith("| "):
            break
        rows.append(line.strip("| ").split(" | "))
    return lines[i].strip("| ").split(" | "), rows


def cell(header: list[str], row: list[str], column: str) -> str:
    return row[header.index(column)]


def test_every_paper_row_in_order_with_ours_beside_the_paper(
    pipelines: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert report.main([str(pipelines)]) == 0
    out = capsys.readouterr().out
    assert "GLUE dev results" not in out  # the grid report would mix the variants
    # Table 5: the paper's names and order, then the job that names no paper row; smoke scale apart
    header, rows = table_rows(out, "Tasks")
    assert [r[0] for r in rows] == [
        "BERT_BASE",
        "No NSP",
        "LTR & No NSP",
        "+ BiLSTM",
        "MLM + extra (not a paper row)",
    ]
    base, nonsp, ltr, bilstm, _ = (dict(zip(header, r, strict=True)) for r in rows)
    assert base["n"] == "3" and base["SST-2 paper"] == "92.7" and base["SST-2 ours"] == "82.0"
    assert base["MRPC paper"] == "86.7" and base["MRPC ours"] == "71.0"  # accuracy from metrics.json
    assert base["SQuAD paper"] == "88.5" and base["SQuAD ours"] == "55.0"
    assert (
        base["CoLA ours (mcc)"] == "12.3"
        and base["LM acc ours"] == "25.1"
        and base["LM (ppl) ours"] == "41.24"
    )
    assert nonsp["MRPC ours"] == "failed" and nonsp["MNLI-m ours"] == "—" and nonsp["QNLI paper"] == "84.9"
    assert ltr["SST-2 ours"] == "79.0" and ltr["MRPC paper"] == "77.5"
    assert bilstm["n"] == "0" and bilstm["SQuAD paper"] == "84.9" and bilstm["SST-2 ours"] == "—"
    assert "  No NSP: mrpc: CUDA out of memory (" in out
    assert "| BERT_BASE | 1h00m | 1m00s | 1m00s | 31s |" in out  # wall: pre-train, mnli, qnli, sst2
    # Table 6: #L #H #A as the paper's, 24/1024/16 missing but printed; LM (ppl) beside ours
    header, rows = table_rows(out, "#L")
    assert [r[:3] for r in rows] == [[str(x) for x in r.keys] for r in PAPER_TABLES["table6"].rows]
    by = {"/".join(r[:3]): dict(zip(header, r, strict=True)) for r in rows}
    assert by["3/768/12"]["LM (ppl) paper"] == "5.84" and by["3/768/12"]["LM (ppl) ours"] == "40.00"
    assert by["12/768/12"]["n"] == "2" and by["12/768/12"]["MNLI-m ours"] == "51.5"  # median (53, 50)
    assert by["12/768/12"]["LM (ppl) ours"] == "43.50" and by["24/1024/16"]["MNLI-m ours"] == "—"
    assert by["24/1024/16"]["MNLI-m paper"] == "86.6" and by["24/1024/16"]["n"] == "0"
    # Table 8: every row begins with its mix, in the paper's order
    header, rows = table_rows(out, "MASK/SAME/RND")
    assert [r[0] for r in rows] == ["80/10/10", "100/0/0", "80/0/20", "80/20/0", "0/20/80", "0/0/100"]
    assert [line.split(" | ")[0] for line in out.splitlines() if line.startswith("| 80/10/10")] == [
        "| 80/10/10"
    ] * 2
    assert header[2:8] == [f"{c} {who}" for c in ("MNLI Fine-tune", "NER Fine-tune", "NER Feature-based")
                           for who in ("paper", "ours")]  # fmt: skip
    assert rows[0][2:8] == ["84.2", "61.0", "95.4", "70.0", "94.9", "65.0"]
    assert rows[-1][2:4] == ["83.6", "60.0"]
    # Figure 5: one row per model and step; the paper prints no numbers
    header, rows = table_rows(out, "Model")
    models = ("BERT_BASE (Masked LM)", "BERT_BASE (Left-to-Right)")
    assert [r[:2] for r in rows] == [[m, step] for m in models for step in ("100", "200")]
    assert [cell(header, r, "MNLI-m paper") for r in rows] == ["n/a"] * 4
    assert [cell(header, r, "MNLI-m ours") for r in rows] == ["50.0", "55.0"] * 2
    assert [cell(header, r, "LM acc ours") for r in rows] == ["—", "25.1"] * 2  # the last checkpoint's
    # order of tables: 5 (cpu, then smoke scale: never one median), 6, 8, Figure 5; the broken file listed
    titles = [line for line in out.splitlines() if line.startswith("**")]
    assert [t.split(":")[0] for t in titles] == [
        "**Table 5",
        "**Table 5",
        "**Table 6",
        "**Table 8",
        "**Figure 5",
    ]
    assert "scale cpu: 6 job(s), 3 of the paper's 4 rows run" in titles[0] and "scale smoke" in titles[1]
    assert titles[4].endswith("scale cpu: 2 job(s), 2 of the paper's 2 rows run**")
    assert "unreadable (1):" in out and "broken/pipeline.json" in out


def test_json_and_exit_codes(pipelines: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert report.main([str(pipelines / "table5"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (t5,) = data["tables"]
    base = t5["data"][0]
    assert base["row"] == "BERT_BASE" and base["n"] == 3
    sst2 = next(c for c in base["cells"] if c["column"] == "SST-2 ours")
    assert sst2["ours"] == pytest.approx(82.0) and sst2["n_ok"] == 3
    assert [f["task"] for f in t5["failed"]] == ["mrpc"]
    # every pipeline task failed: exit 1, the table still printed
    write_job(tmp_path / "bad", "table8", "80/10/10", {"mnli": {"status": "failed", "error": "boom"}})
    assert report.main([str(tmp_path / "bad")]) == 1
    out = capsys.readouterr()
    assert "| 80/10/10 | 1 | 84.2 | failed |" in out.out and "no finished fine-tuning task" in out.err
    # one seed failed, one finished: the median of the finished one, the failure counted beside it
    write_job(tmp_path / "mixed" / "a", "table8", "80/10/10", {"mnli": {"status": "failed", "error": "boom"}})
    write_job(tmp_path / "mixed" / "b", "table8", "80/10/10", {"mnli": task(0.6)})
    assert report.main([str(tmp_path / "mixed")]) == 0
    assert "| 80/10/10 | 2 | 84.2 | 60.0 (1 failed) |" in capsys.readouterr().out


def test_wandb_logs_every_printed_table(
    pipelines: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline is the report's own default
    monkeypatch.setenv("WANDB_SILENT", "true")
    import wandb

    try:
        assert report.main([str(pipelines / "table8"), "--wandb", "--group", "abl"]) == 0
    finally:
        # W&B's process-wide settings were read with WANDB_MODE unset: drop them, or later in-process runs
        # of this session inherit them (they tried to log in instead of running offline)
        wandb.teardown()
    out = capsys.readouterr()
    assert "group abl" in out.err and "offline" in out.err
    (folder,) = (pipelines / "table8").glob("wandb/offline-run-*")
    record, tables = read_offline_run(folder)
    assert (record.job_type, record.run_group) == ("report", "abl")
    expected = wandb_tables(summarise_ablations([pipelines / "table8"]))
    assert set(tables) == set(expected) == {"table8_cpu", "table8_cpu_wall", "ablation_scores"}
    printed = [line.strip("| ").split(" | ") for line in out.out.split("Wall time")[0].splitlines()]
    printed = [r for r in printed if len(r) > 2 and r[1] != "---"]
    assert [tables["table8_cpu"]["columns"], *tables["table8_cpu"]["data"]] == printed
    scores = tables["ablation_scores"]["data"]
    assert ["table8", "cpu", "80/10/10", None, "MNLI Fine-tune paper", 84.2, None, None, 1] in scores
    assert ["table8", "cpu", "80/10/10", None, "MNLI Fine-tune ours", None, 61.0, 1, 1] in scores
