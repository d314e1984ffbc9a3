"""MLM masking statistics (15% selected, 80/10/10), special tokens and padding, whole words, the collator."""

from __future__ import annotations

import pytest
import torch

from bertlab.data.masking import IGNORE_INDEX, MaskingCollator, mask_tokens, word_ids_from_pieces

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIALS = [PAD, UNK, CLS, SEP, MASK]
VOCAB = 997


def _batch(rows: int = 600, length: int = 300, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded `[CLS] A [SEP] B [SEP] [PAD]...` rows of random lengths: ids (B, T) and special mask (B, T)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (rows, length), generator=g)
    lengths = torch.randint(length // 2, length + 1, (rows,), generator=g)
    for r, n in enumerate(lengths.tolist()):
        ids[r, 0], ids[r, n // 2], ids[r, n - 1] = CLS, SEP, SEP
        ids[r, n:] = PAD
    return ids, torch.isin(ids, torch.tensor(SPECIALS))


def test_masking_statistics() -> None:
    ids, special = _batch()
    masked, labels = mask_tokens(
        ids, special, VOCAB, MASK, torch.Generator().manual_seed(0), special_ids=SPECIALS
    )
    candidates = ~special
    assert candidates.sum() > 100_000
    selected = labels != IGNORE_INDEX
    rate = selected.sum() / candidates.sum()
    assert abs(rate - 0.15) < 0.005, rate
    assert not (selected & special).any(), "special tokens and padding are never selected"
    assert torch.equal(labels[selected], ids[selected]), "labels hold the original ids"
    assert (labels[~selected] == IGNORE_INDEX).all()
    assert torch.equal(masked[~selected], ids[~selected]), "unselected tokens are unchanged"

    n = selected.sum()
    to_mask = (masked == MASK) & selected
    changed = (masked != ids) & selected & ~to_mask
    kept = (masked == ids) & selected
    assert abs(to_mask.sum() / n - 0.8) < 0.01
    assert abs(changed.sum() / n - 0.1) < 0.01
    assert abs(kept.sum() / n - 0.1) < 0.01
    assert not torch.isin(masked[changed], torch.tensor(SPECIALS)).any(), "random ids are never special"
    assert masked[changed].unique().numel() > 0.8 * (VOCAB - 5), "random ids span the vocabulary"


def test_masking_is_seeded() -> None:
    ids, special = _batch(rows=8, length=50)
    a = mask_tokens(ids, special, VOCAB, MASK, torch.Generator().manual_seed(3))
    b = mask_tokens(ids, special, VOCAB, MASK, torch.Generator().manual_seed(3))
    c = mask_tokens(ids, special, VOCAB, MASK, torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_custom_probabilities_and_validation() -> None:
    ids, special = _batch(rows=100, length=200)
    masked, labels = mask_tokens(
        ids,
        special,
        VOCAB,
        MASK,
        torch.Generator().manual_seed(0),
        mlm_probability=0.4,
        mask_token_prob=1.0,
        random_token_prob=0.0,
    )
    selected = labels != IGNORE_INDEX
    assert abs(selected.sum() / (~special).sum() - 0.4) < 0.01
    assert (masked[selected] == MASK).all()
    with pytest.raises(ValueError, match="exceeds 1"):
        mask_tokens(ids, special, VOCAB, MASK, torch.Generator(), mask_token_prob=0.9, random_token_prob=0.2)
    with pytest.raises(ValueError, match="mlm_probability"):
        mask_tokens(ids, special, VOCAB, MASK, torch.Generator(), mlm_probability=1.5)


def _wordpiece_batch(rows: int = 200, length: int = 120) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ids (500-996 are `##` pieces, words of 1-4 pieces), special mask and continuation table."""
    is_cont = torch.zeros(VOCAB, dtype=torch.bool)
    is_cont[500:] = True
    g = torch.Generator().manual_seed(2)
    ids = torch.full((rows, length), PAD)
    for r in range(rows):
        row = [CLS]
        while len(row) < length - 8:
            pieces = int(torch.randint(1, 5, (1,), generator=g))
            row += [int(torch.randint(5, 500, (1,), generator=g))]
            row += torch.randint(500, VOCAB, (pieces - 1,), generator=g).tolist()
            if len(row) > length // 2 and SEP not in row:
                row.append(SEP)
        row.append(SEP)
        ids[r, : len(row)] = torch.tensor(row)
    return ids, torch.isin(ids, torch.tensor(SPECIALS)), is_cont


def test_word_ids_from_pieces() -> None:
    is_cont = torch.zeros(20, dtype=torch.bool)
    is_cont[10:] = True
    ids = torch.tensor([[CLS, 5, 10, 11, 6, SEP, 12, 7, 13, SEP, PAD]])
    special = torch.isin(ids, torch.tensor(SPECIALS))
    # a "##" piece right after [SEP] (B truncated mid-word) starts its own word
    assert word_ids_from_pieces(ids, is_cont, special).tolist() == [[-1, 0, 0, 0, 1, -1, 2, 3, 3, -1, -1]]


@pytest.mark.parametrize("whole_word", [True, False])
def test_whole_word_masking_selects_whole_words(whole_word: bool) -> None:
    ids, special, is_cont = _wordpiece_batch()
    word_ids = word_ids_from_pieces(ids, is_cont, special)
    _, labels = mask_tokens(
        ids, special, VOCAB, MASK, torch.Generator().manual_seed(0), word_ids=word_ids if whole_word else None
    )
    selected = labels != IGNORE_INDEX
    assert not (selected & special).any()
    partial = words = picked = 0
    for r in range(ids.shape[0]):
        for w in range(int(word_ids[r].max()) + 1):
            sel = selected[r][word_ids[r] == w]
            words += 1
            picked += bool(sel.all())
            partial += bool(sel.any() and not sel.all())
    assert words > 5000
    if whole_word:
        assert partial == 0, "every piece of a selected word is selected"
        assert abs(picked / words - 0.15) < 0.015
    else:
        assert partial > 100, "token-level masking splits words (the check above can fail)"


def _examples() -> list[dict[str, list[int] | int]]:
    return [
        {
            "input_ids": [CLS, *range(10, 30), SEP, *range(40, 50), SEP],
            "token_type_ids": [0] * 22 + [1] * 11,
            "next_sentence_label": 0,
        },
        {
            "input_ids": [CLS, 7, 8, SEP, 9, SEP],
            "token_type_ids": [0, 0, 0, 0, 1, 1],
            "next_sentence_label": 1,
        },
    ]


def test_collator_pads_and_masks() -> None:
    collate = MaskingCollator(PAD, MASK, VOCAB, SPECIALS, seed=0)
    batch = collate(_examples())
    assert set(batch) == {
        "input_ids",
        "token_type_ids",
        "attention_mask",
        "mlm_labels",
        "next_sentence_label",
    }
    for key in ("input_ids", "token_type_ids", "attention_mask", "mlm_labels"):
        assert batch[key].shape == (2, 33) and batch[key].dtype == torch.long, key
    assert (
        batch["next_sentence_label"].tolist() == [0, 1] and batch["next_sentence_label"].dtype == torch.long
    )
    assert batch["attention_mask"].sum(1).tolist() == [33, 6]
    assert (batch["input_ids"][1, 6:] == PAD).all() and (batch["token_type_ids"][1, 6:] == 0).all()
    assert (batch["mlm_labels"][1, 6:] == IGNORE_INDEX).all()
    assert batch["token_type_ids"][0].tolist() == [0] * 22 + [1] * 11

    # dynamic: the next call masks differently; a fresh collator with the same seed repeats the first masks
    many = _examples() * 50
    first, second = collate(many), collate(many)
    again = MaskingCollator(PAD, MASK, VOCAB, SPECIALS, seed=0)
    again(_examples())
    assert not torch.equal(first["mlm_labels"], second["mlm_labels"])
    assert torch.equal(again(many)["mlm_labels"], first["mlm_labels"])


def test_collator_keeps_static_masks() -> None:
    examples = _examples()
    for e in examples:
        e["mlm_labels"] = [IGNORE_INDEX] * len(e["input_ids"])  # type: ignore[arg-type]
    examples[1]["mlm_labels"] = [IGNORE_INDEX, 7, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]
    batch = MaskingCollator(PAD, MASK, VOCAB, SPECIALS)(examples)
    assert batch["input_ids"][1, :6].tolist() == [CLS, 7, 8, SEP, 9, SEP], "already masked: left alone"
    assert batch["mlm_labels"][1].tolist() == [IGNORE_INDEX, 7] + [IGNORE_INDEX] * 31
