"""`python -m bertlab.report SWEEP --wandb`: the report's tables as `wandb.Table`s in one W&B run.

The run has job_type `report` and sits in the sweep's group, beside the runs it summarises: the group
(and project) their W&B runs used, read from their own run files (`<run>/wandb/*run-*/run-*.wandb`,
whose first records name them), or `--group`. Runs of several groups (a sweep over several tasks:
`rte-<sweep>`, `mrpc-<sweep>`) or without W&B files give the sweep folder's name instead. W&B stays
offline unless WANDB_MODE says otherwise (`wandb sync <folder>` uploads later); the run's files go to
`<first sweep folder>/wandb/`, which `bertlab.runs` never mistakes for a job.

Tables, as the text report prints them (scores x100):

- `glue_table`: Table 1's rows (best setting's median, best single run) and columns, cells as printed;
- `tasks`: one row per task: its best setting and best single run;
- `settings`: every setting of every task, ranked (what `--all` prints);
- `failed`: the failed runs and why (only when there are some).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Table = tuple[list[str], list[list[Any]]]  # columns, rows
_BLOCK = 32768  # W&B's run file: LevelDB-style log of 32 KiB blocks after a 7-byte header


def _x100(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 4)


def report_tables(summary: dict[str, Any]) -> dict[str, Table]:
    """The printed report's tables as columns and rows of plain values (`bertlab.report.summarise`'s data)."""
    from bertlab.report import markdown_table

    tab = summary["table"]
    head = markdown_table(tab).splitlines()[0].strip("| ").split(" | ")  # the printed header, as printed
    names = {"median": "best setting, median over seeds", "best": "best single run"}
    tables: dict[str, Table] = {
        "glue_table": (head, [[names[k], *cells] for k, cells in tab["rows"].items()])
    }

    task_rows, setting_rows = [], []
    for task, t in summary["tasks"].items():
        s, b = t["best_setting"] or {}, t["best_run"] or {}
        task_rows.append([
            task, t["metric"], t["runs"], t["finished"], t["failed"], len(t["settings"]),
            s.get("label"), _x100(s.get("median")), _x100(s.get("median_mm")),
            ",".join("?" if x is None else str(x) for x in s.get("seeds", [])),
            _x100(b.get("value")), _x100(b.get("value_mm")), b.get("seed"), b.get("path"), b.get("checkpoint"),
        ])  # fmt: skip
        for rank, x in enumerate(t["settings"], 1):
            setting_rows.append([
                task, rank, x["label"], _x100(x["median"]), _x100(x.get("median_mm")), _x100(x["mean"]),
                ",".join("?" if v is None else str(v) for v in x["seeds"]),
                ", ".join(f"{100 * v:.1f}" for v in x["values"]), len(x["values"]),
            ])  # fmt: skip
    tables["tasks"] = (
        ["task", "metric", "runs", "finished", "failed", "settings", "best_setting", "median", "median_mm",
         "seeds", "best_run", "best_run_mm", "best_run_seed", "best_run_path", "checkpoint"],
        task_rows,
    )  # fmt: skip
    tables["settings"] = (
        ["task", "rank", "setting", "median", "median_mm", "mean", "seeds", "values", "n_runs"],
        setting_rows,
    )
    if summary["failed"]:
        tables["failed"] = (
            ["path", "task", "reason"],
            [[f["path"], f["task"], f["reason"]] for f in summary["failed"]],
        )
    return tables


def _records(path: Path) -> Iterator[Any]:
    """The protobuf `Record`s of a `run-*.wandb` file: chunks `crc32 (4) | length (2, LE) | type (1) | data`
    (types FULL 1, FIRST 2, MIDDLE 3, LAST 4) in 32 KiB blocks whose too-short tails are padding."""
    from wandb.proto.wandb_internal_pb2 import Record

    data = path.read_bytes()
    if data[:4] != b":W&B":
        return
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        if _BLOCK - pos % _BLOCK < 7:
            pos += _BLOCK - pos % _BLOCK
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            record = Record()
            record.ParseFromString(buf)
            yield record


def run_group(run_dir: Path) -> tuple[str, str] | None:
    """(project, group) of the job's latest W&B run, from its run file's `run` record; None without one."""
    files = sorted(run_dir.glob("wandb/*run-*/run-*.wandb"), key=lambda p: p.stat().st_mtime)
    for file in reversed(files):
        try:
            for record in _records(file):
                if record.WhichOneof("record_type") == "run":
                    return record.run.project, record.run.run_group
        except Exception as err:  # a half-written file of a killed job: try the next one
            log.debug("%s: unreadable (%s)", file, err)
    return None


def choose_group(summary: dict[str, Any], roots: Sequence[Path]) -> tuple[str, str]:
    """(project, group): the one group the summarised runs logged to, else the first sweep folder's name."""
    paths = [Path(p) for t in summary["tasks"].values() for x in t["settings"] for p in x["runs"]]
    paths += [Path(f["path"]) for f in summary["failed"]]
    return group_of_runs(paths, roots)


def group_of_runs(paths: Sequence[Path], roots: Sequence[Path]) -> tuple[str, str]:
    """(project, group): the one group the run folders `paths` logged to, else the first root's name."""
    found = {g for g in (run_group(p) for p in paths) if g and g[1]}
    projects = {p for p, _ in found}
    project = projects.pop() if len(projects) == 1 else "bertlab"
    groups = {g for _, g in found}
    if len(groups) == 1:
        return project, groups.pop()
    name = Path(roots[0]).resolve().name
    if groups:
        log.info("the runs logged to %d W&B groups (%s); the report goes to group %s", len(groups),
                 ", ".join(sorted(groups)), name)  # fmt: skip
    return project, name


def log_report(summary: dict[str, Any], roots: Sequence[Path], group: str | None = None) -> str:
    """Log the report's tables to a new W&B run (job_type `report`); returns where it went, in words."""
    project, found = choose_group(summary, roots)
    config = {"runs": summary["runs"], "finished": summary["finished"], "failed": len(summary["failed"])}
    averages = {f"average/{k}": _x100(v) for k, v in summary["table"]["average"].items() if v is not None}
    return log_tables(report_tables(summary), roots, project, group or found, config, averages)


def log_tables(
    tables: dict[str, Table],
    roots: Sequence[Path],
    project: str,
    group: str,
    config: dict[str, Any],
    summary: dict[str, Any] | None = None,
) -> str:
    """Log `tables` as `wandb.Table`s to a new run (job_type `report`); returns where it went, in words."""
    import wandb

    mode = os.environ.get("WANDB_MODE") or "offline"  # offline unless the user opted in
    os.environ.setdefault("WANDB_SILENT", "true")
    run = wandb.init(
        project=project,
        group=group,
        job_type="report",
        name=f"report[{','.join(Path(r).name for r in roots)}]",
        dir=str(roots[0]),
        mode=mode,  # type: ignore[arg-type]
        config={"roots": [str(r) for r in roots], **config},
    )
    try:
        run.log({name: wandb.Table(columns=c, data=rows) for name, (c, rows) in tables.items()})
        run.summary.update(summary or {})
        where = f"project {project}, group {group}, run {run.id} ({mode}: {Path(run.dir).parent})"
    finally:
        run.finish()
    return where


__all__ = ["choose_group", "group_of_runs", "log_report", "log_tables", "report_tables", "run_group"]
