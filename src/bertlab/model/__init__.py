"""The BERT encoder and its heads: torch only, so the model can be lifted out whole."""

from bertlab.model.bert import BertModel, BertOutputs
from bertlab.model.config import BertConfig
from bertlab.model.heads import (
    BertForMultipleChoice,
    BertForPreTraining,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
)

__all__ = [
    "BertConfig",
    "BertForMultipleChoice",
    "BertForPreTraining",
    "BertForQuestionAnswering",
    "BertForSequenceClassification",
    "BertForTokenClassification",
    "BertModel",
    "BertOutputs",
]
