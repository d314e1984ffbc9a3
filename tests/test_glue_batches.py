"""GLUE tokenisation (BERT's pair truncation, on the real files), DataModule batches and length grouping."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from bertlab.data.glue import GLUEDataModule, collate_glue, encode_pairs, truncate_pair_lengths
from bertlab.data.glue_files import read_glue_split
from bertlab.data.sampler import LengthGroupedSampler
from bertlab.data.tokenizer import plain_tokenizer
from tests.fixtures_glue import write_mnli, write_qqp

# ---------------------------------------------------------------- tokenisation


def _truncate_seq_pair_reference(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """Google BERT's run_classifier._truncate_seq_pair, on lengths."""
    while len_a + len_b > budget:
        if len_a > len_b:
            len_a -= 1
        else:
            len_b -= 1
    return len_a, len_b


def test_truncate_pair_lengths_matches_bert() -> None:
    rng = random.Random(0)
    cases = [(rng.randint(0, 80), rng.randint(0, 80), rng.randint(1, 100)) for _ in range(3000)]
    cases += [(10, 10, 7), (10, 10, 8), (3, 50, 10), (50, 3, 10), (0, 0, 0)]
    for a, b, budget in cases:
        assert truncate_pair_lengths(a, b, budget) == _truncate_seq_pair_reference(a, b, budget), (
            a,
            b,
            budget,
        )


def test_encode_pairs_is_cls_a_sep_b_sep(minilm_tokenizer) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(minilm_tokenizer.to_str())
    tok.no_padding()
    tok.no_truncation()
    a, b = "The cat sat on the mat.", "A feline rested; unbelievably comfortable!"
    ids, seg_a = encode_pairs(minilm_tokenizer, [a], [b], 128)
    ref = tok.encode(a, b)  # the tokenizer's own [CLS] A [SEP] B [SEP] template
    assert ids[0] == ref.ids and ids[0][0] == 101 and ids[0].count(102) == 2
    assert [0] * seg_a[0] + [1] * (len(ids[0]) - seg_a[0]) == ref.type_ids
    ea, eb = tok.encode(a, add_special_tokens=False).ids, tok.encode(b, add_special_tokens=False).ids
    assert ids[0] == [101, *ea, 102, *eb, 102]
    # longest-first truncation as BERT's _truncate_seq_pair; the caller's tokenizer keeps its padding
    short, seg = encode_pairs(minilm_tokenizer, [a], [b], 9)
    la, lb = _truncate_seq_pair_reference(len(ea), len(eb), 6)
    assert short[0] == [101, *ea[:la], 102, *eb[:lb], 102] and seg[0] == la + 2
    single, seg = encode_pairs(minilm_tokenizer, [b], None, 5)
    assert single[0] == [101, *eb[:3], 102] and seg == [5]
    # a tokenizer that pads and truncates (as checkpoint tokenizer.json files often do) gives the same
    # ids, and keeps its settings
    padded = Tokenizer.from_str(minilm_tokenizer.to_str())
    padded.enable_padding(length=128)
    padded.enable_truncation(max_length=6)
    assert encode_pairs(padded, [a], [b], 128) == (ids, seg_a)
    assert padded.padding is not None and padded.truncation is not None


# first dev row where tokenizers' longest_first differs from BERT's rule at 32 tokens, and how many do
TRUNCATION_DIFFERS = {"rte": (237, 1), "mrpc": (1, 183), "stsb": (289, 266), "qnli": (4, 1296)}


@pytest.mark.parametrize("task", sorted(TRUNCATION_DIFFERS))
def test_pair_truncation_is_berts_not_tokenizers_own(shared_data: Path, minilm_tokenizer, task: str) -> None:
    """Real dev pairs cut to 32 tokens: ids and token types are BERT's `_truncate_seq_pair`, exactly.

    tokenizers' `enable_truncation(strategy="longest_first")` (as data/swag.py uses) also trims the
    longer side first, but once both sides are cut it keeps the odd token in B where BERT keeps it in A
    (RTE dev row 237: A 15 and B 16 tokens into 29 give BERT 15 + 14, tokenizers 14 + 15). It would
    change these batches, so GLUE keeps its own truncation.
    """
    data = read_glue_split(task, "val", shared_data / "glue", hub_name=None)
    assert data.text_b is not None
    ids, seg_a = encode_pairs(minilm_tokenizer, data.text_a, data.text_b, 32)
    batch = collate_glue([{"input_ids": x, "n_a": n, "idx": 0} for x, n in zip(ids, seg_a)])
    plain = plain_tokenizer(minilm_tokenizer)
    full_a = [e.ids for e in plain.encode_batch(data.text_a, add_special_tokens=False)]
    full_b = [e.ids for e in plain.encode_batch(data.text_b, add_special_tokens=False)]
    own = plain_tokenizer(minilm_tokenizer)
    own.enable_truncation(32, strategy="longest_first")
    theirs = own.encode_batch(list(zip(data.text_a, data.text_b)))
    differs = []
    for i, (a, b) in enumerate(zip(full_a, full_b)):
        la, lb = _truncate_seq_pair_reference(len(a), len(b), 29)
        expected = [101, *a[:la], 102, *b[:lb], 102]
        assert ids[i] == expected, (task, i)
        n = len(expected)
        types = [0] * (la + 2) + [1] * (lb + 1)
        assert batch["token_type_ids"][i, :n].tolist() == types and batch["attention_mask"][i].sum() == n
        if theirs[i].ids != expected:
            differs.append(i)
            # the same length, one token moved from A to B
            assert theirs[i].type_ids.count(0) == la + 1 and theirs[i].type_ids.count(1) == lb + 2, (task, i)
        else:
            assert theirs[i].type_ids == types
    assert sum(len(x) == 32 for x in ids) > len(ids) / 3  # truncation happens a lot at this length
    assert (differs[0], len(differs)) == TRUNCATION_DIFFERS[task]


# ---------------------------------------------------------------- DataModule batches


def _lengths(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return batch["attention_mask"].sum(1)


def test_datamodule_batches_rte(shared_data: Path, minilm_tokenizer) -> None:
    dm = GLUEDataModule(
        task="rte",
        data_dir=str(shared_data / "glue"),
        tokenizer=minilm_tokenizer,
        max_seq_length=64,
        batch_size=8,
        eval_batch_size=16,
        max_train_examples=40,
        max_eval_examples=20,
    )
    assert (dm.spec.num_labels, dm.label_names, dm.spec.is_regression) == (
        2,
        ["entailment", "not_entailment"],
        False,
    )
    assert dm.split_names("val") == dm.split_names("test") == ["val"] and dm.split_names("predict") == [
        "test"
    ]
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels", "idx"}
    B, T = batch["input_ids"].shape
    assert B == 8 and T <= 64
    for key in ("input_ids", "token_type_ids", "attention_mask", "labels", "idx"):
        assert batch[key].dtype == torch.long, key
    assert batch["labels"].shape == batch["idx"].shape == (8,)
    lengths = _lengths(batch)
    assert int(lengths.max()) == T  # padded to the longest in the batch, not to max_seq_length
    ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
    assert torch.equal(mask, (torch.arange(T) < lengths[:, None]).long())
    assert bool((ids[mask == 0] == 0).all()) and bool((types[mask == 0] == 0).all())
    for r in range(B):
        n = int(lengths[r])
        row = ids[r, :n].tolist()
        assert row[0] == 101 and row[-1] == 102 and row.count(102) == 2
        first_sep = row.index(102)
        assert types[r, : first_sep + 1].sum() == 0 and bool((types[r, first_sep + 1 : n] == 1).all())
    # an epoch visits each of the 40 training rows once
    seen = torch.cat([b["idx"] for b in dm.train_dataloader()])
    assert sorted(seen.tolist()) == list(range(40))
    val = dm.val_dataloader()
    vb = next(iter(val))
    assert vb["input_ids"].shape[0] == 16 and vb["idx"].tolist() == list(range(16))  # file order
    dm.setup("predict")
    pred = dm.predict_dataloader()  # one test set: one loader
    assert isinstance(pred, DataLoader)
    pb = next(iter(pred))
    assert "labels" not in pb and pb["idx"].tolist() == list(range(16))


def test_datamodule_stsb_float_labels(shared_data: Path, minilm_tokenizer) -> None:
    dm = GLUEDataModule(
        task="stsb",
        data_dir=str(shared_data / "glue"),
        tokenizer=minilm_tokenizer,
        max_eval_examples=10,
        eval_batch_size=10,
    )
    assert dm.spec.num_labels == 1 and dm.spec.is_regression and dm.label_names == []
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    assert batch["labels"].dtype == torch.float32
    assert batch["labels"][:2].tolist() == [5.0, 4.75]


def test_datamodule_mnli_loaders(tmp_path: Path, minilm_tokenizer) -> None:
    written = write_mnli(tmp_path)
    dm = GLUEDataModule(
        task="mnli",
        data_dir=str(tmp_path),
        tokenizer=minilm_tokenizer,
        batch_size=4,
        hub_name=None,
        max_seq_length=32,
    )
    assert dm.split_names("val") == dm.split_names("test") == ["val_matched", "val_mismatched"]
    assert dm.split_names("predict") == ["test_matched", "test_mismatched", "ax"]
    dm.setup(None)
    val, test, pred = dm.val_dataloader(), dm.test_dataloader(), dm.predict_dataloader()
    assert isinstance(val, list) and len(val) == 2 and isinstance(test, list) and len(test) == 2
    assert [len(loader.dataset) for loader in pred] == [10, 10, 7]
    labels = torch.cat([b["labels"] for b in val[1]])
    names = dm.label_names
    assert [names[i] for i in labels.tolist()] == [r[2] for r in written.rows["val_mismatched"]]
    assert max(int(_lengths(b).max()) for b in dm.train_dataloader()) <= 32


def test_datamodule_accepts_tokenizer_path(tmp_path: Path, minilm_dir: Path) -> None:
    write_qqp(tmp_path, malformed=False)
    dm = GLUEDataModule(
        task="qqp", data_dir=str(tmp_path), tokenizer=str(minilm_dir), batch_size=5, hub_name=None
    )
    assert dm.hparams["tokenizer"] == str(minilm_dir) and dm.hparams["task"] == "qqp"
    dm.setup("fit")
    assert next(iter(dm.train_dataloader()))["input_ids"].shape[0] == 5


# ---------------------------------------------------------------- length-grouped batching


def test_length_grouped_sampler_covers_every_index_once() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(5, 128) for _ in range(1003)]
    sampler = LengthGroupedSampler(lengths, batch_size=16, mega_batch_mult=8, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(1003)) and len(sampler) == 1003
    assert list(sampler) == first  # same epoch, same order
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(sampler) == list(range(1003))
    # batches hold similar lengths: far less spread than random batches of the same data
    spread = [max(b) - min(b) for b in ([lengths[i] for i in first[k : k + 16]] for k in range(0, 1003, 16))]
    random_order = rng.sample(range(1003), 1003)
    random_spread = [
        max(b) - min(b) for b in ([lengths[i] for i in random_order[k : k + 16]] for k in range(0, 1003, 16))
    ]
    assert sum(spread) / len(spread) < 0.2 * sum(random_spread) / len(random_spread)
    # batch order is shuffled, not sorted by length
    firsts = [lengths[first[k]] for k in range(0, 1003 - 16, 16)]
    assert firsts != sorted(firsts, reverse=True)


def test_length_grouped_sampler_splits_across_ranks() -> None:
    rng = random.Random(1)
    lengths = [rng.randint(1, 64) for _ in range(250)]
    ranks = [
        list(LengthGroupedSampler(lengths, batch_size=8, seed=0, num_replicas=2, rank=r)) for r in range(2)
    ]
    assert len(ranks[0]) == len(ranks[1]) == 125
    assert set(ranks[0]) | set(ranks[1]) == set(range(250)) and not set(ranks[0]) & set(ranks[1])
    for k in range(0, 120, 8):  # the same step on both ranks draws from one length group
        both = [lengths[i] for r in ranks for i in r[k : k + 8]]
        assert max(both) - min(both) <= 16


def test_datamodule_group_by_length(shared_data: Path, minilm_tokenizer) -> None:
    dm = GLUEDataModule(
        task="sst2",
        data_dir=str(shared_data / "glue"),
        tokenizer=minilm_tokenizer,
        batch_size=10,
        group_by_length=True,
        max_train_examples=600,
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, LengthGroupedSampler)
    batches = list(loader)
    assert sorted(torch.cat([b["idx"] for b in batches]).tolist()) == list(range(600))
    pad_fraction = sum(float((b["attention_mask"] == 0).float().mean()) for b in batches) / len(batches)
    assert pad_fraction < 0.1  # grouped batches carry little padding (random batches: about half)
