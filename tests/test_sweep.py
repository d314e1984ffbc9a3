"""The paper's GLUE grid as a Hydra multirun: the config, a real two-point sweep with W&B offline, the report."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import InterpolationResolutionError

from bertlab import report
from tests.hydra_helpers import REPO, compose_cfg, hydra_cfg

GRID = {
    "task.module.optimizer.lr": "5e-5,4e-5,3e-5,2e-5",
    "data.batch_size": "16,32",
    "trainer.max_epochs": "2,3,4",
    "seed": "1,2,3",
}


@pytest.mark.parametrize("entry", ["experiment=glue_paper", "hparams_search=glue_grid"])
def test_the_paper_grid_is_72_runs_per_task(entry: str) -> None:
    cfg = hydra_cfg([entry, "task=rte", "pretrained=/models/bert", "sweep_name=s1"])
    assert dict(cfg.hydra.sweeper.params) == GRID
    assert len(list(itertools.product(*(v.split(",") for v in GRID.values())))) == 72
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"  # sweeps even without -m
    assert cfg.hydra.sweep.dir == "multirun/glue/s1"
    assert OmegaConf.to_container(cfg.hydra.sweep)["subdir"] == "${task.name}/${hydra.job.num}"


def test_glue_paper_recipe(tmp_path: Path) -> None:
    cfg = compose_cfg(["experiment=glue_paper", "task=mrpc", "pretrained=/models/bert", "sweep_name=base_v1",
                       "seed=3"], tmp_path)  # fmt: skip
    # the paper's fine-tuning recipe (task/_finetune.yaml) survives the experiment
    opt, sched = cfg.task.module.optimizer, cfg.task.module.scheduler
    assert (opt.weight_decay, sched.warmup_ratio, cfg.model.hidden_dropout_prob) == (0.01, 0.1, 0.1)
    assert cfg.data.max_seq_length == 128 and cfg.trainer.max_epochs == 3
    assert cfg.pretrained == "/models/bert" and cfg.export is False
    assert cfg.callbacks.model_checkpoint.save_weights_only is True
    # W&B: offline, one group per task and sweep, runs named by their hyper-parameters
    assert cfg.logger.wandb.offline is True
    assert cfg.logger.wandb.group == "mrpc-base_v1"
    assert cfg.logger.wandb.name == "mrpc[seed=3]"


def test_pretrained_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forgetting pretrained= must not fine-tune 72 randomly initialised models."""
    monkeypatch.delenv("BERTLAB_PRETRAINED", raising=False)
    cfg = hydra_cfg(["experiment=glue_paper", "task=rte"])
    with pytest.raises(InterpolationResolutionError, match="BERTLAB_PRETRAINED"):
        _ = cfg.pretrained
    monkeypatch.setenv("BERTLAB_PRETRAINED", "/models/bert")
    assert hydra_cfg(["experiment=glue_paper", "task=rte"]).pretrained == "/models/bert"


def test_two_point_sweep_logs_to_wandb_and_reports(
    shared_data: Path, minilm_dir: Path, tmp_path: Path
) -> None:
    """`train.py -m experiment=glue_paper` with two learning rates: two runs, two W&B runs, one report."""
    sweep = tmp_path / "sweep"
    args = [
        "-m", "experiment=glue_paper", "task=rte", "pretrained=null", "sweep_name=pair",
        "model=bert_tiny", "model.hidden_size=72", "model.num_attention_heads=3", "model.intermediate_size=101",
        f"tokenizer={minilm_dir / 'vocab.txt'}", "hardware.precision=32-true", "trainer.enable_model_summary=false",
        f"data.data_dir={shared_data / 'glue'}", "data.max_train_examples=32", "data.max_eval_examples=32",
        # the command line replaces the grid's axes: 2 x 1 x 1 x 1 runs
        "task.module.optimizer.lr=1e-4,3e-4", "data.batch_size=16", "trainer.max_epochs=1", "seed=1",
        f"hydra.sweep.dir={sweep}", f"paths.cache_dir={tmp_path / 'cache'}",
    ]  # fmt: skip
    # offline, and nothing written outside tmp_path
    env = os.environ | {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_CACHE_DIR": str(tmp_path),
                        "WANDB_CONFIG_DIR": str(tmp_path)}  # fmt: skip
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=400, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]

    metrics = sorted(sweep.rglob("metrics.json"))
    assert [p.parent.relative_to(sweep).as_posix() for p in metrics] == ["rte/0", "rte/1"]
    runs = sorted(sweep.glob("rte/*/wandb/offline-run-*"))
    assert len(runs) == 2 and {r.parents[1].name for r in runs} == {"0", "1"}, runs
    for run, lr in zip(runs, ("0.0001", "0.0003")):
        # the run's records (protobuf) carry its group and name as plain strings
        records = next(run.glob("run-*.wandb")).read_bytes()
        assert b"rte-pair" in records
        assert f"task.module.optimizer.lr={lr}".encode() in records
    for job in ("0", "1"):
        assert (sweep / "rte" / job / ".hydra" / "overrides.yaml").is_file()
        assert (sweep / "rte" / job / "checkpoints" / "last.ckpt").is_file()
        assert not (sweep / "rte" / job / "export").exists()

    summary = report.summarise([sweep])
    rte = summary["tasks"]["rte"]
    assert (rte["runs"], rte["finished"], rte["failed"]) == (2, 2, 0)
    assert sorted(s["label"] for s in rte["settings"]) == [
        "lr=0.0001 batch_size=16 epochs=1", "lr=0.0003 batch_size=16 epochs=1"
    ]  # fmt: skip
    best = rte["best_setting"]
    assert best["median"] == max(s["median"] for s in rte["settings"])
    assert rte["best_run"]["checkpoint"].endswith("checkpoints/last.ckpt")
    out = subprocess.run([sys.executable, "-m", "bertlab.report", str(sweep)], capture_output=True, text=True,
                         timeout=120, check=True).stdout  # fmt: skip
    assert f"  best setting  {best['label']}: median {100 * best['median']:.1f} over seeds 1 " in out
    assert "| best setting, median over seeds | - | - | - | - | - | - | - | " in out
    predict = next(line for line in out.splitlines() if line.startswith("  predict"))
    assert predict.endswith(f"python train.py mode=predict task=rte ckpt={rte['best_run']['checkpoint']} "
                            "data.max_eval_examples=null")  # fmt: skip
