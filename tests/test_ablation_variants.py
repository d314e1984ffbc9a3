"""The paper's ablations (issue 12): the "No NSP" variant (Table 5) and the masking mixes (Table 8)."""

from __future__ import annotations

import csv
import itertools
import json
import math
import random
from pathlib import Path

import pytest
import torch
import transformers

from bertlab.data.errors import DataConfigError
from bertlab.data.nsp import create_segment_instances, create_segments_from_document
from bertlab.data.pretrain import PretrainDataModule
from bertlab.model.heads import BertForMaskedLM
from bertlab.run import main
from bertlab.tasks.pretrain import PreTrainingTask
from tests.hydra_helpers import compose_cfg
from tests.tiny import TINY, tiny_pretraining_run

CLS, SEP = 2, 3
# Table 8: MASK/SAME/RND percentages of the selected tokens -> (mask_token_prob, random_token_prob)
TABLE8 = {"80/10/10": (0.8, 0.1), "100/0/0": (1.0, 0.0), "80/0/20": (0.8, 0.2), "80/20/0": (0.8, 0.0)}
TABLE8 |= {"0/20/80": (0.0, 0.8), "0/0/100": (0.0, 1.0)}


def _no_nsp_task() -> PreTrainingTask:
    return PreTrainingTask(dict(TINY, vocab_size=101), objective="mlm")


def test_no_nsp_model_has_no_nsp_parameters_and_its_loss_is_the_mlm_loss() -> None:
    torch.manual_seed(0)
    task = _no_nsp_task().eval()  # no dropout: the two forward passes below must agree
    names = [n for n, _ in task.model.named_parameters()]
    assert isinstance(task.model, BertForMaskedLM)
    assert not [n for n in names if "seq_relationship" in n or "pooler" in n], names
    assert "cls.predictions.bias" in names
    ids = torch.randint(5, 101, (5, 11))
    labels = torch.full_like(ids, -100)
    labels[:, 3::4] = ids[:, 3::4]
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "token_type_ids": torch.zeros_like(ids),
    }
    out = task.step(batch | {"mlm_labels": labels})  # no next_sentence_label: MLM-only data has none
    assert out["loss"] is out["mlm_loss"] and not {"nsp_loss", "nsp_acc"} & out.keys()
    logits = task.model(ids, batch["attention_mask"], batch["token_type_ids"])
    assert out["mlm_loss"] == torch.nn.functional.cross_entropy(
        logits[labels != -100], labels[labels != -100]
    )
    mlm_nsp = PreTrainingTask(dict(TINY, vocab_size=101))
    with pytest.raises(ValueError, match=r"task\.module\.objective=mlm_nsp needs next-sentence pairs"):
        mlm_nsp.step(batch | {"mlm_labels": labels})
    with pytest.raises(ValueError, match=r"task\.module\.objective='nsp'"):
        PreTrainingTask(dict(TINY, vocab_size=101), objective="nsp")


def test_no_nsp_segments_are_contiguous_single_segments_filling_the_length() -> None:
    rng = random.Random(3)
    docs = [[[1000 + 100 * d + s] * rng.randint(1, 13) for s in range(rng.randint(1, 9))] for d in range(40)]
    docs[0].append([77] * 40)  # longer than a whole segment: cut into pieces
    max_len = 21
    for doc in docs:
        segs = create_segments_from_document(doc, max_len, random.Random(1), CLS, SEP, short_seq_prob=0.0)
        for seg in segs:
            ids = seg["input_ids"]
            assert ids[0] == CLS and ids[-1] == SEP and ids.count(SEP) == 1 and len(ids) <= max_len
            assert seg["token_type_ids"] == [0] * len(ids) and "next_sentence_label" not in seg
        body = [s["input_ids"][1:-1] for s in segs]
        assert [t for b in body for t in b] == [t for s in doc for t in s], "not the document's text in order"
        # each segment but the last is full: the next sentence (or piece) would not have fitted
        for this, nxt in itertools.pairwise(body):
            assert len(this) + len(nxt) > max_len - 2 or len(this) == max_len - 2
    segs = create_segment_instances(docs, max_len, random.Random(1), CLS, SEP, short_seq_prob=0.0)
    mean = sum(len(s["input_ids"]) for s in segs) / len(segs)
    assert mean > 0.6 * max_len, mean


def test_segment_pairs_split_whole_sentences_into_a_and_b_with_types_0_then_1() -> None:
    rng = random.Random(5)
    docs = [[[1000 + 100 * d + s] * rng.randint(1, 9) for s in range(rng.randint(1, 7))] for d in range(40)]
    docs[0].append([77] * 40)  # cut into pieces: a piece has no sentence boundary, so it stays one segment
    max_len, paired = 23, 0
    for doc in docs:
        segs = create_segments_from_document(doc, max_len, random.Random(1), CLS, SEP, 0.0, pairs=True)
        text = []
        for seg in segs:
            ids, types = seg["input_ids"], seg["token_type_ids"]
            assert ids[0] == CLS and ids[-1] == SEP and len(ids) <= max_len and len(types) == len(ids)
            if ids.count(SEP) == 2:
                paired += 1
                mid = ids.index(SEP)
                a, b = ids[1:mid], ids[mid + 1 : -1]
                assert a and b and types == [0] * (mid + 1) + [1] * (len(b) + 1)
                assert a[-1] != b[0], (
                    "A|B must fall on a sentence boundary (each sentence is one repeated id)"
                )
                text += a + b
            else:
                assert ids.count(SEP) == 1 and types == [0] * len(ids)
                text += ids[1:-1]
        assert text == [t for s in doc for t in s], "not the document's text in order"
    assert paired > 20
    for length, pairs, least in ((2, False, 3), (3, True, 4)):
        with pytest.raises(ValueError, match=rf"max_seq_length={length} leaves no room.*use >= {least}$"):
            create_segments_from_document([[5, 6]], length, random.Random(1), CLS, SEP, pairs=pairs)
    with pytest.raises(DataConfigError, match=r"data\.segment_pairs=true is for MLM-only data"):
        PretrainDataModule(nsp=True, segment_pairs=True)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_no_nsp_datamodule_batches_and_cache_key(minilm_dir: Path, tmp_path: Path) -> None:
    kw = dict(tokenizer=str(minilm_dir), cache_dir=tmp_path, max_train_examples=30, val_docs=4)
    dm = PretrainDataModule(nsp=False, max_seq_length=48, short_seq_prob=0.0, batch_size=8, **kw)
    assert "nsp" not in PretrainDataModule(**kw)._settings(), "MLM + NSP cache keys must stay as they were"
    assert dm._data_dir("c", dm.tokenizer) != PretrainDataModule(max_seq_length=48, **kw)._data_dir(
        "c", dm.tokenizer
    )
    dm.setup("fit")
    sep = dm.tokenizer.token_to_id("[SEP]")
    lengths = []
    for batch in [*dm.train_dataloader(), *dm.val_dataloader()]:
        assert "next_sentence_label" not in batch and not batch["token_type_ids"].any()
        assert ((batch["input_ids"] == sep).sum(1) == 1).all()
        lengths += batch["attention_mask"].sum(1).tolist()
    assert max(lengths) == 48 and sum(lengths) / len(lengths) > 0.6 * 48
    pairs = PretrainDataModule(nsp=False, segment_pairs=True, max_seq_length=48, short_seq_prob=0.0, **kw)
    assert "segment_pairs" not in dm._settings(), "MLM-only cache keys without pairs must stay as they were"
    assert pairs._data_dir("c", dm.tokenizer) != dm._data_dir("c", dm.tokenizer)
    pairs.setup("fit")
    batch = next(iter(pairs.train_dataloader()))
    two = (batch["input_ids"] == sep).sum(1) == 2
    assert two.any() and batch["token_type_ids"][two].any(1).all() and not batch["token_type_ids"][~two].any()


@pytest.mark.parametrize("mix", TABLE8)
def test_table8_masking_mix_rates(mix: str, minilm_dir: Path, tmp_path: Path) -> None:
    """The DataModule's collator selects 15% of tokens and of those replaces MASK/SAME/RND as the mix says,
    within 5 binomial standard deviations (plus one token: a random id may equal the original)."""
    mask_p, rnd_p = TABLE8[mix]
    dm = PretrainDataModule(
        tokenizer=str(minilm_dir), cache_dir=tmp_path, mask_token_prob=mask_p, random_token_prob=rnd_p
    )
    collator = dm.collator()
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(1000, 30000, (96, 127), generator=g)
    ids[:, 0], ids[:, -1] = dm.tokenizer.token_to_id("[CLS]"), dm.tokenizer.token_to_id("[SEP]")
    examples = [{"input_ids": row.tolist(), "token_type_ids": [0] * len(row)} for row in ids]
    batch = collator.mask_batch(collator.pad(examples), torch.Generator().manual_seed(7))
    selected = batch["mlm_labels"] != -100
    assert (batch["mlm_labels"][selected] == ids[selected]).all()
    assert not selected[:, [0, -1]].any(), "special tokens were selected"

    def close(count: int, n: int, p: float) -> bool:
        return abs(count / n - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1 / n

    n_tokens, n_sel = ids[:, 1:-1].numel(), int(selected.sum())
    assert close(n_sel, n_tokens, 0.15), n_sel / n_tokens
    out = batch["input_ids"][selected]
    is_mask = out == dm.tokenizer.token_to_id("[MASK]")
    same = out == ids[selected]
    rates = {
        "MASK": (mask_p, is_mask),
        "SAME": (round(1 - mask_p - rnd_p, 9), same),
        "RND": (rnd_p, ~is_mask & ~same),
    }
    for name, (p, hits) in rates.items():
        assert close(int(hits.sum()), n_sel, p), (mix, name, int(hits.sum()) / n_sel, p)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_no_nsp_pretraining_runs_and_exports_a_masked_lm(minilm_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    metrics = main(compose_cfg(tiny_pretraining_run("pretrain_mlm", minilm_dir / "vocab.txt"), run))
    assert {"val/mlm_loss", "val/mlm_acc", "val/perplexity"} <= metrics.keys()
    assert not [k for k in metrics if "nsp" in k], metrics
    header = next(csv.reader((next(run.glob("csv/version_*")) / "metrics.csv").open()))
    assert "train/mlm_loss" in header and not [k for k in header if "nsp" in k], header
    config = json.loads((run / "export" / "config.json").read_text())
    assert config["architectures"] == ["BertForMaskedLM"]
    ref = transformers.BertForMaskedLM.from_pretrained(run / "export").eval()
    ours = BertForMaskedLM.from_pretrained(str(run / "export")).eval()
    ids = torch.tensor([[101, 1996, 2314, 103, 2167, 102]])
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), ref(input_ids=ids).logits, atol=1e-5, rtol=1e-4)


def test_mlm_only_model_starts_from_an_mlm_nsp_checkpoint(tmp_path: Path) -> None:
    """A BERT checkpoint with its NSP head loads into the No NSP model: the NSP classifier is dropped by
    name, every other weight (MLM head included) is copied."""
    from bertlab.model.checkpoint import load_checkpoint
    from bertlab.model.config import BertConfig
    from bertlab.model.heads import BertForPreTraining

    config = BertConfig.from_dict(dict(TINY))
    full = BertForPreTraining(config)
    full.save_pretrained(tmp_path / "bert")
    mlm = BertForMaskedLM(config)
    load_checkpoint(mlm, tmp_path / "bert")
    for name, value in mlm.state_dict().items():
        assert torch.equal(value, full.state_dict()[name]), name
