"""SQuAD v1.1 / v2.0 as a `BertDataModule`: official json files (article slices allowed) or the hub.

Reading lives in `bertlab.data.squad_reader`, windows in `bertlab.data.squad_windows`, answer picking
in `bertlab.data.squad_postprocess`; this module wires them to splits and loaders. Batches are padded
to their longest window, not always to `max_seq_length`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from bertlab.data.base import BertDataModule, SplitData, attention_mask, pad_rows, split_kind
from bertlab.data.errors import DataConfigError
from bertlab.data.squad_reader import ReadStats, SquadExample, load_squad_hub, parse_articles, read_squad_file
from bertlab.data.squad_windows import SquadFeature, make_features


class WindowItems(Sequence[dict[str, Any]]):
    """The loader's view of a split's windows: dicts of lists, built on access.

    Train items carry the labels `start_positions`/`end_positions`; every other split's carry
    `feature_index`, the window's index in `SplitData.features`, so gathered logits find their window.
    """

    def __init__(self, features: Sequence[SquadFeature], labelled: bool) -> None:
        self.features, self.labelled = features, labelled

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        f = self.features[index]
        item: dict[str, Any] = {"input_ids": f.input_ids, "token_type_ids": f.token_type_ids}
        if self.labelled:
            item["start_positions"], item["end_positions"] = f.start_position, f.end_position
        else:
            item["feature_index"] = index
        return item


class SquadDataModule(BertDataModule):
    """SQuAD windows: `train`, `val` and `test` read with their answers (test = `mode=test`, scored);
    `predict` reads `test_file` (and `test_articles`) without them, so any file of questions can be
    answered. The hub (`hub_name`) serves train and val only.

    `split(name).examples` are `SquadExample`s and `.features` their `SquadFeature` windows; eval
    batches carry `feature_index (B,)` into `.features` for `postprocess_predictions`.
    """

    HUB_SPLITS: ClassVar[dict[str, str]] = {"train": "train", "val": "validation"}

    DEFAULTS: ClassVar[dict[str, Any]] = {"max_seq_length": 384, "tokenizer": "bert-base-uncased"}

    def __init__(
        self,
        version: int = 1,
        train_articles: str | int | None = None,
        val_articles: str | int | None = None,
        test_articles: str | int | None = None,
        doc_stride: int = 128,
        max_query_length: int = 64,
        **shared: Any,
    ) -> None:
        """SQuAD's own arguments; the rest (files, hub_name, tokenizer, sizes, caps) are `BertDataModule`'s."""
        if version not in (1, 2):
            raise DataConfigError(f"SQuAD version must be 1 or 2, got {version!r}")
        super().__init__(**(self.DEFAULTS | shared))
        if max_query_length + 3 >= self.max_seq_length:
            raise DataConfigError(
                f"max_query_length {max_query_length} + 3 special tokens must be < max_seq_length "
                f"{self.max_seq_length}"
            )
        self.version = version
        self.doc_stride, self.max_query_length = doc_stride, max_query_length
        self.articles = {"train": train_articles, "val": val_articles, "test": test_articles}
        self.read_stats: dict[str, ReadStats] = {}  # what each split's reader repaired or skipped

    def has_split(self, name: str) -> bool:
        """A split's file, or the hub for train and val."""
        return self.files.get(name) is not None or (self.hub_name is not None and name in self.HUB_SPLITS)

    def read(self, name: str) -> list[SquadExample]:
        """The split's questions; predict reads test's file and articles and ignores any answers."""
        kind = split_kind(name)
        articles = self.articles["test" if kind == "predict" else kind]
        path = self.files.get(name)
        if path is not None:
            examples, stats = read_squad_file(
                path, version=self.version, article_slice=parse_articles(articles), labelled=kind != "predict"
            )
        else:  # has_split admits only the hub here
            examples, stats = load_squad_hub(
                self.hub_name,  # type: ignore[arg-type]
                self.HUB_SPLITS[kind],
                version=self.version,
                articles=articles,
            )
        self.read_stats[name] = stats
        return examples

    def encode(self, name: str, examples: Sequence[SquadExample]) -> SplitData:
        """Every question's windows; train windows are labelled, the others indexed (see `WindowItems`)."""
        train = split_kind(name) == "train"
        features = make_features(
            examples,
            self.tokenizer,
            max_seq_length=self.max_seq_length,
            doc_stride=self.doc_stride,
            max_query_length=self.max_query_length,
            training=train,
            desc=f"tokenising SQuAD {'v1.1' if self.version == 1 else 'v2.0'} {name}",
        )
        source = str(self.files.get(name) or self.hub_name)
        return SplitData(name, examples, features, source, items=WindowItems(features, labelled=train))

    def collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """`input_ids`, `token_type_ids`, `attention_mask` `(B, T)` long, T = the longest window; then
        `start_positions`/`end_positions` `(B,)` (train) or `feature_index` `(B,)` (other splits)."""
        ids = [it["input_ids"] for it in items]
        batch = {
            "input_ids": pad_rows(ids, self.pad_id),
            "token_type_ids": pad_rows([it["token_type_ids"] for it in items], 0),
            "attention_mask": attention_mask(ids),
        }
        for key in ("start_positions", "end_positions", "feature_index"):
            if key in items[0]:
                batch[key] = torch.tensor([it[key] for it in items], dtype=torch.long)
        return batch


__all__ = ["SquadDataModule", "WindowItems"]
