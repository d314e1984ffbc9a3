"""Continuing another run's training: its optimizer state, learning-rate schedule and step count.

The paper pre-trains with one optimizer and one schedule over 1M steps: 90% at length 128, then 10% at
512. Here that is two runs. Phase 1 stops at 900k steps with its schedule decaying towards 1M
(`task.module.scheduler.total_steps`); phase 2 names phase 1's `.ckpt` as `task.module.continue_from`
(and as `pretrained=`, for the weights, size and vocabulary), and `BertTask.on_fit_start` calls
`continue_training`: Adam's moments, the scheduler's position and the step counters carry on, so the
learning rate of phase 2's first step is the one an uninterrupted run would use, and `trainer.global_step`
(checkpoint names, logged steps, `trainer.max_steps`) counts on from phase 1's.

What is not carried: the data position (phase 2 reads other data, from its start) and the epoch count.
A phase-2 run resumed from its own checkpoint (`ckpt=`) restores all of its own state through Lightning,
so the continuation is not applied again.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.optim import Optimizer

from bertlab.model.checkpoint import CheckpointError

log = logging.getLogger(__name__)
KEY = "task.module.continue_from"


@dataclass(frozen=True)
class Continuation:
    """What a run continues from a checkpoint: the step count and the optimizer and scheduler states."""

    path: Path
    global_step: int
    batches_that_stepped: int  # the logged step (Lightning's `_batches_that_stepped`)
    optimizer_states: list[dict[str, Any]]
    lr_schedulers: list[dict[str, Any]]
    run_config: dict[str, Any] = field(default_factory=dict)


def read_continuation(path: str | Path) -> Continuation:
    """The training state of a bertlab `.ckpt`; a file that is not one is a CheckpointError naming the fix."""
    p = Path(path)
    fix = "give a bertlab run's checkpoints/last.ckpt (its export folder holds weights only)"
    if not p.is_file():
        what = "a folder" if p.is_dir() else "no such file"
        raise CheckpointError(f"{KEY}={path}: {what}; {fix}")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # not a torch file, truncated, or objects weights_only refuses
        raise CheckpointError(
            f"{KEY}={path}: not a checkpoint torch can read ({type(err).__name__}); {fix}"
        ) from err
    hparams = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}
    if "model_config" not in hparams:
        raise CheckpointError(f"{KEY}={path}: not a bertlab checkpoint (no model_config); {fix}")
    missing = [k for k in ("optimizer_states", "lr_schedulers", "global_step") if k not in ckpt]
    if missing or not ckpt["optimizer_states"]:
        raise CheckpointError(
            f"{KEY}={path}: holds weights only (no {', '.join(missing) or 'optimizer_states'}), nothing to "
            "continue; give a checkpoint Lightning saved with its optimizer (checkpoints/last.ckpt), or set "
            f"{KEY}=null to start a fresh optimizer and schedule from these weights (pretrained=)"
        )
    epoch_loop = ckpt.get("loops", {}).get("fit_loop", {}).get("epoch_loop.state_dict", {})
    step = int(ckpt["global_step"])
    return Continuation(
        path=p,
        global_step=step,
        batches_that_stepped=int(epoch_loop.get("_batches_that_stepped", step)),
        optimizer_states=list(ckpt["optimizer_states"]),
        lr_schedulers=list(ckpt["lr_schedulers"]),
        run_config=dict(hparams.get("run_config") or {}),
    )


def class_name(target: str | None) -> str:
    """`AdamW` of `torch.optim.AdamW` (a `_target_`) or of `torch.optim.adamw.AdamW` (a class path)."""
    return (target or "").rsplit(".", 1)[-1]


def check_task(found: Continuation, module: L.LightningModule) -> None:
    """The checkpoint's run trained the same kind of task (phase 2 continues a pre-training run)."""
    target = found.run_config.get("task", {}).get("module", {}).get("_target_")
    if target and class_name(target) != type(module).__name__:
        name = found.run_config.get("task", {}).get("name", "?")
        raise CheckpointError(
            f"{KEY}={found.path}: was written by a {class_name(target)} run (task={name}), this run trains a "
            f"{type(module).__name__}; continue a run of the same task (the paper's phase 2: the phase-1 "
            "pre-training run's last.ckpt)"
        )


def check_optimizer(found: Continuation, index: int, optimizer: Optimizer) -> None:
    """The saved state fits `optimizer`: same class, same groups, each state tensor of its parameter's shape."""
    target = found.run_config.get("task", {}).get("module", {}).get("optimizer", {}).get("_target_")
    if target and class_name(target) != type(optimizer).__name__:
        raise CheckpointError(
            f"{KEY}={found.path}: its optimizer is {class_name(target)}, this run's {type(optimizer).__name__}; "
            "continue with the same optimizer= (its state is that optimizer's)"
        )
    saved = found.optimizer_states[index]
    groups = [len(g["params"]) for g in saved["param_groups"]]
    ours = [len(g["params"]) for g in optimizer.param_groups]
    if groups != ours:
        raise CheckpointError(
            f"{KEY}={found.path}: does not fit the model (optimizer groups of {groups} parameters there, "
            f"{ours} here); continue with the checkpoint's own model and task (pretrained= the same file)"
        )
    for saved_group, group in zip(saved["param_groups"], optimizer.param_groups, strict=True):
        for key, param in zip(saved_group["params"], group["params"], strict=True):
            for name, value in saved["state"].get(key, {}).items():
                if torch.is_tensor(value) and value.dim() and value.shape != param.shape:
                    raise CheckpointError(
                        f"{KEY}={found.path}: does not fit the model (optimizer state {name} of shape "
                        f"{tuple(value.shape)} for a parameter of shape {tuple(param.shape)}); continue "
                        "with the checkpoint's own model (pretrained= the same file, model= unset)"
                    )


def same_file(a: str | Path | None, b: str | Path) -> bool:
    return a is not None and Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def continue_training(trainer: L.Trainer, module: L.LightningModule, path: str | Path) -> Continuation:
    """Load `path`'s optimizer and scheduler states into this fit's and set the step counters to its step.

    Called once the optimizers exist and before the first batch (`on_fit_start`); the caller skips it when
    the run resumes its own checkpoint (`trainer.ckpt_path`).
    """
    if not same_file(getattr(module, "pretrained", None), path):
        raise CheckpointError(
            f"{KEY}={path} continues that run's optimizer, so its weights must come from the same file: pass "
            f"pretrained={path} (got pretrained={getattr(module, 'pretrained', None)})"
        )
    if trainer.strategy.restore_checkpoint_after_setup:  # FSDP, DeepSpeed: sharded optimizer states
        raise CheckpointError(
            f"{KEY}: continuing a run is supported with hardware=cpu|gpu|ddp, not "
            f"{type(trainer.strategy).__name__} (its optimizer state is sharded)"
        )
    if not module.automatic_optimization:
        raise CheckpointError(
            f"{KEY}: {type(module).__name__} optimizes manually; continuing needs automatic"
        )
    found = read_continuation(path)
    check_task(found, module)
    optimizers, schedulers = trainer.optimizers, trainer.lr_scheduler_configs
    if len(found.optimizer_states) != len(optimizers) or len(found.lr_schedulers) != len(schedulers):
        raise CheckpointError(
            f"{KEY}={path}: has {len(found.optimizer_states)} optimizer(s) and {len(found.lr_schedulers)} "
            f"scheduler(s), this run {len(optimizers)} and {len(schedulers)}; continue a run of the same task"
        )
    if 0 < trainer.max_steps <= found.global_step:
        raise CheckpointError(
            f"{KEY}={path}: is at step {found.global_step} and trainer.max_steps={trainer.max_steps}, so "
            "nothing is left to train; trainer.max_steps counts both runs (the paper's phase 2: 1000000)"
        )
    for i, optimizer in enumerate(optimizers):
        check_optimizer(found, i, optimizer)
    # this run's peak lr, before the loaded state replaces it: a changed lr or schedule is a jump, said below
    configured = [[g.get("initial_lr", g["lr"]) for g in opt.param_groups] for opt in optimizers]
    trainer.strategy.load_optimizer_state_dict({"optimizer_states": found.optimizer_states})
    for config, state in zip(schedulers, found.lr_schedulers, strict=True):
        config.scheduler.load_state_dict(state)

    loop = trainer.fit_loop.epoch_loop
    steps = loop.automatic_optimization.optim_progress.optimizer.step.total  # trainer.global_step
    steps.ready = steps.completed = found.global_step
    loop._batches_that_stepped = found.batches_that_stepped  # the step loggers write
    warn_on_jump(found, schedulers, configured)
    lr = optimizers[0].param_groups[0]["lr"]
    log.info(
        "continuing %s at step %d (learning rate %.4g); its data position is not restored: this run reads "
        "its own data from the start",
        path,
        found.global_step,
        lr,
    )
    return found


def warn_on_jump(found: Continuation, schedulers: list[Any], configured: list[list[float]]) -> None:
    """Warn when this run's settings (peak lr, warmup, total) would not give the checkpoint's learning rate
    at its step: the checkpoint's peak lr continues, on this run's schedule from there."""
    step = found.global_step
    for config, peaks in zip(schedulers, configured, strict=True):
        scheduler = config.scheduler
        lambdas = getattr(scheduler, "lr_lambdas", None)
        if not lambdas:
            continue
        loaded = [g["lr"] for g in scheduler.optimizer.param_groups] + list(scheduler.base_lrs)
        ours = [peak * fn(step) for peak, fn in zip(peaks, lambdas, strict=True)] + peaks
        if not all(
            math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12) for a, b in zip(loaded, ours, strict=True)
        ):
            log.warning(
                "%s=%s: the learning rate at step %d is %.4g there (peak %.4g) and %.4g by this run's settings "
                "(peak %.4g); the checkpoint's peak continues on this run's schedule. Give both runs the same "
                "optimizer lr and scheduler (warmup_steps, total_steps) for the paper's one schedule",
                KEY,
                found.path,
                step,
                loaded[0],
                scheduler.base_lrs[0],
                ours[0],
                peaks[0],
            )


__all__ = ["Continuation", "check_optimizer", "continue_training", "read_continuation", "warn_on_jump"]
