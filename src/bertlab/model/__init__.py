"""The BERT encoder and its heads: torch only, so the model can be lifted out whole."""

from bertlab.model.bert import BertModel, BertOutputs
from bertlab.model.config import BertConfig
from bertlab.model.heads import (
    BertForMaskedLM,
    BertForMultipleChoice,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertLMHeadModel,
    next_token_targets,
)

__all__ = [
    "BertConfig",
    "BertForMaskedLM",
    "BertForMultipleChoice",
    "BertForPreTraining",
    "BertForQuestionAnswering",
    "BertForSequenceClassification",
    "BertForTokenClassification",
    "BertLMHeadModel",
    "BertModel",
    "BertOutputs",
    "next_token_targets",
]
