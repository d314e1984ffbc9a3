"""Evaluating pre-trained checkpoints: `task=pretrain mode=test` on a bertlab .ckpt, its export folder, a
checkpoint without the NSP head, another corpus (`data.test_file`), and the refusal of one without heads."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from bertlab.data.corpus import resolve_corpus
from bertlab.model.checkpoint import CheckpointError
from bertlab.run import ConfigError, main
from tests.hydra_helpers import compose_cfg

# the data settings decide which documents are held out: the pre-training run and pretrained= share them
DATA = [
    "data=wiki",
    "data.max_train_examples=60",
    "data.val_docs=13",
    "data.max_seq_length=64",
    "data.batch_size=16",
]
COMMON = ["logger=csv", "hardware.precision=32-true"]
KEYS = {"test/mlm_acc", "test/perplexity", "test/nsp_acc", "test/mlm_loss", "test/nsp_loss", "test/loss"}


def wiki(shared: Path) -> list[str]:
    return [*DATA, f"data.path={shared / 'wiki' / 'wiki_00'}"]


@pytest.fixture(scope="module")
def pretrained(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model pre-trained for 6 steps on 47 wiki documents, validated on the 13 held out at the end."""
    run = tmp_path_factory.mktemp("pretrain") / "run"
    overrides = [
        *wiki(shared_data),
        *COMMON,
        "model.hidden_size=72",
        "model.num_attention_heads=3",
        "model.intermediate_size=101",
        "data.vocab_size=1500",
        "trainer.max_steps=6",
        "trainer.val_check_interval=6",
        "task.module.optimizer.lr=5e-3",
    ]
    main(compose_cfg(overrides, run))
    return run


def test_ckpt_and_export_score_the_same_held_out_documents(
    pretrained: Path, shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="bertlab"):
        by_ckpt = main(
            compose_cfg(["task=pretrain", "mode=test", f"ckpt={pretrained}", *COMMON], tmp_path / "c")
        )
    assert by_ckpt.keys() >= KEYS
    assert json.loads((tmp_path / "c" / "metrics.json").read_text()) == by_ckpt
    assert any(r.getMessage().startswith("test: test/loss=") for r in caplog.records), "no log line"
    # the test split is the held-out documents masked as validation masks them: the fit's last validation
    fit = json.loads((pretrained / "metrics.json").read_text())
    for key in KEYS:
        assert by_ckpt[key] == pytest.approx(fit[key.replace("test/", "val/")], abs=1e-5), key
    # the export folder, as pretrained=, in a fresh cache: the same numbers, and no training instances built
    fresh = tmp_path / "fresh" / "run"
    export = [
        "task=pretrain",
        "mode=test",
        f"pretrained={pretrained / 'export'}",
        *wiki(shared_data),
        *COMMON,
    ]
    by_export = main(compose_cfg(export, fresh))
    for key in KEYS:
        assert by_export[key] == pytest.approx(by_ckpt[key], abs=1e-5), key
    (folder,) = (fresh.parent / "cache" / "pretrain").iterdir()
    assert (folder / "held_out.json").is_file() and not (folder / "train").exists()
    # sane: accuracies are fractions, perplexity is exp of the token-mean MLM loss, below a uniform guess
    vocab = json.loads((pretrained / "export" / "config.json").read_text())["vocab_size"]
    assert 0 <= by_ckpt["test/mlm_acc"] <= 1 and 0 <= by_ckpt["test/nsp_acc"] <= 1
    assert by_ckpt["test/perplexity"] == pytest.approx(math.exp(by_ckpt["test/mlm_loss"]), rel=1e-5)
    assert 1 < by_ckpt["test/perplexity"] < vocab


def test_without_nsp_head_scores_mlm_only(pretrained: Path, shared_data: Path, tmp_path: Path) -> None:
    """A BertForMaskedLM-shaped folder (no pooler, no NSP classifier): MLM scored, NSP skipped."""
    folder = tmp_path / "mlm_only"
    folder.mkdir()
    for name in ("config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((pretrained / "export" / name).read_bytes())
    state = load_file(str(pretrained / "export" / "model.safetensors"))
    kept = {k: v for k, v in state.items() if not k.startswith(("cls.seq_relationship.", "bert.pooler."))}
    assert len(kept) == len(state) - 4
    save_file(kept, str(folder / "model.safetensors"))
    # with both heads the held-out scores are the fit's last validation (test above)
    with_heads = {
        k.replace("val/", "test/"): v
        for k, v in json.loads((pretrained / "metrics.json").read_text()).items()
    }
    mlm_only = main(
        compose_cfg(["mode=test", f"pretrained={folder}", *wiki(shared_data), *COMMON], tmp_path / "b")
    )
    assert {"test/mlm_acc", "test/mlm_loss", "test/perplexity"} == mlm_only.keys()
    for key in mlm_only:
        assert mlm_only[key] == pytest.approx(with_heads[key], abs=1e-5), key


def test_another_corpus_as_test_file(pretrained: Path, shared_data: Path, tmp_path: Path) -> None:
    """data.test_file: every usable document of that corpus (here the first 11 of wiki_01) is scored."""
    text = (shared_data / "wiki" / "wiki_01").read_text(encoding="utf-8")
    docs = text.split("</doc>\n")[:11]
    corpus = tmp_path / "wiki_test"
    corpus.write_text("".join(d + "</doc>\n" for d in docs), encoding="utf-8")
    out = tmp_path / "run"
    metrics = main(compose_cfg(["mode=test", f"ckpt={pretrained}", f"data.test_file={corpus}", *COMMON], out))
    assert metrics.keys() >= KEYS
    assert metrics["test/perplexity"] == pytest.approx(math.exp(metrics["test/mlm_loss"]), rel=1e-5)
    held_out = json.loads((pretrained / "metrics.json").read_text())["val/mlm_loss"]
    assert metrics["test/mlm_loss"] != pytest.approx(held_out, abs=1e-4), "scored the held-out documents"
    # the read-back data config keeps the pre-training run's cache, where the test corpus has its own folder
    usable = sum(len(doc) >= 2 for doc in resolve_corpus(corpus, "wiki").documents())
    done = [json.loads(p.read_text()) for p in (pretrained.parent / "cache" / "pretrain").glob("*/done.json")]
    assert [d["docs"] for d in done if "docs" in d] == [usable]


def test_a_checkpoint_without_heads_is_refused_before_any_data_is_read(
    minilm_dir: Path, tmp_path: Path
) -> None:
    """MiniLM is a plain BertModel: its MLM accuracy would be a random head's. One line, naming the fix."""
    cfg = compose_cfg(
        ["mode=test", f"pretrained={minilm_dir}", "data.max_train_examples=30", *COMMON], tmp_path / "r"
    )
    with pytest.raises(CheckpointError) as err:
        main(cfg)
    message = str(err.value)
    assert f"pretrained={minilm_dir} has no masked-LM head" in message
    assert "cls.predictions.transform.dense.weight" in message and "bertlab pre-training .ckpt" in message
    assert "\n" not in message
    assert not (tmp_path / "cache" / "pretrain").exists(), "data was read before the check"


def test_mode_test_needs_ckpt_or_pretrained(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"mode=test needs ckpt=.*task=pretrain: or pretrained="):
        main(compose_cfg(["mode=test", *COMMON], tmp_path / "r"))
