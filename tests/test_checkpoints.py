"""Strict checkpoint loading: what does not fit raises a clear error; what the caller allows loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from bertlab.model import BertForPreTraining, BertForSequenceClassification, BertModel
from bertlab.model.convert import CheckpointError
from tests.tiny import padded_batch, tiny_config


@pytest.fixture()
def encoder_only(tmp_path: Path) -> Path:
    """A folder holding an encoder without pooler or heads (like many exported checkpoints)."""
    model = BertModel(tiny_config(), add_pooling_layer=False)
    model.save_pretrained(str(tmp_path / "enc"))
    return tmp_path / "enc"


def test_missing_heads_error_lists_keys(encoder_only: Path) -> None:
    with pytest.raises(CheckpointError, match=r"missing keys: .*cls\.predictions"):
        BertForPreTraining.from_pretrained(str(encoder_only))


def test_missing_pooler_needs_consent(encoder_only: Path) -> None:
    with pytest.raises(CheckpointError, match=r"pooler\.dense.*add_pooling_layer=False"):
        BertModel.from_pretrained(str(encoder_only))
    model = BertModel.from_pretrained(str(encoder_only), add_pooling_layer=False)
    assert model.pooler is None


def test_new_heads_load_encoder_and_keep_heads_fresh(encoder_only: Path) -> None:
    model = BertForPreTraining.from_pretrained(str(encoder_only), new_heads=True)
    saved = load_file(str(encoder_only / "model.safetensors"))
    torch.testing.assert_close(
        model.bert.encoder.layer[1].output.dense.weight, saved["encoder.layer.1.output.dense.weight"]
    )


def test_pretraining_heads_dropped_for_finetuning(tmp_path: Path) -> None:
    pre = BertForPreTraining(tiny_config())
    pre.save_pretrained(str(tmp_path / "pre"))
    clf = BertForSequenceClassification.from_pretrained(str(tmp_path / "pre"), new_heads=True, num_labels=3)
    ids, mask, types = padded_batch()
    assert clf(ids, mask, types).shape == (13, 3)
    torch.testing.assert_close(clf.bert.pooler.dense.weight, pre.bert.pooler.dense.weight)


def test_shape_mismatch_and_unexpected_keys_raise(tmp_path: Path) -> None:
    BertModel(tiny_config()).save_pretrained(str(tmp_path / "a"))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        BertModel.from_pretrained(str(tmp_path / "a"), config_overrides={"intermediate_size": 41})
    state = load_file(str(tmp_path / "a" / "model.safetensors"))
    state["encoder.layer.0.surprise.weight"] = torch.zeros(3)
    save_file(state, str(tmp_path / "a" / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"unexpected keys: \['encoder\.layer\.0\.surprise\.weight'\]"):
        BertModel.from_pretrained(str(tmp_path / "a"))


def test_legacy_names_and_bin_files_load(tmp_path: Path) -> None:
    """pytorch_model.bin (weights_only), TF-era gamma/beta names and a position_ids buffer."""
    model = BertModel(tiny_config())
    model.save_pretrained(str(tmp_path / "m"))
    state = load_file(str(tmp_path / "m" / "model.safetensors"))
    legacy = {
        k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
        for k, v in state.items()
    }
    legacy["embeddings.position_ids"] = torch.arange(512)[None]
    (tmp_path / "m" / "model.safetensors").unlink()
    torch.save(legacy, tmp_path / "m" / "pytorch_model.bin")
    back = BertModel.from_pretrained(str(tmp_path / "m")).eval()
    ids, mask, types = padded_batch()
    with torch.no_grad():
        torch.testing.assert_close(
            back(ids, mask, types).pooler_output, model.eval()(ids, mask, types).pooler_output
        )


def test_missing_folder_and_weights_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        BertModel.from_pretrained(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"config\.json"):
        BertModel.from_pretrained(str(tmp_path / "empty"))


def test_pooler_dropped_for_token_level_heads(tmp_path: Path) -> None:
    """A checkpoint with pooler loads into NER/QA models, which have none (as transformers does)."""
    from bertlab.model import BertForQuestionAnswering, BertForTokenClassification

    BertModel(tiny_config()).save_pretrained(str(tmp_path / "m"))
    ner = BertForTokenClassification.from_pretrained(str(tmp_path / "m"), new_heads=True, num_labels=5)
    qa = BertForQuestionAnswering.from_pretrained(str(tmp_path / "m"), new_heads=True)
    assert ner.bert.pooler is None and qa.bert.pooler is None
