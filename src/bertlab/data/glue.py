"""GLUE's DataModule: one task's splits, tokenised as BERT's `run_classifier.py` does, in padded batches.

The task table lives in `bertlab.data.glue_tasks`, the file readers and the submission writer in
`bertlab.data.glue_files`; this module adds the encoding, the collation and `GLUEDataModule`.

Pairs are truncated by hand (`truncate_pair_lengths`), not by tokenizers' `longest_first`: both trim
the longer side one token at a time, but when both sides end up cut, BERT's `_truncate_seq_pair` keeps
the odd token in A (ties trim B) where tokenizers keeps it in B. At 32 tokens that changes 1 of RTE's
277 dev pairs and 183 of MRPC's 408 (tests/test_glue_data.py compares both on the real files).

GLUE's test labels are hidden, so the `test` stage serves the labelled dev sets (`val`; MNLI:
`val_matched`, `val_mismatched`) and `predict` the unlabelled test sets (MNLI: `test_matched`,
`test_mismatched`, and `ax` when the diagnostic set is there), for `write_submission`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from tokenizers import Tokenizer
from torch.utils.data import Sampler

from bertlab.data.base import BertDataModule, SplitData, attention_mask, pad_rows
from bertlab.data.errors import DataConfigError
from bertlab.data.glue_files import GLUESplit, find_diagnostic, read_glue_split, read_hub_split
from bertlab.data.glue_tasks import AX, get_task
from bertlab.data.progress import chunks
from bertlab.data.sampler import LengthGroupedSampler
from bertlab.data.tokenizer import plain_tokenizer, special_ids


def truncate_pair_lengths(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """Lengths after BERT's `_truncate_seq_pair`: drop one token at a time from the longer (ties: from B)."""
    if len_a + len_b <= budget:
        return len_a, len_b
    # the longer loses tokens until both are equal, then they shrink in turn, B first
    excess = len_a + len_b - budget
    if len_a > len_b:
        len_a -= min(len_a - len_b, excess)
    elif len_b > len_a:
        len_b -= min(len_b - len_a, excess)
    if len_a + len_b > budget:
        len_a, len_b = (budget + 1) // 2, budget // 2
    return len_a, len_b


def encode_pairs(
    tok: Tokenizer,
    text_a: Sequence[str],
    text_b: Sequence[str] | None,
    max_seq_length: int,
    desc: str | None = None,
) -> tuple[list[list[int]], list[int]]:
    """Ids of `[CLS] a [SEP]` or `[CLS] a [SEP] b [SEP]` truncated as BERT does, and each A-part length.

    The A-part length (`[CLS] a [SEP]`) is where token type 1 starts. `desc` names the progress shown
    (data/progress.py); None shows none.
    """
    n_special = 2 if text_b is None else 3
    if max_seq_length < n_special + 1:
        raise DataConfigError(
            f"max_seq_length={max_seq_length} leaves no room for text; use at least {n_special + 1}"
        )
    ids = special_ids(tok)
    cls, sep = ids["cls"], ids["sep"]
    plain = plain_tokenizer(tok)
    enc_a: list[list[int]] = []
    enc_b: list[list[int]] = []
    for part in chunks(len(text_a), desc):
        enc_a += [e.ids for e in plain.encode_batch(list(text_a[part]), add_special_tokens=False)]
        if text_b is not None:
            enc_b += [e.ids for e in plain.encode_batch(list(text_b[part]), add_special_tokens=False)]
    budget = max_seq_length - n_special
    if text_b is None:
        out = [[cls, *a[:budget], sep] for a in enc_a]
        return out, [len(x) for x in out]
    out, seg_a = [], []
    for a, b in zip(enc_a, enc_b, strict=True):
        la, lb = truncate_pair_lengths(len(a), len(b), budget)
        out.append([cls, *a[:la], sep, *b[:lb], sep])
        seg_a.append(la + 2)
    return out, seg_a


def collate_glue(
    features: Sequence[dict[str, Any]], pad_id: int = 0, regression: bool = False
) -> dict[str, torch.Tensor]:
    """Pad to the longest example: input_ids, token_type_ids, attention_mask (B, T), idx and labels (B,).

    `labels` is long (float32 for regression) and absent when the examples are unlabelled (GLUE test).
    """
    rows = [f["input_ids"] for f in features]
    input_ids, mask = pad_rows(rows, pad_id), attention_mask(rows)
    n_a = torch.tensor([f["n_a"] for f in features], dtype=torch.long)
    # segment B and its [SEP] are type 1; padding keeps type 0, as BERT's
    token_type_ids = ((torch.arange(input_ids.shape[1]) >= n_a[:, None]) & mask.bool()).long()
    batch = {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": mask,
        "idx": torch.tensor([f["idx"] for f in features], dtype=torch.long),
    }
    if "label" in features[0]:
        batch["labels"] = torch.tensor(
            [f["label"] for f in features], dtype=torch.float32 if regression else torch.long
        )
    return batch


class GLUEDataModule(BertDataModule):
    """One GLUE task: reads, tokenises once in `setup`, and serves dynamically padded batches.

    `val` and `test` loaders serve the labelled dev sets (a list [matched, mismatched] for MNLI, since
    GLUE's test labels are hidden); `predict` serves the unlabelled test sets in `split_names("predict")`
    order (MNLI: matched, mismatched and AX when present), batches without `labels`. Splits come from
    `<data_dir>/<Folder>/`, or from `hub_name` when that folder is absent. `max_train_examples` keeps
    the first rows of train, `max_eval_examples` of every other split (dev and test alike: for quick
    runs, not for submissions). `group_by_length` batches training examples of similar length
    (`LengthGroupedSampler`); otherwise training batches are shuffled with `seed`.
    """

    DEFAULTS: ClassVar[dict[str, Any]] = {"hub_name": "nyu-mll/glue", "seed": 0}

    def __init__(self, task: str, data_dir: str | None, group_by_length: bool = False, **shared: Any) -> None:
        """`task`, `data_dir` (the official layout) and `group_by_length` are GLUE's own; the rest (tokenizer,
        hub_name, sizes, caps, seed) are `BertDataModule`'s."""
        super().__init__(**(self.DEFAULTS | shared))
        self.spec = get_task(task)
        self.data_dir = data_dir
        self.group_by_length = group_by_length

    @property
    def label_names(self) -> list[str]:
        """Label strings in model-id order ([] for STS-B)."""
        return list(self.spec.labels)

    # -- splits ---------------------------------------------------------------------------------------
    def _uses_hub(self) -> bool:
        """Whether splits come from the hub (no local task folder)."""
        return self.data_dir is None or not (Path(self.data_dir) / self.spec.folder).is_dir()

    def _has_ax(self) -> bool:
        """Whether the diagnostic set is there to predict (MNLI only): locally, or on the hub."""
        local = find_diagnostic(self.data_dir) is not None
        return AX in self.spec.submission_files and (
            local or (self._uses_hub() and self.hub_name is not None)
        )

    def split_names(self, stage: str) -> list[str]:
        """train: ["train"]; val and test: the dev sets; predict: the test sets (+ "ax" when present)."""
        if stage == "train":
            return ["train"]
        if stage in ("val", "test"):
            return self.spec.val_split_names
        if stage == "predict":
            return [*self.spec.test_split_names, *([AX] if self._has_ax() else [])]
        raise KeyError(f"unknown stage {stage!r}; stages are train, val, test, predict")

    def has_split(self, name: str) -> bool:
        """Every split of the task: a missing file is then reported by `read`, naming it."""
        return name in self.spec.splits or (name == AX and self._has_ax())

    def cap(self, name: str) -> int | None:
        """`max_train_examples` for train, `max_eval_examples` for the rest (AX included)."""
        return self.max_train_examples if name == "train" else self.max_eval_examples

    def prepare_data(self) -> None:
        """Download the hub copy once (Lightning runs this on one process); local files need nothing."""
        if self._uses_hub() and self.hub_name is not None:
            # loading one split fetches and caches the whole config, so setup() on every rank reads the cache
            folder = None if self.data_dir is None else Path(self.data_dir) / self.spec.folder
            read_hub_split(self.spec, self.spec.val_split_names[0], self.hub_name, expected=folder)

    def read(self, name: str) -> GLUESplit:
        """One split from `<data_dir>/<Folder>/`, or from the hub when that folder is absent."""
        return read_glue_split(self.spec, name, self.data_dir, self.hub_name)

    def encode(self, name: str, examples: GLUESplit) -> SplitData:  # type: ignore[override]
        """`[CLS] a [SEP] b [SEP]` ids truncated as BERT does; features {input_ids, n_a, idx[, label]}."""
        desc = f"tokenising {self.spec.folder} {name}"
        ids, seg_a = encode_pairs(self.tokenizer, examples.text_a, examples.text_b, self.max_seq_length, desc)
        features = [
            {"input_ids": x, "n_a": n, "idx": i} for x, n, i in zip(ids, seg_a, examples.idx, strict=True)
        ]
        if examples.labels is not None:
            for f, label in zip(features, examples.labels, strict=True):
                f["label"] = label
        return SplitData(name, examples, features, source=examples.source)

    # -- batches --------------------------------------------------------------------------------------
    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """`collate_glue` with this tokenizer's [PAD] (float labels for STS-B)."""
        return collate_glue(items, pad_id=self.pad_id, regression=self.spec.is_regression)

    def sampler(self, data: SplitData) -> Sampler | None:
        """Length-grouped batches when `group_by_length`, else None (shuffled with `seed`)."""
        if not self.group_by_length:
            return None
        return LengthGroupedSampler(data.lengths, self.batch_size, seed=self.seed)  # type: ignore[arg-type]


__all__ = ["GLUEDataModule", "collate_glue", "encode_pairs", "truncate_pair_lengths"]
