"""CoNLL-2003 NER tasks: fine-tuned and feature-based, end to end through run.main, and their pieces."""

from __future__ import annotations

import csv
import json
from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from bertlab.data.conll import LABEL_NAMES
from bertlab.data.ner import NERDataModule
from bertlab.metrics.ner import entity_f1
from bertlab.model.bert import BertModel
from bertlab.model.config import BertConfig
from bertlab.model.feature_tagger import FEATURES, BertFeatureTagger, feature_layers
from bertlab.run import main
from bertlab.tasks.ner import FeatureNERTask
from tests.hydra_helpers import compose_cfg
from tests.tiny import padded_batch, quiet_trainer

TINY = [
    "model=bert_tiny",
    "model.hidden_size=72",
    "model.num_attention_heads=3",
    "model.intermediate_size=101",
    "model.num_hidden_layers=2",
    "pretrained=null",  # random initialisation: no published checkpoint offline
    "logger=csv",
    "trainer.precision=32-true",
    "trainer.log_every_n_steps=1",
]
# 4 layers so that every Table 7 feature set exists
CONFIG = dict(vocab_size=99, hidden_size=24, num_hidden_layers=4, num_attention_heads=3, intermediate_size=37)


def conll_overrides(task: str, conll: Path, minilm_dir: Path, train: int = 48, dev: int = 24) -> list[str]:
    # max_seq_length 24 cuts long sentences into several windows, so decoding across windows is exercised
    return [
        f"task={task}",
        *TINY,
        f"tokenizer={minilm_dir / 'vocab.txt'}",
        f"data.train_file={conll / 'eng.train'}",
        f"data.val_file={conll / 'eng.testa'}",
        f"data.test_file={conll / 'eng.testa'}",
        f"data.max_train_examples={train}",
        f"data.max_eval_examples={dev}",
        "data.max_seq_length=24",
        "data.batch_size=16",
    ]


def logged(run: Path, key: str) -> list[float]:
    rows = list(csv.DictReader((next(run.glob("csv/version_*")) / "metrics.csv").open()))
    return [float(r[key]) for r in rows if r.get(key)]


def first_sentences(src: Path, dst: Path, count: int) -> Path:
    """Copy the first `count` sentences of a CoNLL file verbatim (with its -DOCSTART- lines)."""
    out, seen, previous = [], 0, ""
    for line in src.read_text(encoding="utf-8").splitlines():
        out.append(line)
        if not line.strip() and previous.strip() and not previous.startswith("-DOCSTART-"):
            seen += 1
            if seen == count:
                break
        previous = line
    dst.write_text("\n".join(out) + "\n", encoding="utf-8")
    return dst


@pytest.fixture(scope="module")
def conll(shared_data: Path) -> Path:
    return shared_data / "conll2003"


def test_fine_tuning_learns_then_test_and_predict_score_another_file(
    conll: Path, minilm_dir: Path, tmp_path: Path
) -> None:
    """Loss falls on 200 sentences; mode=test on a copied file equals the final val F1, and predict agrees."""
    fit = tmp_path / "fit"
    metrics = main(
        compose_cfg(
            [
                *conll_overrides("conll2003", conll, minilm_dir, train=200, dev=40),
                "trainer.max_epochs=1",
                "task.module.optimizer.lr=1e-3",
            ],
            fit,
        )
    )
    losses = logged(fit, "train/loss")
    assert len(losses) == 13  # 200 sentences in batches of 16
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 0.7, f"NER loss did not fall: {first:.2f} -> {last:.2f}"
    assert {"val/f1", "val/precision", "val/recall", "val/loss", "val/f1_PER"} <= metrics.keys()
    assert json.loads((fit / "metrics.json").read_text()) == metrics

    other = first_sentences(conll / "eng.testa", tmp_path / "dev40.conll", 40)
    ckpt = fit / "checkpoints" / "last.ckpt"
    test_run = tmp_path / "test"
    scored = main(
        compose_cfg(
            ["task=conll2003", *TINY, "mode=test", f"ckpt={ckpt}", f"data.test_file={other}"], test_run
        )
    )
    assert json.loads((test_run / "metrics.json").read_text()) == scored
    assert {"test/f1", "test/precision", "test/recall"} <= scored.keys()
    # the same 40 sentences scored by the final model during fit
    assert scored["test/f1"] == pytest.approx(metrics["val/f1"], abs=1e-4)
    assert scored["test/recall"] == pytest.approx(metrics["val/recall"], abs=1e-4)

    pred_run = tmp_path / "predict"
    main(
        compose_cfg(
            ["task=conll2003", *TINY, "mode=predict", f"ckpt={ckpt}", f"data.test_file={other}"], pred_run
        )
    )
    blocks = (pred_run / "predictions.txt").read_text(encoding="utf-8").strip("\n").split("\n\n")
    rows = [[line.split(" ") for line in block.split("\n")] for block in blocks]
    source = [
        line.split()[0] for line in other.read_text().splitlines() if line and not line.startswith("-DOC")
    ]
    assert [r[0] for block in rows for r in block] == source
    assert all(len(r) == 3 for block in rows for r in block) and len(rows) == 40
    f1 = entity_f1([[r[1] for r in b] for b in rows], [[r[2] for r in b] for b in rows])["f1"]
    assert f1 == pytest.approx(scored["test/f1"], abs=1e-4)


@pytest.mark.parametrize("features", FEATURES)
def test_every_feature_set_builds_with_only_head_parameters_trainable(features: str) -> None:
    task = FeatureNERTask(CONFIG, label_names=LABEL_NAMES, features=features, lstm_hidden=11)
    model = task.model
    hidden, layers = CONFIG["hidden_size"], CONFIG["num_hidden_layers"]
    assert model.lstm.input_size == (4 * hidden if features == "concat_last_four" else hidden)
    assert (model.mix is not None) == features.startswith("weighted_sum")
    assert len(feature_layers(features, layers)) == {"weighted_sum": layers + 1}.get(
        features, 4 if "four" in features else 1
    )
    ids, mask, types = padded_batch(vocab=99)
    logits = model(ids, mask, types)
    assert logits.shape == (*ids.shape, 9)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    grouped = [id(p) for group in task.parameter_groups() for p in group["params"]]
    assert sorted(grouped) == sorted(trainable)
    assert not any(p.requires_grad for p in model.bert.parameters())
    expected = {"lstm", "classifier"} | ({"mix"} if model.mix is not None else set())
    assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} == expected


def test_feature_sets_name_the_paper_layers() -> None:
    assert feature_layers("concat_last_four", 12) == [9, 10, 11, 12]
    assert feature_layers("last", 12) == [12] and feature_layers("second_to_last", 12) == [11]
    assert feature_layers("embeddings", 12) == [0] and feature_layers("weighted_sum", 12) == list(range(13))
    with pytest.raises(ValueError, match="needs at least 4 hidden layers; the model has 2"):
        feature_layers("concat_last_four", 2)
    with pytest.raises(ValueError, match="unknown features 'first'"):
        feature_layers("first", 12)


def test_concat_features_are_the_last_four_hidden_states() -> None:
    model = BertFeatureTagger(BertConfig(**CONFIG), features="concat_last_four", lstm_hidden=5).eval()
    ids, mask, types = padded_batch(vocab=99)
    states = model.bert(ids, mask, types, output_hidden_states=True).hidden_states
    feats = model.features(ids, mask, types)
    torch.testing.assert_close(feats, torch.cat(states[1:], dim=-1), rtol=0, atol=0)


def test_bilstm_ignores_padding() -> None:
    """Each row alone (no padding) gives the same logits as inside the padded batch."""
    model = BertFeatureTagger(BertConfig(**CONFIG), features="weighted_sum", lstm_hidden=7).eval()
    ids, mask, types = padded_batch(vocab=99)
    with torch.no_grad():
        batched = model(ids, mask, types)
        for i in range(ids.shape[0]):
            n = int(mask[i].sum())
            alone = model(ids[i : i + 1, :n], mask[i : i + 1, :n], types[i : i + 1, :n])
            torch.testing.assert_close(batched[i, :n], alone[0], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="right-padded"):
        model(ids, mask.flip(1), types)


class ModeProbe(Callback):
    """Records, per training step, whether the encoder and the BiLSTM were in training mode."""

    def __init__(self) -> None:
        self.modes: list[tuple[bool, bool]] = []

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, *args: object) -> None:
        self.modes.append((module.model.bert.training, module.model.lstm.training))


def test_feature_encoder_stays_frozen_while_the_bilstm_trains(conll: Path, minilm_dir: Path) -> None:
    config = CONFIG | {"vocab_size": 30522, "hidden_dropout_prob": 0.5}
    task = FeatureNERTask(
        config,
        label_names=LABEL_NAMES,
        features="weighted_sum",
        lstm_hidden=13,
        optimizer=partial(torch.optim.AdamW, lr=1e-2),
    )
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    dm = NERDataModule(
        train_file=conll / "eng.train",
        val_file=conll / "eng.testa",
        tokenizer=minilm_dir,
        max_train_examples=24,
        max_eval_examples=8,
        batch_size=8,
    )
    probe = ModeProbe()
    trainer = quiet_trainer(max_steps=3, limit_val_batches=0, callbacks=[probe])
    trainer.fit(task, datamodule=dm)
    assert probe.modes == [(False, True)] * 3
    after = task.model.state_dict()
    encoder = [k for k in before if k.startswith("bert.")]
    head = [k for k in before if not k.startswith("bert.")]
    assert encoder and all(torch.equal(before[k], after[k]) for k in encoder)
    assert all(not torch.equal(before[k], after[k]) for k in head), [
        k for k in head if torch.equal(before[k], after[k])
    ]
    assert all(p.grad is None for p in task.model.bert.parameters())


def test_feature_task_runs_through_main(conll: Path, minilm_dir: Path, tmp_path: Path) -> None:
    overrides = [
        *conll_overrides("conll2003_feature", conll, minilm_dir, train=32, dev=16),
        "model.num_hidden_layers=4",
        "task.module.lstm_hidden=16",
        "trainer.max_steps=2",
        "trainer.max_epochs=1",
    ]
    cfg = compose_cfg(overrides, tmp_path)
    assert cfg.task.module.features == "concat_last_four" and cfg.task.module.optimizer.lr == 1e-3
    metrics = main(cfg)
    assert {"val/f1", "val/precision", "val/recall", "train/loss"} <= metrics.keys()
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["state_dict"]["model.lstm.weight_ih_l0"].shape == (4 * 16, 4 * 72)
    groups = state["optimizer_states"][0]["param_groups"]
    trainable = [k for k in state["state_dict"] if k.startswith(("model.lstm.", "model.classifier."))]
    assert sum(len(g["params"]) for g in groups) == len(trainable)


def test_conll_configs_compose(tmp_path: Path) -> None:
    cfg = compose_cfg(["task=conll2003"], tmp_path)
    assert cfg.trainer.max_epochs == 3 and cfg.export is True and cfg.task.module.optimizer.lr == 5e-5
    assert cfg.task.module._target_ == "bertlab.tasks.ner.TokenClassificationTask"
    assert cfg.data._target_ == "bertlab.data.ner.NERDataModule"
    assert cfg.data.train_file.endswith("conll2003/eng.train") and cfg.data.test_file.endswith("eng.testb")
    assert cfg.data.max_seq_length == 128 and cfg.data.document_context is False
    assert list(cfg.task.module.label_names) == list(LABEL_NAMES)
    feature = compose_cfg(["task=conll2003_feature", "task.module.features=last"], tmp_path)
    assert feature.task.module.lstm_hidden == 768 and feature.task.module.features == "last"
    assert feature.export is False and feature.task.module.optimizer.lr == 1e-3


def test_encoder_loads_from_a_pretrained_folder(tmp_path: Path) -> None:
    """The feature tagger's `bert` takes a transformers-format encoder (no pooler) like the heads do."""
    encoder = BertModel(BertConfig(**CONFIG), add_pooling_layer=False)
    encoder.save_pretrained(str(tmp_path / "enc"))
    task = FeatureNERTask(
        CONFIG, label_names=LABEL_NAMES, features="last", lstm_hidden=5, pretrained=str(tmp_path / "enc")
    )
    for name, value in encoder.state_dict().items():
        assert torch.equal(task.model.bert.state_dict()[name], value)
