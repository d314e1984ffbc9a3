"""Feature-based NER (paper, section 5.3 and Table 7): frozen BERT features -> two-layer BiLSTM -> linear.

The encoder is kept frozen and in eval mode (no dropout); one of Table 7's layer combinations feeds a
randomly initialised two-layer BiLSTM, then a linear layer. The paper gives no more detail; where we
chose: the BiLSTM runs packed over each window's real tokens (special tokens included), with dropout
between its layers and before the classifier, and `weighted_sum` is ELMo's scalar mix,
`gamma * sum_j softmax(s)_j h_j`, over all L+1 hidden states. Parameter names (`bert`, `mix`, `lstm`,
`classifier`) are what checkpoints of `FeatureNERTask` store under `model.`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from bertlab.model.bert import BertModel, init_weights
from bertlab.model.config import BertConfig

# Table 7's rows: which hidden states (index into the L+1 of BertModel) and how they are combined
FEATURES: tuple[str, ...] = (
    "embeddings",
    "second_to_last",
    "last",
    "weighted_sum_last_four",
    "concat_last_four",
    "weighted_sum",
)


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


__all__ = ["FEATURES", "BertFeatureTagger", "ScalarMix", "feature_layers"]
