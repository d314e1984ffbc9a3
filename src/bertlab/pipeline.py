"""The paper's ablations as pipelines: pre-train one variant, fine-tune and score it on each downstream task,
and write one result file (issue 12).

`python train.py -m experiment=ablation_table5 scale=cpu` runs one job per variant (the experiment's
`hydra.sweeper.params` sweep `pipeline.variant`); a job with `pipeline` set runs `run_pipeline` instead of
a single run. Each stage is a normal bertlab run in its own folder (`bertlab.pipeline_stage`):

    <job>/pretrain/                       the variant's pre-training (export/, checkpoints/, metrics.json)
    <job>/finetune/<task>[-step<N>]/      one fine-tuning run per task (per kept step: the steps ablation)
    <job>/pipeline.json                   the result: pre-training metrics, each task's dev score and time
    <job>/pipeline.csv                    the same rows flat (also a one-row W&B table `results`)

A stage's overrides, in order (later ones win): the scale's (`pipeline.pretrain_overrides`;
`pipeline.finetune_overrides` then `pipeline.task_overrides.<task>`), the variant's (`pretrain`,
`finetune`), the job's own command line (paths, logger, hardware, seed; not the model size at fine-tuning),
then `pipeline.pretrain_extra` / `pipeline.finetune_extra`. Fine-tuning reads `pretrained=<pretrain>/export`,
or with `pipeline.per_kept_step` each `<pretrain>/checkpoints/step<N>.ckpt` of `pipeline.keep_steps`.

A variant with `pretrain_from: <variant>` fine-tunes that variant's pre-trained model when its job sits
beside this one in the sweep folder and pre-trained with the same overrides (pipeline.json's
`pretrain.overrides`); otherwise it pre-trains itself. `ltr_bilstm` so reuses `ltr`'s.

A failed task is recorded in its row (`{"status": "failed", "error": "<one line>"}`) and the next task
runs. A failed pre-training is recorded too, and the job ends without raising (an error line in the log),
so a sweep's other variants still run; pipeline.json is rewritten after every stage.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bertlab.pipeline_stage import (
    StageResult,
    finish_wandb,
    forwarded_overrides,
    hydra_overrides,
    resolved,
    run_stage,
)
from bertlab.run_logging import flat_config
from bertlab.run_plan import ConfigError

log = logging.getLogger("bertlab")
RESULT_FILE = "pipeline.json"
SUMMARY_FILE = "pipeline.csv"
PATH_KEYS = ("root_dir", "data_dir", "cache_dir")


def quoted(path: Path | str) -> str:
    """A path as a Hydra override value (quoted: `=`, `,` and spaces would split it)."""
    return f'"{path}"'


def size_overrides(size: list[int], divisors: dict[str, int]) -> list[str]:
    """Table 6's L/H/A (`size`: the paper's layers, hidden size, heads) divided by the scale's `divisors`
    (`layers`, `hidden`, `heads`; 1 at paper scale); the feed-forward size is 4H, as in the paper."""
    layers, hidden, heads = size
    n_layers = max(1, layers // int(divisors.get("layers", 1)))
    n_hidden = hidden // int(divisors.get("hidden", 1))
    n_heads = max(1, heads // int(divisors.get("heads", 1)))
    if n_hidden % n_heads:
        raise ConfigError(
            f"pipeline.model_divisors={divisors}: L/H/A={layers}/{hidden}/{heads} becomes hidden {n_hidden}, "
            f"not divisible by {n_heads} heads; choose divisors that keep H divisible by A"
        )
    return [
        f"model.num_hidden_layers={n_layers}",
        f"model.hidden_size={n_hidden}",
        f"model.num_attention_heads={n_heads}",
        f"model.intermediate_size={4 * n_hidden}",
    ]


def variant_of(spec: DictConfig) -> dict[str, Any]:
    """The job's variant (`pipeline.variants[pipeline.variant]`) as plain values; ConfigError if unknown."""
    variants = resolved(spec, "variants") or {}
    if spec.variant not in variants:
        raise ConfigError(
            f"pipeline.variant={spec.variant} is not a variant of ablation {spec.ablation}; "
            f"choose one of {', '.join(variants)}"
        )
    return variants[spec.variant]


def pretrain_overrides(spec: DictConfig, command_line: list[str]) -> list[str]:
    """The pre-training stage's overrides (module docstring's order), kept steps if used."""
    variant = variant_of(spec)
    over = [*(resolved(spec, "pretrain_overrides") or []), *variant.get("pretrain", [])]
    if variant.get("model_size"):
        over += size_overrides(variant["model_size"], resolved(spec, "model_divisors") or {})
    if spec.get("per_kept_step"):
        steps = ",".join(str(int(n)) for n in spec.keep_steps)
        over.append(f"callbacks.model_checkpoint.keep_steps=[{steps}]")
    return [*over, *forwarded_overrides(command_line, "pretrain"), *(resolved(spec, "pretrain_extra") or [])]


def finetune_overrides(spec: DictConfig, task: str, pretrained: Path, command_line: list[str]) -> list[str]:
    """One fine-tuning stage's overrides: the task from `pretrained`, the scale's recipe, the variant's."""
    per_task = (resolved(spec, "task_overrides") or {}).get(task, [])
    return [
        f"task={task}",
        f"pretrained={quoted(pretrained)}",
        *(resolved(spec, "finetune_overrides") or []),
        *per_task,
        *variant_of(spec).get("finetune", []),
        *forwarded_overrides(command_line, "finetune"),
        *(resolved(spec, "finetune_extra") or []),
    ]


def tasks_of(spec: DictConfig) -> list[str]:
    """`pipeline.tasks`, each once, in order."""
    return list(dict.fromkeys(resolved(spec, "tasks") or []))


def sources(spec: DictConfig, pretrain: Path, final_step: int | None) -> list[tuple[int | None, Path]]:
    """(step, checkpoint) pairs to fine-tune from: each kept step (the steps ablation), else the export."""
    if spec.get("per_kept_step"):
        return [(int(n), pretrain / "checkpoints" / f"step{int(n)}.ckpt") for n in spec.keep_steps]
    export = pretrain / "export"
    return [(final_step, export if export.is_dir() else pretrain / "checkpoints" / "last.ckpt")]


def final_step(pretrain: Path) -> int | None:
    """The pre-training's last optimizer step (its last.ckpt), None when it wrote none."""
    from bertlab.resume import checkpoint_step

    try:
        return checkpoint_step(pretrain / "checkpoints" / "last.ckpt")
    except ValueError:
        return None


def reusable_pretraining(spec: DictConfig, job: Path, overrides: list[str]) -> dict[str, Any] | None:
    """The `pretrain` record of the variant this one names in `pretrain_from`, when that variant's job sits
    beside this one (the same sweep folder), its pre-training ended ok and it ran with exactly these
    overrides (`ltr_bilstm` fine-tunes `ltr`'s model with a BiLSTM on top); else None (pre-train here)."""
    source = variant_of(spec).get("pretrain_from")
    if not source:
        return None
    result_file = job.parent / str(source) / RESULT_FILE
    if not result_file.is_file():
        return None
    pre = json.loads(result_file.read_text(encoding="utf-8")).get("pretrain") or {}
    if pre.get("status") != "ok" or pre.get("overrides") != overrides:
        return None
    return {**pre, "reused_from": str(result_file.parent)}


def pretrain_record(stage: StageResult, step: int | None) -> dict[str, Any]:
    """pipeline.json's `pretrain`: status, folder, wall time, last step and metrics.json (or the error)."""
    if stage.status != "ok":
        return {
            "status": "failed",
            "error": stage.error,
            "wall_s": stage.wall_s,
            "run_dir": str(stage.run_dir),
        }
    metrics_file = stage.run_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else stage.metrics
    return {
        "status": "ok",
        "run_dir": str(stage.run_dir),
        "wall_s": stage.wall_s,
        "step": step,
        "metrics": metrics,
    }


def task_record(stage: StageResult) -> dict[str, Any]:
    """One task's entry of a row: its main dev metric and score, or the one-line error. The score is a
    fraction for every task (a metric in percent, `task.main_metric_percent`, is divided by 100), so the
    report, the notebook and the W&B table scale every task alike."""
    if stage.status == "ok" and stage.main_metric not in stage.metrics:
        stage.status, stage.error = "failed", f"metrics.json has no {stage.main_metric} (task.main_metric)"
    if stage.status != "ok":
        return {"status": "failed", "error": stage.error, "wall_s": stage.wall_s}
    return {
        "status": "ok",
        "metric": stage.main_metric,
        "score": stage.metrics[stage.main_metric] / (100 if stage.main_metric_percent else 1),  # type: ignore[index]
        "wall_s": stage.wall_s,
        "run_dir": str(stage.run_dir),
    }


def write_result(result: dict[str, Any], job: Path) -> None:
    """pipeline.json, replaced whole (a reader never sees half a file)."""
    tmp = job / f".{RESULT_FILE}.{os.getpid()}.partial"
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, job / RESULT_FILE)


def summary_table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Columns and one line per row (per kept step): the variant, the step, each task's score and time."""
    tasks = list(dict.fromkeys(t for row in result["rows"] for t in row["tasks"]))
    columns = ["ablation", "variant", "label", "scale", "step", *tasks, *(f"{t}/wall_s" for t in tasks)]
    head = [result["ablation"], result["variant"], result["label"], result["scale"]]
    lines = []
    for row in result["rows"]:
        entries = [row["tasks"].get(t, {}) for t in tasks]
        lines.append(
            [*head, row["step"], *(e.get("score") for e in entries), *(e.get("wall_s") for e in entries)]
        )
    return columns, lines


def log_summary(cfg: DictConfig, result: dict[str, Any], job: Path) -> None:
    """pipeline.csv; with a W&B logger also a run of its own in the ablation's group holding the `results`
    table (a sweep's variants stack in W&B's UI)."""
    columns, lines = summary_table(result)
    with (job / SUMMARY_FILE).open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(lines)
    wandb_cfg = (cfg.get("logger") or {}).get("wandb")
    if not wandb_cfg or "_target_" not in wandb_cfg or not lines:
        return
    from hydra.utils import instantiate

    name = f"{result['ablation']}/{result['variant']}"
    logger = instantiate(
        wandb_cfg,
        job_type="pipeline",
        group=str(cfg.pipeline.group),
        name=name,
        tags=[result["ablation"], result["variant"]],
        save_dir=str(job),
    )
    logger.log_hyperparams(pipeline_config(cfg, result))
    logger.log_table("results", columns=columns, data=lines)
    logger.experiment.summary.update({"pretrain_status": result["pretrain"]["status"]})
    finish_wandb(exit_code=0)


def pipeline_config(cfg: DictConfig, result: dict[str, Any]) -> dict[str, Any]:
    """The pipeline run's W&B config, flattened: its `pipeline` node resolved (this variant's entry alone,
    the recipes each stage ran with, the task list, the scale) and the pre-training's step, wall time and
    metrics (`pretrain.*`), so the group's dashboard can filter and group the variants' rows by any of them."""
    spec: dict[str, Any] = OmegaConf.to_container(cfg.pipeline, resolve=True)  # type: ignore[assignment]
    spec["variants"] = {result["variant"]: spec["variants"][result["variant"]]}
    pre = result.get("pretrain") or {}
    record = {k: pre[k] for k in ("status", "step", "wall_s") if k in pre} | dict(pre.get("metrics") or {})
    return flat_config({"pipeline": spec, "pretrain": record, "seed": cfg.get("seed")})


def flat_metrics(result: dict[str, Any]) -> dict[str, float]:
    """What train.py's app returns (a sweeper's objective): `<task>/score` (`step<N>/<task>/score`)."""
    rows = result["rows"]
    out = {}
    for row in rows:
        prefix = f"step{row['step']}/" if len(rows) > 1 else ""
        for task, entry in row["tasks"].items():
            if entry.get("status") == "ok":
                out[f"{prefix}{task}/score"] = float(entry["score"])
    return out


def run_pipeline(cfg: DictConfig) -> dict[str, float]:
    """Pre-train `cfg.pipeline.variant`, fine-tune it on each task, write `<job>/pipeline.json`; returns
    the tasks' scores (`flat_metrics`)."""
    spec = cfg.pipeline
    variant = variant_of(spec)
    job = Path(cfg.paths.output_dir)
    job.mkdir(parents=True, exist_ok=True)
    command_line = hydra_overrides()
    paths = {key: str(cfg.paths[key]) for key in PATH_KEYS if key in cfg.paths}
    group = str(spec.get("group") or spec.ablation)
    tasks = tasks_of(spec)
    pre_over = pretrain_overrides(spec, command_line)  # first: a bad variant or size stops before any work
    result: dict[str, Any] = {
        "ablation": str(spec.ablation),
        "variant": str(spec.variant),
        "label": str(variant.get("label", spec.variant)),
        "scale": str(spec.get("scale")),
        "pretrain": {},
        "rows": [],
    }
    log.info("pipeline %s/%s (%s), scale %s: pre-training, then %s", result["ablation"], result["variant"],
             result["label"], result["scale"], ", ".join(tasks) or "no tasks")  # fmt: skip
    reused = reusable_pretraining(spec, job, pre_over)
    if reused is not None:  # the same pre-training, already run beside this job: fine-tune that model
        pre_dir, step = Path(reused["run_dir"]), reused["step"]
        result["pretrain"] = reused
        log.info("pipeline: pre-training reused from %s (pretrain_from)", reused["reused_from"])
    else:
        pre_dir = job / "pretrain"
        wandb = {"group": group, "name": f"{spec.ablation}/{spec.variant}/pretrain"}
        pre = run_stage("pretrain", pre_over, pre_dir, paths, wandb)
        step = final_step(pre_dir) if pre.status == "ok" else None
        result["pretrain"] = pretrain_record(pre, step) | {"overrides": pre_over}
    write_result(result, job)
    if result["pretrain"]["status"] != "ok":
        log.error("pipeline %s/%s: pre-training failed, nothing to fine-tune", spec.ablation, spec.variant)
        log_summary(cfg, result, job)
        return {}
    per_step = bool(spec.get("per_kept_step"))
    for row_step, source in sources(spec, pre_dir, step):
        row: dict[str, Any] = {"step": row_step, "tasks": {}}
        result["rows"].append(row)
        for task in tasks:
            name = f"{task}-step{row_step}" if per_step else task
            if not source.exists():
                why = (
                    f"{source} was not written: pre-training ended at step {step}; check pipeline.keep_steps"
                )
                row["tasks"][task] = {"status": "failed", "error": why, "wall_s": 0.0}
                log.error("pipeline: %s skipped: %s", name, why)
            else:
                over = finetune_overrides(spec, task, source, command_line)
                wandb = {"group": group, "name": f"{spec.ablation}/{spec.variant}/{name}"}
                row["tasks"][task] = task_record(run_stage(name, over, job / "finetune" / name, paths, wandb))
            write_result(result, job)  # after every task: a stopped job keeps what it scored
    write_result(result, job)
    log_summary(cfg, result, job)
    log.info("pipeline result: %s", job / RESULT_FILE)
    return flat_metrics(result)


__all__ = ["finetune_overrides", "pretrain_overrides", "run_pipeline", "size_overrides", "summary_table"]
