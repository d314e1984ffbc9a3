"""The left-to-right model ("LTR & No NSP", the paper's Table 5): causal attention on every path, and
its export is transformers' BertLMHeadModel with `is_decoder: true`, same logits and same LM loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import transformers

from bertlab.model import BertConfig, BertLMHeadModel, BertModel, next_token_targets
from tests.tiny import TINY, padded_batch, tiny_config

ATOL = 1e-5
CUTS = (0, 2, 4, 5)  # t: positions <= t must not see a change after t (LENGTH 7, shortest row 4 real)


def ltr_model(
    unpad: bool, is_decoder: bool = True, seed: int = 0, **overrides: object
) -> BertLMHeadModel | BertModel:
    """A tiny random LTR model in eval mode (a plain BertModel when not is_decoder: no LM head then)."""
    torch.manual_seed(seed)
    config = tiny_config(is_decoder=is_decoder, unpad=unpad, **overrides)
    return (BertLMHeadModel(config) if is_decoder else BertModel(config)).eval()


def outputs(model: BertLMHeadModel | BertModel, ids, mask, types) -> list[torch.Tensor]:
    """Every hidden state (L+1 x `(B, T, H)`) and, for the LM, the logits `(B, T, V)`."""
    bert = model.bert if isinstance(model, BertLMHeadModel) else model
    with torch.no_grad():
        out = list(bert(ids, mask, types, output_hidden_states=True).hidden_states)
        if isinstance(model, BertLMHeadModel):
            out.append(model(ids, mask, types))
    return out


def change_after(ids: torch.Tensor, mask: torch.Tensor, t: int) -> torch.Tensor:
    """`ids` with every real token after position t replaced by a different one (padding kept)."""
    later = torch.zeros_like(mask, dtype=torch.bool)
    later[:, t + 1 :] = True
    later &= mask.bool()
    return torch.where(later, (ids - 5 + 7) % (TINY["vocab_size"] - 5) + 5, ids)


@pytest.mark.parametrize("padded", [True, False], ids=["padded", "full"])
@pytest.mark.parametrize("unpad", [True, False], ids=["unpad", "grid"])
def test_later_tokens_do_not_change_earlier_outputs(unpad: bool, padded: bool) -> None:
    ids, mask, types = padded_batch(seed=1)
    if not padded:
        mask = torch.ones_like(mask)
        ids = ids.clamp(min=5)
    causal, bidirectional = ltr_model(unpad), ltr_model(unpad, is_decoder=False)
    before, before_bi = outputs(causal, ids, mask, types), outputs(bidirectional, ids, mask, types)
    for t in CUTS:
        changed = change_after(ids, mask, t)
        assert not torch.equal(changed, ids)
        after, after_bi = outputs(causal, changed, mask, types), outputs(bidirectional, changed, mask, types)
        for a, b in zip(before, after):
            torch.testing.assert_close(b[:, : t + 1], a[:, : t + 1], atol=ATOL, rtol=0)
        # the change reaches later positions; and without the causal mask, earlier ones too (t = 0:
        # [CLS]'s layer-1 output), so this test would catch a mask that is not applied
        assert not torch.allclose(after[-1][:, t + 1 :], before[-1][:, t + 1 :], atol=1e-3)
        assert not torch.allclose(after_bi[-1][:, : t + 1], before_bi[-1][:, : t + 1], atol=1e-3)


def test_unpadded_and_grid_paths_agree_with_left_padding_and_gradients() -> None:
    """Causal buckets equal the causal grid (real positions), with padding on the left too: there the
    grid has queries with no key, which must come out finite, not NaN."""
    ids, mask, types = padded_batch(seed=2)
    mask, ids, types = mask.flip(1), ids.flip(1), types.flip(1)  # padding first
    mask[0, 3] = 0  # and a hole
    real = mask.bool()
    logits, grads = [], []
    for unpad in (True, False):
        # train mode for the autograd path, with no dropout so both paths compute the same function
        model = ltr_model(unpad, seed=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).train()
        out = model(ids, mask, types)
        assert torch.isfinite(out).all()
        out[real].square().mean().backward()
        logits.append(out[real].detach())
        grads.append(model.bert.encoder.layer[0].attention.self.query.weight.grad)
    torch.testing.assert_close(logits[0], logits[1], atol=ATOL, rtol=0)
    torch.testing.assert_close(grads[0], grads[1], atol=ATOL, rtol=1e-4)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny transformers BertLMHeadModel (is_decoder) with non-trivial biases, saved."""
    torch.manual_seed(1)
    ref = transformers.BertLMHeadModel(transformers.BertConfig(**TINY, is_decoder=True))
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    folder = tmp_path_factory.mktemp("ltr_ref")
    ref.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("unpad", [True, False], ids=["unpad", "grid"])
def test_transformers_decoder_parity_padded_batch(reference: Path, unpad: bool, attn: str) -> None:
    ref = transformers.BertLMHeadModel.from_pretrained(reference, attn_implementation=attn).eval()
    ours = BertLMHeadModel.from_pretrained(str(reference), config_overrides={"unpad": unpad}).eval()
    assert ours.config.is_decoder
    ids, mask, types = padded_batch()
    with torch.no_grad():
        r = ref(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
        states = ours.bert(ids, mask, types, output_hidden_states=True).hidden_states
        logits = ours(ids, mask, types)
    # the unpadded path leaves zeros at padding; the grid matches transformers everywhere
    real = mask.bool() if unpad else torch.ones_like(mask, dtype=torch.bool)
    assert len(states) == len(r.hidden_states) == TINY["num_hidden_layers"] + 1
    for a, b in zip(r.hidden_states, states):
        torch.testing.assert_close(b[real], a[real], atol=ATOL, rtol=0)
    torch.testing.assert_close(logits[real], r.logits[real], atol=ATOL, rtol=0)


def test_export_loads_strictly_in_transformers_with_same_logits_and_loss(tmp_path: Path) -> None:
    ours = ltr_model(unpad=True, seed=4)
    with torch.no_grad():
        for name, p in ours.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    ours.save_pretrained(str(tmp_path / "export"))
    written = json.loads((tmp_path / "export" / "config.json").read_text())
    assert written["is_decoder"] is True and written["add_cross_attention"] is False
    assert written["architectures"] == ["BertLMHeadModel"]
    back, info = transformers.BertLMHeadModel.from_pretrained(tmp_path / "export", output_loading_info=True)
    back = back.eval()
    assert back.config.is_decoder
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert (
        back.cls.predictions.decoder.weight.data_ptr()
        == back.bert.embeddings.word_embeddings.weight.data_ptr()
    )
    ids, mask, types = padded_batch(seed=5)
    positions, targets = next_token_targets(ids, mask)
    with torch.no_grad():
        logits = ours(ids, mask, types)
        picked = ours(ids, mask, types, masked_positions=positions)
        r = back(
            input_ids=ids, attention_mask=mask, token_type_ids=types, labels=ids.masked_fill(mask == 0, -100)
        )
    real = mask.bool()
    torch.testing.assert_close(r.logits[real], logits[real], atol=ATOL, rtol=0)
    torch.testing.assert_close(picked, logits[positions], atol=ATOL, rtol=0)
    # position t predicts t + 1: one target per real token but each row's last
    assert len(targets) == int(mask.sum()) - len(ids)
    torch.testing.assert_close(F.cross_entropy(picked, targets), r.loss, atol=ATOL, rtol=0)
    # and a plain BertModel read from the export is causal in transformers as in bertlab
    enc = transformers.BertModel.from_pretrained(tmp_path / "export", add_pooling_layer=False).eval()
    with torch.no_grad():
        hidden = enc(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    torch.testing.assert_close(
        hidden[real], ours.bert(ids, mask, types).last_hidden_state[real], atol=ATOL, rtol=0
    )


def test_next_token_targets_shift() -> None:
    ids = torch.tensor([[2, 11, 12, 3, 0], [2, 21, 22, 23, 3]])
    positions, targets = next_token_targets(ids, (ids != 0).long())
    assert positions.tolist() == [[True, True, True, False, False], [True, True, True, True, False]]
    assert targets.tolist() == [11, 12, 3, 21, 22, 23, 3]


def test_lm_head_needs_causal_config_and_cross_attention_is_refused() -> None:
    with pytest.raises(ValueError, match="is_decoder: true"):
        BertLMHeadModel(tiny_config())
    with pytest.raises(ValueError, match="add_cross_attention"):
        BertConfig.from_dict(tiny_config(is_decoder=True).to_dict() | {"add_cross_attention": True})
    assert BertConfig.from_dict(tiny_config(is_decoder=True).to_dict()).is_decoder
