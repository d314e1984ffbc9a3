"""The BERT paper's ablation tables with our numbers beside the paper's: `python -m bertlab.report DIR`.

When the folders given to `bertlab.report` hold `pipeline.json` files (at any depth; one per ablation
pipeline job), the report prints these tables instead of the GLUE grid summary: Table 5 (pre-training
tasks), Table 6 (model size), Table 8 (masking mix) and Figure 5 (pre-training steps), one table per
ablation and scale (`smoke`, `cpu`, `paper` never mix in one median), with the paper's row names in the
paper's order (`bertlab.paper_numbers`). Every paper row is printed: a variant without a job shows `—`.

A job names its row by `label` (the paper's row name) or else `variant`, however spelled
(`paper_numbers.match_row`); one matching no paper row gets a row of its own after the paper's. Jobs of
one row (seeds) give the median and `n`; a failed task is left out of the median and counted
("81.3 (1 failed)"), or shows `failed` when no job of the row finished it; errors are listed below.

Columns: per paper column, the paper's number ("SST-2 paper") and ours ("SST-2 ours") when a job ran
that task; then the tasks the paper's table lacks (smaller scales run other tasks); then pre-training's
held-out MLM accuracy and perplexity. Scores are dev x100, the paper column's metric (MRPC: accuracy in
Tables 5 and 6; read from the run's `metrics.json` when the pipeline recorded F1); perplexity as is.
For Figure 5 the paper prints no numbers (a plot), so its paper column reads `n/a`. A second table per
ablation gives the wall times (median): pre-training and each task. Output is GitHub markdown.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from bertlab.paper_numbers import PAPER_TABLES, PaperTable, match_row
from bertlab.runs import natural_order

PIPELINE_FILE = "pipeline.json"
SCALES = ("paper", "cpu", "smoke")
MISSING = "—"
_SKIP_DIRS = {".hydra", "wandb", "checkpoints", "export", "csv", "lightning_logs", "submission"}
TASK_LABELS = {
    "mnli": "MNLI-m", "qqp": "QQP", "qnli": "QNLI", "sst2": "SST-2", "cola": "CoLA", "stsb": "STS-B",
    "mrpc": "MRPC", "rte": "RTE", "wnli": "WNLI", "squad_v1": "SQuAD v1.1", "squad_v2": "SQuAD v2.0",
    "conll2003": "NER", "conll2003_feature": "NER feature-based", "swag": "SWAG",
}  # fmt: skip
_PRETRAIN_ACC = ("val/mlm_acc", "test/mlm_acc", "val/lm_acc", "test/lm_acc")  # LTR: next-token accuracy
_PRETRAIN_PPL = ("val/perplexity", "test/perplexity")
Entry = dict[str, Any]


def find_pipeline_files(roots: Sequence[str | Path]) -> list[Path]:
    """Every `pipeline.json` at or below `roots` (a run's own folders skipped), in natural order."""
    found: set[Path] = set()
    for root in map(Path, roots):
        if root.is_file() and root.name == PIPELINE_FILE:
            found.add(root)
        for folder, subdirs, files in os.walk(root):
            if PIPELINE_FILE in files:
                found.add(Path(folder) / PIPELINE_FILE)
            subdirs[:] = sorted(d for d in subdirs if d not in _SKIP_DIRS)
    return sorted(found, key=natural_order)


@lru_cache(maxsize=4096)
def _run_metrics(run_dir: str) -> dict[str, Any]:
    try:
        data = json.loads((Path(run_dir) / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class _Col(NamedTuple):
    """A printed column: the paper's number (`source` None) or ours, read from a row's jobs."""

    header: str
    paper: int | None  # index into PaperRow.values
    source: str | None  # a task's name, "" for pre-training, None for the paper's column
    keys: tuple[str, ...]  # metric keys to read, in preference order; () a task's own score
    scale: float
    digits: int


def _value(entry: Entry, col: _Col) -> tuple[float | None, str | None]:
    """(value, metric key used) of one finished job for `col`: pre-training's first metric present;
    a task's `col.keys[0]` (the paper column's metric, e.g. MRPC's accuracy) from the entry or its run's
    metrics.json when the pipeline recorded another, else the pipeline's own score."""
    if col.source == "":
        metrics = entry.get("metrics") or {}
        key = next((k for k in col.keys if _number(metrics.get(k)) is not None), None)
        return (_number(metrics[key]), key) if key else (None, None)
    own = entry.get("metric")
    if col.keys and own != col.keys[0]:
        extra = {**_run_metrics(str(entry.get("run_dir") or "")), **(entry.get("metrics") or {})}
        if _number(extra.get(col.keys[0])) is not None:
            return _number(extra[col.keys[0]]), col.keys[0]
    return _number(entry.get("score")), own


def _fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def aggregate(entries: list[Entry], col: _Col) -> Entry:
    """One cell over a row's jobs: the median of the finished ones, and how many did not finish."""
    values, used, not_ok = [], set(), Counter()
    for e in entries:
        if e.get("status") != "ok":
            not_ok[str(e.get("status") or "failed")] += 1
            continue
        v, m = _value(e, col)
        if v is not None:
            values.append(v)
            used.add(m)
    median = statistics.median(values) if values else None
    if median is not None:
        text = _fmt(col.scale * median, col.digits)
        other = sorted(u for u in used if u and col.keys and col.source and u != col.keys[0])
        text += "".join(f" ({u.split('/')[-1]})" for u in other)  # e.g. F1 where the paper has accuracy
        text += "".join(f" ({k} {s})" for s, k in sorted(not_ok.items()))
    else:
        text = not_ok.most_common(1)[0][0] if not_ok else MISSING
    return {"text": text, "median": median, "values": values, "n_ok": len(values), "not_ok": dict(not_ok)}


def _wall(seconds: float | None) -> str:
    if seconds is None:
        return MISSING
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    return f"{s // 60}m{s % 60:02d}s" if s < 3600 else f"{s // 3600}h{s % 3600 // 60:02d}m"


def _median_wall(entries: list[Entry]) -> float | None:
    walls = [w for w in (_number(e.get("wall_s")) for e in entries) if w is not None]
    return statistics.median(walls) if walls else None


def _task_rank(task: str) -> tuple[int, str]:
    order = list(TASK_LABELS)
    return (order.index(task) if task in order else len(order), task)


def _group_rows(paper: PaperTable | None, ablation: str, jobs: list[tuple[Path, Entry]]) -> list[Entry]:
    """The table's rows: each paper row (in the paper's order; Figure 5: one per step), then the rest."""
    collected: dict[tuple[str, Any], Entry] = {}
    for path, job in jobs:
        prow = match_row(paper, str(job.get("label") or ""), str(job.get("variant") or "")) if paper else None
        name = prow.name if prow else str(job.get("label") or job.get("variant") or path.parent.name)
        pre = job.get("pretrain") if isinstance(job.get("pretrain"), dict) else {}
        picked = [r for r in job.get("rows") or [] if isinstance(r, dict)]
        if ablation != "steps" and picked:  # one fine-tuned checkpoint per row: the last
            picked = [max(picked, key=lambda r: _number(r.get("step")) or 0)]
        for prow_ in picked or [{"step": None, "tasks": {}}]:  # pre-training alone still gets its row
            step = prow_.get("step") if ablation == "steps" else None
            g = collected.setdefault(
                (name, step),
                {"name": name, "paper": prow, "step": step, "jobs": [], "tasks": {}, "pretrain": []},
            )
            g["jobs"].append(str(path))
            for task, entry in (prow_.get("tasks") or {}).items():
                if isinstance(entry, dict):
                    g["tasks"].setdefault(task, []).append({**entry, "job": str(path)})
            # pre-training's metrics and time belong to its last checkpoint's row
            if pre and (step is None or len(picked) < 2 or step == pre.get("step")):
                g["pretrain"].append({**pre, "job": str(path)})
    rows = []
    for prow in paper.rows if paper else ():
        mine = [g for g in collected.values() if g["paper"] is prow]
        mine.sort(key=lambda g: (g["step"] is None, _number(g["step"]) or 0))
        rows += mine or [
            {"name": prow.name, "paper": prow, "step": None, "jobs": [], "tasks": {}, "pretrain": []}
        ]
    return rows + [g for g in collected.values() if g["paper"] is None]


def build_table(ablation: str, scale: str, jobs: list[tuple[Path, Entry]]) -> dict[str, Any]:
    """One ablation at one scale: printed header and rows, the wall-time table, cell data, failures."""
    paper = PAPER_TABLES.get(ablation)
    rows = _group_rows(paper, ablation, jobs)
    ran = sorted({t for g in rows for t in g["tasks"]}, key=_task_rank)
    has_pre = any(g["pretrain"] for g in rows)
    cols: list[_Col] = []
    for i, c in enumerate(paper.columns if paper else ()):
        digits = 1 if c.scale == 100 else 2
        cols.append(_Col(f"{c.header} paper", i, None, (), c.scale, digits))
        if c.task in ran or (c.task is None and has_pre):
            metrics = (c.metric,) if c.task else _PRETRAIN_PPL
            cols.append(_Col(f"{c.header} ours", i, c.task or "", metrics, c.scale, digits))
    in_paper = {c.task for c in paper.columns} if paper else set()
    for task in (t for t in ran if t not in in_paper):  # tasks the paper's table lacks
        metric = next((e["metric"] for g in rows for e in g["tasks"].get(task, []) if e.get("metric")), "")
        head = f"{TASK_LABELS.get(task, task)} ours" + (f" ({metric.split('/')[-1]})" if metric else "")
        cols.append(_Col(head, None, task, (), 100, 1))
    if has_pre:
        cols.append(_Col("LM acc ours", None, "", _PRETRAIN_ACC, 100, 1))
        if None not in in_paper:
            cols.append(_Col("LM (ppl) ours", None, "", _PRETRAIN_PPL, 1, 2))

    keys = list(paper.key_headers) if paper else ["Variant"]
    printed, wall_rows, data, failed = [], [], [], []
    for g in rows:
        if g["paper"] is not None:
            key_cells = [*g["paper"].keys]
        else:
            key_cells = [f"{g['name']} (not a paper row)"] + [""] * (len(keys) - 1)
        if ablation == "steps":
            key_cells = [key_cells[0], MISSING if g["step"] is None else str(g["step"])]
        cells, cell_data = [], []
        for col in cols:
            if col.source is None:  # the paper's number
                value = g["paper"].values[col.paper] if g["paper"] is not None else None
                cells.append(_fmt(value, col.digits) if g["paper"] is not None else MISSING)
                cell_data.append({"column": col.header, "paper": value})
                continue
            agg = aggregate(g["tasks"].get(col.source, []) if col.source else g["pretrain"], col)
            cells.append(agg["text"])
            median = None if agg["median"] is None else round(col.scale * agg["median"], 4)
            cell_data.append({"column": col.header, "ours": median, "n_ok": agg["n_ok"], "text": agg["text"]})
        printed.append([*key_cells, str(len(g["jobs"])), *cells])
        wall_rows.append(
            [
                *key_cells,
                _wall(_median_wall(g["pretrain"])),
                *(_wall(_median_wall(g["tasks"].get(t, []))) for t in ran),
            ]
        )
        label = g["name"] + (f" @ step {g['step']}" if g["step"] is not None else "")
        data.append(
            {"row": g["name"], "step": g["step"], "n": len(g["jobs"]), "jobs": g["jobs"], "cells": cell_data}
        )
        for e in g["pretrain"]:
            if e.get("status") != "ok":
                failed.append({"row": label, "task": "pre-train", "error": _why(e), "job": e["job"]})
        for task, entries in g["tasks"].items():
            failed += [
                {"row": label, "task": task, "error": _why(e), "job": e["job"]}
                for e in entries
                if e.get("status") != "ok"
            ]
    notes = [
        "Dev set; scores x100; paper: Devlin et al. (2019); ours: median over the row's n jobs, "
        "a task that failed left out and counted. LM acc, LM (ppl): pre-training's held-out masked LM "
        "accuracy and perplexity (LTR: next token)."
    ]
    notes += [paper.note] if paper and paper.note else []
    if scale != "paper":
        notes.append(
            f"Scale {scale}: smaller models, data and step counts than the paper's; "
            "compare our rows with each other more than with the paper's numbers."
        )
    title = paper.title if paper else f"Ablation {ablation} (not one of the paper's tables)"
    done = len({g["paper"].name for g in rows if g["jobs"] and g["paper"] is not None})
    shown = len(paper.rows) if paper else 0
    return {
        "ablation": ablation,
        "scale": scale,
        "title": f"{title}; scale {scale}: {len(jobs)} job(s)"
        + (f", {done} of the paper's {shown} rows run" if paper else ""),
        "columns": [*keys, "n", *(c.header for c in cols)],
        "rows": printed,
        "wall_columns": [*keys, "pre-train", *(TASK_LABELS.get(t, t) for t in ran)],
        "wall_rows": wall_rows,
        "data": data,
        "notes": notes,
        "failed": failed,
    }


def _why(entry: Entry) -> str:
    error = str(entry.get("error") or entry.get("status") or "failed")
    return error.strip().splitlines()[0] if error.strip() else "failed"


def summarise_ablations(roots: Sequence[str | Path]) -> dict[str, Any]:
    """Every pipeline job below `roots`, as the tables the report prints (what `--json` writes)."""
    files = find_pipeline_files(roots)
    groups: dict[tuple[str, str], list[tuple[Path, Entry]]] = {}
    unreadable, run_dirs = [], []
    for file in files:
        try:
            job = json.loads(file.read_text())
            if not isinstance(job, dict) or not job.get("ablation"):
                raise ValueError("no `ablation` key")
        except (OSError, ValueError) as err:  # a job still writing it, or killed mid-write
            unreadable.append({"path": str(file), "reason": str(err).splitlines()[0]})
            continue
        groups.setdefault((str(job["ablation"]), str(job.get("scale") or "?")), []).append((file, job))
        pre, rows = job.get("pretrain") or {}, [r for r in job.get("rows") or [] if isinstance(r, dict)]
        run_dirs += [
            pre.get("run_dir"),
            *(e.get("run_dir") for r in rows for e in (r.get("tasks") or {}).values()),
        ]
    order = list(PAPER_TABLES)

    def rank(key: tuple[str, str]) -> tuple:
        a, s = key
        return (order.index(a) if a in order else len(order), a, SCALES.index(s) if s in SCALES else 9, s)

    tables = [build_table(a, s, groups[(a, s)]) for a, s in sorted(groups, key=rank)]
    finished = sum(
        1
        for t in tables
        for row in t["data"]
        for c in row["cells"]
        if c.get("n_ok") and not c["column"].startswith("LM ")
    )  # finished fine-tuning cells (pre-training's own columns left out)
    return {
        "roots": [str(r) for r in roots],
        "files": len(files),
        "unreadable": unreadable,
        "finished": finished,
        "tables": tables,
        "run_dirs": sorted({str(d) for d in run_dirs if d}),  # for the W&B group they logged to
    }


def markdown(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


def format_text(summary: dict[str, Any]) -> str:
    """Each ablation's table, its wall times, notes and failures, in markdown a README can take as is."""
    where = ", ".join(summary["roots"])
    out = [f"Ablation pipeline results under {where}: {summary['files']} pipeline.json files", ""]
    for t in summary["tables"]:
        out += [f"**{t['title']}**", "", markdown(t["columns"], t["rows"]), ""]
        out += [
            f"Wall time ({t['ablation']}, median over the row's jobs):",
            "",
            markdown(t["wall_columns"], t["wall_rows"]),
            "",
        ]
        out += [*t["notes"], ""]
        if t["failed"]:
            out.append(f"failed ({len(t['failed'])}):")
            out += [f"  {f['row']}: {f['task']}: {f['error']} ({f['job']})" for f in t["failed"]]
            out.append("")
    if summary["unreadable"]:
        out.append(f"unreadable ({len(summary['unreadable'])}):")
        out += [f"  {u['path']}: {u['reason']}" for u in summary["unreadable"]]
    return "\n".join(out).rstrip()


def wandb_tables(summary: dict[str, Any]) -> dict[str, tuple[list[str], list[list[Any]]]]:
    """Each printed table (cells as printed), plus every number in long form and the failures."""
    tables: dict[str, tuple[list[str], list[list[Any]]]] = {}
    scores, failed = [], []
    for t in summary["tables"]:
        name = f"{t['ablation']}_{t['scale']}"
        tables[name] = (t["columns"], t["rows"])
        tables[f"{name}_wall"] = (t["wall_columns"], t["wall_rows"])
        for row in t["data"]:
            for c in row["cells"]:
                head = [t["ablation"], t["scale"], row["row"], row["step"], c["column"]]
                scores.append([*head, c.get("paper"), c.get("ours"), c.get("n_ok"), row["n"]])
        failed += [
            [t["ablation"], t["scale"], f["row"], f["task"], f["error"], f["job"]] for f in t["failed"]
        ]
    tables["ablation_scores"] = (
        ["ablation", "scale", "row", "step", "column", "paper", "ours", "n_ok", "n"],
        scores,
    )
    if failed:
        tables["ablation_failed"] = (["ablation", "scale", "row", "task", "error", "job"], failed)
    return tables


def report_ablation(
    roots: Sequence[Path], as_json: bool = False, wandb: bool = False, group: str | None = None
) -> int:
    """Print the ablation tables of the pipeline jobs under `roots`; 1 when no task finished."""
    summary = summarise_ablations(roots)
    print(json.dumps(summary, indent=2, default=str) if as_json else format_text(summary))
    if wandb and summary["tables"]:
        from bertlab.report_wandb import group_of_runs, log_tables

        project, found = group_of_runs([Path(d) for d in summary["run_dirs"]], roots)
        config = {"pipeline_files": summary["files"], "finished": summary["finished"]}
        where = log_tables(wandb_tables(summary), roots, project, group or found, config)
        print(f"W&B: ablation tables logged to {where}", file=sys.stderr)
    if not summary["finished"]:
        print(
            f"no finished fine-tuning task in the pipeline jobs under {', '.join(map(str, roots))}",
            file=sys.stderr,
        )
        return 1
    return 0


__all__ = ["find_pipeline_files", "match_row", "report_ablation", "summarise_ablations", "wandb_tables"]
