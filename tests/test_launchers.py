"""Sweeps fan out through Hydra's launchers: joblib runs jobs at once, submitit runs them as (SLURM) jobs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf.errors import InterpolationValidationError

from tests.hydra_helpers import REPO, hydra_cfg
from tests.test_multinode import TINY_RUN

pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason="pip install -e .[cluster]")
pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e .[cluster]")


def train(args: list[str], tmp_path: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """`python train.py ARGS` from the repo root, W&B offline, one thread per process."""
    env = os.environ | {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow  # 45-51 s on 2 shared cores: three Python processes import torch and Lightning
def test_joblib_runs_two_jobs_at_once(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    train(
        [
            "-m",
            "hydra/launcher=parallel",
            "hydra.launcher.n_jobs=2",
            *TINY_RUN,
            "seed=1,2",
            f"hydra.sweep.dir={sweep}",
            # each job its own cache: jobs building one cache folder at once would race
            "paths.cache_dir=${hydra:runtime.output_dir}/cache",
        ],
        tmp_path,
    )
    jobs = [sweep / "0", sweep / "1"]
    # a job's window: Hydra writes .hydra/config.yaml before the run starts, run.main metrics.json at its end
    starts = [(job / ".hydra" / "config.yaml").stat().st_mtime for job in jobs]
    ends = [(job / "metrics.json").stat().st_mtime for job in jobs]
    assert max(starts) < min(ends), f"jobs ran one after the other: starts {starts}, ends {ends}"
    assert [(job / ".hydra" / "overrides.yaml").read_text().count("seed=") for job in jobs] == [1, 1]


@pytest.mark.slow  # ~25 s alone: a submitit process per job; the basic launcher is tested above
def test_submitit_local_runs_a_job(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    train(
        ["-m", "hydra/launcher=submitit_local", *TINY_RUN, f"hydra.sweep.dir={sweep}",
         f"paths.cache_dir={tmp_path / 'cache'}"],
        tmp_path,
    )  # fmt: skip
    assert (sweep / "0" / "metrics.json").is_file()
    assert (sweep / "0" / "checkpoints" / "last.ckpt").is_file()
    # the job ran in a submitit worker process, which left its logs beside the sweep
    assert list((sweep / ".submitit").glob("*/*_0_log.out"))


def test_slurm_launcher_asks_one_task_per_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """hydra/launcher=slurm: the sbatch script submitit would submit, built without a cluster."""
    import submitit

    cfg = hydra_cfg(["hydra/launcher=slurm", "hardware=ddp", "hardware.devices=4", "hardware.num_nodes=2",
                     "hydra.launcher.partition=gpu", f"hydra.sweep.dir={tmp_path}"])  # fmt: skip
    executors: list[submitit.AutoExecutor] = []
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # "srun is here"

    def submit(self: submitit.AutoExecutor, fn: object, *args: object) -> list:
        executors.append(self)  # instead of sbatch
        return []

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", submit)
    launcher = instantiate(cfg.hydra.launcher)
    launcher.config = cfg
    launcher.launch([["seed=1"]], initial_job_idx=0)
    sbatch = executors[0]._executor._make_submission_file_text("python -m submitit.core._submit", "0")
    for line in ["--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--partition=gpu", "--time=1440",
                 "--mem=64GB", "--cpus-per-task=8", "--signal=USR2@120"]:  # fmt: skip
        assert f"#SBATCH {line}\n" in sbatch, sbatch
    # srun starts every task of every node on the job; Lightning's SLURMEnvironment ranks them
    assert "\nsrun " in sbatch


def test_slurm_launcher_needs_a_device_count() -> None:
    """hardware=ddp's `devices: auto` cannot be a task count: the launcher config says which key is wrong."""
    cfg = hydra_cfg(["hydra/launcher=slurm", "hardware=ddp"])
    with pytest.raises(InterpolationValidationError, match="tasks_per_node"):
        _ = cfg.hydra.launcher.tasks_per_node
