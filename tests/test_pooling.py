"""`model.pooling=mean`: the pooler reads the mean of the real tokens instead of [CLS], on both attention
paths, and the export says transformers will not reproduce it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from bertlab.model import BertConfig, BertForSequenceClassification, BertModel
from tests.tiny import BATCH, LENGTH, tiny_config


def padded_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """ids `(B, T)` and a mask `(B, T)` with rows of 1..T real tokens, right-padded."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 99, (BATCH, LENGTH), generator=gen)
    lengths = torch.arange(BATCH) % LENGTH + 1
    mask = (torch.arange(LENGTH) < lengths[:, None]).long()
    return ids * mask, mask


@pytest.mark.parametrize("unpad", [True, False])
def test_mean_pooling_is_tanh_dense_of_the_real_tokens_mean(unpad: bool) -> None:
    torch.manual_seed(0)
    model = BertModel(tiny_config(pooling="mean", unpad=unpad)).eval()
    ids, mask = padded_batch()
    out = model(ids, mask)
    real = mask.unsqueeze(-1).float()
    mean = (out.last_hidden_state * real).sum(1) / real.sum(1)  # (B, H)
    expected = torch.tanh(model.pooler.dense(mean))
    torch.testing.assert_close(out.pooler_output, expected)
    # not the [CLS] vector, and padding ids cannot move it
    assert not torch.allclose(out.pooler_output, torch.tanh(model.pooler.dense(out.last_hidden_state[:, 0])))
    other_pads = torch.where(mask.bool(), ids, torch.full_like(ids, 7))
    torch.testing.assert_close(model(other_pads, mask).pooler_output, out.pooler_output)


def test_paths_agree_and_no_mask_means_every_token() -> None:
    torch.manual_seed(0)
    packed = BertModel(tiny_config(pooling="mean", unpad=True)).eval()
    grid = BertModel(tiny_config(pooling="mean", unpad=False)).eval()
    grid.load_state_dict(packed.state_dict())
    ids, mask = padded_batch(1)
    torch.testing.assert_close(packed(ids, mask).pooler_output, grid(ids, mask).pooler_output)
    full = torch.ones_like(mask)
    torch.testing.assert_close(packed(ids, full).pooler_output, packed(ids).pooler_output)


def test_classifier_reads_the_mean_and_same_weights_load_either_way(tmp_path: Path) -> None:
    """Pooling changes no weight name: a [CLS] checkpoint loads strictly into a mean-pooling classifier."""
    torch.manual_seed(0)
    BertForSequenceClassification(tiny_config(), num_labels=3).save_pretrained(str(tmp_path / "cls"))
    by_cls = BertForSequenceClassification.from_pretrained(str(tmp_path / "cls"), num_labels=3).eval()
    by_mean = BertForSequenceClassification.from_pretrained(
        str(tmp_path / "cls"), num_labels=3, config_overrides={"pooling": "mean"}
    ).eval()
    ids, mask = padded_batch(2)
    assert by_mean.config.pooling == "mean" and by_cls.config.pooling == "cls"
    assert by_mean(ids, mask).shape == (BATCH, 3)
    assert not torch.allclose(by_mean(ids, mask), by_cls(ids, mask))


def test_export_keeps_pooling_and_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = BertForSequenceClassification(tiny_config(pooling="mean"), num_labels=2)
    with caplog.at_level(logging.WARNING):
        model.save_pretrained(str(tmp_path / "m"))
    assert "pools the mean of its real tokens (pooling=mean)" in caplog.text
    written = json.loads((tmp_path / "m" / "config.json").read_text())
    assert written["pooling"] == "mean"
    assert (
        BertForSequenceClassification.from_pretrained(str(tmp_path / "m"), num_labels=2).config.pooling
        == "mean"
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        BertForSequenceClassification(tiny_config(), num_labels=2).save_pretrained(str(tmp_path / "c"))
    assert "pools" not in caplog.text


def test_unknown_pooling_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match=r"pooling 'max' is not supported; use one of \('cls', 'mean'\)"):
        BertConfig(pooling="max")
