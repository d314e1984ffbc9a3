"""Table 5's fine-tuned ablations over the LTR model: the "+ BiLSTM" classifier (`task.module.bilstm`) and
last-token pooling under `is_decoder` (a causal [CLS] sees only itself, so the classifier reads the last
real token).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file

from bertlab.data.glue_tasks import get_task
from bertlab.model import BertForSequenceClassification, BertModel
from bertlab.model.heads import BertBiLSTMForSequenceClassification
from bertlab.run import main
from bertlab.tasks.classification import SequenceClassificationTask
from tests.fixtures_glue import write_mnli
from tests.hydra_helpers import compose_cfg
from tests.tiny import BATCH, LENGTH, padded_batch, tiny_config

ATOL = 1e-5
# even H (H/2 per direction), the rest odd: 66 = 3 heads of 22
SIZES = dict(hidden_size=66, num_attention_heads=3)
NUM_LABELS = 3
MIDDLE = 2  # a position real in every row of padded_batch (shortest row: 4 real tokens)


def bilstm_model(
    unpad: bool = True, seed: int = 0, **overrides: object
) -> BertBiLSTMForSequenceClassification:
    torch.manual_seed(seed)
    config = tiny_config(**SIZES, unpad=unpad, **overrides)
    return BertBiLSTMForSequenceClassification(config, num_labels=NUM_LABELS).eval()


def with_padding(ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor, extra: int = 4):
    """The batch with `extra` more padded columns (token id 0, mask 0, type 0)."""
    pad = torch.zeros(ids.shape[0], extra, dtype=ids.dtype)
    return torch.cat((ids, pad), 1), torch.cat((mask, pad), 1), torch.cat((types, pad), 1)


# -- the BiLSTM head ---------------------------------------------------------------------------------------


def test_shapes_and_an_odd_hidden_size_is_refused() -> None:
    ids, mask, types = padded_batch()
    model = bilstm_model()
    assert model.bilstm.hidden_size == SIZES["hidden_size"] // 2 and model.bilstm.bidirectional
    assert model.bert.pooler is None  # nothing would train it
    with torch.no_grad():
        assert model(ids, mask, types).shape == (BATCH, NUM_LABELS)
        assert model(ids).shape == (BATCH, NUM_LABELS)  # no mask: every token real
    regression = BertBiLSTMForSequenceClassification(tiny_config(**SIZES), num_labels=1)
    assert regression(ids, mask, types).shape == (BATCH, 1)
    with pytest.raises(ValueError, match="even hidden_size"):
        BertBiLSTMForSequenceClassification(tiny_config(hidden_size=63, num_attention_heads=3))


@pytest.mark.parametrize("unpad", [True, False], ids=["unpad", "grid"])
@pytest.mark.parametrize("is_decoder", [False, True], ids=["bidirectional", "causal"])
def test_padding_never_enters_the_bilstm(unpad: bool, is_decoder: bool) -> None:
    """Logits are those of the BiLSTM run on each row's real tokens alone (h_n: forward after the last,
    backward after the first), and more padding changes nothing. Reading padding would fail both: the
    grid path leaves non-zero states there, and even zeros move an LSTM's state through its biases."""
    ids, mask, types = padded_batch(seed=3)
    model = bilstm_model(unpad, is_decoder=is_decoder)
    with torch.no_grad():
        logits = model(ids, mask, types)
        more = model(*with_padding(ids, mask, types))
        hidden = model.bert(ids, mask, types).last_hidden_state
        expected = []
        for row, n in zip(hidden, mask.sum(1).tolist()):
            _, (h_n, _) = model.bilstm(row[None, :n])
            expected.append(model.classifier(torch.cat((h_n[0], h_n[1]), -1))[0])
    torch.testing.assert_close(more, logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(logits, torch.stack(expected), atol=ATOL, rtol=0)
    # the rows really are padded differently, so the packing is what keeps them equal
    assert len(set(mask.sum(1).tolist())) == 4


def test_the_bilstm_and_the_encoder_get_gradients() -> None:
    ids, mask, types = padded_batch(seed=4)
    model = bilstm_model().train()
    labels = torch.arange(BATCH) % NUM_LABELS
    torch.nn.functional.cross_entropy(model(ids, mask, types), labels).backward()
    for name, param in model.named_parameters():
        if name.startswith(("bilstm.", "classifier.", "bert.encoder.layer.1.")):
            assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_the_task_loads_the_encoder_and_starts_the_bilstm_fresh(tmp_path: Path) -> None:
    """bilstm=true picks the BiLSTM head; `pretrained=` fills its encoder (the pooler is dropped), and the
    switch is a hyperparameter, so a checkpoint rebuilds the same model."""
    torch.manual_seed(5)
    source = BertModel(tiny_config(**SIZES))
    source.save_pretrained(str(tmp_path / "source"))
    labels = list(get_task("mnli").labels)
    task = SequenceClassificationTask(
        tiny_config(**SIZES).to_dict(), "mnli", labels, bilstm=True, pretrained=str(tmp_path / "source")
    )
    assert isinstance(task.model, BertBiLSTMForSequenceClassification)
    assert task.hparams["bilstm"] is True
    loaded = task.model.bert.state_dict()
    for key, value in source.state_dict().items():
        if not key.startswith("pooler."):
            assert torch.equal(loaded[key], value), key
    plain = SequenceClassificationTask(tiny_config(**SIZES).to_dict(), "mnli", labels)
    assert type(plain.model) is BertForSequenceClassification and plain.hparams["bilstm"] is False


def test_tiny_fit_exports_the_encoder_and_tests_from_the_checkpoint(
    minilm_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """task.module.bilstm=true through run.main: it fits, scores its checkpoint back (mode=test) with the
    same numbers, and exports the fine-tuned encoder as a transformers BertModel, with a warning."""
    write_mnli(tmp_path / "glue")
    common = ["task=mnli", "logger=csv", "hardware.precision=32-true", "trainer.enable_model_summary=false"]
    fit = tmp_path / "fit"
    with caplog.at_level(logging.WARNING, logger="bertlab.model.convert"):
        metrics = main(compose_cfg([*common, "task.module.bilstm=true", "model=bert_tiny", "model.hidden_size=72",
                                    "model.num_attention_heads=3", "model.intermediate_size=101", "pretrained=null",
                                    f"tokenizer={minilm_dir / 'vocab.txt'}", f"data.data_dir={tmp_path / 'glue'}",
                                    "data.max_train_examples=16", "data.batch_size=8", "data.max_eval_examples=12",
                                    "trainer.max_epochs=2"], fit))  # fmt: skip
    assert math.isfinite(metrics["train/loss"]) and math.isfinite(metrics["val/acc"]), metrics
    assert any("task.module.bilstm=true" in r.getMessage() for r in caplog.records)
    # the export: the encoder alone, as transformers saves a BertModel (no pooler, no head, no labels)
    written = json.loads((fit / "export" / "config.json").read_text())
    assert written["architectures"] == ["BertModel"] and "id2label" not in written
    weights = load_file(str(fit / "export" / "model.safetensors"))
    assert weights and not any(k.startswith(("bert.", "bilstm.", "classifier.", "pooler.")) for k in weights)
    state = torch.load(fit / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for key, value in weights.items():
        assert torch.equal(value, state[f"model.bert.{key}"]), key
    _, info = transformers.BertModel.from_pretrained(
        fit / "export", add_pooling_layer=False, output_loading_info=True
    )
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    # mode=test rebuilds the BiLSTM head from the checkpoint's hyperparameters and weights
    test = main(
        compose_cfg([*common, "mode=test", f"ckpt={fit / 'checkpoints' / 'last.ckpt'}"], tmp_path / "test")
    )
    assert test["test/acc"] == metrics["val/acc"]
    assert test["test/loss"] == pytest.approx(metrics["val/loss"], abs=1e-5)


# -- pooling under is_decoder ------------------------------------------------------------------------------


def pooled(model: BertModel, ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids, mask, types).pooler_output


@pytest.mark.parametrize("unpad", [True, False], ids=["unpad", "grid"])
def test_a_causal_model_pools_its_last_real_token(unpad: bool) -> None:
    """Position-0 pooling would see neither a middle token's change nor anything after [CLS]."""
    ids, mask, types = padded_batch(seed=6)
    torch.manual_seed(7)
    model = BertModel(tiny_config(**SIZES, is_decoder=True, unpad=unpad)).eval()
    out = pooled(model, ids, mask, types)
    with torch.no_grad():
        hidden = model(ids, mask, types).last_hidden_state
        last = mask.sum(1) - 1  # right padding: the last real position
        expected = model.pooler.activation(model.pooler.dense(hidden[torch.arange(BATCH), last]))
    torch.testing.assert_close(out, expected, atol=0, rtol=0)
    changed = ids.clone()
    changed[:, MIDDLE] = (changed[:, MIDDLE] - 5 + 11) % (99 - 5) + 5
    assert not torch.equal(changed, ids)
    moved = (pooled(model, changed, mask, types) - out).abs().amax(-1)
    assert (moved > 1e-4).all(), moved  # every row
    # padding: more columns, and other ids under the mask, change nothing
    torch.testing.assert_close(pooled(model, *with_padding(ids, mask, types)), out, atol=ATOL, rtol=0)
    other = torch.where(mask.bool(), ids, torch.full_like(ids, 42))
    torch.testing.assert_close(pooled(model, other, mask, types), out, atol=ATOL, rtol=0)
    # no mask: every token is real, so the last column is read
    with torch.no_grad():
        full = model(ids.clamp(min=5), None, types)
        ref = model.pooler.activation(model.pooler.dense(full.last_hidden_state[:, -1]))
    torch.testing.assert_close(full.pooler_output, ref, atol=0, rtol=0)


def test_a_causal_classifier_reads_the_whole_sequence() -> None:
    ids, mask, types = padded_batch(seed=8)
    torch.manual_seed(9)
    model = BertForSequenceClassification(tiny_config(**SIZES, is_decoder=True), num_labels=NUM_LABELS).eval()
    changed = ids.clone()
    changed[:, MIDDLE] = (changed[:, MIDDLE] - 5 + 13) % (99 - 5) + 5
    with torch.no_grad():
        assert not torch.allclose(model(changed, mask, types), model(ids, mask, types), atol=1e-4)


@pytest.mark.parametrize("unpad", [True, False], ids=["unpad", "grid"])
def test_a_bidirectional_model_still_pools_position_zero(unpad: bool) -> None:
    ids, mask, types = padded_batch(seed=10)
    torch.manual_seed(11)
    model = BertModel(tiny_config(**SIZES, unpad=unpad)).eval()
    with torch.no_grad():
        out = model(ids, mask, types)
        ref = model.pooler.activation(model.pooler.dense(out.last_hidden_state[:, 0]))
    assert torch.equal(out.pooler_output, ref)


def test_exporting_a_causal_classifier_warns_that_transformers_pools_position_zero(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = BertForSequenceClassification(tiny_config(**SIZES, is_decoder=True), num_labels=NUM_LABELS)
    with caplog.at_level(logging.WARNING, logger="bertlab.model.convert"):
        model.save_pretrained(str(tmp_path / "causal"))
        BertForSequenceClassification(tiny_config(**SIZES), num_labels=NUM_LABELS).save_pretrained(
            str(tmp_path / "plain")
        )
    warned = [r.getMessage() for r in caplog.records if "position 0" in r.getMessage()]
    assert len(warned) == 1 and "causal" in warned[0] and str(tmp_path / "causal") in warned[0]


def test_length_constants() -> None:
    """padded_batch's layout, which MIDDLE and the padding checks above rely on."""
    _, mask, _ = padded_batch()
    assert mask.shape == (BATCH, LENGTH) and int(mask.sum(1).min()) > MIDDLE + 1
