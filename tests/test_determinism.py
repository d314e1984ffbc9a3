"""The same seed gives the same run: two `train.py` processes with one config write identical metrics.json
(every key but the `speed/*` timings), on CPU in fp32, for pre-training and for a GLUE fine-tuning.

The vocabulary is fixed (MiniLM's vocab.txt): WordPiece training is not promised to be reproducible, and
it is not what is tested here. Each run has its own cache folder, so the pre-training cache is built twice.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from tests.hydra_helpers import REPO

TINY = ["model=bert_tiny", "model.hidden_size=36", "model.num_attention_heads=3", "model.intermediate_size=41",
        "hardware.precision=32-true", "logger=csv", "trainer.enable_model_summary=false", "export=false",
        "seed=13"]  # fmt: skip


def run_twice(tmp_path: Path, args: list[str]) -> tuple[dict[str, float], dict[str, float]]:
    """metrics.json of two train.py processes with `args`, run side by side (own run and cache folders)."""
    env = os.environ | {"WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                        "OMP_NUM_THREADS": "1"}  # fmt: skip
    procs = []
    for run in ("a", "b"):
        log = (tmp_path / f"{run}.log").open("w")  # a file, not a pipe: no run waits on a full buffer
        cmd = [sys.executable, "train.py", *args, f"hydra.run.dir={tmp_path / run}",
               f"paths.cache_dir={tmp_path / run / 'cache'}"]  # fmt: skip
        procs.append((subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    for (proc, log), run in zip(procs, ("a", "b"), strict=True):
        proc.wait(timeout=400)
        log.close()
        assert proc.returncode == 0, (tmp_path / f"{run}.log").read_text()[-3000:]
    a, b = (json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("a", "b"))
    # and the same weights, bit for bit
    wa, wb = (
        torch.load(tmp_path / run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)[
            "state_dict"
        ]
        for run in ("a", "b")
    )
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    return a, b


def without_speed(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if not k.startswith("speed/")}


def test_pretraining_is_deterministic(shared_data: Path, minilm_dir: Path, tmp_path: Path) -> None:
    args = [
        *TINY, "data=wiki", f"data.path={shared_data / 'wiki' / 'wiki_00'}", "data.max_train_examples=60",
        "data.val_docs=7", "data.max_seq_length=48", "data.batch_size=11", f"tokenizer={minilm_dir / 'vocab.txt'}",
        "trainer.max_steps=6", "trainer.val_check_interval=3", "task.module.optimizer.lr=1e-3",
    ]  # fmt: skip
    a, b = run_twice(tmp_path, args)
    assert {"val/mlm_loss", "val/nsp_acc", "train/mlm_loss"} <= a.keys()
    assert without_speed(a) == without_speed(b)
    assert "speed/train_time_s" in a  # timings exist, and are the only keys left out


def test_glue_fine_tuning_is_deterministic(shared_data: Path, minilm_dir: Path, tmp_path: Path) -> None:
    args = [
        *TINY, "task=rte", "pretrained=null", f"tokenizer={minilm_dir / 'vocab.txt'}",
        f"data.data_dir={shared_data / 'glue'}", "data.max_train_examples=45", "data.max_eval_examples=19",
        "data.max_seq_length=48", "data.batch_size=8", "trainer.max_epochs=2", "task.module.optimizer.lr=1e-3",
    ]  # fmt: skip
    a, b = run_twice(tmp_path, args)
    assert {"val/acc", "val/loss", "train/loss"} <= a.keys()
    assert without_speed(a) == without_speed(b)
