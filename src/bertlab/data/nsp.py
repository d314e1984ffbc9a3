"""Next-sentence-prediction instances from tokenised documents: pure functions, no I/O.

Instance creation follows google-research/bert `create_pretraining_data.py`: a document's sentences are
gathered into chunks of whole sentences up to a target length (`max_seq_length - 3`, or with probability
`short_seq_prob` a random length in [2, max]); A is a random-length prefix of the chunk; B is the rest of
the chunk (IsNext) or, with probability `nsp_prob`, text from a random other document (NotNext), and then
the unused segments are put back; the longer of A and B is trimmed from a random end until the pair fits.
Labels use transformers' convention: `next_sentence_label` 0 = IsNext, 1 = NotNext.

Without NSP (the paper's Table 5 "No NSP" ablation), `create_segment_instances` packs each document's
contiguous sentences into one segment `[CLS] text [SEP]` filling the length: RoBERTa's DOC-SENTENCES
(segments never cross a document boundary, no random next sentence, token types all 0, no label).

Where we differ from the original, on purpose: the original forces a random B whenever a chunk holds a
single segment (a document's leftover last sentence, or one sentence longer than the target): on 8000
documents of the development Wikipedia dump at length 128 that gives 43% IsNext, not 50%. Here a chunk
closes only once it holds two segments, a lone last sentence joins the chunk before it, and a put-back
that would leave only that lone sentence drops it; so the label is an exact Bernoulli(`nsp_prob`) draw
(50.1% IsNext on the same documents, with 12% fewer, fuller instances).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypedDict

IS_NEXT, NOT_NEXT = 0, 1


class Instance(TypedDict):
    """One pre-training example before padding: `[CLS] A [SEP] B [SEP]` ids, token types and NSP label."""

    input_ids: list[int]
    token_type_ids: list[int]
    next_sentence_label: int


def truncate_seq_pair(
    tokens_a: list[int], tokens_b: list[int], max_num_tokens: int, rng: random.Random
) -> None:
    """Trim the longer of A and B in place, one token from a random end at a time, until both fit."""
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        trunc = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        # a random end, so the model does not learn that sequences are always cut at the back
        if rng.random() < 0.5:
            del trunc[0]
        else:
            trunc.pop()


def make_instance(
    tokens_a: Sequence[int], tokens_b: Sequence[int], label: int, cls_id: int, sep_id: int
) -> Instance:
    """`[CLS] A [SEP] B [SEP]` with token types 0 for [CLS] A [SEP] and 1 for B [SEP]."""
    input_ids = [cls_id, *tokens_a, sep_id, *tokens_b, sep_id]
    token_type_ids = [0] * (len(tokens_a) + 2) + [1] * (len(tokens_b) + 1)
    return {"input_ids": input_ids, "token_type_ids": token_type_ids, "next_sentence_label": label}


def create_instances_from_document(
    all_documents: Sequence[Sequence[Sequence[int]]],
    document_index: int,
    max_seq_length: int,
    rng: random.Random,
    cls_id: int,
    sep_id: int,
    short_seq_prob: float = 0.1,
    nsp_prob: float = 0.5,
) -> list[Instance]:
    """NSP instances from one document (a list of token-id sentences); random B from the other documents."""
    if max_seq_length < 5:
        raise ValueError(
            f"max_seq_length={max_seq_length} leaves no room for [CLS] A [SEP] B [SEP]; use >= 5"
        )
    document = all_documents[document_index]
    n = len(document)
    max_num_tokens = max_seq_length - 3
    # Usually fill the whole sequence; sometimes a shorter one, so fine-tuning on short inputs is not new.
    target = max_num_tokens
    if rng.random() < short_seq_prob:
        target = rng.randint(2, max_num_tokens)

    instances: list[Instance] = []
    chunk: list[Sequence[int]] = []
    length = 0
    i = 0
    while i < n:
        chunk.append(document[i])
        length += len(document[i])
        last = i == n - 1
        if last or (length >= target and len(chunk) >= 2 and n - i - 1 != 1):
            a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
            tokens_a = [t for seg in chunk[:a_end] for t in seg]
            tokens_b: list[int] = []
            has_other = len(all_documents) > 1
            random_next = has_other and (len(chunk) == 1 or rng.random() < nsp_prob)
            if random_next:
                other = rng.randrange(len(all_documents) - 1)
                other += other >= document_index  # skip this document itself
                random_doc = all_documents[other]
                target_b = target - len(tokens_a)
                for seg in random_doc[rng.randrange(len(random_doc)) :]:
                    tokens_b.extend(seg)
                    if len(tokens_b) >= target_b:
                        break
                unused = len(chunk) - a_end
                # Put the unused segments back for the next chunk, unless that is one lone last segment
                # (it could only make a forced-NotNext pair, which would bias the labels).
                if unused and not (last and unused == 1):
                    i -= unused
            else:
                tokens_b = [t for seg in chunk[a_end:] for t in seg]
            if tokens_a and tokens_b:
                truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
                instances.append(
                    make_instance(tokens_a, tokens_b, NOT_NEXT if random_next else IS_NEXT, cls_id, sep_id)
                )
            chunk, length = [], 0
        i += 1
    return instances


class Segment(TypedDict):
    """One MLM-only example before padding: `[CLS] text [SEP]` ids and its token types (all 0)."""

    input_ids: list[int]
    token_type_ids: list[int]


def create_segments_from_document(
    document: Sequence[Sequence[int]],
    max_seq_length: int,
    rng: random.Random,
    cls_id: int,
    sep_id: int,
    short_seq_prob: float = 0.1,
    pairs: bool = False,
) -> list[Segment]:
    """DOC-SENTENCES segments of one document: whole contiguous sentences packed up to the target length
    (`max_seq_length - 2`, or with probability `short_seq_prob` a random shorter one, drawn per segment as
    the NSP path draws it per chunk); a sentence longer than the target is cut into target-sized pieces.

    `pairs`: a segment of two or more sentences is split at a random sentence boundary into
    `[CLS] A [SEP] B [SEP]` (token types 0 then 1; target `max_seq_length - 3`), B always A's continuation
    and no NSP label. Fine-tuning's sentence pairs then meet a trained segment-B embedding and a [SEP] in the
    middle instead of ones pre-training never touched."""
    if max_seq_length < 3 + pairs:
        least = 3 + pairs
        raise ValueError(
            f"max_seq_length={max_seq_length} leaves no room for [CLS] text [SEP]; use >= {least}"
        )
    max_num_tokens = max_seq_length - 2 - pairs

    def draw_target() -> int:
        short = rng.random() < short_seq_prob
        return rng.randint(1, max_num_tokens) if short and max_num_tokens > 1 else max_num_tokens

    out: list[Segment] = []
    tokens: list[int] = []
    starts: list[int] = []  # where each later whole sentence begins in `tokens`: the candidate A|B splits
    target = draw_target()

    def close() -> None:
        nonlocal tokens, starts, target
        if tokens and pairs and starts:
            cut = rng.choice(starts)  # B is A's continuation; the NSP label is dropped
            pair = make_instance(tokens[:cut], tokens[cut:], IS_NEXT, cls_id, sep_id)
            out.append({"input_ids": pair["input_ids"], "token_type_ids": pair["token_type_ids"]})
        elif tokens:
            out.append({"input_ids": [cls_id, *tokens, sep_id], "token_type_ids": [0] * (len(tokens) + 2)})
        tokens, starts, target = [], [], draw_target()

    for sentence in document:
        if tokens and len(tokens) + len(sentence) > target:
            close()  # whole sentences: the next one starts a new segment
        if tokens and sentence:
            starts.append(len(tokens))
        rest = list(sentence)
        while len(rest) > target - len(tokens):  # a sentence too long for a whole segment: cut it
            cut = target - len(tokens)
            tokens.extend(rest[:cut])
            rest = rest[cut:]
            close()
        tokens.extend(rest)
    close()
    return out


def create_segment_instances(
    all_documents: Sequence[Sequence[Sequence[int]]],
    max_seq_length: int,
    rng: random.Random,
    cls_id: int,
    sep_id: int,
    short_seq_prob: float = 0.1,
    dupe_factor: int = 1,
    pairs: bool = False,
) -> list[Segment]:
    """MLM-only segments of every document, `dupe_factor` passes (different short targets), shuffled."""
    segments: list[Segment] = []
    for _ in range(dupe_factor):
        for document in all_documents:
            segments.extend(
                create_segments_from_document(
                    document, max_seq_length, rng, cls_id, sep_id, short_seq_prob, pairs
                )
            )
    rng.shuffle(segments)
    return segments


def create_instances(
    all_documents: Sequence[Sequence[Sequence[int]]],
    max_seq_length: int,
    rng: random.Random,
    cls_id: int,
    sep_id: int,
    short_seq_prob: float = 0.1,
    nsp_prob: float = 0.5,
    dupe_factor: int = 1,
) -> list[Instance]:
    """Instances of every document, `dupe_factor` passes (each segmented differently), shuffled."""
    instances: list[Instance] = []
    for _ in range(dupe_factor):
        for index in range(len(all_documents)):
            instances.extend(
                create_instances_from_document(
                    all_documents, index, max_seq_length, rng, cls_id, sep_id, short_seq_prob, nsp_prob
                )
            )
    rng.shuffle(instances)
    return instances


__all__ = [
    "IS_NEXT",
    "NOT_NEXT",
    "Instance",
    "Segment",
    "create_instances",
    "create_instances_from_document",
    "create_segment_instances",
    "create_segments_from_document",
    "make_instance",
    "truncate_seq_pair",
]
