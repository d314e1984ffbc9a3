"""Pre-training end to end through run.main and train.py: loss falls, resume, DDP, export."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers

from bertlab.run import ConfigError, main
from tests.hydra_helpers import REPO, compose_cfg

SMALL = [
    "model=bert_tiny",
    "model.hidden_size=72",
    "model.num_attention_heads=3",
    "model.intermediate_size=101",
    "logger=csv",
    "data.vocab_size=1500",
    "data.max_seq_length=64",
    "data.batch_size=16",
    "data.val_docs=20",
    "hardware.precision=32-true",
]


def wiki_overrides(shared: Path, docs: int = 250) -> list[str]:
    return [
        "data=wiki",
        f"data.path={shared / 'wiki' / 'wiki_00'}",
        f"data.max_train_examples={docs}",
        *SMALL,
    ]


def logged(run: Path, key: str) -> list[float]:
    rows = list(csv.DictReader((next(run.glob("csv/version_*")) / "metrics.csv").open()))
    return [float(r[key]) for r in rows if r.get(key)]


def test_wiki_pretraining_loss_falls_and_export_loads(shared_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = compose_cfg(
        [
            *wiki_overrides(shared_data),
            "trainer.max_steps=40",
            "trainer.val_check_interval=40",
            "task.module.optimizer.lr=5e-3",
            "trainer.log_every_n_steps=1",
        ],
        run,
    )
    metrics = main(cfg)
    losses = logged(run, "train/mlm_loss")
    assert len(losses) == 40
    # starts at the uniform guess ln(V) and must fall well below it (a tiny model first learns unigrams)
    vocab = json.loads((run / "export" / "config.json").read_text())["vocab_size"]
    first, last = sum(losses[:2]) / 2, sum(losses[-5:]) / 5
    assert abs(first - math.log(vocab)) < 0.3
    assert last < first - 0.5, f"MLM loss did not fall: {first:.2f} -> {last:.2f}"
    assert metrics["val/mlm_loss"] < math.log(vocab) - 0.7
    assert json.loads((run / "metrics.json").read_text()) == metrics
    assert {"val/mlm_loss", "val/mlm_acc", "val/nsp_acc", "val/perplexity"} <= metrics.keys()
    # the export loads in transformers with the same logits
    from bertlab.model import BertForPreTraining

    ours = BertForPreTraining.from_pretrained(str(run / "export")).eval()
    ref = transformers.BertForPreTraining.from_pretrained(run / "export").eval()
    tok = transformers.BertTokenizerFast(vocab_file=str(run / "export" / "vocab.txt"))
    enc = tok(
        ["the river flows north", "it was founded in 1901"],
        ["a second segment", "b"],
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        mlm, nsp = ours(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        r = ref(**enc)
    real = enc["attention_mask"].bool()
    torch.testing.assert_close(mlm[real], r.prediction_logits[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(nsp, r.seq_relationship_logits, atol=1e-5, rtol=0)


def test_resume_continues_global_step(shared_data: Path, tmp_path: Path) -> None:
    first = tmp_path / "first"
    main(compose_cfg([*wiki_overrides(shared_data, 80), "trainer.max_steps=4", "export=false"], first))
    ckpt = first / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["global_step"] == 4
    second = tmp_path / "second"  # the resumed run goes on in the checkpoint's run folder instead
    main(
        compose_cfg(
            [
                *wiki_overrides(shared_data, 80),
                "trainer.max_steps=7",
                f"ckpt={ckpt}",
                "export=false",
                "trainer.log_every_n_steps=1",
            ],
            second,
        )
    )
    assert not second.exists()
    resumed = torch.load(ckpt, weights_only=True)
    assert resumed["global_step"] == 7
    rows = csv.DictReader((first / "csv" / "version_0" / "metrics.csv").open())
    steps = [int(r["step"]) for r in rows if r["train/loss"]]
    assert steps == [4, 5, 6], "resumed run restarted from step 0"


def test_wrong_vocab_size_is_a_clear_error(tmp_path: Path, minilm_dir: Path) -> None:
    cfg = compose_cfg(
        [
            "logger=none",
            f"tokenizer={minilm_dir / 'vocab.txt'}",
            "model.vocab_size=1000",
            "data.max_train_examples=30",
            "data.val_docs=5",
        ],
        tmp_path / "run",
    )
    with pytest.raises(
        ConfigError, match=r"vocab\.txt: vocabulary has 30522 tokens but the model has vocab_size=1000"
    ):
        main(cfg)


@pytest.mark.parametrize("hardware", ["ddp", "fsdp"])
def test_two_cpu_processes_run_steps(shared_data: Path, tmp_path: Path, hardware: str) -> None:
    """hardware=ddp|fsdp on CPU: Lightning relaunches train.py per rank over gloo; FSDP2 shards per layer."""
    run = tmp_path / hardware
    args = [
        *wiki_overrides(shared_data, 80),
        f"hardware={hardware}",
        "hardware.accelerator=cpu",
        "hardware.devices=2",
        "trainer.max_steps=3",
        "trainer.val_check_interval=null",
        f"hydra.run.dir={run}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    env = os.environ | {"WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "train.py", *args], cwd=REPO, capture_output=True, text=True, timeout=400, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "distributed_backend=gloo" in proc.stderr + proc.stdout
    assert "world_size: 2" in proc.stderr + proc.stdout or "MEMBER: 2/2" in proc.stderr + proc.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train/mlm_loss"] > 0
    from bertlab.model import BertForPreTraining

    model = BertForPreTraining.from_pretrained(str(run / "export"))  # gathered whole from the shards
    assert model.config.hidden_size == 72
