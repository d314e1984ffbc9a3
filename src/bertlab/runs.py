"""Read run folders that train.py wrote: what each trained (task, seed, setting) and how it ended.

A run folder holds `.hydra/config.yaml` (and `overrides.yaml`) and, once finished, `metrics.json`.
`bertlab.report` ranks and tabulates the runs this module reads.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from bertlab.data.glue_tasks import get_task, main_metric

# the grid's axes: display name -> config key
HPARAMS: dict[str, str] = {
    "lr": "task.module.optimizer.lr",
    "batch_size": "data.batch_size",
    "epochs": "trainer.max_epochs",
}
# overrides that say where or how a run ran, not what it learned: never part of a setting
_NOT_HPARAMS = {
    *HPARAMS.values(),
    "seed", "task", "experiment", "hparams_search", "mode", "ckpt", "tokenizer", "export", "sweep_name",
    "sweep_group", "test_after_fit", "optimized_metric", "logger", "hardware", "callbacks",
    "data.data_dir", "data.hub_name", "data.num_workers", "data.eval_batch_size", "data.seed",
}  # fmt: skip
_NOT_HPARAM_PREFIXES = ("hydra.", "paths.", "logger.", "hardware.", "callbacks.", "trainer.enable_")
# folders inside a run that never hold another run
_RUN_CONTENTS = {".hydra", "wandb", "checkpoints", "export", "csv", "submission", "lightning_logs"}


@dataclass
class Run:
    """One job folder: what it trained (task, seed, setting) and how it ended (metrics or error)."""

    path: Path
    task: str | None = None
    seed: int | None = None
    hparams: dict[str, Any] = field(default_factory=dict)  # the grid's axes, then other overrides
    metrics: dict[str, float] | None = None
    error: str | None = None  # why it counts as failed
    skip: str | None = None  # why it is not a GLUE fine-tuning run

    @property
    def key(self) -> str:
        """`val/<main metric>` of the run's task."""
        return f"val/{main_metric(self.task)}" if self.task else ""

    @property
    def score(self) -> float:
        assert self.metrics is not None
        return self.metrics[self.key]

    @property
    def checkpoint(self) -> Path | None:
        ckpt = self.path / "checkpoints" / "last.ckpt"
        return ckpt if ckpt.is_file() else None


def find_run_dirs(roots: Iterable[str | Path]) -> list[Path]:
    """Every folder at or below `roots` holding `.hydra/config.yaml` or `metrics.json`, sorted."""
    found: set[Path] = set()
    for root in map(Path, roots):
        for folder, subdirs, files in os.walk(root):
            here = Path(folder)
            if "metrics.json" in files or (here / ".hydra" / "config.yaml").is_file():
                found.add(here)
                subdirs.clear()  # a run's own folders (wandb/, checkpoints/, ...) hold no runs
            else:
                subdirs[:] = sorted(d for d in subdirs if d not in _RUN_CONTENTS)
    return sorted(found, key=natural_order)


def natural_order(path: Path) -> tuple:
    """Sort key putting job 10 after job 9."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in path.parts)


def _select(cfg: dict[str, Any], dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _is_hparam(key: str) -> bool:
    return key not in _NOT_HPARAMS and not key.startswith(_NOT_HPARAM_PREFIXES)


def load_run(path: Path) -> Run:
    """Read one job folder; problems become `run.error` (failed) or `run.skip` (not a GLUE fit)."""
    run = Run(path)
    hydra = path / ".hydra"
    cfg: dict[str, Any] = {}
    overrides: list[str] = []
    try:
        if (hydra / "config.yaml").is_file():
            cfg = _plain(hydra / "config.yaml") or {}
        if (hydra / "overrides.yaml").is_file():
            overrides = [str(o) for o in _plain(hydra / "overrides.yaml") or []]
    except Exception as e:  # a half-written file of a killed job
        run.error = f"unreadable .hydra files ({type(e).__name__}: {e})"
        return run
    given = {}
    for o in overrides:
        key, _, value = o.lstrip("+~").partition("=")
        given[key] = value
    if cfg.get("mode", "fit") != "fit":
        run.skip = f"mode={cfg['mode']}"
        return run
    task = _select(cfg, "task.name") or given.get("task")
    try:
        run.task = None if task is None else _canonical_task(str(task))
    except ValueError:
        run.skip = f"task={task} is not a GLUE task"
        return run
    if run.task is None:  # a folder not written by train.py (no .hydra/): nothing says what it trained
        run.skip = "task unknown (no .hydra/config.yaml)"
        return run
    seed = cfg.get("seed", given.get("seed"))
    run.seed = int(seed) if isinstance(seed, (int, str)) and str(seed).lstrip("-").isdigit() else None
    for name, key in HPARAMS.items():
        value = _select(cfg, key) if cfg else given.get(key)
        if value is not None:
            run.hparams[name] = value
    run.hparams |= {k: v for k, v in sorted(given.items()) if _is_hparam(k)}

    metrics_file = path / "metrics.json"
    if not metrics_file.is_file():
        run.error = "no metrics.json"
        return run
    try:
        metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        run.error = f"unreadable metrics.json ({e})"
        return run
    if any(k.startswith(("test/", "predict/")) for k in metrics) and run.key not in metrics:
        run.skip = "a test run"
        return run
    if run.key not in metrics:
        run.error = f"metrics.json has no {run.key}"
        return run
    if not isinstance(metrics[run.key], (int, float)) or math.isnan(metrics[run.key]):
        run.error = f"{run.key} is {metrics[run.key]}"
        return run
    run.metrics = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    return run


def _plain(path: Path) -> Any:
    """A YAML file Hydra wrote, as plain containers with interpolations left as text."""
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def _canonical_task(task: str) -> str:
    return get_task(task).name
