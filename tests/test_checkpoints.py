"""Strict checkpoint loading: what does not fit raises a clear error; what the caller allows loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from bertlab.model import BertForPreTraining, BertForSequenceClassification, BertModel
from bertlab.model.checkpoint import (
    CheckpointError,
    check_size,
    checkpoint_vocabulary,
    read_checkpoint,
    read_model_config,
    read_run_config,
)
from bertlab.run import main, plan_run
from tests.hydra_helpers import compose_cfg
from tests.tiny import TinyClassifierTask, labelled_batches, padded_batch, quiet_trainer, tiny_config


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


# ------------------------------------------------------------------ bertlab .ckpt files and the run plan


@pytest.fixture()
def task_ckpt(tmp_path: Path) -> Path:
    """A .ckpt of a TinyClassifierTask after two training steps, with a run_config naming its vocabulary."""
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).to_dict()
    module = TinyClassifierTask(config)
    module.hparams["run_config"] = {"model": config, "tokenizer": "some/run/export"}
    trainer = quiet_trainer(max_steps=2, default_root_dir=tmp_path)
    trainer.fit(module, train_dataloaders=DataLoader(labelled_batches(2), batch_size=None))
    trainer.save_checkpoint(tmp_path / "task.ckpt")
    return tmp_path / "task.ckpt"


def test_read_checkpoint_of_a_ckpt_is_the_task_model(task_ckpt: Path) -> None:
    config, state = read_checkpoint(task_ckpt)
    stored = torch.load(task_ckpt, weights_only=True)
    assert config == tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    assert state.keys() == {k.removeprefix("model.") for k in stored["state_dict"]}
    assert read_model_config(task_ckpt) == config
    assert read_run_config(task_ckpt)["tokenizer"] == "some/run/export"
    assert checkpoint_vocabulary(task_ckpt) == "some/run/export"
    # the same .ckpt loads through from_pretrained and as pretrained= of a task, heads included
    clf = BertForSequenceClassification.from_pretrained(str(task_ckpt), num_labels=3)
    torch.testing.assert_close(clf.classifier.weight, stored["state_dict"]["model.classifier.weight"])
    task = TinyClassifierTask(config.to_dict(), pretrained=str(task_ckpt))
    torch.testing.assert_close(task.model.classifier.weight, clf.classifier.weight)


def test_one_size_check_for_ckpt_and_folder(task_ckpt: Path, tmp_path: Path) -> None:
    BertModel(tiny_config()).save_pretrained(str(tmp_path / "folder"))
    wider = tiny_config(hidden_size=68, intermediate_size=41).to_dict()
    for source in (task_ckpt, tmp_path / "folder"):
        with pytest.raises(
            CheckpointError, match=r"hidden_size: checkpoint 64 vs model 68; intermediate_size"
        ):
            TinyClassifierTask(wider, pretrained=str(source))
    check_size(tiny_config(), tiny_config(hidden_dropout_prob=0.3, unpad=False), "dropout may differ")
    assert checkpoint_vocabulary(tmp_path / "folder") == str(tmp_path / "folder")  # a folder holds its own


def test_trainer_test_from_ckpt_path_equals_loading_by_hand(task_ckpt: Path) -> None:
    """mode=test lets Lightning load ckpt= (trainer.test(ckpt_path=...)); it scores as a hand-loaded state."""
    config = read_model_config(task_ckpt).to_dict()
    loader = DataLoader(labelled_batches(3, seed=5), batch_size=None)
    torch.manual_seed(1)
    by_hand = TinyClassifierTask(config)
    by_hand.load_state_dict(torch.load(task_ckpt, weights_only=True)["state_dict"])
    expected = quiet_trainer().test(by_hand, dataloaders=loader, verbose=False)
    torch.manual_seed(2)  # other fresh weights: only the checkpoint can make them agree
    fresh = TinyClassifierTask(config)
    untrained = quiet_trainer().test(fresh, dataloaders=loader, verbose=False)
    got = quiet_trainer().test(
        fresh, dataloaders=loader, ckpt_path=task_ckpt, weights_only=True, verbose=False
    )
    assert got == expected and got != untrained
    assert set(got[0]) == {"test/loss", "test/acc"}


def test_run_plan_takes_size_and_vocabulary_from_a_ckpt(task_ckpt: Path, tmp_path: Path) -> None:
    """pretrained=<.ckpt>: the checkpoint's sizes with the run's own dropout and pooling, its run's tokenizer; the
    config itself is not edited and the stored run_config records what the run used."""
    cfg = compose_cfg(
        [f"pretrained={task_ckpt}", "model.hidden_dropout_prob=0.2", "model.pooling=mean"], tmp_path / "run"
    )
    plan = plan_run(cfg)
    assert {k: plan.model[k] for k in ("hidden_size", "intermediate_size", "vocab_size")} == {
        "hidden_size": 64,
        "intermediate_size": 37,
        "vocab_size": 99,
    }
    assert plan.model["hidden_dropout_prob"] == 0.2 and plan.model["attention_probs_dropout_prob"] == 0.1
    assert plan.model["pooling"] == "mean"  # the checkpoint's config.json says cls: the run decides
    assert plan.tokenizer == "some/run/export"
    assert cfg.model.hidden_size == 128 and cfg.tokenizer is None  # bert_tiny as composed, untouched
    stored = plan.run_config(cfg)
    assert stored["model"] == plan.model and stored["tokenizer"] == "some/run/export"
    assert stored["task"]["name"] == "pretrain"
    # an explicit model= must agree with the checkpoint
    with pytest.raises(CheckpointError, match=r"pretrained=.*hidden_size: checkpoint 64 vs model 128"):
        plan_run(compose_cfg([f"pretrained={task_ckpt}", "model=bert_tiny"], tmp_path / "run2"))


def test_scoring_a_pretrained_model_reads_it_with_its_own_pooling(tmp_path: Path) -> None:
    """task=pretrain mode=test pretrained=<folder>: the NSP head reads the pooled output, so the checkpoint's
    pooling wins over the run's default, as with ckpt=; an explicit model.pooling= still decides, and a
    fit from it keeps the run's own."""
    BertModel(tiny_config(pooling="mean")).save_pretrained(str(tmp_path / "mean"))
    scored = ["task=pretrain", "mode=test", f"pretrained={tmp_path / 'mean'}"]
    assert plan_run(compose_cfg(scored, tmp_path / "a")).model["pooling"] == "mean"
    assert plan_run(compose_cfg([*scored, "model.pooling=cls"], tmp_path / "b")).model["pooling"] == "cls"
    fit = ["task=pretrain", f"pretrained={tmp_path / 'mean'}"]
    assert plan_run(compose_cfg(fit, tmp_path / "c")).model["pooling"] == "cls"


def test_pretraining_ckpt_records_its_vocabulary_and_feeds_pretrained(
    shared_data: Path, tmp_path: Path
) -> None:
    """A run that trains its vocabulary stores the effective vocab_size and the vocabulary's folder in the
    .ckpt's run_config; `pretrained=<that .ckpt>` then takes size and vocabulary from it."""
    data = [
        "data=wiki", f"data.path={shared_data / 'wiki' / 'wiki_00'}", "data.max_train_examples=60",
        "data.val_docs=5", "data.vocab_size=700", "data.max_seq_length=32", "data.batch_size=8",
    ]  # fmt: skip
    quick = ["logger=none", "hardware.precision=32-true", "trainer.val_check_interval=null", "export=false"]
    size = ["model.hidden_size=36", "model.num_attention_heads=3", "model.intermediate_size=41"]
    first = tmp_path / "first"
    main(compose_cfg([*data, *quick, *size, "trainer.max_steps=2"], first))
    ckpt = first / "checkpoints" / "last.ckpt"
    stored = read_run_config(ckpt)
    trained = Path(stored["tokenizer"])
    assert (trained / "vocab.txt").is_file()
    vocab = len((trained / "vocab.txt").read_text(encoding="utf-8").splitlines())
    assert stored["model"]["vocab_size"] == vocab == read_model_config(ckpt).vocab_size
    assert stored["model"]["hidden_size"] == 36

    second = tmp_path / "second"  # no model= and no tokenizer=: both come from the checkpoint
    main(compose_cfg([*data, *quick, "trainer.max_steps=1", f"pretrained={ckpt}"], second))
    again = read_run_config(second / "checkpoints" / "last.ckpt")
    assert again["tokenizer"] == stored["tokenizer"] and again["pretrained"] == str(ckpt)
    assert {k: again["model"][k] for k in ("hidden_size", "intermediate_size", "vocab_size")} == {
        "hidden_size": 36,
        "intermediate_size": 41,
        "vocab_size": vocab,
    }
