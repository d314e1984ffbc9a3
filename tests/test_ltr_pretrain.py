"""The "LTR & No NSP" ablation (Table 5, issue 12) as a pre-training run: `task=pretrain_ltr` trains a causal
`BertLMHeadModel` on unmasked segments, logs lm metrics and exports a transformers BertLMHeadModel.
Causality itself is tested in tests/test_ltr.py."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import transformers

from bertlab.data.pretrain import PretrainDataModule
from bertlab.model.heads import BertLMHeadModel
from bertlab.run import main
from bertlab.tasks.pretrain import ObjectiveError, PreTrainingTask
from tests.hydra_helpers import compose_cfg
from tests.tiny import TINY, tiny_pretraining_run

TINY_LTR = dict(TINY, vocab_size=30522, hidden_size=36, num_attention_heads=3, is_decoder=True)


def _hand_ltr_loss(model: BertLMHeadModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy of every next real token, from the full (B, T, V) logits: labels = ids shifted
    left, padding (and what follows the last real token) ignored."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    logits = model(ids, mask, batch["token_type_ids"])  # (B, T, V)
    labels = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels.reshape(-1))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_ltr_loss_is_next_token_cross_entropy_on_unmasked_batches(minilm_dir: Path, tmp_path: Path) -> None:
    dm = PretrainDataModule(
        tokenizer=str(minilm_dir), cache_dir=tmp_path, max_train_examples=30, val_docs=4, nsp=False,
        mlm_probability=0.0, max_seq_length=37, short_seq_prob=0.0, batch_size=7,
    )  # fmt: skip
    dm.setup("fit")
    originals = {tuple(x) for x in dm.split("train").features["input_ids"]}
    batch = next(iter(dm.train_dataloader()))  # through the real dynamic-masking transform
    rows = [row[m.bool()].tolist() for row, m in zip(batch["input_ids"], batch["attention_mask"])]
    assert all(tuple(r) in originals for r in rows), "the LTR inputs were corrupted"
    assert batch["attention_mask"].sum() < batch["attention_mask"].numel(), "want a padded batch"
    torch.manual_seed(0)
    task = PreTrainingTask(TINY_LTR, objective="ltr").eval()
    assert isinstance(task.model, BertLMHeadModel)
    with torch.no_grad():
        out = task.step(batch)
        torch.testing.assert_close(out["loss"], _hand_ltr_loss(task.model, batch))
    assert out["num_masked"] == batch["attention_mask"].sum() - len(rows)  # every token but each row's last
    assert {"lm_loss", "lm_acc"} <= out.keys() and not [k for k in out if "mlm" in k or "nsp" in k]
    # the mismatches: each one line naming the setting to change
    masked = batch | {"mlm_labels": batch["input_ids"].masked_fill(batch["attention_mask"] == 1, 5)}
    with pytest.raises(ObjectiveError, match=r"set data\.mlm_probability=0"):
        task.step(masked)
    with pytest.raises(ObjectiveError, match=r"set data\.nsp=false"):
        task.step(batch | {"next_sentence_label": torch.zeros(len(rows), dtype=torch.long)})
    with pytest.raises(ObjectiveError, match=r"set model\.is_decoder=true"):
        PreTrainingTask(dict(TINY_LTR, is_decoder=False), objective="ltr")
    with pytest.raises(ObjectiveError, match=r"set model\.is_decoder=false"):
        PreTrainingTask(TINY_LTR, objective="mlm")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_ltr_pretraining_runs_and_exports_an_lm_head_model(minilm_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    metrics = main(compose_cfg(tiny_pretraining_run("pretrain_ltr", minilm_dir / "vocab.txt"), run))
    assert {"val/lm_loss", "val/lm_acc", "val/perplexity"} <= metrics.keys()
    assert not [k for k in metrics if "nsp" in k or "mlm" in k], metrics
    # val/lm_loss is weighted by tokens, so its exp is the token-mean perplexity
    assert math.isclose(metrics["val/perplexity"], math.exp(metrics["val/lm_loss"]), rel_tol=1e-4)
    header = next(csv.reader((next(run.glob("csv/version_*")) / "metrics.csv").open()))
    assert {"train/lm_loss", "train/lm_acc"} <= set(header), header
    assert not [k for k in header if "nsp" in k or "mlm" in k], header
    config = json.loads((run / "export" / "config.json").read_text())
    assert config["architectures"] == ["BertLMHeadModel"] and config["is_decoder"] is True
    ref = transformers.BertLMHeadModel.from_pretrained(run / "export").eval()
    ours = BertLMHeadModel.from_pretrained(str(run / "export")).eval()
    ids = torch.tensor([[101, 1996, 2314, 2003, 2167, 102], [101, 2023, 2003, 1037, 102, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        expected = ref(input_ids=ids, attention_mask=mask).logits
        torch.testing.assert_close(ours(ids, mask)[mask == 1], expected[mask == 1], atol=1e-5, rtol=1e-4)


def test_a_pretrained_is_decoder_that_does_not_fit_the_objective_is_one_line(tmp_path: Path) -> None:
    """With pretrained= the checkpoint's config decides is_decoder (run_plan), so the fix names it."""
    ltr = str(tmp_path / "ltr")
    with pytest.raises(
        ObjectiveError, match=r"pretrained=.*ltr \(is_decoder=true in its config\).*task=pretrain_ltr"
    ):
        PreTrainingTask(TINY_LTR, objective="mlm", pretrained=ltr)
