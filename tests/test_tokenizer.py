"""Our Rust-tokenizers BERT pipeline against transformers' BertTokenizerFast and its pure-Python tokenizer."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from bertlab.data.corpus import read_corpus
from bertlab.data.tokenizer import (
    SPECIAL_TOKENS,
    TokenizerError,
    from_vocab,
    load_tokenizer,
    save_vocab,
    special_ids,
    train_wordpiece,
)

transformers = pytest.importorskip("transformers")

# Hand-picked hard cases: accents, CJK, punctuation runs, unknown and over-long words, control characters.
TRICKY = [
    "Café naïve résumé — Ångström façade, São Paulo, Zürich.",
    "我爱北京天安门, and 東京 is in 日本.",
    "Hello!!! (world) -- 'quoted' [brackets] {braces} <tags> #hash @at $5.00 100% a/b\\c",
    "qwxzzyvkkq zzyzx blorptastic unaffable",
    "x" * 150 + " short",
    "tab\tnew\nline\u00a0nbsp\u200bzero-width \u0000 control \ufffd",
    "emoji 🙂 and math ∑∫ and arrows →",
    "",
    "   ",
    "UPPER lower MiXeD",
    "don't won't can't it's",
]
PAIRS = [("How old are you?", "I'm 6 years old."), ("Café!", "我爱你"), ("a " * 200, "b " * 200)]


def _sentences(shared_data: Path, limit: int = 300) -> list[str]:
    """Real sentences: SST-2 dev and lines of the first wiki file (long, accented, many scripts)."""
    sst = (shared_data / "glue" / "SST-2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    wiki = [
        line
        for line in (shared_data / "wiki" / "wiki_00").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith(("<doc", "</doc"))
    ]
    return [line.split("\t")[0] for line in sst[:limit]] + wiki[:limit] + TRICKY


def _reference(folder: Path) -> Any:
    return transformers.BertTokenizerFast.from_pretrained(str(folder))


def _legacy(vocab_file: Path) -> Any:
    """transformers' pure-Python BertTokenizer (BasicTokenizer + WordpieceTokenizer), an independent check."""
    try:
        from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy as Slow
    except ImportError:  # transformers 4.x: BertTokenizer is the Python one
        Slow = transformers.BertTokenizer
    return Slow(vocab_file=str(vocab_file))


def _assert_same(ours: Any, ref: Any, texts: list[str], pairs: list[tuple[str, str]]) -> None:
    got = ours.encode_batch(texts)
    want = ref(texts)
    for text, g, w in zip(texts, got, want["input_ids"]):
        assert g.ids == w, text
    got = ours.encode_batch(pairs)
    want = ref([a for a, _ in pairs], [b for _, b in pairs])
    for pair, g, ids, types in zip(pairs, got, want["input_ids"], want["token_type_ids"]):
        assert g.ids == ids, pair
        assert g.type_ids == types, pair


def _pairs(texts: list[str]) -> list[tuple[str, str]]:
    return [*PAIRS, *zip(texts[::2], texts[1::2])]


def test_vocab_txt_matches_transformers(minilm_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    shutil.copy(minilm_dir / "vocab.txt", tmp_path / "vocab.txt")  # a folder with vocab.txt only
    ours = load_tokenizer(tmp_path / "vocab.txt")
    texts = _sentences(shared_data)
    _assert_same(ours, _reference(tmp_path), texts, _pairs(texts))
    slow = _legacy(tmp_path / "vocab.txt")
    for text in texts:
        assert ours.encode(text).ids == slow(text)["input_ids"], text


def test_tokenizer_json_matches_transformers(minilm_dir: Path, shared_data: Path) -> None:
    ours = load_tokenizer(minilm_dir)  # loads tokenizer.json, which pads and truncates to 128 on disk
    texts = _sentences(shared_data)
    _assert_same(ours, _reference(minilm_dir), texts, _pairs(texts))
    long = " ".join(texts[:20])
    assert len(ours.encode(long).ids) > 128, "saved truncation must be switched off, as transformers does"
    assert len(ours.encode("short").ids) == 3, "saved padding must be switched off"


@pytest.mark.filterwarnings("ignore:pydoc. skipped:UserWarning")
def test_trained_wordpiece_vocab_tokenises_like_transformers(tmp_path: Path) -> None:
    texts = [s for doc in read_corpus("pydoc", max_docs=60) for s in doc]
    trained = train_wordpiece(texts=texts, vocab_size=800, out_dir=tmp_path / "tok")
    vocab_file = tmp_path / "tok" / "vocab.txt"
    lines = vocab_file.read_text(encoding="utf-8").splitlines()
    assert lines[:5] == list(SPECIAL_TOKENS)
    assert special_ids(trained) == {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}
    assert 300 < len(lines) <= 800 and any(t.startswith("##") for t in lines)

    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    shutil.copy(vocab_file, ref_dir / "vocab.txt")
    ref = _reference(ref_dir)
    probe = texts[:300] + texts[-100:] + TRICKY
    _assert_same(trained, ref, probe, _pairs(probe))
    _assert_same(from_vocab(vocab_file), ref, probe, _pairs(probe))
    _assert_same(load_tokenizer(tmp_path / "tok"), ref, probe, _pairs(probe))


def test_vocab_ids_follow_line_numbers_like_transformers(tmp_path: Path) -> None:
    words = [*SPECIAL_TOKENS, "hello", "world", "", "hello", "##s", "x"]
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("".join(w + "\n" for w in words), encoding="utf-8")
    tok = from_vocab(vocab_file)
    want = transformers.models.bert.tokenization_bert.load_vocab(str(vocab_file))  # last duplicate wins
    for token, index in want.items():
        if token:
            assert tok.token_to_id(token) == index, token
    assert tok.get_vocab_size() == len(words)
    assert save_vocab(tok, tmp_path / "out").read_text(encoding="utf-8").splitlines() == words


def test_cased_vocab_keeps_case(tmp_path: Path) -> None:
    words = [*SPECIAL_TOKENS, "Hello", "hello"]
    (tmp_path / "vocab.txt").write_text("".join(w + "\n" for w in words), encoding="utf-8")
    assert load_tokenizer(tmp_path / "vocab.txt", lowercase=False).encode("Hello").ids == [2, 5, 3]
    assert load_tokenizer(tmp_path / "vocab.txt").encode("Hello").ids == [2, 6, 3]


def test_bad_tokenizer_inputs_raise(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="not found"):
        load_tokenizer(tmp_path / "missing.txt")
    (tmp_path / "vocab.txt").write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"\[PAD\]"):
        load_tokenizer(tmp_path / "vocab.txt")
