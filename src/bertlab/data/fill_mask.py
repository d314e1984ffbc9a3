"""Fill-mask input: sentences with `[MASK]` tokens, from the config and/or a text file, and the output file.

Each `[MASK]` (upper case, as transformers' BERT tokenizers spell the special token) becomes the mask id;
the text between masks is tokenised by the checkpoint's own tokenizer, so `paris is the [MASK] of france .`
encodes as `[CLS] paris is the [MASK] of france . [SEP]`, as transformers' fill-mask pipeline encodes it.
A sentence without `[MASK]`, or too long for `max_seq_length`, is a `DataError` naming it (the file and
line, or `data.sentences[i]`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bertlab.data.base import BertDataModule, SplitData, attention_mask, pad_rows
from bertlab.data.errors import DataError
from bertlab.data.tokenizer import special_ids

MASK = "[MASK]"


@dataclass(frozen=True)
class MaskedSentence:
    """One sentence to fill and where it came from: `path` (a file, or `data.sentences[i]`) and `line`."""

    text: str
    path: str
    line: int | None = None

    @property
    def source(self) -> str:
        """`file:line` or `data.sentences[i]`, as error messages and predictions.jsonl name it."""
        return self.path if self.line is None else f"{self.path}:{self.line}"


def read_sentences(sentences: Sequence[str], path: str | Path | None) -> list[MaskedSentence]:
    """`sentences` (config order), then the non-blank lines of the text file `path`."""
    out = [MaskedSentence(str(s), f"data.sentences[{i}]") for i, s in enumerate(sentences)]
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise DataError(file, "file not found", "pass data.test_file=<text file, one sentence per line>")
        lines = file.read_text(encoding="utf-8").splitlines()
        out += [MaskedSentence(t.strip(), str(file), n) for n, t in enumerate(lines, 1) if t.strip()]
    return out


def encode_masked(sentence: MaskedSentence, tokenizer: Any, max_seq_length: int) -> list[int]:
    """`[CLS] pieces with [MASK] ids [SEP]`; the text between masks is tokenised without special tokens.

    `tokenizer` is a `tokenizers.Tokenizer` without padding or truncation.
    """
    pieces = sentence.text.split(MASK)
    if len(pieces) == 1:
        raise DataError(
            sentence.path,
            f"{sentence.text!r} has no {MASK}",
            f"write {MASK} (upper case) where a token is to be predicted",
            sentence.line,
        )
    ids = special_ids(tokenizer)
    out = [ids["cls"]]
    for i, piece in enumerate(pieces):
        out += tokenizer.encode(piece, add_special_tokens=False).ids if piece.strip() else []
        if i < len(pieces) - 1:
            out.append(ids["mask"])
    out.append(ids["sep"])
    if len(out) > max_seq_length:
        raise DataError(
            sentence.path,
            f"{len(out)} tokens with [CLS] and [SEP], more than max_seq_length={max_seq_length}",
            "shorten the sentence or raise data.max_seq_length (at most the model's 512 positions)",
            sentence.line,
        )
    return out


class FillMaskDataModule(BertDataModule):
    """The `predict` split: `sentences` and/or the lines of `test_file`, each with at least one `[MASK]`.

    Batches: `input_ids`, `attention_mask`, `token_type_ids` (B, T) long, `mask_positions` (B, T) bool
    and `idx` (B,), the sentence's index in `split("predict").examples`. `top_k` (the candidates per mask)
    is checked here, with the data it applies to; the task reads it from `data.top_k` in its config.
    """

    def __init__(self, sentences: Sequence[str] | None = None, top_k: int = 5, **shared: Any) -> None:
        super().__init__(**shared)
        if top_k < 1:
            raise DataError(None, f"data.top_k={top_k} must be >= 1", "pass data.top_k=5, say")
        self.sentences, self.top_k = list(sentences or []), top_k

    def split_names(self, stage: str) -> list[str]:
        """`["predict"]` for predict; fill-mask has no training or labelled data."""
        return ["predict"] if stage == "predict" else []

    def has_split(self, name: str) -> bool:
        """Predict always: `read` says what to pass when there are no sentences."""
        return name == "predict"

    def read(self, name: str) -> list[MaskedSentence]:
        """The sentences of `data.sentences` and then of `data.test_file`."""
        found = read_sentences(self.sentences, self.files["predict"])
        if not found:
            raise DataError(
                None,
                "no sentences to fill",
                "pass 'data.sentences=[\"paris is the [MASK] of france .\"]' or data.test_file=<text file, "
                "one sentence per line>",
            )
        return found

    def encode(self, name: str, examples: Sequence[MaskedSentence]) -> SplitData:
        features = [
            {"input_ids": encode_masked(e, self.plain_tokenizer, self.max_seq_length), "idx": i}
            for i, e in enumerate(examples)
        ]
        return SplitData(name, examples, features, source=str(self.files["predict"] or "data.sentences"))

    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [f["input_ids"] for f in items]
        ids = pad_rows(rows, self.pad_id)
        return {
            "input_ids": ids,
            "attention_mask": attention_mask(rows),
            "token_type_ids": torch.zeros_like(ids),
            "mask_positions": ids == special_ids(self.tokenizer)["mask"],
            "idx": torch.tensor([f["idx"] for f in items], dtype=torch.long),
        }


def write_fill_mask_predictions(path: str | Path, records: Sequence[dict[str, Any]]) -> Path:
    """One JSON object per line, one line per sentence, in input order."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return out


__all__ = ["MASK", "FillMaskDataModule", "MaskedSentence", "encode_masked", "read_sentences",
           "write_fill_mask_predictions"]  # fmt: skip
