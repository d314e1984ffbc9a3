"""The paper's two pre-training phases as one run: phase 2 continues phase 1's optimizer state, learning-rate
schedule and step count (`task.module.continue_from`) at another sequence length."""

from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import lightning as L
import pytest
import torch

from bertlab.model.checkpoint import CheckpointError
from bertlab.run import main
from bertlab.tasks.continuation import Continuation, check_optimizer, read_continuation, warn_on_jump
from bertlab.tasks.schedule import warmup_linear, warmup_linear_factor
from tests.hydra_helpers import compose_cfg

LR, WARMUP, TOTAL = 1e-4, 2, 11  # one schedule of 11 steps: phase 1 runs 4 of them, phase 2 on to 7
PHASE1_STEPS, PHASE2_STEPS = 4, 7
MODEL = [
    "model=bert_tiny",
    "model.hidden_size=72",
    "model.num_attention_heads=3",
    "model.intermediate_size=101",
]
COMMON = [
    "logger=csv",
    "data.vocab_size=600",
    "data.max_train_examples=60",
    "data.val_docs=5",
    "data.batch_size=8",
    "hardware.precision=32-true",
    "trainer.log_every_n_steps=1",
    "trainer.val_check_interval=null",
    "export=false",
    f"task.module.optimizer.lr={LR}",
    f"task.module.scheduler.warmup_steps={WARMUP}",
    "task.module.scheduler.warmup_ratio=null",
    f"task.module.scheduler.total_steps={TOTAL}",
    "+callbacks.start_probe._target_=tests.test_phase2.StartProbe",
]


class StartProbe(L.Callback):
    """Records, at the start of each run's training loop, the step counters and a copy of the optimizer
    state; at its first batch, the step and the learning rate that batch trains with."""

    seen: ClassVar[list[dict[str, Any]]] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state = trainer.optimizers[0].state_dict()
        copied = {
            k: {n: v.clone() if torch.is_tensor(v) else v for n, v in s.items()}
            for k, s in state["state"].items()
        }
        StartProbe.seen.append(
            {
                "global_step": trainer.global_step,
                "logged_step": trainer.fit_loop.epoch_loop._batches_that_stepped,
                "state": copied,
                "lr": [g["lr"] for g in state["param_groups"]],
            }
        )

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if "first_lr" not in StartProbe.seen[-1]:
            StartProbe.seen[-1]["first_step"] = trainer.global_step
            StartProbe.seen[-1]["first_lr"] = trainer.optimizers[0].param_groups[0]["lr"]


def logged_lr(run: Path) -> dict[int, float]:
    """{logged step: learning rate of the first parameter group} from the CSV logger's LearningRateMonitor."""
    rows = csv.DictReader((next(run.glob("csv/version_*")) / "metrics.csv").open())
    return {int(r["step"]): float(r["lr-AdamW/pg1"]) for r in rows if r.get("lr-AdamW/pg1")}


def schedule(step: int) -> float:
    return LR * warmup_linear_factor(step, WARMUP, TOTAL)


def continuing(ckpt: Path) -> list[str]:
    """Phase 2's overrides: no model= (the size is the checkpoint's), weights and training state from `ckpt`."""
    return [f"pretrained={ckpt}", f"task.module.continue_from={ckpt}"]


@pytest.fixture(scope="module")
def phases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Phase 1 (length 64, 4 steps), phase 2 continuing it (length 32, to step 7), and one uninterrupted
    run of the same schedule (length 64, 7 steps); with what StartProbe saw at each start."""
    root = tmp_path_factory.mktemp("phases")
    StartProbe.seen.clear()
    main(
        compose_cfg(
            [*MODEL, *COMMON, "data.max_seq_length=64", f"trainer.max_steps={PHASE1_STEPS}"], root / "p1"
        )
    )
    ckpt = root / "p1" / "checkpoints" / "last.ckpt"
    main(
        compose_cfg(
            [*COMMON, *continuing(ckpt), "data.max_seq_length=32", f"trainer.max_steps={PHASE2_STEPS}"],
            root / "p2",
        )
    )
    main(
        compose_cfg(
            [*MODEL, *COMMON, "data.max_seq_length=64", f"trainer.max_steps={PHASE2_STEPS}"], root / "one"
        )
    )
    return {"root": root, "ckpt": ckpt, "starts": list(StartProbe.seen)}


def test_learning_rate_and_step_continue_the_one_schedule(phases: dict[str, Any]) -> None:
    root = phases["root"]
    p1, p2, one = logged_lr(root / "p1"), logged_lr(root / "p2"), logged_lr(root / "one")
    assert sorted(p1) == list(range(PHASE1_STEPS))
    assert min(p2) == max(p1) + 1, "phase 2's first logged step does not follow phase 1's last"
    assert sorted(p2) == list(range(PHASE1_STEPS, PHASE2_STEPS))
    # phase 2's first step: phase 1's schedule at that step (a fresh schedule would warm up from 0 here)
    assert p2[PHASE1_STEPS] == pytest.approx(schedule(PHASE1_STEPS), rel=1e-9)
    assert schedule(PHASE1_STEPS) > 0.5 * LR
    for step, lr in (p1 | p2).items():
        assert lr == pytest.approx(schedule(step), rel=1e-9), step
        assert lr == pytest.approx(one[step], rel=1e-9), f"step {step}: differs from the uninterrupted run"
    p2_state = torch.load(root / "p2" / "checkpoints" / "last.ckpt", weights_only=True)
    assert p2_state["global_step"] == PHASE2_STEPS
    assert p2_state["hyper_parameters"]["model_config"]["max_position_embeddings"] >= 64


def test_optimizer_state_at_phase2_start_is_phase1_end(phases: dict[str, Any]) -> None:
    _, p2_start, _ = phases["starts"]
    saved = torch.load(phases["ckpt"], weights_only=True)["optimizer_states"][0]
    assert p2_start["global_step"] == PHASE1_STEPS and p2_start["logged_step"] == PHASE1_STEPS
    assert p2_start["first_step"] == PHASE1_STEPS
    assert p2_start["first_lr"] == pytest.approx(schedule(PHASE1_STEPS), rel=1e-9)
    assert p2_start["state"].keys() == saved["state"].keys() and saved["state"]
    for key, state in saved["state"].items():
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(p2_start["state"][key][name], state[name]), (key, name)
    assert p2_start["lr"] == [g["lr"] for g in saved["param_groups"]]
    assert any(v["exp_avg"].abs().sum() > 0 for v in saved["state"].values())


def test_resuming_phase2_restores_its_own_state_not_phase1s(
    phases: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """ckpt= on a phase-2 run: Lightning restores phase 2's state; the continuation is not applied again."""
    own = tmp_path / "p2.ckpt"  # a copy: a resumed run writes on in its checkpoint's folder
    shutil.copy(phases["root"] / "p2" / "checkpoints" / "last.ckpt", own)
    saved = torch.load(own, weights_only=True)["optimizer_states"][0]
    StartProbe.seen.clear()
    with caplog.at_level(logging.INFO, logger="bertlab"):
        overrides = [*COMMON, *continuing(phases["ckpt"]), "data.max_seq_length=32", "trainer.max_steps=9"]
        main(compose_cfg([*overrides, f"ckpt={own}"], tmp_path / "resumed"))
    assert not [r for r in caplog.records if r.getMessage().startswith("continuing ")]
    (start,) = StartProbe.seen
    assert start["global_step"] == start["first_step"] == PHASE2_STEPS
    for key, state in saved["state"].items():
        assert torch.equal(start["state"][key]["exp_avg"], state["exp_avg"])
    assert start["first_lr"] == pytest.approx(schedule(PHASE2_STEPS), rel=1e-9)


def _edited(src: Path, dst: Path, edit: Any) -> Path:
    ckpt = torch.load(src, weights_only=True)
    edit(ckpt)
    torch.save(ckpt, dst)
    return dst


def test_wrong_checkpoints_are_one_clear_line(phases: dict[str, Any], tmp_path: Path) -> None:
    ckpt = phases["ckpt"]
    with pytest.raises(
        CheckpointError, match=r"continue_from=.*nope\.ckpt: no such file; give a bertlab run's"
    ):
        read_continuation(tmp_path / "nope.ckpt")
    with pytest.raises(CheckpointError, match=r": a folder; .*export folder holds weights only"):
        read_continuation(tmp_path)
    (tmp_path / "text.ckpt").write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match=r"text\.ckpt: not a checkpoint torch can read"):
        read_continuation(tmp_path / "text.ckpt")
    weights = _edited(ckpt, tmp_path / "weights.ckpt", lambda c: c.pop("optimizer_states"))
    with pytest.raises(CheckpointError, match=r"weights\.ckpt: holds weights only .*continue_from=null"):
        read_continuation(weights)
    plain = _edited(ckpt, tmp_path / "plain.ckpt", lambda c: c["hyper_parameters"].pop("model_config"))
    with pytest.raises(CheckpointError, match=r"plain\.ckpt: not a bertlab checkpoint"):
        read_continuation(plain)
    # an optimizer over other shapes than the checkpoint's parameters
    found = read_continuation(ckpt)
    groups = found.optimizer_states[0]["param_groups"]
    params = [[torch.nn.Parameter(torch.zeros(3, 5)) for _ in g["params"]] for g in groups]
    optimizer = torch.optim.AdamW([{"params": p} for p in params])
    with pytest.raises(CheckpointError, match=r"does not fit the model \(optimizer state exp_avg of shape"):
        check_optimizer(found, 0, optimizer)
    with pytest.raises(
        CheckpointError, match=r"optimizer groups of \[\d+, \d+\] parameters there, \[1\] here"
    ):
        check_optimizer(found, 0, torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))]))


@pytest.mark.parametrize("case", ["other_task", "other_weights", "past_max_steps"])
def test_wrong_continuation_stops_the_run(phases: dict[str, Any], tmp_path: Path, case: str) -> None:
    ckpt, overrides = phases["ckpt"], [*COMMON, "data.max_seq_length=32", f"trainer.max_steps={PHASE2_STEPS}"]
    if case == "other_task":

        def retarget(c: dict[str, Any]) -> None:
            c["hyper_parameters"]["run_config"]["task"]["module"]["_target_"] = "x.SequenceClassificationTask"
            c["hyper_parameters"]["run_config"]["task"]["name"] = "rte"

        other = _edited(ckpt, tmp_path / "rte.ckpt", retarget)
        overrides += continuing(other)
        match = (
            r"rte\.ckpt: was written by a SequenceClassificationTask run \(task=rte\), this run trains a Pre"
        )
    elif case == "other_weights":
        overrides += [f"pretrained={ckpt}", f"task.module.continue_from={tmp_path / 'x.ckpt'}"]
        match = (
            r"x\.ckpt continues that run's optimizer, so its weights must come from the same file: pass pre"
        )
    else:
        overrides += [*continuing(ckpt), f"trainer.max_steps={PHASE1_STEPS}"]
        match = (
            r"is at step 4 and trainer\.max_steps=4, so nothing is left to train; trainer\.max_steps counts"
        )
    with pytest.raises(CheckpointError, match=match):
        main(compose_cfg(overrides, tmp_path / "run"))


def test_paper_experiments_are_one_schedule(tmp_path: Path) -> None:
    one = compose_cfg(["experiment=pretrain_paper_phase1"], tmp_path / "one")
    two = compose_cfg(
        ["experiment=pretrain_paper_phase2", "pretrained=p1/checkpoints/last.ckpt"], tmp_path / "two"
    )
    assert one.trainer.max_steps == 900_000 and two.trainer.max_steps == 1_000_000
    assert one.task.module.scheduler == two.task.module.scheduler
    assert one.task.module.scheduler.total_steps == 1_000_000 and one.task.module.continue_from is None
    assert two.task.module.continue_from == "p1/checkpoints/last.ckpt"
    assert (one.data.max_seq_length, two.data.max_seq_length) == (128, 512)


@pytest.mark.parametrize(
    ("total", "lr", "warns"), [(TOTAL, LR, False), (2 * TOTAL, LR, True), (TOTAL, 3 * LR, True)]
)
def test_a_schedule_that_does_not_continue_is_a_warning(
    caplog: pytest.LogCaptureFixture, total: int, lr: float, warns: bool
) -> None:
    """A continuing run whose lr or schedule would not give the checkpoint's lr at its step says so."""
    param = torch.nn.Parameter(torch.ones(3))

    def optimizer_and_schedule(total: int, lr: float) -> tuple[torch.optim.Optimizer, Any]:
        opt = torch.optim.AdamW([param], lr=lr)
        return opt, warmup_linear(opt, 100, warmup_steps=WARMUP, warmup_ratio=None, total_steps=total)

    old_opt, old_sched = optimizer_and_schedule(TOTAL, LR)
    for _ in range(PHASE1_STEPS):
        old_opt.step()
        old_sched.step()
    opt, sched = optimizer_and_schedule(total, lr)
    configured = [[g["initial_lr"] for g in opt.param_groups]]
    opt.load_state_dict(old_opt.state_dict())
    sched.load_state_dict(old_sched.state_dict())
    found = Continuation(Path("p1.ckpt"), PHASE1_STEPS, PHASE1_STEPS, [], [])
    with caplog.at_level(logging.WARNING, logger="bertlab"):
        warn_on_jump(found, [SimpleNamespace(scheduler=sched)], configured)
    assert ("the learning rate at step 4 is" in caplog.text) is warns
