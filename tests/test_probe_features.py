"""bench/probe_features.py: pooled features per layer and the logistic-regression probe."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
import torch

from bertlab.data.tokenizer import from_vocab
from bertlab.model.bert import BertModel
from bertlab.model.config import BertConfig
from tests.bench_scripts import load_bench


@pytest.fixture(scope="module")
def probe() -> ModuleType:
    return load_bench("probe_features")


def test_probe_separates_a_separable_direction_and_not_noise(probe: ModuleType) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(301, 7, generator=gen)
    y = (x[:, 3] > 0).long()  # the label is one feature's sign
    assert probe.probe_accuracy(x[:200], y[:200], x[200:], y[200:]) > 0.95
    noise = torch.randint(0, 2, (301,), generator=gen)
    assert probe.probe_accuracy(x[:200], noise[:200], x[200:], noise[200:]) < 0.7


def test_features_are_per_layer_mean_and_cls_over_real_tokens(probe: ModuleType, tmp_path: Path) -> None:
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c"]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    tokenizer = from_vocab(tmp_path / "vocab.txt")
    config = BertConfig(vocab_size=8, hidden_size=12, num_hidden_layers=3, num_attention_heads=3,
                        intermediate_size=20, max_position_embeddings=16)  # fmt: skip
    torch.manual_seed(0)
    model = BertModel(config, add_pooling_layer=False).eval()
    texts = ["a b c a b", "c", "b a"]
    out = probe.features(model, tokenizer, texts, length=6, batch=2)  # two batches, padded differently
    assert out.shape == (4, 2, 3, 12)  # (layers + 1, mean/[CLS], sentences, hidden)
    one = model(torch.tensor([[2, 7, 3]]), output_hidden_states=True).hidden_states  # "c" alone: no padding
    for layer in range(4):
        torch.testing.assert_close(out[layer, 0, 1], one[layer][0].mean(0), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[layer, 1, 1], one[layer][0, 0], atol=1e-5, rtol=1e-5)
