"""CoNLL-2003 NER: the fine-tuned token classifier and the feature-based BiLSTM tagger (Table 7).

Both predict a word from its first sub-token (section 5.3). Evaluation turns window predictions back
into word tags through the datamodule (`decode`), so a sentence split over several windows is scored
once, and scores entity chunks with conlleval's rules (`EntityF1`, in percent as the paper reports).

The feature-based tagger (section 5.3) keeps the encoder frozen and in eval mode (no dropout) and feeds
one of Table 7's layer combinations to a randomly initialised two-layer BiLSTM, then a linear layer.
The paper gives no more detail; where we chose: the BiLSTM runs packed over each window's real tokens
(special tokens included), with dropout between its layers and before the classifier, and
`weighted_sum` is ELMo's scalar mix, `gamma * sum_j softmax(s)_j h_j`, over all L+1 hidden states.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch.optim import Optimizer

from bertlab.metrics.ner import CONLL_TYPES, EntityF1
from bertlab.model.bert import BertModel, init_weights
from bertlab.model.config import BertConfig
from bertlab.model.heads import BertForTokenClassification
from bertlab.tasks.base import BertTask

IGNORE_INDEX = -100
# Table 7's rows: which hidden states (index into the L+1 of BertModel) and how they are combined
FEATURES: tuple[str, ...] = (
    "embeddings",
    "second_to_last",
    "last",
    "weighted_sum_last_four",
    "concat_last_four",
    "weighted_sum",
)


def gather_objects(obj: Any) -> list[Any]:
    """`[obj]` of every rank (a list of one outside distributed runs); picklable objects of any size."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def feature_layers(features: str, num_hidden_layers: int) -> list[int]:
    """Indices into the L+1 hidden states (0 = embeddings, L = last layer) that `features` uses."""
    n = num_hidden_layers
    needs = {"second_to_last": 2, "weighted_sum_last_four": 4, "concat_last_four": 4}
    if features not in FEATURES:
        raise ValueError(f"unknown features {features!r}; use one of {', '.join(FEATURES)}")
    if n < needs.get(features, 1):
        raise ValueError(
            f"features={features} needs at least {needs[features]} hidden layers; the model has {n}"
        )
    return {
        "embeddings": [0],
        "second_to_last": [n - 1],
        "last": [n],
        "weighted_sum_last_four": list(range(n - 3, n + 1)),
        "concat_last_four": list(range(n - 3, n + 1)),
        "weighted_sum": list(range(n + 1)),
    }[features]


class ScalarMix(nn.Module):
    """ELMo's learned mix of n layers: `gamma * sum_j softmax(s)_j h_j`, n x `(B, T, H)` -> `(B, T, H)`."""

    def __init__(self, num_layers: int) -> None:
        super().__init__()
        self.scalar_parameters = nn.Parameter(torch.zeros(num_layers))  # uniform weights at the start
        self.gamma = nn.Parameter(torch.ones(()))

    def forward(self, layers: Sequence[Tensor]) -> Tensor:
        weights = torch.softmax(self.scalar_parameters, dim=0)
        return self.gamma * sum(w * h for w, h in zip(weights, layers))


class BertFeatureTagger(nn.Module):
    """Frozen BERT features -> two-layer BiLSTM -> linear: ids `(B, T)` -> logits `(B, T, num_labels)`.

    The encoder is named `bert` so pre-trained checkpoints load into it as into the fine-tuning heads.
    """

    def __init__(
        self,
        config: BertConfig,
        num_labels: int = 9,
        features: str = "concat_last_four",
        lstm_hidden: int = 768,
        lstm_layers: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.config = config
        self.num_labels = num_labels
        self.layers = feature_layers(features, config.num_hidden_layers)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.bert.requires_grad_(False)
        self.bert.eval()  # Lightning fits modules in the mode they were built in, so set it here too
        self.mix = ScalarMix(len(self.layers)) if features.startswith("weighted_sum") else None
        width = config.hidden_size * (len(self.layers) if self.mix is None else 1)
        self.lstm = nn.LSTM(
            width,
            lstm_hidden,
            num_layers=lstm_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if lstm_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * lstm_hidden, num_labels)
        init_weights(self.classifier, config.initializer_range)

    def train(self, mode: bool = True) -> BertFeatureTagger:
        """Train the BiLSTM and classifier; the encoder stays in eval mode (a fixed feature extractor)."""
        super().train(mode)
        self.bert.eval()
        return self

    def features(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None) -> Tensor:
        """Token features `(B, T, F)`: F = 4H for concat_last_four, else H."""
        with torch.no_grad():
            states = self.bert(
                input_ids, attention_mask, token_type_ids, output_hidden_states=True
            ).hidden_states
        chosen = [states[i] for i in self.layers]
        return self.mix(chosen) if self.mix is not None else torch.cat(chosen, dim=-1)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> Tensor:
        """ids, mask (1 real / 0 pad, real tokens first), types `(B, T)` -> logits `(B, T, num_labels)`."""
        length = input_ids.shape[1]
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        lengths = attention_mask.sum(1)
        prefix = torch.arange(length, device=input_ids.device) < lengths[:, None]
        if not torch.equal(prefix, attention_mask.bool()):
            # packing by length would read pad tokens and drop real ones
            raise ValueError("attention_mask must be right-padded (real tokens first) for the BiLSTM")
        x = self.features(input_ids, attention_mask, token_type_ids)
        # packed, the backward direction starts at each window's last real token, not at the padding
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=length)
        return self.classifier(self.dropout(out))  # (B, T, C); padded positions are never labelled


class NERTask(BertTask):
    """Shared by both NER tasks: loss on first sub-tokens, entity F1 via the datamodule, CoNLL predictions.

    Subclasses build `self.model`: ids `(B, T)` -> logits `(B, T, num_labels)`.
    """

    def __init__(
        self,
        model_config: dict[str, Any],
        num_labels: int,
        label_names: Sequence[str] | None = None,
        pretrained: str | None = None,
        optimizer: Callable[..., Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__(model_config, pretrained, optimizer, scheduler)
        if label_names is not None and len(label_names) != num_labels:
            raise ValueError(f"{len(label_names)} label names for num_labels={num_labels}")
        self.num_labels = num_labels
        types = [n.split("-", 1)[1] for n in label_names or () if "-" in n]
        # per-type scores for the label set's own types (CoNLL's four when no names are given)
        self.val_f1 = EntityF1(tuple(dict.fromkeys(types)) or CONLL_TYPES)
        self.test_f1 = EntityF1(tuple(dict.fromkeys(types)) or CONLL_TYPES)
        self.predicted: dict[int, list[str]] = {}

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Logits `(B, T, num_labels)`."""
        return self.model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])

    def loss(self, logits: Tensor, labels: Tensor) -> tuple[Tensor, int]:
        """Mean cross-entropy over labelled positions (first sub-tokens) and their count."""
        labelled = labels != IGNORE_INDEX  # (B, T)
        return F.cross_entropy(logits[labelled].float(), labels[labelled]), int(labelled.sum())

    def datamodule(self) -> Any:
        """The NERDataModule in use: decoding needs its windows and sentences."""
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "decode"):
            raise RuntimeError("NER evaluation decodes through the datamodule: pass datamodule=NERDataModule")
        return dm

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, words = self.loss(self(batch), batch["labels"])
        self.log_metrics("train", {"loss": loss}, words, prog_bar=True)
        return loss

    def _eval_step(self, stage: str, batch: dict[str, Tensor]) -> None:
        """Loss, then word tags of this batch's sentences into the stage's EntityF1."""
        logits = self(batch)
        loss, words = self.loss(logits, batch["labels"])
        self.log_metrics(stage, {"loss": loss}, words)
        dm, index = self.datamodule(), batch["window_index"]
        metric = self.val_f1 if stage == "val" else self.test_f1
        metric.update(dm.decode(stage, logits.argmax(-1), index), dm.gold_tags(stage, index))

    def _log_scores(self, stage: str, metric: EntityF1) -> None:
        """`stage/f1`, precision, recall, token accuracy and per-type scores (already summed over ranks)."""
        scores = metric.compute()
        self.log(f"{stage}/f1", scores.pop("f1"), prog_bar=True)
        self.log_dict({f"{stage}/{k}": v for k, v in scores.items()})
        metric.reset()

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def on_validation_epoch_end(self) -> None:
        self._log_scores("val", self.val_f1)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._eval_step("test", batch)

    def on_test_epoch_end(self) -> None:
        self._log_scores("test", self.test_f1)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """Predicted ids `(B, T)`; the word tags of the batch's test sentences are kept for the file."""
        ids = self(batch).argmax(-1)
        dm, index = self.datamodule(), batch["window_index"]
        windows = dm.windows("test")
        # decode returns sentences in order of first appearance among the batch's windows
        sentences = dict.fromkeys(windows[w].sentence for w in index.tolist())
        self.predicted.update(zip(sentences, dm.decode("test", ids, index)))
        return ids

    def on_predict_epoch_end(self) -> None:
        """Write `<root>/predictions.txt`: `word gold pred` per line, a blank line after each sentence.

        Gold and predicted tags are both in the datamodule's `scheme` (IOB2 by default), as conlleval reads.
        """
        predicted: dict[int, list[str]] = {}
        for part in gather_objects(self.predicted):
            predicted.update(part)
        self.predicted = {}
        if not self.trainer.is_global_zero:
            return
        sentences = self.datamodule().sentences("test")
        path = Path(self.trainer.default_root_dir) / "predictions.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            for s in sorted(predicted):
                sentence = sentences[s]
                for word, gold, pred in zip(sentence.words, sentence.tags, predicted[s]):
                    f.write(f"{word} {gold} {pred}\n")
                f.write("\n")
        print(f"wrote {path} ({len(predicted)} sentences)")


class TokenClassificationTask(NERTask):
    """Fine-tunes BertForTokenClassification end to end (the paper's fine-tuning approach to NER)."""

    def __init__(
        self,
        model_config: dict[str, Any],
        num_labels: int,
        label_names: Sequence[str] | None = None,
        pretrained: str | None = None,
        optimizer: Callable[..., Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__(model_config, num_labels, label_names, pretrained, optimizer, scheduler)
        self.model = self.build_model(BertForTokenClassification, num_labels=num_labels)


class FeatureNERTask(NERTask):
    """Feature-based NER (Table 7): frozen encoder, trained BiLSTM + classifier (+ the mix weights).

    `features`: one of FEATURES (default `concat_last_four`, the paper's best); only trainable
    parameters reach the optimizer (BertTask.parameter_groups skips frozen ones).
    """

    def __init__(
        self,
        model_config: dict[str, Any],
        num_labels: int,
        label_names: Sequence[str] | None = None,
        features: str = "concat_last_four",
        lstm_hidden: int = 768,
        lstm_layers: int = 2,
        dropout: float = 0.1,
        pretrained: str | None = None,
        optimizer: Callable[..., Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__(model_config, num_labels, label_names, pretrained, optimizer, scheduler)
        self.model = self.build_model(
            BertFeatureTagger,
            num_labels=num_labels,
            features=features,
            lstm_hidden=lstm_hidden,
            lstm_layers=lstm_layers,
            dropout=dropout,
        )
