"""One stage of an ablation pipeline (`bertlab.pipeline`): a normal bertlab run in its own folder.

A stage is composed from `conf/` with Hydra's compose API (the overrides `python train.py` would get) and
run in this process by `bertlab.run.main`, the function train.py runs: no second interpreter importing
torch, Lightning and Hydra again per stage (seconds each, most of a smoke pipeline). While it runs, the
Hydra context (`HydraConfig`: the stage's overrides, output folder, `${hydra:...}` values) is the
stage's, and the stage's log lines also go to `<stage>/train.log`; both are restored afterwards.
The folder gets `.hydra/config.yaml` and `overrides.yaml` as a Hydra job's does, so `bertlab.runs` reads it.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from bertlab import resolvers
from bertlab.model.checkpoint import SIZE_FIELDS
from bertlab.run_plan import override_key

log = logging.getLogger("bertlab")

# conf/ beside src/ (the package is installed editable); inside `python train.py` the app's own search
# path is used instead, --config-dir additions included
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
# the pipeline job's command-line overrides NOT passed on to its stages: the pipeline's own keys, and what
# each stage sets itself (its task, mode, checkpoint)
NOT_FORWARDED = (
    "experiment", "scale", "pipeline", "hydra", "task", "mode", "ckpt", "pretrained", "hparams_search",
    "sweep_name", "sweep_group", "optimized_metric",
)  # fmt: skip
# nor, at fine-tuning, the encoder size: it is read from the pre-trained checkpoint (run_plan.model_config)
SIZE_KEYS = ("model", *(f"model.{f}" for f in SIZE_FIELDS))
ERROR_CHARS = 500  # a recorded error is one line, at most this long


def forwarded_overrides(overrides: list[str], stage: str) -> list[str]:
    """The pipeline job's overrides that each stage also gets (paths, logger, hardware, seed, ...)."""
    kept = []
    for override in overrides:
        key = override_key(override)
        if key.split(".")[0].split("/")[0] in NOT_FORWARDED:
            continue
        if stage == "finetune" and key in SIZE_KEYS:
            continue
        kept.append(override)
    return kept


def one_line(err: BaseException) -> str:
    """`Type: message` on one line: bertlab's own error behind a wrapper (Hydra's instantiate), else `err`."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, ValueError) and type(seen).__module__.startswith("bertlab."):
            err = seen
            break
        seen = seen.__cause__ or seen.__context__
    text = " ".join(str(err).split()) or "(no message)"
    return f"{type(err).__name__}: {text}"[:ERROR_CHARS]


@dataclass
class StageResult:
    """How one stage ended: `status` ok or failed, its wall time, metrics.json's values or the error."""

    run_dir: Path
    status: str = "ok"
    wall_s: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    main_metric: str | None = None  # the composed task.main_metric (fine-tuning tasks)
    main_metric_percent: bool = False  # task.main_metric_percent: that metric is in percent, not a fraction


@contextlib.contextmanager
def _conf_dir() -> Iterator[None]:
    """Compose from the running app's search path, else (a test, a notebook) from CONF_DIR."""
    if GlobalHydra.instance().is_initialized():
        yield
        return
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        yield


def compose_stage(overrides: list[str], out: Path, paths: dict[str, str]) -> DictConfig:
    """The stage's config with its `hydra` node: run folder `out`, the pipeline job's resolved `paths`."""
    resolvers.register()
    with _conf_dir():
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(out)
        if cfg.hydra.runtime.get("cwd") is None:
            cfg.hydra.runtime.cwd = paths.get("root_dir") or str(Path.cwd())
        cfg.hydra.job.num = 0
        cfg.paths.update(paths)
        cfg.paths.output_dir = str(out)
    return cfg


def job_config(cfg: DictConfig, wandb: dict[str, str] | None = None) -> DictConfig:
    """The job part of a composed stage config (no `hydra` node); `wandb` sets logger.wandb's group/name."""
    job = cfg.copy()
    with open_dict(job):
        del job["hydra"]
        if wandb and job.get("logger") and job.logger.get("wandb"):
            job.logger.wandb.update(wandb)
    return job


@contextlib.contextmanager
def stage_context(cfg: DictConfig, out: Path) -> Iterator[None]:
    """The stage's HydraConfig and a `<out>/train.log` handler on the root logger, restored afterwards."""
    saved = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(cfg)
    root = logging.getLogger()
    handler = logging.FileHandler(out / "train.log", encoding="utf-8")
    handler.setFormatter(
        next((h.formatter for h in root.handlers if h.formatter), None)
        or logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    )
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        HydraConfig.instance().cfg = saved


def finish_wandb(exit_code: int) -> None:
    """End the stage's W&B run: the next stage's WandbLogger would otherwise log into it."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=exit_code)


def save_job_files(cfg: DictConfig, job: DictConfig, out: Path) -> None:
    """`.hydra/config.yaml`, `hydra.yaml` and `overrides.yaml`, as a Hydra job writes them."""
    folder = out / ".hydra"
    folder.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(job, folder / "config.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": cfg.hydra}), folder / "hydra.yaml")
    OmegaConf.save(OmegaConf.create(list(cfg.hydra.overrides.task)), folder / "overrides.yaml")


def run_stage(
    name: str,
    overrides: list[str],
    out: Path,
    paths: dict[str, str],
    wandb: dict[str, str] | None = None,
) -> StageResult:
    """Compose and run one stage in `out`; any exception (a bad override, a missing file, a crash) is
    recorded in the result as one line, not raised. SIGTERM's SystemExit and Ctrl-C still stop the job."""
    from bertlab.run import main  # run.py's own imports are heavy and never need this module

    result = StageResult(run_dir=out)
    start = time.monotonic()
    log.info("pipeline: %s starts in %s", name, out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        cfg = compose_stage(overrides, out, paths)
        job = job_config(cfg, wandb)
        result.main_metric = OmegaConf.select(job, "task.main_metric", default=None)
        result.main_metric_percent = bool(OmegaConf.select(job, "task.main_metric_percent", default=False))
        save_job_files(cfg, job, out)
        with stage_context(cfg, out):
            result.metrics = dict(main(job))
        finish_wandb(exit_code=0)
    except Exception as err:  # recorded, and the pipeline goes on with its next stage
        finish_wandb(exit_code=1)
        result.status, result.error = "failed", one_line(err)
        log.debug("pipeline: %s failed", name, exc_info=True)
    result.wall_s = round(time.monotonic() - start, 1)
    if result.error is None:
        log.info("pipeline: %s done in %.1f s", name, result.wall_s)
    else:
        log.error("pipeline: %s failed after %.1f s: %s", name, result.wall_s, result.error)
    return result


def hydra_overrides() -> list[str]:
    """The running Hydra job's command-line overrides (empty outside a Hydra app)."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def resolved(cfg: DictConfig, key: str) -> Any:
    """`key` of `cfg`, resolved to plain containers."""
    value = OmegaConf.select(cfg, key)
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
