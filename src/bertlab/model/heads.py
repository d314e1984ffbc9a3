"""Task heads over the shared encoder. Each returns logits only; losses live in the LightningModules.

Attribute names follow transformers (`bert`, `cls.predictions`, `classifier`, `qa_outputs`) so
fine-tuned and pre-trained checkpoints load strictly in both directions.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from bertlab.model.bert import BertModel, PreTrainedMixin, activation, init_weights
from bertlab.model.config import BertConfig


class BertPredictionHeadTransform(nn.Module):
    """dense -> activation -> LayerNorm, `(..., H)` -> `(..., H)`."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = activation(config.hidden_act)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    """MLM head: transform, then the decoder tied to the word embeddings plus its own bias: `(..., V)`."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.decoder.bias = self.bias  # transformers' layout: one bias under both names

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.transform(x))


class BertPreTrainingHeads(nn.Module):
    """MLM predictions and the NSP classifier."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(config)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)


class BertForPreTraining(PreTrainedMixin, nn.Module):
    """Encoder + MLM + NSP heads: returns (mlm logits, nsp logits `(B, 2)`)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.cls = BertPreTrainingHeads(config)
        self.cls.apply(lambda m: init_weights(m, config.initializer_range))
        self.tie_weights()

    def tie_weights(self) -> None:
        """Share the decoder matrix with the input word embeddings (the paper's tied softmax)."""
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        masked_positions: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """ids `(B, T)`; masked_positions bool `(B, T)` -> MLM logits `(M, V)` for those positions in
        row-major order (what `labels[masked_positions]` gives), else `(B, T, V)`; NSP logits `(B, 2)`.

        Projecting only the masked ~15% to the vocabulary is most of the saving in a small model.
        """
        out = self.bert(input_ids, attention_mask, token_type_ids)
        hidden = out.last_hidden_state
        if masked_positions is not None:
            hidden = hidden[masked_positions]  # (M, H)
        return self.cls.predictions(hidden), self.cls.seq_relationship(out.pooler_output)


class _EncoderWithHead(PreTrainedMixin, nn.Module):
    """Shared set-up of the fine-tuning models: `bert`, a dropout and a freshly initialised head."""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=add_pooling_layer)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)


class BertForSequenceClassification(_EncoderWithHead):
    """Pooled [CLS] -> dropout -> linear: `(B, T)` -> `(B, num_labels)` (num_labels 1 = regression)."""

    def __init__(self, config: BertConfig, num_labels: int = 2) -> None:
        super().__init__(config)
        self.num_labels = num_labels
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        init_weights(self.classifier, config.initializer_range)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> Tensor:
        pooled = self.bert(input_ids, attention_mask, token_type_ids).pooler_output
        return self.classifier(self.dropout(pooled))


class BertForTokenClassification(_EncoderWithHead):
    """Per-token tags: `(B, T)` -> `(B, T, num_labels)`."""

    def __init__(self, config: BertConfig, num_labels: int = 9) -> None:
        super().__init__(config, add_pooling_layer=False)
        self.num_labels = num_labels
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        init_weights(self.classifier, config.initializer_range)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> Tensor:
        hidden = self.bert(input_ids, attention_mask, token_type_ids).last_hidden_state
        return self.classifier(self.dropout(hidden))


class BertForQuestionAnswering(PreTrainedMixin, nn.Module):
    """Span extraction: `(B, T)` -> start and end logits, each `(B, T)`."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        init_weights(self.qa_outputs, config.initializer_range)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        hidden = self.bert(input_ids, attention_mask, token_type_ids).last_hidden_state
        start, end = self.qa_outputs(hidden).unbind(-1)
        return start, end


class BertForMultipleChoice(_EncoderWithHead):
    """Choices scored by pooled [CLS] -> linear(H, 1): `(B, C, T)` -> `(B, C)`."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.classifier = nn.Linear(config.hidden_size, 1)
        init_weights(self.classifier, config.initializer_range)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> Tensor:
        batch, choices, length = input_ids.shape
        flat = [
            None if t is None else t.reshape(batch * choices, length)
            for t in (input_ids, attention_mask, token_type_ids)
        ]
        pooled = self.bert(flat[0], flat[1], flat[2]).pooler_output  # (B*C, H)
        return self.classifier(self.dropout(pooled)).view(batch, choices)


class BertOnlyMLMHead(nn.Module):
    """The vocabulary projection alone, under transformers' name `cls.predictions`."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(config)


class BertForMaskedLM(PreTrainedMixin, nn.Module):
    """Encoder (no pooler) + MLM head, as transformers' BertForMaskedLM (`bert.*`, `cls.predictions.*`, the
    decoder tied to the word embeddings): the paper's "No NSP" pre-training model. The class name becomes
    config.json's `architectures`, so the export loads there strictly."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(config)
        self.cls.apply(lambda m: init_weights(m, config.initializer_range))
        self.tie_weights()

    def tie_weights(self) -> None:
        """Share the decoder matrix with the input word embeddings, as BertForPreTraining."""
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        masked_positions: Tensor | None = None,
    ) -> Tensor:
        """ids `(B, T)`; masked_positions bool `(B, T)` -> logits `(M, V)` of those positions in row-major
        order, else `(B, T, V)`. The vocabulary projection runs only where something is predicted."""
        hidden = self.bert(input_ids, attention_mask, token_type_ids).last_hidden_state
        if masked_positions is not None:
            hidden = hidden[masked_positions]  # (M, H)
        return self.cls.predictions(hidden)


class BertLMHeadModel(BertForMaskedLM):
    """The paper's left-to-right LM ("LTR & No NSP"): `BertForMaskedLM`'s layout over a causal encoder
    (`config.is_decoder`), whose projection at position t predicts the token at t + 1, as transformers'
    BertLMHeadModel, which loads the export strictly and applies the same causal mask.

    Loss (in the task, not here): `positions, targets = next_token_targets(ids, mask)`, then
    `cross_entropy(model(ids, mask, types, masked_positions=positions), targets)`.
    """

    def __init__(self, config: BertConfig) -> None:
        if not config.is_decoder:
            raise ValueError(
                "BertLMHeadModel needs a causal encoder, or each position sees the token it predicts; "
                "set the model config's is_decoder: true"
            )
        super().__init__(config)


def next_token_targets(input_ids: Tensor, attention_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Where an LTR model predicts and what: positions bool `(B, T)` (t is real and t + 1 is real; the last
    column never) and targets `(M,)` (the token at t + 1, row-major, what `model(..., masked_positions=positions)` pairs
    with). Mean cross-entropy over them equals transformers' BertLMHeadModel loss with
    `labels = input_ids` with padding set to -100, on right-padded batches."""
    real = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    positions = torch.zeros_like(real)
    positions[:, :-1] = real[:, :-1] & real[:, 1:]
    return positions, input_ids[:, 1:][positions[:, :-1]]


class BertBiLSTMForSequenceClassification(_EncoderWithHead):
    """Table 5's "+ BiLSTM": a randomly initialised one-layer BiLSTM over the encoder's last hidden states,
    read by dropout -> linear: `(B, T)` -> `(B, num_labels)` (num_labels 1 = regression).

    The BiLSTM has H/2 units per direction (output H) and runs packed over each row's real tokens, so
    padding never enters it: the classifier reads `h_n`, the forward state after the last real token and
    the backward state after the first, concatenated `(B, H)`. No pooler (nothing would train it). Only the
    encoder loads from a checkpoint; the BiLSTM (PyTorch's LSTM initialisation) and classifier are fresh.

    transformers has no such model, so the export (`write_folder`) holds the encoder alone, as a BertModel.
    """

    export_encoder_only = True  # read by model/convert.write_folder

    def __init__(self, config: BertConfig, num_labels: int = 2) -> None:
        if config.hidden_size % 2:
            raise ValueError(
                f"the BiLSTM head needs an even hidden_size (H/2 units per direction); got {config.hidden_size}"
            )
        super().__init__(config, add_pooling_layer=False)
        self.num_labels = num_labels
        self.bilstm = nn.LSTM(
            config.hidden_size, config.hidden_size // 2, batch_first=True, bidirectional=True
        )
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        init_weights(self.classifier, config.initializer_range)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> Tensor:
        """ids, mask (1 real / 0 pad, any layout), types `(B, T)` -> logits `(B, num_labels)`."""
        hidden = self.bert(input_ids, attention_mask, token_type_ids).last_hidden_state  # (B, T, H)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        real = attention_mask.bool()
        # real tokens first, in order (a stable sort; identity for right padding), so packing by length
        # takes exactly them; a row with none keeps one token rather than an empty sequence LSTMs refuse
        order = torch.argsort((~real).to(torch.int8), dim=1, stable=True)
        hidden = hidden.gather(1, order[..., None].expand_as(hidden))
        lengths = real.sum(1).clamp(min=1).cpu()
        packed = pack_padded_sequence(hidden, lengths, batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.bilstm(packed)  # h_n (2, B, H/2), back in batch order: forward, backward
        return self.classifier(self.dropout(torch.cat((h_n[0], h_n[1]), dim=-1)))
