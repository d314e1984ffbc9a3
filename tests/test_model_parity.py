"""The encoder is numerically transformers' BERT: random tiny reference, round trip, and the real MiniLM."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers

from bertlab.model import BertForPreTraining, BertModel
from tests.tiny import TINY, padded_batch

ATOL = 1e-5


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[transformers.BertForPreTraining, Path]:
    torch.manual_seed(1)
    ref = transformers.BertForPreTraining(transformers.BertConfig(**TINY)).eval()
    # non-trivial biases and LayerNorms so a dropped or swapped parameter shows
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    folder = tmp_path_factory.mktemp("ref")
    ref.save_pretrained(folder)
    return ref, folder


@pytest.mark.parametrize("unpad", [True, False])
def test_pretraining_parity_padded_batch(reference, unpad: bool) -> None:
    ref, folder = reference
    ours = BertForPreTraining.from_pretrained(str(folder), config_overrides={"unpad": unpad}).eval()
    ids, mask, types = padded_batch()
    with torch.no_grad():
        r = ref(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
        o = ours.bert(ids, mask, types, output_hidden_states=True)
        mlm, nsp = ours(ids, mask, types)
    # the unpadded path leaves zeros at padding; the padded path matches transformers everywhere
    real = mask.bool() if unpad else torch.ones_like(mask, dtype=torch.bool)
    assert len(o.hidden_states) == len(r.hidden_states) == TINY["num_hidden_layers"] + 1
    for a, b in zip(r.hidden_states, o.hidden_states):
        torch.testing.assert_close(b[real], a[real], atol=ATOL, rtol=0)
        pooled = ref.bert(input_ids=ids, attention_mask=mask, token_type_ids=types).pooler_output
    torch.testing.assert_close(o.pooler_output, pooled, atol=ATOL, rtol=0)
    torch.testing.assert_close(mlm[real], r.prediction_logits[real], atol=ATOL, rtol=0)
    torch.testing.assert_close(nsp, r.seq_relationship_logits, atol=ATOL, rtol=0)


def test_masked_positions_gather_equals_full_projection(reference) -> None:
    _, folder = reference
    ours = BertForPreTraining.from_pretrained(str(folder)).eval()
    ids, mask, types = padded_batch(seed=3)
    picked = (torch.rand(ids.shape, generator=torch.Generator().manual_seed(0)) < 0.3) & mask.bool()
    with torch.no_grad():
        full, _ = ours(ids, mask, types)
        gathered, _ = ours(ids, mask, types, masked_positions=picked)
    assert gathered.shape == (int(picked.sum()), TINY["vocab_size"])
    torch.testing.assert_close(gathered, full[picked], atol=ATOL, rtol=0)


def test_export_loads_in_transformers_with_same_logits(reference, tmp_path: Path) -> None:
    _, folder = reference
    ours = BertForPreTraining.from_pretrained(str(folder)).eval()
    ours.save_pretrained(str(tmp_path / "export"))
    back = transformers.BertForPreTraining.from_pretrained(tmp_path / "export").eval()
    ids, mask, types = padded_batch(seed=5)
    with torch.no_grad():
        mlm, nsp = ours(ids, mask, types)
        r = back(input_ids=ids, attention_mask=mask, token_type_ids=types)
    real = mask.bool()
    torch.testing.assert_close(r.prediction_logits[real], mlm[real], atol=ATOL, rtol=0)
    torch.testing.assert_close(r.seq_relationship_logits, nsp, atol=ATOL, rtol=0)
    assert (
        back.cls.predictions.decoder.weight.data_ptr()
        == back.bert.embeddings.word_embeddings.weight.data_ptr()
    )


def test_unpadded_and_padded_paths_equal_outputs_and_gradients(reference) -> None:
    _, folder = reference
    models = [
        BertForPreTraining.from_pretrained(str(folder), config_overrides={"unpad": u}).eval()
        for u in (True, False)
    ]
    ids, mask, types = padded_batch(seed=7)
    real = mask.bool()
    outs, grads = [], []
    for model in models:
        mlm, nsp = model(ids, mask, types, masked_positions=real)
        (mlm.logsumexp(-1).mean() + nsp.square().mean()).backward()
        outs.append((mlm, nsp))
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    torch.testing.assert_close(outs[0][0], outs[1][0], atol=ATOL, rtol=0)
    torch.testing.assert_close(outs[0][1], outs[1][1], atol=ATOL, rtol=0)
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 30
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-5, rtol=1e-4, msg=name)


def test_real_minilm_parity_on_real_sentences(minilm_dir: Path, minilm_tokenizer) -> None:
    ref = transformers.BertModel.from_pretrained(minilm_dir).eval()
    ours = BertModel.from_pretrained(str(minilm_dir)).eval()
    pairs = [
        ("The cat sat on the mat.", "It was a sunny afternoon in Paris."),
        (
            "BERT is pre-trained with masked language modelling.",
            "Next sentence prediction is the other task.",
        ),
        ("Short one.", "An unexpectedly longer second sentence, with commas, numbers like 1,234 and café."),
    ]
    encs = minilm_tokenizer.encode_batch(pairs)
    length = max(len(e.ids) for e in encs)
    ids = torch.zeros(len(encs), length, dtype=torch.long)
    mask, types = torch.zeros_like(ids), torch.zeros_like(ids)
    for i, e in enumerate(encs):
        n = len(e.ids)
        ids[i, :n], mask[i, :n], types[i, :n] = torch.tensor(e.ids), 1, torch.tensor(e.type_ids)
    with torch.no_grad():
        r = ref(input_ids=ids, attention_mask=mask, token_type_ids=types)
        o = ours(ids, mask, types)
    real = mask.bool()
    torch.testing.assert_close(o.last_hidden_state[real], r.last_hidden_state[real], atol=ATOL, rtol=0)
    torch.testing.assert_close(o.pooler_output, r.pooler_output, atol=ATOL, rtol=0)
