"""Masked-language-model corruption (BERT's 80/10/10 rule) as pure tensor functions, and the batch collator.

Selection is a Bernoulli(`mlm_probability`) draw per token, as transformers' collator does, rather than
the original's exact `round(0.15 * n)` positions per sequence: the expected rate is the same, it needs no
per-sequence loop, and short sequences are not forced to have a masked token. Special tokens and padding
are never selected; the collator counts [UNK] among them (as transformers does; the original could mask
it), since predicting [UNK] teaches nothing. Of the selected tokens, `mask_token_prob` become [MASK],
`random_token_prob` a random non-special token, and the rest stay unchanged; `mlm_labels` hold the
original id there and -100 elsewhere.

With whole-word masking the draw is made once per word (a word = a piece plus its `##` continuations), so
all its pieces are selected together; the 80/10/10 choice stays per piece, as in the original release.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from bertlab.data.errors import DataConfigError

IGNORE_INDEX = -100  # positions the MLM loss skips (torch cross_entropy's default ignore_index)


def check_probabilities(**named: float) -> None:
    """Raise DataConfigError naming the first of `named` (option name -> value) outside [0, 1]."""
    for name, p in named.items():
        if not 0.0 <= p <= 1.0:
            raise DataConfigError(f"data.{name}={p} must lie in [0, 1]")


def check_masking(mlm_probability: float, mask_token_prob: float, random_token_prob: float) -> None:
    """Raise DataConfigError for probabilities outside [0, 1] or a [MASK] + random share above 1."""
    check_probabilities(
        mlm_probability=mlm_probability, mask_token_prob=mask_token_prob, random_token_prob=random_token_prob
    )
    if mask_token_prob + random_token_prob > 1.0 + 1e-9:
        raise DataConfigError(
            f"data.mask_token_prob + data.random_token_prob = {mask_token_prob + random_token_prob} exceeds 1"
        )


EVAL_MASKING_KEYS = ("mlm_probability", "mask_token_prob", "random_token_prob")


def check_eval_masking(eval_masking: Mapping[str, Any] | None) -> dict[str, float] | None:
    """`data.eval_masking` as a plain dict of the three probabilities (None: mask as training does)."""
    if eval_masking is None:
        return None
    given = dict(eval_masking)
    unknown = sorted(set(given) - set(EVAL_MASKING_KEYS))
    missing = [k for k in EVAL_MASKING_KEYS if k not in given]
    if unknown or missing:
        raise DataConfigError(
            f"data.eval_masking: unknown {unknown or 'none'}, missing {missing or 'none'}; give exactly "
            f"{', '.join(EVAL_MASKING_KEYS)} (the paper's: 0.15, 0.8, 0.1), or null to mask as training"
        )
    try:
        check_masking(*(float(given[k]) for k in EVAL_MASKING_KEYS))
    except DataConfigError as err:
        raise DataConfigError(f"data.eval_masking: {str(err).replace('data.', '')}") from None
    return {k: float(given[k]) for k in EVAL_MASKING_KEYS}


def word_ids_from_pieces(input_ids: Tensor, is_continuation: Tensor, special_mask: Tensor) -> Tensor:
    """Word index of every token (B, T) long, -1 on special/pad tokens; `##` pieces share their word's index.

    `is_continuation` is a (V,) bool table, True for `##` pieces. A continuation right after a special token
    (a segment truncated mid-word) starts a new word rather than joining the previous segment's last word.
    """
    cont = is_continuation[input_ids] & ~special_mask
    prev_special = torch.ones_like(special_mask)
    prev_special[:, 1:] = special_mask[:, :-1]
    starts = ~special_mask & (~cont | prev_special)
    word_ids = starts.long().cumsum(dim=1) - 1
    return word_ids.masked_fill(special_mask, -1)


def mask_tokens(
    input_ids: Tensor,
    special_mask: Tensor,
    vocab_size: int,
    mask_id: int,
    generator: torch.Generator,
    mlm_probability: float = 0.15,
    mask_token_prob: float = 0.8,
    random_token_prob: float = 0.1,
    word_ids: Tensor | None = None,
    special_ids: Sequence[int] = (),
) -> tuple[Tensor, Tensor]:
    """Corrupt `input_ids` (B, T) for MLM; return (masked_input_ids (B, T), labels (B, T), -100 unselected).

    `special_mask` (B, T) bool marks [CLS]/[SEP]/[PAD] (never selected). `word_ids` (B, T) long, from
    `word_ids_from_pieces`, turns on whole-word masking. Random replacements are drawn uniformly from the
    vocabulary without `special_ids` and `mask_id`.
    """
    check_masking(mlm_probability, mask_token_prob, random_token_prob)
    if input_ids.shape != special_mask.shape:
        raise ValueError(
            f"input_ids {tuple(input_ids.shape)} and special_mask {tuple(special_mask.shape)} differ"
        )
    batch, length = input_ids.shape
    special_mask = special_mask.bool()
    draw = torch.rand(batch, length, generator=generator)
    if word_ids is None:
        selected = draw < mlm_probability
    else:
        # one draw per word: word w of row b uses draw[b, w] (word indices are < T)
        selected = (draw < mlm_probability).gather(1, word_ids.clamp(min=0)) & (word_ids >= 0)
    selected &= ~special_mask
    labels = input_ids.masked_fill(~selected, IGNORE_INDEX)

    action = torch.rand(batch, length, generator=generator)
    to_mask = selected & (action < mask_token_prob)
    to_random = selected & (action >= mask_token_prob) & (action < mask_token_prob + random_token_prob)
    allowed = torch.ones(vocab_size, dtype=torch.bool)
    allowed[[mask_id, *special_ids]] = False
    candidates = allowed.nonzero().squeeze(1)
    random_ids = candidates[torch.randint(len(candidates), (batch, length), generator=generator)]

    masked = input_ids.masked_fill(to_mask, mask_id)
    masked = torch.where(to_random, random_ids.to(input_ids.dtype), masked)
    return masked, labels


def pad_sequences(seqs: Sequence[Sequence[int]], pad_value: int, dtype: torch.dtype = torch.long) -> Tensor:
    """Right-pad variable-length sequences to the longest: (B, T)."""
    length = max((len(s) for s in seqs), default=0)
    out = torch.full((len(seqs), length), pad_value, dtype=dtype)
    for i, s in enumerate(seqs):
        if len(s):
            out[i, : len(s)] = torch.as_tensor(s, dtype=dtype)
    return out


class MaskingCollator:
    """Pad pre-training instances to the longest in the batch and apply dynamic MLM masking.

    Each example holds `input_ids`, `token_type_ids` and `next_sentence_label`; one that also holds
    `mlm_labels` was masked statically at preprocessing and is only padded. Called as a whole, it pads
    and masks with its own generator, seeded with `seed` in the main process, and in a DataLoader worker
    with the worker's seed. Pre-training's training loader instead calls `pad` in the workers and
    `mask_batch` in the main process with the DataModule's generator, whose state the checkpoint keeps:
    a resumed run then draws the masks an uninterrupted one would (`PretrainDataModule.make_loader`).
    Returns `input_ids`, `token_type_ids`, `attention_mask`, `mlm_labels` (B, T) long and
    `next_sentence_label` (B,) long (only when the instances have it: MLM-only ones do not).
    """

    def __init__(
        self,
        pad_id: int,
        mask_id: int,
        vocab_size: int,
        special_ids: Sequence[int],
        mlm_probability: float = 0.15,
        mask_token_prob: float = 0.8,
        random_token_prob: float = 0.1,
        is_continuation: Tensor | None = None,
        seed: int = 0,
    ) -> None:
        check_masking(mlm_probability, mask_token_prob, random_token_prob)
        self.pad_id, self.mask_id, self.vocab_size = pad_id, mask_id, vocab_size
        self.special_ids = sorted({pad_id, mask_id, *special_ids})
        self.mlm_probability, self.mask_token_prob = mlm_probability, mask_token_prob
        self.random_token_prob = random_token_prob
        self.is_continuation = is_continuation  # (V,) bool; set for whole-word masking
        self.seed = seed
        self._generator: torch.Generator | None = None
        self._generator_key: int | None = None

    def generator(self) -> torch.Generator:
        """The masking RNG of this process: seeded once per DataLoader worker (per epoch) or main process."""
        info = torch.utils.data.get_worker_info()
        key = self.seed if info is None else info.seed
        if self._generator is None or self._generator_key != key:
            self._generator = torch.Generator().manual_seed(key)
            self._generator_key = key
        return self._generator

    def special_mask(self, input_ids: Tensor) -> Tensor:
        """(B, T) bool: True on special tokens and padding."""
        return torch.isin(input_ids, torch.tensor(self.special_ids, dtype=input_ids.dtype))

    def mask(self, input_ids: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Masked ids and labels for a padded (B, T) batch, with this collator's settings."""
        special = self.special_mask(input_ids)
        word_ids = None
        if self.is_continuation is not None:
            word_ids = word_ids_from_pieces(input_ids, self.is_continuation, special)
        return mask_tokens(
            input_ids,
            special,
            self.vocab_size,
            self.mask_id,
            generator or self.generator(),
            self.mlm_probability,
            self.mask_token_prob,
            self.random_token_prob,
            word_ids,
            self.special_ids,
        )

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, Tensor]:
        """Collate a list of instances into the batch dict described in the class docstring."""
        return self.mask_batch(self.pad(examples))

    def pad(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, Tensor]:
        """The padded batch, unmasked: `mlm_labels` only when the instances carry static masks."""
        input_ids = pad_sequences([e["input_ids"] for e in examples], self.pad_id)
        lengths = torch.tensor([len(e["input_ids"]) for e in examples])
        batch = {
            "input_ids": input_ids,
            "token_type_ids": pad_sequences([e["token_type_ids"] for e in examples], 0),
            "attention_mask": (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long(),
        }
        if "next_sentence_label" in examples[0]:  # MLM-only instances (data.nsp=false) have none
            batch["next_sentence_label"] = torch.tensor([int(e["next_sentence_label"]) for e in examples])
        if "mlm_labels" in examples[0]:
            batch["mlm_labels"] = pad_sequences([e["mlm_labels"] for e in examples], IGNORE_INDEX)
        return batch

    def mask_batch(
        self, batch: Mapping[str, Tensor], generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """A padded batch from `pad` with dynamic masks drawn from `generator` (default: this collator's
        own); a batch that carries static `mlm_labels` is returned as it is."""
        out = dict(batch)
        if "mlm_labels" not in out:
            out["input_ids"], out["mlm_labels"] = self.mask(out["input_ids"], generator)
        order = ("input_ids", "token_type_ids", "attention_mask", "mlm_labels", "next_sentence_label")
        return {key: out[key] for key in order if key in out}
