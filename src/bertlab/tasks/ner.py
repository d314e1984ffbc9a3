"""CoNLL-2003 NER: the fine-tuned token classifier and the feature-based BiLSTM tagger (Table 7).

Both predict a word from its first sub-token (section 5.3). Evaluation turns window predictions back
into word tags of the split's sentences (`bertlab.data.ner.decode_split`), so a sentence split over
several windows is scored once, and scores entity chunks with conlleval's rules (`EntityF1`, in percent
as the paper reports). The feature-based model itself is `bertlab.model.feature_tagger`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from bertlab.data.conll import write_conll_predictions
from bertlab.data.ner import IGNORE_INDEX, decode_split, gold_tags, window_sentences
from bertlab.metrics.ner import EntityF1
from bertlab.model.feature_tagger import BertFeatureTagger
from bertlab.model.heads import BertForTokenClassification
from bertlab.tasks.base import BertTask, gather_objects

log = logging.getLogger(__name__)


def entity_types(label_names: Sequence[str]) -> tuple[str, ...]:
    """Entity types of a tag set in first-seen order: ("O", "B-PER", "I-PER", ...) -> ("PER", ...)."""
    return tuple(dict.fromkeys(n.split("-", 1)[1] for n in label_names if "-" in n))


class NERTask(BertTask):
    """Shared by both NER tasks: loss on first sub-tokens, entity F1 per stage, CoNLL predictions.

    `label_names` are the tags in model-id order (config: `${labels:${task.name}}`); the model has one
    output per name. Subclasses build `self.model`: ids `(B, T)` -> logits `(B, T, num_labels)`.
    """

    def __init__(
        self,
        model_config: dict[str, Any],
        label_names: Sequence[str],
        **shared: Any,
    ) -> None:
        super().__init__(model_config, **shared)
        if not label_names:
            raise ValueError("NER needs label_names (the tags in model-id order), e.g. ${labels:conll2003}")
        self.label_names = list(label_names)
        self.num_labels = len(self.label_names)
        # per-type scores for the label set's own types
        self.f1 = nn.ModuleDict(
            {stage: EntityF1(entity_types(self.label_names)) for stage in ("val", "test")}
        )
        self.predicted: dict[int, list[str]] = {}

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Logits `(B, T, num_labels)`."""
        return self.model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])

    def loss(self, logits: Tensor, labels: Tensor) -> tuple[Tensor, int]:
        """Mean cross-entropy over labelled positions (first sub-tokens) and their count."""
        labelled = labels != IGNORE_INDEX  # (B, T)
        return F.cross_entropy(logits[labelled].float(), labels[labelled]), int(labelled.sum())

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, words = self.loss(self(batch), batch["labels"])
        self.log_metrics("train", {"loss": loss}, words, prog_bar=True)
        return loss

    def eval_step(self, stage: str, batch: dict[str, Tensor], dataloader_idx: int) -> None:
        """Loss, then word tags of this batch's sentences into the stage's EntityF1."""
        logits = self(batch)
        loss, words = self.loss(logits, batch["labels"])
        self.log_metrics(stage, {"loss": loss}, words)
        data = self.datamodule.split(self.datamodule.split_names(stage)[dataloader_idx])
        index = batch["window_index"]
        predicted = decode_split(data, logits.argmax(-1), self.label_names, index)
        self.f1[stage].update(predicted, gold_tags(data, index))

    def eval_epoch_start(self, stage: str) -> None:
        if stage == "predict":
            self.predicted = {}
        else:
            self.f1[stage].reset()

    def eval_epoch_end(self, stage: str) -> None:
        """`stage/f1`, precision, recall, token accuracy and per-type scores (already summed over ranks)."""
        if stage == "predict":
            self.write_predictions()
            return
        metric = self.f1[stage]
        scores = metric.compute()
        self.log(f"{stage}/f1", scores.pop("f1"), prog_bar=True)
        self.log_dict({f"{stage}/{k}": v for k, v in scores.items()})
        metric.reset()

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        """Predicted ids `(B, T)`; the word tags of the batch's sentences are kept for the file."""
        ids = self(batch).argmax(-1)
        data = self.datamodule.split(self.datamodule.split_names("predict")[dataloader_idx])
        index = batch["window_index"].tolist()
        # decode_split returns sentences in order of first appearance among the batch's windows
        sentences = window_sentences(data.features, index)
        self.predicted.update(zip(sentences, decode_split(data, ids, self.label_names, index)))
        return ids

    def write_predictions(self) -> None:
        """Write `<root>/predictions.txt` (`word gold pred` per line, a blank line after each sentence).

        Gold and predicted tags are both in the datamodule's `scheme` (IOB2 by default), as conlleval reads.
        """
        predicted: dict[int, list[str]] = {}
        for part in gather_objects(self.predicted):
            predicted.update(part)
        self.predicted = {}
        if not self.trainer.is_global_zero:
            return
        sentences = self.datamodule.split(self.datamodule.split_names("predict")[0]).examples
        path = write_conll_predictions(
            Path(self.trainer.default_root_dir) / "predictions.txt", sentences, predicted
        )
        log.info("wrote %s (%d sentences)", path, len(predicted))


class TokenClassificationTask(NERTask):
    """Fine-tunes BertForTokenClassification end to end (the paper's fine-tuning approach to NER)."""

    def __init__(
        self,
        model_config: dict[str, Any],
        label_names: Sequence[str],
        **shared: Any,
    ) -> None:
        super().__init__(model_config, label_names, **shared)
        self.model = self.build_model(BertForTokenClassification, num_labels=self.num_labels)


class FeatureNERTask(NERTask):
    """Feature-based NER (Table 7): frozen encoder, trained BiLSTM + classifier (+ the mix weights).

    `features`: one of `bertlab.model.feature_tagger.FEATURES` (default `concat_last_four`, the paper's
    best); only trainable parameters reach the optimizer (BertTask.parameter_groups skips frozen ones).
    """

    def __init__(
        self,
        model_config: dict[str, Any],
        label_names: Sequence[str],
        features: str = "concat_last_four",
        lstm_hidden: int = 768,
        lstm_layers: int = 2,
        dropout: float = 0.1,
        **shared: Any,
    ) -> None:
        super().__init__(model_config, label_names, **shared)
        self.model = self.build_model(
            BertFeatureTagger,
            num_labels=self.num_labels,
            features=features,
            lstm_hidden=lstm_hidden,
            lstm_layers=lstm_layers,
            dropout=dropout,
        )
