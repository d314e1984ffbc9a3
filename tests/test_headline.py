"""The headline command, `python train.py model=bert_large task=mnli`: the published checkpoint by default,
one line when the checkpoint or the data cannot be had, a fine-tuning run when they can, and label names
in the export. (`--cfg job --resolve` showing `pretrained: bert-large-uncased` is checked in test_config.py,
in the one `--cfg job` run of train.py the suite makes.) train.py runs in-process (tests/cli.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import transformers

from bertlab.model import BertForSequenceClassification, BertForTokenClassification
from bertlab.model.checkpoint import MissingCheckpointError
from bertlab.model.convert import write_folder
from bertlab.run import ConfigError, main, plan_run
from tests.cli import CompletedRun, run_train
from tests.fixtures_glue import write_mnli
from tests.hydra_helpers import compose_cfg
from tests.tiny import tiny_config

PUBLISHED = {
    "bert_tiny": "google/bert_uncased_L-2_H-128_A-2",
    "bert_mini": "google/bert_uncased_L-4_H-256_A-4",
    "bert_small": "google/bert_uncased_L-4_H-512_A-8",
    "bert_medium": "google/bert_uncased_L-8_H-512_A-8",
    "bert_base": "bert-base-uncased",
    "bert_large": "bert-large-uncased",
}


def train(args: list[str], tmp_path: Path, **env: str) -> CompletedRun:
    """`python train.py ARGS` offline, its run, caches and hub cache inside tmp_path."""
    environ = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_CACHE", "HYDRA_FULL_ERROR")}
    environ |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
                "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", **env}  # fmt: skip
    args = [*args, f"hydra.run.dir={tmp_path / 'run'}", f"paths.cache_dir={tmp_path / 'cache'}"]
    return run_train(args, env=environ)


@pytest.mark.parametrize("model", sorted(PUBLISHED))
def test_finetuning_starts_from_the_published_checkpoint(tmp_path: Path, model: str) -> None:
    assert compose_cfg([f"model={model}", "task=mnli"], tmp_path).pretrained == PUBLISHED[model]
    assert compose_cfg([f"model={model}", "task=conll2003"], tmp_path).pretrained == PUBLISHED[model]
    assert compose_cfg([f"model={model}"], tmp_path).pretrained is None  # pre-training: random init
    random_init = compose_cfg([f"model={model}", "task=mnli", "pretrained=null"], tmp_path)
    assert random_init.pretrained is None
    plan = plan_run(random_init)
    assert "hub_name" not in plan.model  # a preset key, never a BertConfig field


def test_missing_checkpoint_names_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    cfg = compose_cfg(["model=bert_mini", "task=rte"], tmp_path)
    with pytest.raises(MissingCheckpointError) as err:
        plan_run(cfg)
    line = str(err.value)
    assert line.startswith("pretrained=google/bert_uncased_L-4_H-256_A-4: checkpoint not found (offline")
    assert f"{tmp_path / 'hub' / 'models--google--bert_uncased_L-4_H-256_A-4'}" in line
    assert f"{Path.cwd() / 'google' / 'bert_uncased_L-4_H-256_A-4'}" in line
    assert "pass pretrained=<local folder" in line and "pretrained=null" in line and "\n" not in line


def test_random_init_without_a_vocabulary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pretrained=null .* no vocabulary; pass tokenizer="):
        main(compose_cfg(["task=rte", "pretrained=null", "logger=none"], tmp_path))


@pytest.mark.parametrize("case", ["checkpoint", "data"])
def test_headline_offline_is_one_line(minilm_dir: Path, tmp_path: Path, case: str) -> None:
    """Offline, no checkpoint (or no data): exit status 2, one line on stderr, no traceback."""
    (tmp_path / "empty").mkdir()
    args = {
        "checkpoint": ["model=bert_large", "task=mnli"],
        "data": ["task=rte", f"pretrained={minilm_dir}"],
    }[case]
    proc = train([*args, f"paths.data_dir={tmp_path / 'empty'}"], tmp_path)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr and proc.stdout == ""
    if case == "checkpoint":
        assert lines[0].startswith("error: pretrained=bert-large-uncased: checkpoint not found")
        assert str(tmp_path / "hf" / "hub" / "models--bert-large-uncased") in lines[0]
        assert "pretrained=null" in lines[0]
    else:
        assert lines[0].startswith("error: ") and "RTE" in lines[0]


def test_headline_finetunes_from_a_local_checkpoint(minilm_dir: Path, tmp_path: Path) -> None:
    """The same command with pretrained=<MiniLM folder> and an MNLI-format folder fine-tunes and exports
    a folder whose config.json names MNLI's labels (model=bert_large is left out: an explicit size must
    match the checkpoint's, and MiniLM is not BERT-Large)."""
    write_mnli(tmp_path / "data" / "glue", n_train=8, n_dev=4, n_test=4)
    args = [
        "task=mnli", f"pretrained={minilm_dir}", f"paths.data_dir={tmp_path / 'data'}", "logger=csv",
        "trainer.fast_dev_run=true", "hardware.precision=32-true", "data.max_seq_length=32",
        "data.batch_size=4", "data.eval_batch_size=4",
    ]  # fmt: skip
    proc = train(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"val/acc", "val/acc_mm", "train/loss"} <= metrics.keys()
    config = transformers.AutoConfig.from_pretrained(tmp_path / "run" / "export")
    assert config.id2label == {0: "contradiction", 1: "entailment", 2: "neutral"}
    assert config.label2id == {"contradiction": 0, "entailment": 1, "neutral": 2}
    assert config.hidden_size == 384  # MiniLM's size, read from the checkpoint


def test_exports_carry_label_names_for_classification_and_ner(tmp_path: Path) -> None:
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    write_folder(BertForTokenClassification(tiny_config(), num_labels=5), tmp_path / "ner", label_names=tags)
    ner = transformers.AutoConfig.from_pretrained(tmp_path / "ner")
    assert ner.id2label == dict(enumerate(tags)) and ner.label2id == {t: i for i, t in enumerate(tags)}
    # a regression head (STS-B: no names, one output) and names that do not fit the head keep LABEL_i
    for folder, names in (("stsb", []), ("wrong", ["a", "b"])):
        write_folder(
            BertForSequenceClassification(tiny_config(), num_labels=1), tmp_path / folder, label_names=names
        )
        assert transformers.AutoConfig.from_pretrained(tmp_path / folder).id2label == {0: "LABEL_0"}
    model = transformers.AutoModelForTokenClassification.from_pretrained(tmp_path / "ner")
    assert model.config.id2label[1] == "B-PER"
