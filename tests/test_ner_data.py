"""CoNLL-2003 reading, sub-token label alignment, windows, document context and the NER DataModule."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer

from bertlab.data.conll import CONLL_TYPES, LABEL_NAMES, Sentence, convert_tags, load_hub_conll, read_conll
from bertlab.data.errors import DataError
from bertlab.data.ner import (
    IGNORE_INDEX,
    NERDataModule,
    align_labels,
    build_windows,
    decode_split,
    decode_windows,
    gold_tags,
    word_pieces,
)
from bertlab.data.tokenizer import special_ids
from bertlab.metrics.ner import EntityF1, get_chunks

CLS, SEP, UNK = 101, 102, 100  # bert-base-uncased ids, used where no tokenizer is needed


def _raw_tags(path: Path) -> list[list[str]]:
    """The last column of every sentence, read independently of the module under test."""
    sentences, current = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if not parts or parts[0] == "-DOCSTART-":
            if current:
                sentences.append(current)
            current = []
        else:
            current.append(parts[-1])
    if current:
        sentences.append(current)
    return sentences


@pytest.fixture(scope="module")
def conll(shared_data: Path) -> Path:
    return shared_data / "conll2003"


@pytest.fixture(scope="module")
def testa(conll: Path) -> list[Sentence]:
    return read_conll(conll / "eng.testa")


@pytest.fixture(scope="module")
def testa_windows(testa: list[Sentence], minilm_tokenizer: Tokenizer) -> tuple[list[Sentence], list, list]:
    """Pieces and windows (no document context) of the first 500 eng.testa sentences."""
    sentences = testa[:500]
    pieces = word_pieces(minilm_tokenizer, [s.words for s in sentences])
    windows = build_windows(
        pieces, _label_ids(sentences), None, cls_id=CLS, sep_id=SEP, unk_id=UNK, max_seq_length=128
    )
    return sentences, pieces, windows


def _label_ids(sentences: list[Sentence]) -> list[list[int]]:
    return [[LABEL_NAMES.index(t) for t in s.tags] for s in sentences]


# ---------------------------------------------------------------------------------------------- reader


def test_label_set_is_fixed() -> None:
    assert LABEL_NAMES == ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")


def test_reads_real_files_with_official_counts(conll: Path, testa: list[Sentence]) -> None:
    train = read_conll(conll / "eng.train")
    assert len(train) == 14041 and len(testa) == 3250
    assert len({s.doc for s in train}) == 946 and len({s.doc for s in testa}) == 216
    assert [s.doc for s in train] == sorted(s.doc for s in train)
    first = train[0]
    assert first.words == ("EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", ".")
    assert first.tags == ("B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O")
    assert (first.doc, first.line) == (0, 3)
    assert train[1].words == ("Peter", "Blackburn") and train[1].tags == ("B-PER", "I-PER")
    assert testa[-1].words == ("--", "Dhaka", "Newsroom", "880-2-506363") and testa[-1].doc == 215
    assert sum(len(s.words) for s in train) == 203621  # 204567 four-column lines less 946 -DOCSTART-


def test_iob1_to_iob2_on_real_sentences(conll: Path, testa: list[Sentence]) -> None:
    train = read_conll(conll / "eng.train")
    # eng.train line 1945: "Golan Heights Israel" is I-LOC I-LOC B-LOC in IOB1, two adjacent locations
    golan = next(s for s in train if s.line == 1928)
    assert golan.words[17:20] == ("Golan", "Heights", "Israel")
    assert golan.tags[17:20] == ("B-LOC", "I-LOC", "B-LOC")
    assert golan.tags[7:9] == ("B-PER", "I-PER")  # "Benjamin Netanyahu", I-PER I-PER in the file
    for path, sentences in ((conll / "eng.train", train), (conll / "eng.testa", testa)):
        raw = _raw_tags(path)
        assert len(raw) == len(sentences)
        started = 0
        for got, original in zip(sentences, raw):
            assert get_chunks(got.tags) == get_chunks(original, "IOB1")  # same entities
            for prev, tag in zip(("O", *got.tags), got.tags):  # valid IOB2: I-X only continues X
                assert not tag.startswith("I-") or prev[2:] == tag[2:]
            started += sum(o.startswith("I-") and t.startswith("B-") for o, t in zip(original, got.tags))
        assert started > 1000
    # eng.testa is clean IOB1, so reading it back as IOB1 restores the file exactly
    as_iob1 = read_conll(conll / "eng.testa", scheme="IOB1")
    assert [list(s.tags) for s in as_iob1] == _raw_tags(conll / "eng.testa")


def test_convert_tags_both_ways() -> None:
    iob1 = ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG", "I-ORG"]
    iob2 = ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG", "I-ORG"]
    assert convert_tags(iob1, "IOB2") == iob2
    assert convert_tags(iob2, "IOB1") == iob1
    assert convert_tags(iob2, "IOB2") == iob2
    with pytest.raises(ValueError, match="scheme"):
        convert_tags(iob1, "IOBES")


def _convert_by_chunks(tags: list[str], scheme: str) -> list[str]:
    """The former chunk-based conversion: conlleval's chunks of the tags, written back in `scheme`."""
    out = ["O"] * len(tags)
    prev_end, prev_type = -1, ""
    for kind, start, end in get_chunks(tags, "IOB1"):
        begin = scheme == "IOB2" or (start == prev_end and kind == prev_type)
        out[start] = f"{'B' if begin else 'I'}-{kind}"
        for i in range(start + 1, end):
            out[i] = f"I-{kind}"
        prev_end, prev_type = end, kind
    return out


def test_convert_tags_keeps_conlleval_chunks_on_random_tags() -> None:
    """The per-tag rewrite in data/ equals rewriting metrics' conlleval chunks, in both schemes."""
    rng = random.Random(0)
    pool = ["O", "O", *LABEL_NAMES[1:]]
    for _ in range(3000):
        tags = [rng.choice(pool) for _ in range(rng.randint(0, 12))]
        for scheme in ("IOB1", "IOB2"):
            converted = convert_tags(tags, scheme)
            assert converted == _convert_by_chunks(tags, scheme), (tags, scheme)
            assert get_chunks(converted, scheme) == get_chunks(tags, "IOB1")
    with pytest.raises(ValueError, match="not valid"):
        convert_tags(["O", "S-LOC"])


def test_reads_iob2_files_and_files_without_docstart(tmp_path: Path) -> None:
    path = tmp_path / "bio.txt"
    path.write_text(
        "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\nvisits VBZ B-VP O\nBonn NNP B-NP B-LOC\n\n"
        "Bonn NNP B-NP B-LOC\nCologne NNP I-NP B-LOC\n",
        encoding="utf-8",
    )
    sentences = read_conll(path)
    assert [s.tags for s in sentences] == [("B-PER", "I-PER", "O", "B-LOC"), ("B-LOC", "B-LOC")]
    assert [s.doc for s in sentences] == [0, 0] and [s.line for s in sentences] == [1, 6]
    assert read_conll(path, scheme="IOB1")[1].tags == ("I-LOC", "B-LOC")
    two_columns = tmp_path / "two.txt"
    two_columns.write_text("Paris B-LOC\nis O\n", encoding="utf-8")
    assert read_conll(two_columns, columns=None)[0].tags == ("B-LOC", "O")


def test_bad_files_name_file_and_line(tmp_path: Path) -> None:
    good = "-DOCSTART- -X- O O\n\nEU NNP I-NP I-ORG\nrejects VBZ I-VP O\n\n"
    unknown = tmp_path / "unknown.txt"
    unknown.write_text(good + "Paris NNP I-NP I-GPE\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{unknown}:6: unknown NER tag 'I-GPE'; use one of O, B-PER"):
        read_conll(unknown)
    iobes = tmp_path / "iobes.txt"
    iobes.write_text("Paris NNP I-NP S-LOC\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{iobes}:1: unknown NER tag 'S-LOC'"):
        read_conll(iobes)
    malformed = tmp_path / "malformed.txt"
    malformed.write_text(good + "Paris NNP I-LOC\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{malformed}:6: expected 4 space-separated columns .* found 3"):
        read_conll(malformed)
    with pytest.raises(DataError, match="file not found"):
        read_conll(tmp_path / "absent.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("-DOCSTART- -X- O O\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="no sentences"):
        read_conll(empty)


# ---------------------------------------------------------------------------------------------- alignment


def test_align_labels_first_piece_only() -> None:
    word_ids = [None, 0, 0, 1, None, 2, 2, 2, None]
    assert align_labels(word_ids, [5, 6, 7]) == [-100, 5, -100, 6, -100, 7, -100, -100, -100]


def test_first_sub_token_labelled_on_real_sentences(
    testa_windows: tuple, minilm_tokenizer: Tokenizer
) -> None:
    sentences, pieces, windows = testa_windows
    assert len(windows) == len(sentences)  # every first-500 sentence fits in 128 pieces
    multi_piece = 0
    for sentence, sent_pieces, window in zip(sentences, pieces, windows):
        assert window.input_ids[0] == CLS and window.input_ids[-1] == SEP
        assert window.labels[0] == window.labels[-1] == IGNORE_INDEX
        assert list(window.input_ids[1:-1]) == [p for word in sent_pieces for p in word]
        position = 1
        for word, word_pieces_ in enumerate(sent_pieces):
            assert window.labels[position] == LABEL_NAMES.index(sentence.tags[word])
            assert all(window.labels[position + k] == IGNORE_INDEX for k in range(1, len(word_pieces_)))
            multi_piece += len(word_pieces_) > 1
            position += len(word_pieces_)
    assert multi_piece > 300
    # a concrete case: the date splits into pieces, only the first carries O
    tokens = [minilm_tokenizer.id_to_token(i) for i in windows[1].input_ids]
    assert tokens[:3] == ["[CLS]", "london", "1996"] and tokens[3] == "-"
    assert windows[1].labels[:4] == (IGNORE_INDEX, LABEL_NAMES.index("B-LOC"), 0, IGNORE_INDEX)


def test_round_trip_gold_labels_through_windows(testa_windows: tuple) -> None:
    sentences, _, windows = testa_windows
    decoded = decode_windows(
        [w.labels for w in windows], [w.word_ids for w in windows], [w.sentence for w in windows], LABEL_NAMES
    )
    assert decoded == [list(s.tags) for s in sentences]


def test_zero_piece_words_become_unk(minilm_tokenizer: Tokenizer) -> None:
    words = ["Hello", "\u200b", "world", "\x00", "!"]
    pieces = word_pieces(minilm_tokenizer, [words])
    assert pieces[0][1] == [] and pieces[0][3] == []  # the tokenizer drops them
    (window,) = build_windows(pieces, [[1, 2, 0, 5, 0]], None, cls_id=CLS, sep_id=SEP, unk_id=UNK)
    assert window.input_ids[2] == UNK and window.input_ids[4] == UNK
    assert window.labels == (IGNORE_INDEX, 1, 2, 0, 5, 0, IGNORE_INDEX)
    tags = decode_windows([window.labels], [window.word_ids], [0], LABEL_NAMES)
    assert tags == [["B-PER", "I-PER", "O", "B-LOC", "O"]]


def test_long_sentence_is_split_and_every_word_predicted_once(minilm_tokenizer: Tokenizer) -> None:
    rng = random.Random(0)
    vocab = ["Washington", "said", "the", "unbelievably", "Schwarzenegger", ".", "1996-08-22", "of"]
    words = [rng.choice(vocab) for _ in range(300)]
    labels = [rng.randrange(len(LABEL_NAMES)) for _ in words]
    pieces = word_pieces(minilm_tokenizer, [words])
    total = sum(len(p) for p in pieces[0])
    windows = build_windows(pieces, [labels], None, cls_id=CLS, sep_id=SEP, unk_id=UNK, max_seq_length=32)
    assert len(windows) >= total / 30 and all(w.sentence == 0 for w in windows)
    owned: list[int] = []
    for w in windows:
        assert len(w.input_ids) <= 32 and w.input_ids[0] == CLS and w.input_ids[-1] == SEP
        assert len(w.input_ids) == 32  # room left by the owned span is filled with sentence context
        firsts = [w.word_ids[t] for t in range(len(w.labels)) if w.labels[t] != IGNORE_INDEX]
        owned.extend(firsts)
        assert [w.labels[t] for t in range(len(w.labels)) if w.labels[t] != IGNORE_INDEX] == [
            labels[i] for i in firsts
        ]
    assert owned == list(range(300))  # each word labelled once, in order
    tags = decode_windows(
        [w.labels for w in windows], [w.word_ids for w in windows], [0] * len(windows), LABEL_NAMES
    )
    assert tags == [[LABEL_NAMES[i] for i in labels]]
    # dropping a window leaves words unpredicted, which decoding refuses to hide
    with pytest.raises(ValueError, match="no prediction"):
        decode_windows([windows[0].labels], [windows[0].word_ids], [0], LABEL_NAMES, num_words=[300])


def test_word_longer_than_window_keeps_first_pieces() -> None:
    windows = build_windows(
        [[[7] * 20, [8]]], [[3, 0]], None, cls_id=CLS, sep_id=SEP, unk_id=UNK, max_seq_length=8
    )
    assert [w.input_ids for w in windows] == [(CLS, *[7] * 6, SEP), (CLS, 7, 7, 7, 7, 7, 8, SEP)]
    assert decode_windows(
        [w.labels for w in windows], [w.word_ids for w in windows], [0, 0], LABEL_NAMES
    ) == [["B-ORG", "O"]]


def test_document_context(testa: list[Sentence], testa_windows: tuple) -> None:
    sentences, pieces, plain = testa_windows
    docs = [s.doc for s in sentences]
    windows = build_windows(
        pieces, _label_ids(sentences), docs, cls_id=CLS, sep_id=SEP, unk_id=UNK, document_context=True
    )
    assert len(windows) == len(plain)
    flat = [[piece for word in sentence_pieces for piece in word] for sentence_pieces in pieces]
    doc_first = {d: docs.index(d) for d in set(docs)}
    doc_end = {d: len(docs) - docs[::-1].index(d) for d in set(docs)}
    with_context = 0
    for s, (w, p) in enumerate(zip(windows, plain)):
        owned = [t for t, word in enumerate(w.word_ids) if word is not None]
        first, last = owned[0], owned[-1]
        # the target sentence sits unchanged in the middle; its labels are the plain window's labels
        assert w.input_ids[first : last + 1] == p.input_ids[1:-1]
        assert w.labels[first : last + 1] == p.labels[1:-1]
        assert all(label == IGNORE_INDEX for label in w.labels[:first] + w.labels[last + 1 :])
        assert len(w.input_ids) <= 128 and w.input_ids[0] == CLS and w.input_ids[-1] == SEP
        # left context is the end of the same document's previous sentences, nothing from another document
        before = [piece for i in range(doc_first[docs[s]], s) for piece in flat[i]]
        after = [piece for i in range(s + 1, doc_end[docs[s]]) for piece in flat[i]]
        left, right = first - 1, len(w.input_ids) - 2 - last
        assert list(w.input_ids[1:first]) == before[len(before) - left :]
        assert list(w.input_ids[last + 1 : -1]) == after[:right]
        # centred: the sides differ by at most one piece unless one side ran out of document
        if left < len(before) and right < len(after):
            assert abs(left - right) <= 1 and len(w.input_ids) == 128
            with_context += 1
    assert with_context > 100
    decoded = decode_windows(
        [w.labels for w in windows], [w.word_ids for w in windows], [w.sentence for w in windows], LABEL_NAMES
    )
    assert decoded == [list(s.tags) for s in sentences]


def test_document_context_with_small_windows_round_trips(
    testa: list[Sentence], minilm_tokenizer: Tokenizer
) -> None:
    sentences = testa[:300]
    pieces = word_pieces(minilm_tokenizer, [s.words for s in sentences])
    windows = build_windows(
        pieces,
        _label_ids(sentences),
        [s.doc for s in sentences],
        cls_id=CLS,
        sep_id=SEP,
        unk_id=UNK,
        max_seq_length=24,
        document_context=True,
    )
    assert len(windows) > len(sentences)  # some sentences needed several windows
    decoded = decode_windows(
        [w.labels for w in windows], [w.word_ids for w in windows], [w.sentence for w in windows], LABEL_NAMES
    )
    assert decoded == [list(s.tags) for s in sentences]


# ---------------------------------------------------------------------------------------------- DataModule


def test_datamodule_batches_and_decoding(conll: Path, minilm_dir: Path) -> None:
    dm = NERDataModule(
        val_file=conll / "eng.testa",
        test_file=conll / "eng.testa",
        tokenizer=minilm_dir,
        max_seq_length=16,  # small, so some sentences span several windows
        eval_batch_size=8,
        max_eval_examples=200,
    )
    num_labels = len(dm.label_names)
    assert num_labels == 9 and dm.label_names == list(LABEL_NAMES)
    dm.setup("validate")
    val = dm.split("val")
    assert len(val.examples) == 200 and len(val.features) > 200
    assert "test" not in dm.splits  # validate reads the val split only
    with pytest.raises(DataError, match="no test data"):
        NERDataModule(val_file=conll / "eng.testa", tokenizer=minilm_dir).split("test")
    pad = special_ids(dm.tokenizer)["pad"]
    metric = EntityF1(CONLL_TYPES)
    all_rows: list[torch.Tensor] = []
    all_index: list[int] = []
    for batch in dm.val_dataloader():
        assert list(batch) == ["input_ids", "token_type_ids", "attention_mask", "labels", "window_index"]
        assert all(v.dtype == torch.long for v in batch.values())
        b, t = batch["input_ids"].shape
        assert t <= 16 and batch["labels"].shape == (b, t) and batch["window_index"].shape == (b,)
        assert (batch["token_type_ids"] == 0).all()
        padding = batch["attention_mask"] == 0
        assert (batch["labels"][padding] == IGNORE_INDEX).all() and (batch["input_ids"][padding] == pad).all()
        # one-hot "logits" of the gold labels decode back to the gold tags of this batch's sentences
        logits = torch.nn.functional.one_hot(batch["labels"].clamp(min=0), num_labels).float()
        pred = decode_split(val, logits, dm.label_names, batch["window_index"])
        gold = gold_tags(val, batch["window_index"])
        assert pred == gold
        metric.update(pred, gold)
        all_rows.extend(batch["labels"].unbind(0))
        all_index.extend(batch["window_index"].tolist())
    assert sorted(all_index) == list(range(len(val.features)))
    assert metric.compute()["f1"].item() == pytest.approx(100.0)
    assert decode_split(val, all_rows, dm.label_names, all_index) == gold_tags(val)


def test_datamodule_document_context_and_train_loader(conll: Path, minilm_tokenizer: Tokenizer) -> None:
    dm = NERDataModule(
        train_file=conll / "eng.testa",
        val_file=conll / "eng.testa",
        tokenizer=minilm_tokenizer,
        document_context=True,
        batch_size=4,
        max_train_examples=40,
        max_eval_examples=40,
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[0] >= 4
    train = dm.split("train")
    full = train.features
    assert sum(len(w.input_ids) == 128 for w in full) > 20  # context fills the windows
    assert decode_split(train, [w.labels for w in full], dm.label_names) == gold_tags(train)


def _fake_hub(monkeypatch: pytest.MonkeyPatch, error: Exception | None = None) -> list[tuple]:
    import datasets

    calls: list[tuple] = []

    def load_dataset(name: str, *args: object, split: str) -> datasets.Dataset:
        calls.append((name, *args, split))
        if error is not None:
            raise error
        features = datasets.Features(
            {
                "tokens": datasets.Sequence(datasets.Value("string")),
                "ner_tags": datasets.Sequence(datasets.ClassLabel(names=list(LABEL_NAMES))),
            }
        )
        rows = {"tokens": [["EU", "rejects", "German", "call"]], "ner_tags": [[3, 0, 7, 0]]}
        return datasets.Dataset.from_dict(rows, features=features)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_hub_copy_is_read_through_datasets(
    monkeypatch: pytest.MonkeyPatch, minilm_tokenizer: Tokenizer
) -> None:
    calls = _fake_hub(monkeypatch)
    sentences = load_hub_conll("eriktks/conll2003", "val")
    assert calls == [("eriktks/conll2003", "validation")]
    assert sentences == [
        Sentence(("EU", "rejects", "German", "call"), ("B-ORG", "O", "B-MISC", "O"), 0, None)
    ]
    dm = NERDataModule(hub_name="eriktks/conll2003", tokenizer=minilm_tokenizer)
    dm.setup("test")
    assert gold_tags(dm.split("test")) == [["B-ORG", "O", "B-MISC", "O"]]
    with pytest.raises(DataError, match="no document context"):
        NERDataModule(hub_name="eriktks/conll2003", tokenizer=minilm_tokenizer, document_context=True).setup(
            "test"
        )


def test_hub_failure_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_hub(monkeypatch, ConnectionError("offline\nsecond line"))
    with pytest.raises(DataError) as info:
        load_hub_conll("eriktks/conll2003", "train")
    message = str(info.value)
    assert "\n" not in message and message.startswith("eriktks/conll2003: could not load")
    assert "train_file" in message
