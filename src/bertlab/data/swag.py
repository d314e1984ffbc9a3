"""SWAG multiple choice (Zellers et al., 2018): readers for the official csv files and the hub, DataModule.

As in the paper (section 4.4), each of the four endings makes one sequence
`[CLS] sent1 [SEP] sent2 + " " + ending [SEP]` (the context, then the start phrase joined to the ending),
truncated longest-first to `max_seq_length`. The official `train.csv`/`val.csv` header is
`,video-id,fold-ind,startphrase,sent1,sent2,gold-source,ending0,ending1,ending2,ending3,label` (a leading
unnamed index column); `test.csv` has no `label`. Columns are found by name, so files without the index
column read as well.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from tokenizers import Tokenizer
from torch import Tensor

from bertlab.data.base import BertDataModule, SplitData, attention_mask, pad_rows, split_kind
from bertlab.data.errors import DataConfigError, DataError, read_utf8
from bertlab.data.hub import load_hub_split
from bertlab.data.progress import chunks
from bertlab.data.tokenizer import plain_tokenizer

NUM_CHOICES = 4
ENDINGS: tuple[str, ...] = tuple(f"ending{i}" for i in range(NUM_CHOICES))
REQUIRED_COLUMNS: tuple[str, ...] = ("sent1", "sent2", *ENDINGS)
OFFICIAL_HEADER = (
    ",video-id,fold-ind,startphrase,sent1,sent2,gold-source,ending0,ending1,ending2,ending3,label"
)
# bertlab split -> the hub's split; predict reads the test split, as it reads test's file
HUB_SPLITS: dict[str, str] = {"train": "train", "val": "validation", "test": "test", "predict": "test"}


@dataclass(frozen=True)
class SwagExample:
    """One question: context (`sent1`), start phrase (`sent2`), four endings, the right one's index or None."""

    context: str
    start: str
    endings: tuple[str, ...]
    label: int | None
    id: str = ""
    line: int | None = None


def _label(text: str, path: str | Path, line: int | None) -> int:
    """Parse a gold label, which must be 0-3, or raise DataError naming the file and line."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < NUM_CHOICES:
        raise DataError(
            path, f"label {text!r} is not one of 0-3", "fix the label column of this row", line=line
        )
    return value


def _rows(reader: Any, path: Path) -> Iterator[list[str]]:
    """The csv reader's rows; its own errors (an unclosed quote, a stray quote) as a DataError with the line."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise DataError(
                path,
                f"malformed csv ({err}; the file may be truncated)",
                "quote fields that hold commas, quotes or newlines, and close every quote",
                line=reader.line_num,
            ) from None
        yield row


def read_swag_csv(path: str | Path) -> list[SwagExample]:
    """Read an official SWAG csv (train.csv, val.csv or the unlabelled test.csv)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found", "pass the path of SWAG's train.csv, val.csv or test.csv")
    examples = []
    text = read_utf8(path)  # whole: bad bytes are named by line; a byte-order mark is dropped
    with io.StringIO(text, newline="") as f:
        # strict: an unclosed quote (a truncated file) is an error, not a field that swallows the rest
        reader = csv.reader(f, strict=True)
        header = next(_rows(reader, path), None)
        if header is None:
            raise DataError(path, "empty file", f"expected the header {OFFICIAL_HEADER}")
        column = {name.strip(): i for i, name in enumerate(header)}
        missing = [c for c in REQUIRED_COLUMNS if c not in column]
        if missing:
            raise DataError(
                path, f"header lacks columns {missing}", f"use the header {OFFICIAL_HEADER}", line=1
            )
        key = column.get("fold-ind", column.get("video-id"))
        for row in _rows(reader, path):
            line = reader.line_num  # the row's last line: rows may hold quoted newlines
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(
                    path,
                    f"row has {len(row)} columns but the header has {len(header)}",
                    "quote fields that contain commas and give every column",
                    line=line,
                )
            label = _label(row[column["label"]], path, line) if "label" in column else None
            examples.append(
                SwagExample(
                    context=row[column["sent1"]],
                    start=row[column["sent2"]],
                    endings=tuple(row[column[e]] for e in ENDINGS),
                    label=label,
                    id=row[key] if key is not None else str(len(examples)),
                    line=line,
                )
            )
    if not examples:
        raise DataError(path, "no examples found", "pass a SWAG csv with rows under its header")
    return examples


def load_hub_swag(hub_name: str, split: str) -> list[SwagExample]:
    """Read a split ("train", "val", "test") of `allenai/swag` (config "regular") via `datasets`.

    The hub's test split marks its missing labels -1; they become None.
    """
    data = load_hub_split(
        hub_name,
        "regular",
        HUB_SPLITS[split],
        f"could not load the {split!r} split from the Hugging Face hub",
        "pass local SWAG csv files as train_file/val_file/test_file, or check the connection",
    )
    where = f"{hub_name}[{HUB_SPLITS[split]}]"
    examples = []
    for i, row in enumerate(data):
        label = row.get("label", -1)
        examples.append(
            SwagExample(
                context=row["sent1"],
                start=row["sent2"],
                endings=tuple(row[e] for e in ENDINGS),
                label=None if label in (-1, None) else _label(str(label), where, i),
                id=str(row.get("fold-ind", i)),
                line=None,
            )
        )
    return examples


def encode_swag(
    examples: Sequence[SwagExample], tokenizer: Tokenizer, max_seq_length: int = 128, desc: str | None = None
) -> list[tuple[list[list[int]], list[list[int]]]]:
    """Per example, the four choices' input ids and token type ids, each `(4, T_i)` with `T_i <= max_seq_length`.

    `desc` names the progress shown (data/progress.py), counted in questions; None shows none.
    """
    if max_seq_length < 4:
        raise DataConfigError(f"max_seq_length={max_seq_length} cannot hold [CLS] A [SEP] B [SEP]")
    tok = plain_tokenizer(tokenizer)  # a tokenizer.json may carry its own settings: use ours
    tok.enable_truncation(max_seq_length, strategy="longest_first")
    out = []
    for part in chunks(len(examples), desc, unit="questions"):
        batch = examples[part]
        pairs = [(ex.context, f"{ex.start} {ending}".strip()) for ex in batch for ending in ex.endings]
        encodings = tok.encode_batch(pairs)
        for i in range(len(batch)):
            choices = encodings[i * NUM_CHOICES : (i + 1) * NUM_CHOICES]
            out.append(([list(e.ids) for e in choices], [list(e.type_ids) for e in choices]))
    return out


def collate_swag(
    items: Sequence[tuple[int, list[list[int]], list[list[int]], int | None]], pad_id: int
) -> dict[str, Tensor]:
    """Pad a batch: input_ids, token_type_ids, attention_mask `(B, 4, T)`, labels `(B,)` when all known, idx `(B,)`."""
    # the B x 4 choices as rows, padded to the batch's longest choice, then back to (B, 4, T)
    ids = [choice for _, item_ids, _, _ in items for choice in item_ids]
    types = [choice for _, _, item_types, _ in items for choice in item_types]
    shape = (len(items), NUM_CHOICES, -1)
    batch = {
        "input_ids": pad_rows(ids, pad_id).view(shape),
        "token_type_ids": pad_rows(types, 0).view(shape),
        "attention_mask": attention_mask(ids).view(shape),
        "idx": torch.tensor([i for i, _, _, _ in items], dtype=torch.long),
    }
    labels = [label for _, _, _, label in items]
    if all(label is not None for label in labels):
        batch["labels"] = torch.tensor(labels, dtype=torch.long)
    return batch


def write_swag_predictions(path: str | Path, predicted: Mapping[int, int]) -> Path:
    """Write SWAG predictions as csv: header `idx,prediction`, one row per example index, in index order."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["idx", "prediction"])
        writer.writerows(sorted(predicted.items()))
    return path


class SWAGDataModule(BertDataModule):
    """SWAG from the official csv files or `allenai/swag`; batches of `(B, 4, T)` choices.

    A split's `examples` are its `SwagExample`s and its `features` the encoded questions
    `(index, input_ids (4, T_i), token_type_ids (4, T_i), label or None)`. Batch keys: input_ids,
    token_type_ids, attention_mask `(B, 4, T)`, idx `(B,)` (index in the split's examples) and labels
    `(B,)`, all long. `labels` is absent from batches of unlabelled examples: the official test.csv
    (and the hub's test split) have none.
    """

    DEFAULTS: ClassVar[dict[str, Any]] = {"batch_size": 16, "eval_batch_size": 32}  # the paper's batch

    def __init__(self, **shared: Any) -> None:
        """`BertDataModule`'s arguments: train_file, val_file, test_file, hub_name, tokenizer, …"""
        super().__init__(**(self.DEFAULTS | shared))
        if self.max_seq_length < 4:
            raise DataConfigError(
                f"data.max_seq_length={self.max_seq_length} cannot hold [CLS] A [SEP] B [SEP]; set it >= 4"
            )

    def read(self, name: str) -> list[SwagExample]:
        """Examples of one split from its file, else from the hub."""
        path = self.files.get(name)
        if path is not None:
            return read_swag_csv(path)
        assert self.hub_name is not None  # has_split checked a source exists
        return load_hub_swag(self.hub_name, split_kind(name))

    def encode(self, name: str, examples: Sequence[SwagExample]) -> SplitData:
        """Tokenise every question's four choices; features carry the example index and label."""
        encoded = encode_swag(examples, self.tokenizer, self.max_seq_length, desc=f"tokenising SWAG {name}")
        features = [(i, ids, types, ex.label) for i, ((ids, types), ex) in enumerate(zip(encoded, examples))]
        return SplitData(name, list(examples), features, source=str(self.files.get(name) or self.hub_name))

    def collate(
        self, items: list[tuple[int, list[list[int]], list[list[int]], int | None]]
    ) -> dict[str, Tensor]:
        """Pad a batch to its longest choice."""
        return collate_swag(items, self.pad_id)
