"""What a run logs: its whole resolved config, flattened, to W&B (read back from the offline run's records)
and to the CSV logger's hparams.yaml; job_type, group and tags; the final metrics in the W&B summary."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from omegaconf import DictConfig, OmegaConf

from bertlab.run import main
from bertlab.run_logging import flat_config
from tests.fixtures_glue import write_mnli
from tests.hydra_helpers import compose_cfg

SMALL = [
    "model.hidden_size=36",
    "model.num_attention_heads=3",
    "model.intermediate_size=41",
    "hardware.precision=32-true",
    "trainer.enable_model_summary=false",
]


@pytest.fixture(autouse=True)
def _offline_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """W&B offline, writing nothing outside tmp_path; the run is finished after the test."""
    for name in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    yield
    import wandb

    if wandb.run is not None:
        wandb.finish()


def wandb_records(path: Path) -> Iterator[Any]:
    """The protobuf `Record`s of an offline run's `run-*.wandb` file (W&B's LevelDB-style log: a 7-byte
    header, then 32 KiB blocks of chunks, each `crc32 (4) | length (2, little-endian) | type (1) | data`)."""
    from wandb.proto.wandb_internal_pb2 import Record

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk  # FULL, FIRST | MIDDLE, LAST
        if kind in (1, 4):
            record = Record()
            record.ParseFromString(buf)
            yield record


def complete_records(file: Path, timeout: float = 60.0) -> list[Any]:
    """The run file's records once its `exit` record is there: W&B's service may still be writing the
    file when `finish()` returns, and a record read too early is missing, not wrong."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            records = list(wandb_records(file))
        except Exception:  # a chunk cut off mid-write
            records = []
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def read_wandb_run(run_dir: Path) -> dict[str, Any]:
    """{"run": the run record, "config": {key: value}, "summary": {key: value}} of the run's one offline run."""
    (file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    out: dict[str, Any] = {"run": None, "config": {}, "summary": {}}

    def take(items: Any, into: dict[str, Any]) -> None:
        for item in items:
            into[item.key or ".".join(item.nested_key)] = json.loads(item.value_json)

    for record in complete_records(file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["run"] = record.run
            take(record.run.config.update, out["config"])
        elif kind == "config":
            take(record.config.update, out["config"])
        elif kind == "summary":
            take(record.summary.update, out["summary"])
    return out


def leaves(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config's leaf keys (dotted) and values; a list or an empty mapping is one leaf."""
    return flat_config(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]


def test_pretraining_logs_the_whole_config_job_type_group_and_summary(
    shared_data: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    cfg = compose_cfg(
        [
            "logger=wandb", *SMALL, "data=wiki", f"data.path={shared_data / 'wiki' / 'wiki_00'}",
            "data.max_train_examples=40", "data.val_docs=5", "data.vocab_size=500", "data.max_seq_length=32",
            "data.batch_size=8", "trainer.max_steps=2", "trainer.val_check_interval=2", "export=false",
        ],
        run,
    )  # fmt: skip
    metrics = main(cfg)
    import wandb

    wandb.finish()
    logged = read_wandb_run(run)
    expected = leaves(cfg)
    assert len(expected) > 78  # the issue counted 78 leaf keys; the whole config is more now
    missing = sorted(set(expected) - set(logged["config"]))
    assert not missing, f"W&B config lacks {missing}"
    for key in ("task.module.optimizer.lr", "task.module.scheduler.warmup_ratio", "trainer.max_steps",
                "data.batch_size", "hardware.precision", "data.mlm_probability", "seed", "pretrained"):  # fmt: skip
        assert logged["config"][key] == expected[key], key
    assert logged["config"]["pretrained"] is None
    # the encoder actually built: the trained vocabulary's size, not the preset's 30522
    assert logged["config"]["model.vocab_size"] <= 500 < expected["model.vocab_size"]
    assert (logged["run"].job_type, logged["run"].run_group) == ("pretrain", "pretrain")
    assert list(logged["run"].tags) == ["pretrain"]
    assert metrics and {k: logged["summary"][k] for k in metrics} == pytest.approx(metrics)
    assert {"val/mlm_loss", "speed/train_examples_per_s"} <= metrics.keys()


def test_random_init_finetuning_says_so_and_csv_gets_the_config(
    minilm_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """pretrained=null: the log says "no pre-training", W&B's config has pretrained None and job_type
    finetune; hparams.yaml holds the same flattened config."""
    write_mnli(tmp_path / "data" / "glue", n_train=16, n_dev=8, n_test=4)
    run = tmp_path / "run"
    cfg = compose_cfg(
        [
            "task=mnli", "pretrained=null", "logger=[wandb,csv]", *SMALL, f"tokenizer={minilm_dir / 'vocab.txt'}",
            f"paths.data_dir={tmp_path / 'data'}", "data.max_seq_length=32", "data.batch_size=8",
            "trainer.max_epochs=1", "export=false",
        ],
        run,
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="bertlab"):
        main(cfg)
    import wandb

    wandb.finish()
    assert "no pre-training: random initialisation" in caplog.text
    logged = read_wandb_run(run)
    expected = leaves(cfg)
    assert not sorted(set(expected) - set(logged["config"]))
    assert logged["config"]["pretrained"] is None and logged["config"]["task.name"] == "mnli"
    assert (logged["run"].job_type, logged["run"].run_group) == ("finetune", "mnli")
    assert "val/acc" in logged["summary"] and "val/acc_mm" in logged["summary"]
    hparams = yaml.safe_load(next(run.glob("csv/version_*/hparams.yaml")).read_text())
    assert not sorted(set(expected) - set(hparams))
    assert hparams["task.module.label_names"] == ["contradiction", "entailment", "neutral"]
    assert hparams["pretrained"] is None and hparams["data.batch_size"] == 8
