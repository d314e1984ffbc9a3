"""Summarise GLUE sweeps: the best dev setting per task and the BERT paper's Table 1 row.

Usage::

    python train.py -m experiment=glue_paper task=rte pretrained=PATH      # 72 runs: see conf/
    python -m bertlab.report multirun/glue/<sweep_name>                    # one sweep
    python -m bertlab.report multirun/glue                                 # every sweep below it
    python -m bertlab.report SWEEP_A SWEEP_B --json > summary.json         # machine-readable
    python -m bertlab.report multirun/glue --all                           # every setting, ranked
    python -m bertlab.report multirun/glue/<sweep_name> --wandb            # the tables to W&B too
    python -m bertlab.report multirun/ablation                             # Tables 5, 6, 8, Figure 5

A folder holding ablation pipeline jobs (`pipeline.json` files, at any depth) gets the paper's ablation
tables with our numbers beside the paper's instead (`bertlab.report_ablation`; `--json`, `--wandb` too).

Every folder below the given ones that holds `.hydra/config.yaml` (written by `train.py`) or
`metrics.json` is one run. Its task, seed and hyper-parameters (learning rate, batch size, epochs) come
from `.hydra/config.yaml`; any other override in `.hydra/overrides.yaml` that is not a path, a logger or
hardware choice (say `pretrained=` or `model.hidden_dropout_prob=`) also tells settings apart. Its score
is `val/<main metric>` from `metrics.json`, the dev set after the last epoch, with the metric the paper
reports (`bertlab.data.glue_tasks.main_metric`: MCC for CoLA, F1 for MRPC and QQP, Spearman for STS-B,
accuracy otherwise; MNLI: matched accuracy, mismatched shown beside it). A run folder without a readable
`metrics.json` or without that key is listed as failed (crashed, killed or still running); runs of
`mode=test`/`predict` and non-GLUE tasks are left out.

Per task a *setting* is one hyper-parameter combination; its seeds are restarts. As in the paper, the
setting is chosen on dev: here by its median over seeds (ties: mean), which one lucky restart cannot
win. Reported beside it is the best single run of the task, the paper's "best model on the Dev set"
among random restarts, with the `mode=predict` command that writes its test-set submission file
(`data.max_eval_examples=null` in it: the checkpoint keeps the run's data settings, and GLUE wants every row).

The table follows Table 1's columns (MNLI-(m/mm), QQP, QNLI, SST-2, CoLA, STS-B, MRPC, RTE, Average;
WNLI is left out as the paper does, and listed below the table). Scores are x100 with one decimal. The
average is over the numbers present, MNLI counting twice (m and mm), as the paper's: BERT-base's row
(84.6, 83.4, 71.2, 90.5, 93.5, 52.1, 85.8, 88.9, 66.4) averages to its 79.6 only that way. Note the
paper's Table 1 reports the hidden test sets; this table is dev.

With `--wandb` the tables also go to W&B as `wandb.Table`s (`bertlab.report_wandb`): one run of
job_type `report` in the sweep's group, offline unless WANDB_MODE says otherwise (`wandb sync` uploads).

Example (text output; numbers invented)::

    GLUE dev results under multirun/glue/base: 144 runs, 142 finished, 2 failed

    rte (acc): 72 runs in 24 settings, 1 failed
      best setting  lr=3e-05 batch_size=32 epochs=3: median 66.4 over seeds 1,2,3 (65.0, 66.4, 67.1)
      best run      67.1  seed=3 lr=3e-05 batch_size=32 epochs=3  multirun/glue/base/rte/17
      predict       python train.py mode=predict task=rte ckpt=multirun/glue/base/rte/17/checkpoints/last.ckpt data.max_eval_examples=null
    ...
    | Dev (x100) | MNLI-(m/mm) | QQP | QNLI | SST-2 | CoLA | STS-B | MRPC | RTE | Average |
    |---|---|---|---|---|---|---|---|---|---|
    | best setting, median over seeds | - | - | - | - | 52.3 | - | - | 66.4 | 59.4 |
    | best single run | - | - | - | - | 54.0 | - | - | 67.1 | 60.6 |

    failed (2):
      multirun/glue/base/rte/5: no metrics.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bertlab.data.glue_tasks import main_metric
from bertlab.report_ablation import find_pipeline_files, report_ablation
from bertlab.runs import HPARAMS, Run, find_run_dirs, load_run, natural_order

# Table 1's columns: (header, task); the paper leaves WNLI out
TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("MNLI-(m/mm)", "mnli"),
    ("QQP", "qqp"),
    ("QNLI", "qnli"),
    ("SST-2", "sst2"),
    ("CoLA", "cola"),
    ("STS-B", "stsb"),
    ("MRPC", "mrpc"),
    ("RTE", "rte"),
)
TASK_ORDER = (*(t for _, t in TABLE_COLUMNS), "wnli")
MNLI_MM = "val/acc_mm"


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def setting_label(hparams: dict[str, Any], shown: Sequence[str] | None = None) -> str:
    """`lr=3e-05 batch_size=32 epochs=3` (only the `shown` keys beyond the grid's axes)."""
    keys = [k for k in hparams if k in HPARAMS or shown is None or k in shown]
    return " ".join(f"{k}={_fmt(hparams[k])}" for k in keys)


def _setting_key(hparams: dict[str, Any]) -> str:
    return json.dumps({k: _fmt(v) for k, v in hparams.items()}, sort_keys=True)


def _varying(runs: Sequence[Run]) -> list[str]:
    """Extra override keys whose value differs between runs of one task (the rest is noise in a label)."""
    keys = {k for r in runs for k in r.hparams if k not in HPARAMS}
    return sorted(k for k in keys if len({_fmt(r.hparams.get(k)) for r in runs}) > 1)


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def summarise_task(task: str, runs: Sequence[Run]) -> dict[str, Any]:
    """Settings ranked by median over seeds, the best setting and the best single run of one task."""
    key = f"val/{main_metric(task)}"
    ok = [r for r in runs if r.metrics is not None]
    shown = _varying(ok)  # failed runs (no score) may lack overrides: they must not lengthen labels
    groups: dict[str, list[Run]] = {}
    for r in ok:
        groups.setdefault(_setting_key(r.hparams), []).append(r)
    settings = []
    for members in groups.values():
        members = sorted(members, key=lambda r: (r.seed is None, r.seed or 0, natural_order(r.path)))
        values = [r.score for r in members]
        s: dict[str, Any] = {
            "label": setting_label(members[0].hparams, shown),
            "hparams": members[0].hparams,
            "seeds": [r.seed for r in members],
            "values": values,
            "median": _median(values),
            "mean": statistics.fmean(values),
            "runs": [str(r.path) for r in members],
        }
        mm = [r.metrics[MNLI_MM] for r in members if r.metrics and MNLI_MM in r.metrics]
        if task == "mnli" and len(mm) == len(members):
            s["median_mm"] = _median(mm)
        settings.append(s)
    # best first; ties by mean, then by label so the order never depends on the file system
    settings.sort(key=lambda s: (-s["median"], -s["mean"], s["label"]))
    out: dict[str, Any] = {
        "metric": main_metric(task),
        "key": key,
        "runs": len(runs),
        "finished": len(ok),
        "failed": len(runs) - len(ok),
        "settings": settings,
        "best_setting": settings[0] if settings else None,
        "best_run": None,
    }
    if ok:
        best = min(ok, key=lambda r: (-r.score, natural_order(r.path)))
        out["best_run"] = {
            "path": str(best.path),
            "seed": best.seed,
            "label": setting_label(best.hparams, shown),
            "hparams": best.hparams,
            "value": best.score,
            "checkpoint": str(best.checkpoint) if best.checkpoint else None,
        }
        if best.metrics and MNLI_MM in best.metrics:
            out["best_run"]["value_mm"] = best.metrics[MNLI_MM]
    return out


def _cell(task: str, value: float | None, mm: float | None) -> tuple[str, list[float]]:
    """Table text and the numbers it adds to the average (MNLI: m and mm)."""
    if value is None:
        return "-", []
    if task == "mnli" and mm is not None:
        return f"{100 * value:.1f}/{100 * mm:.1f}", [value, mm]
    return f"{100 * value:.1f}", [value]


def table(tasks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Table 1's columns, one row for the best setting's median and one for the best single run."""
    columns = [h for h, _ in TABLE_COLUMNS] + ["Average"]
    rows: dict[str, list[str]] = {}
    averages: dict[str, float | None] = {}
    for row, pick in (("median", "best_setting"), ("best", "best_run")):
        cells, numbers = [], []
        for _, task in TABLE_COLUMNS:
            entry = (tasks.get(task) or {}).get(pick)
            if entry is None:
                text, nums = _cell(task, None, None)
            elif row == "median":
                text, nums = _cell(task, entry["median"], entry.get("median_mm"))
            else:
                text, nums = _cell(task, entry["value"], entry.get("value_mm"))
            cells.append(text)
            numbers += nums
        averages[row] = statistics.fmean(numbers) if numbers else None
        cells.append("-" if averages[row] is None else f"{100 * averages[row]:.1f}")
        rows[row] = cells
    return {"columns": columns, "rows": rows, "average": averages}


def summarise(roots: Sequence[str | Path]) -> dict[str, Any]:
    """Everything the report prints, as plain data (what `--json` writes)."""
    runs = [load_run(p) for p in find_run_dirs(roots)]
    counted = [r for r in runs if r.skip is None]
    by_task: dict[str, list[Run]] = {}
    for r in counted:
        by_task.setdefault(r.task or "?", []).append(r)
    tasks = {t: summarise_task(t, by_task[t]) for t in sorted(by_task, key=_task_rank) if t != "?"}
    return {
        "roots": [str(r) for r in roots],
        "runs": len(counted),
        "finished": sum(r.metrics is not None for r in counted),
        "failed": [{"path": str(r.path), "task": r.task, "reason": r.error} for r in counted if r.error],
        "skipped": [{"path": str(r.path), "reason": r.skip} for r in runs if r.skip],
        "tasks": tasks,
        "table": table(tasks),
    }


def _task_rank(task: str) -> int:
    return TASK_ORDER.index(task) if task in TASK_ORDER else len(TASK_ORDER)


def markdown_table(tab: dict[str, Any]) -> str:
    """The table as GitHub markdown."""
    head = ["Dev (x100)", *tab["columns"]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    names = {"median": "best setting, median over seeds", "best": "best single run"}
    lines += ["| " + " | ".join([names[k], *cells]) + " |" for k, cells in tab["rows"].items()]
    return "\n".join(lines)


def _score(task: str, value: float, mm: float | None) -> str:
    return f"{100 * value:.1f}" + (f"/{100 * mm:.1f}" if task == "mnli" and mm is not None else "")


def format_text(summary: dict[str, Any], all_settings: bool = False) -> str:
    """The human-readable report: per task the best setting and run, then the table and failures."""
    where = ", ".join(summary["roots"])
    out = [
        f"GLUE dev results under {where}: {summary['runs']} runs, {summary['finished']} finished, "
        f"{len(summary['failed'])} failed",
        "",
    ]
    for task, t in summary["tasks"].items():
        out.append(
            f"{task} ({t['metric']}): {t['runs']} runs in {len(t['settings'])} settings, {t['failed']} failed"
        )
        s, b = t["best_setting"], t["best_run"]
        if s is None:
            out += ["  no finished run", ""]
            continue
        seeds = ",".join("?" if x is None else str(x) for x in s["seeds"])
        values = ", ".join(f"{100 * v:.1f}" for v in s["values"])
        out.append(
            f"  best setting  {s['label']}: median {_score(task, s['median'], s.get('median_mm'))} "
            f"over seeds {seeds} ({values})"
        )
        out.append(
            f"  best run      {_score(task, b['value'], b.get('value_mm'))}  seed={b['seed']} {b['label']}  "
            f"{b['path']}"
        )
        if b["checkpoint"]:
            out.append(
                f"  predict       python train.py mode=predict task={task} ckpt={b['checkpoint']} "
                "data.max_eval_examples=null"
            )
        if all_settings:
            for i, x in enumerate(t["settings"], 1):
                vals = ", ".join(f"{100 * v:.1f}" for v in x["values"])
                out.append(
                    f"    {i:3d}. median {_score(task, x['median'], x.get('median_mm'))}  {x['label']}  ({vals})"
                )
        out.append("")
    out.append(markdown_table(summary["table"]))
    if "wnli" in summary["tasks"] and summary["tasks"]["wnli"]["best_setting"]:
        w = summary["tasks"]["wnli"]
        out.append(
            f"\nWNLI (left out of Table 1, as in the paper): median {100 * w['best_setting']['median']:.1f}, "
            f"best run {100 * w['best_run']['value']:.1f}"
        )
    if summary["failed"]:
        out += ["", f"failed ({len(summary['failed'])}):"]
        out += [f"  {f['path']}: {f['reason']}" for f in summary["failed"]]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: print the summary of the sweep folders given; 1 when none holds a finished run."""
    parser = argparse.ArgumentParser(prog="python -m bertlab.report", description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep folders, or folders holding sweeps")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON instead of text")
    parser.add_argument("--all", action="store_true", help="also list every setting of each task, ranked")
    parser.add_argument(
        "--wandb",
        action="store_true",
        help="also log the tables as wandb.Tables to a W&B run (job_type report) in the sweep's group; "
        "offline unless WANDB_MODE=online",
    )
    parser.add_argument(
        "--group", help="with --wandb: the W&B group (default: the one the sweep's runs used)"
    )
    args = parser.parse_args(argv)
    missing = [str(d) for d in args.dirs if not d.is_dir()]
    if missing:
        parser.error(f"not a folder: {', '.join(missing)}")
    if find_pipeline_files(args.dirs):  # ablation pipeline jobs: the paper's Tables 5, 6, 8 and Figure 5
        return report_ablation(args.dirs, as_json=args.json, wandb=args.wandb, group=args.group)
    summary = summarise(args.dirs)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(format_text(summary, all_settings=args.all))
    if args.wandb and summary["runs"]:
        from bertlab.report_wandb import log_report

        where = log_report(summary, args.dirs, group=args.group)
        print(f"W&B: report tables logged to {where}", file=sys.stderr)
    if not summary["finished"]:
        print(f"no finished GLUE run under {', '.join(map(str, args.dirs))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
