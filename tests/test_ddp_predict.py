"""GLUE mode=predict under hardware=ddp (2 CPU processes, gloo): the submission file has one row per test
row, in the file's order, none twice, and the same predictions as one process.

An odd number of test rows cannot split evenly over two ranks: a padding sampler would repeat a row on
one of them (Lightning predicts with its unrepeated sampler; `write_submission` keeps an index once).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bertlab.run import main
from tests.hydra_helpers import REPO, compose_cfg
from tests.test_best_checkpoint import TINY, write_keyword_sst2

N_TEST = 23  # odd: 12 rows on rank 0, 11 on rank 1


def read_tsv(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()]


def test_ddp_predict_writes_each_test_row_once_in_file_order(minilm_dir: Path, tmp_path: Path) -> None:
    data = write_keyword_sst2(tmp_path / "glue", n_train=21, n_dev=9, n_test=N_TEST)
    fit = tmp_path / "fit"
    common = ["task=sst2", "logger=csv", "hardware.precision=32-true", "data.eval_batch_size=5"]
    main(compose_cfg(["task=sst2", *TINY, f"tokenizer={minilm_dir / 'vocab.txt'}", f"data.data_dir={data}",
                      "data.max_seq_length=16", "data.batch_size=8", "trainer.max_epochs=1"], fit))  # fmt: skip
    ckpt = fit / "checkpoints" / "last.ckpt"
    # one process: the reference predictions
    main(compose_cfg([*common, "mode=predict", f"ckpt={ckpt}"], tmp_path / "one"))
    one = read_tsv(tmp_path / "one" / "submission" / "SST-2.tsv")

    run = tmp_path / "ddp"
    args = [
        *common, "mode=predict", f"ckpt={ckpt}", "hardware=ddp", "hardware.accelerator=cpu", "hardware.devices=2",
        f"hydra.run.dir={run}", f"paths.cache_dir={tmp_path / 'cache'}",
    ]  # fmt: skip
    env = os.environ | {"WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                        "OMP_NUM_THREADS": "1"}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "train.py", *args], cwd=REPO, capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "distributed_backend=gloo" in proc.stderr + proc.stdout
    rows = read_tsv(run / "submission" / "SST-2.tsv")
    file_order = [r[0] for r in read_tsv(data / "SST-2" / "test.tsv")[1:]]
    assert len(file_order) == N_TEST
    assert rows[0] == ["index", "prediction"]
    assert [r[0] for r in rows[1:]] == file_order  # every row once, in the file's order
    assert rows == one  # and what one process predicts
