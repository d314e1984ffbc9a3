"""SWAG: the official csv format, the [CLS] sent1 [SEP] sent2 ending [SEP] layout and the DataModule."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from bertlab.data.errors import DataError
from bertlab.data.swag import SWAGDataModule, encode_swag, load_hub_swag, read_swag_csv

# the header of the official swagaf data/train.csv and val.csv (a leading unnamed index column)
HEADER = ",video-id,fold-ind,startphrase,sent1,sent2,gold-source,ending0,ending1,ending2,ending3,label"
ROWS = [
    [
        "lsmdc3001_21_JUMP_STREET-422",
        "1473",
        "He crosses the street to the food truck. Someone",
        "He crosses the street to the food truck.",
        "Someone",
        "gold",
        "hands him a paper bag of tacos.",
        "is sitting on the curb, reading a newspaper.",
        "pulls into the driveway and parks.",
        "sings into a microphone on stage.",
        "0",
    ],
    [
        "anetv_jkn6uvmqwh4",
        "3416",
        "A woman is seen kneeling on a mat holding a brush. She",
        "A woman is seen kneeling on a mat holding a brush.",
        "She",
        "gen",
        "rides a bike down a dirt path.",
        "dips the brush into a can and paints the fence.",
        "throws the ball to the dog, which catches it.",
        "climbs the rope up to the ceiling.",
        "1",
    ],
    [
        "anetv_dm5WXFiQZUQ",
        "18419",
        "He rides the motorcycle down the hall and into the elevator. He",
        "He rides the motorcycle down the hall and into the elevator.",
        "He",
        "gold",
        "looks at a mirror in the mirror as he watches someone walk through a door.",
        "stops, listening to a cup of coffee with the seated woman, who's standing.",
        "exits the building and rides the motorcycle into a casino where he performs several tricks as people watch.",
        "pulls the bag out of his pocket and hands it to someone's grandma.",
        "2",
    ],
    [
        "lsmdc1008_Spider-Man2-75503",
        "1203",
        "Now, someone walks up to the window, his hands in his pockets. Someone",
        "Now, someone walks up to the window, his hands in his pockets.",
        "Someone",
        "gold",
        "gazes up at him, stunned.",
        "turns off the light.",
        "lifts his hand to wave, then drops it.",
        "glances at the photograph of a young woman on the wall.",
        "3",
    ],
    [
        "anetv_a7tDbs2PdTM",
        "9918",
        "The man in the blue shirt hands the ball to the boy. The boy",
        "The man in the blue shirt hands the ball to the boy.",
        "The boy",
        "gen",
        "throws the ball at the basket and misses.",
        'says "thanks, coach" and runs off the court.',
        "eats the ball.",
        "drives a car onto the court.",
        "0",
    ],
]


def _write(path: Path, rows: list[list[str]], labelled: bool = True, header: str = HEADER) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write((header if labelled else header.rsplit(",", 1)[0]) + "\n")
        writer = csv.writer(f)
        for i, row in enumerate(rows):
            writer.writerow([str(i), *(row if labelled else row[:-1])])
    return path


@pytest.fixture
def swag_files(tmp_path: Path) -> dict[str, Path]:
    return {
        "train": _write(tmp_path / "train.csv", ROWS),
        "val": _write(tmp_path / "val.csv", ROWS[:3]),
        "test": _write(tmp_path / "test.csv", ROWS[2:], labelled=False),
    }


def _plain(tok: Tokenizer) -> Tokenizer:
    """A copy without the padding/truncation the MiniLM tokenizer.json carries."""
    copy = Tokenizer.from_str(tok.to_str())
    copy.no_padding()
    copy.no_truncation()
    return copy


def test_reads_official_csv(swag_files: dict[str, Path]) -> None:
    train = read_swag_csv(swag_files["train"])
    assert len(train) == 5 and [ex.label for ex in train] == [0, 1, 2, 3, 0]
    assert train[0].context == "He crosses the street to the food truck." and train[0].start == "Someone"
    assert train[0].endings[1] == "is sitting on the curb, reading a newspaper."  # quoted comma
    assert train[4].endings[1] == 'says "thanks, coach" and runs off the court.'
    assert train[0].id == "1473" and train[0].line == 2
    test = read_swag_csv(swag_files["test"])
    assert [ex.label for ex in test] == [None, None, None]
    assert swag_files["test"].read_text(encoding="utf-8").splitlines()[0].endswith(",ending3")


def test_sequence_layout_and_type_ids(swag_files: dict[str, Path], minilm_tokenizer: Tokenizer) -> None:
    examples = read_swag_csv(swag_files["train"])
    plain = _plain(minilm_tokenizer)
    encoded = encode_swag(examples, minilm_tokenizer, max_seq_length=128)
    assert len(encoded) == len(examples)
    for ex, (ids, types) in zip(examples, encoded):
        assert len(ids) == len(types) == 4
        context = plain.encode(ex.context, add_special_tokens=False).tokens
        for ending, choice_ids, choice_types in zip(ex.endings, ids, types):
            second = plain.encode(f"{ex.start} {ending}", add_special_tokens=False).tokens
            tokens = [minilm_tokenizer.id_to_token(i) for i in choice_ids]
            assert tokens == ["[CLS]", *context, "[SEP]", *second, "[SEP]"]
            assert choice_types == [0] * (len(context) + 2) + [1] * (len(second) + 1)
    # written out once by hand: context in segment 0, start phrase + ending in segment 1
    tokens = [minilm_tokenizer.id_to_token(i) for i in encoded[4][0][1]]
    assert " ".join(tokens) == (
        "[CLS] the man in the blue shirt hands the ball to the boy . [SEP] "
        'the boy says " thanks , coach " and runs off the court . [SEP]'
    )
    assert encoded[4][1][1] == [0] * 15 + [1] * 15


def test_truncation_keeps_both_segments(swag_files: dict[str, Path], minilm_tokenizer: Tokenizer) -> None:
    examples = read_swag_csv(swag_files["train"])
    for ids, types in encode_swag(examples, minilm_tokenizer, max_seq_length=16):
        for choice_ids, choice_types in zip(ids, types):
            assert len(choice_ids) <= 16 and choice_ids[0] == 101 and choice_ids[-1] == 102
            assert choice_ids.count(102) == 2 and 0 in choice_types and 1 in choice_types


def test_datamodule_batches(swag_files: dict[str, Path], minilm_dir: Path) -> None:
    dm = SWAGDataModule(
        train_file=swag_files["train"],
        val_file=swag_files["val"],
        test_file=swag_files["test"],
        tokenizer=minilm_dir,
        batch_size=2,
        eval_batch_size=2,
        max_train_examples=4,
    )
    dm.setup("fit")
    dm.setup("test")
    train = dm.split("train").examples
    assert len(train) == 4
    seen = []
    for batch in dm.train_dataloader():
        assert list(batch) == ["input_ids", "token_type_ids", "attention_mask", "idx", "labels"]
        b, choices, t = batch["input_ids"].shape
        assert b == 2 and choices == 4 and t <= 128
        assert batch["token_type_ids"].shape == batch["attention_mask"].shape == (b, 4, t)
        assert batch["labels"].shape == batch["idx"].shape == (b,)
        assert all(v.dtype == torch.long for v in batch.values())
        assert (batch["input_ids"][batch["attention_mask"] == 0] == 0).all()
        assert (batch["token_type_ids"][batch["attention_mask"] == 0] == 0).all()
        seen.extend(zip(batch["idx"].tolist(), batch["labels"].tolist()))
        for row, index in enumerate(batch["idx"].tolist()):
            lengths = batch["attention_mask"][row].sum(-1).tolist()
            assert lengths == [len(ids) for ids in encode_swag([train[index]], dm.tokenizer)[0][0]]
    assert sorted(seen) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    val = next(iter(dm.val_dataloader()))
    assert val["labels"].tolist() == [0, 1] and val["idx"].tolist() == [0, 1]
    test = next(iter(dm.test_dataloader()))
    assert "labels" not in test and test["input_ids"].shape[:2] == (2, 4)


@pytest.mark.parametrize("label", ["4", "-1", "x", ""])
def test_bad_label_names_file_and_line(tmp_path: Path, label: str) -> None:
    rows = [ROWS[0], [*ROWS[1][:-1], label]]
    path = _write(tmp_path / "val.csv", rows)
    with pytest.raises(DataError, match=rf"^{path}:3: label '{label}' is not one of 0-3"):
        read_swag_csv(path)


def test_malformed_rows_and_headers(tmp_path: Path) -> None:
    short = _write(tmp_path / "short.csv", [ROWS[0], ROWS[1][:8]])
    with pytest.raises(DataError, match=rf"^{short}:3: row has 9 columns but the header has 12"):
        read_swag_csv(short)
    no_endings = _write(tmp_path / "header.csv", ROWS, header=HEADER.replace("ending3", "ending_3"))
    with pytest.raises(DataError, match=r"header.csv:1: header lacks columns \['ending3'\]"):
        read_swag_csv(no_endings)
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="empty file"):
        read_swag_csv(empty)
    with pytest.raises(DataError, match="file not found"):
        read_swag_csv(tmp_path / "absent.csv")


def test_hub_copy(monkeypatch: pytest.MonkeyPatch, minilm_tokenizer: Tokenizer) -> None:
    import datasets

    calls: list[tuple] = []

    def load_dataset(name: str, config: str, split: str) -> datasets.Dataset:
        calls.append((name, config, split))
        columns = [
            "video-id",
            "fold-ind",
            "startphrase",
            "sent1",
            "sent2",
            "gold-source",
            *(f"ending{i}" for i in range(4)),
        ]
        data = {c: [row[i] for row in ROWS[:3]] for i, c in enumerate(columns)}
        data["label"] = [-1, -1, -1] if split == "test" else [int(row[-1]) for row in ROWS[:3]]
        return datasets.Dataset.from_dict(data)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    val = load_hub_swag("allenai/swag", "val")
    assert calls == [("allenai/swag", "regular", "validation")]
    assert [ex.label for ex in val] == [0, 1, 2] and val[2].start == "He"
    dm = SWAGDataModule(hub_name="allenai/swag", tokenizer=minilm_tokenizer, eval_batch_size=3)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert "labels" not in batch and batch["input_ids"].shape[:2] == (3, 4)

    def offline(*args: object, **kwargs: object) -> None:
        raise ConnectionError("no route to host")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"^allenai/swag: could not load the 'train' split .* train_file"):
        load_hub_swag("allenai/swag", "train")
