"""BERT WordPiece tokenizers built with the Rust `tokenizers` library.

The pipeline matches transformers' `BertTokenizerFast`: BertNormalizer (clean text, Chinese-character
spacing, accent stripping and lower-casing when uncased), BertPreTokenizer, WordPiece with `##`
continuations and max 100 characters a word, and the `[CLS] A [SEP] B [SEP]` template with token types.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
from tokenizers.models import WordPiece

SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class TokenizerError(ValueError):
    """A vocabulary or tokenizer file that cannot be used, with the fix in the message."""


def _finish(tok: Tokenizer, lowercase: bool) -> Tokenizer:
    """Attach BERT normalisation, pre-tokenisation, decoder and the [CLS]/[SEP] template to `tok`."""
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    missing = [t for t in SPECIAL_TOKENS if tok.token_to_id(t) is None]
    if missing:
        raise TokenizerError(f"vocabulary lacks the BERT special tokens {missing}; add them to vocab.txt")
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return tok


def from_vocab(vocab_file: str | Path, lowercase: bool = True) -> Tokenizer:
    """Build a BERT tokenizer from a one-token-per-line `vocab.txt`."""
    path = Path(vocab_file)
    if not path.is_file():
        raise TokenizerError(f"{path}: vocabulary file not found; pass the path of a BERT vocab.txt")
    vocab: dict[str, int] = {}
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise TokenizerError(
            f"{path}:{line}: byte {err.start} (0x{data[err.start]:02x}) is not valid UTF-8; "
            "a vocab.txt is UTF-8 text, one token per line (re-encode it, or use the checkpoint's own)"
        ) from None
    for index, line in enumerate(io.StringIO(text)):  # lines split as a text file's (BertTokenizer's)
        token = line.rstrip("\n").rstrip("\r")
        if token in vocab:
            # ids stay line numbers and the last duplicate wins, as BertTokenizer's load_vocab
            vocab[f"{token}\u0000dup{vocab[token]}"] = vocab[token]
        vocab[token] = index
    if not any(t.strip() for t in vocab):
        raise TokenizerError(f"{path}: vocabulary file is empty; pass the path of a BERT vocab.txt")
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    return _finish(tok, lowercase)


def _lowercase_from_config(folder: Path) -> bool | None:
    """Read `do_lower_case` from tokenizer_config.json if the folder has one."""
    cfg = folder / "tokenizer_config.json"
    if cfg.is_file():
        try:
            values = json.loads(cfg.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise TokenizerError(
                f"{cfg}: not valid JSON ({type(err).__name__}: {err}); restore the file from the checkpoint's "
                "source, or delete it (vocab.txt is then read as uncased)"
            ) from None
        value = values.get("do_lower_case") if isinstance(values, dict) else None
        return None if value is None else bool(value)
    return None


def _from_json(file: Path) -> Tokenizer:
    """A tokenizer.json; a truncated or foreign file is a TokenizerError naming it."""
    try:
        return Tokenizer.from_file(str(file))
    except Exception as err:  # the Rust library raises plain Exceptions
        first = " ".join(str(err).split())[:160]
        raise TokenizerError(
            f"{file}: not a usable tokenizer.json ({first}); restore it from the checkpoint's source, "
            "or remove it to use the folder's vocab.txt"
        ) from None


def _neutral(tok: Tokenizer) -> Tokenizer:
    """Switch off padding and truncation a tokenizer.json saved (MiniLM pads to 128), as transformers does."""
    tok.no_padding()
    tok.no_truncation()
    return tok


def load_tokenizer(source: str | Path, lowercase: bool | None = None) -> Tokenizer:
    """Load a tokenizer from a folder (tokenizer.json or vocab.txt), a file, or a Hugging Face hub name.

    `lowercase=None` keeps what the files say (tokenizer.json's normalizer, or tokenizer_config.json's
    `do_lower_case`), defaulting to uncased as the paper's released models. Padding and truncation that a
    tokenizer.json carries are switched off: callers pad and truncate themselves, as with transformers.
    """
    return _neutral(_load(source, lowercase))


def _load(source: str | Path, lowercase: bool | None) -> Tokenizer:
    """`load_tokenizer` before padding and truncation are switched off."""
    path = Path(source)
    if path.is_dir():
        lc = lowercase if lowercase is not None else _lowercase_from_config(path)
        if (path / "tokenizer.json").is_file() and lowercase is None:
            return _from_json(path / "tokenizer.json")
        if (path / "vocab.txt").is_file():
            return from_vocab(path / "vocab.txt", True if lc is None else lc)
        if (path / "tokenizer.json").is_file():
            return _finish(_from_json(path / "tokenizer.json"), bool(lowercase))
        raise TokenizerError(
            f"{path}: no vocab.txt or tokenizer.json in this folder; train one with "
            "bertlab.data.tokenizer.train_wordpiece or point at a BERT checkpoint folder"
        )
    if path.is_file():
        if path.suffix == ".json":
            tok = _from_json(path)
            return tok if lowercase is None else _finish(tok, lowercase)
        return from_vocab(path, True if lowercase is None else lowercase)
    if str(source).startswith((".", "/", "~")) or path.suffix in {".txt", ".json"}:
        raise TokenizerError(
            f"{path}: file not found; pass a vocab.txt, a tokenizer.json or a folder holding one"
        )
    try:  # a hub name, for users with internet
        return Tokenizer.from_pretrained(str(source))
    except Exception as err:  # the hub client raises many types
        raise TokenizerError(
            f"{source}: not a local file or folder, and the hub could not provide it ({type(err).__name__}); "
            "pass a local vocab.txt / tokenizer.json path"
        ) from err


def train_wordpiece(
    files: Sequence[str | Path] | None = None,
    vocab_size: int = 30522,
    lowercase: bool = True,
    out_dir: str | Path | None = None,
    texts: Iterable[str] | Iterable[list[str]] | None = None,
    min_frequency: int = 2,
) -> Tokenizer:
    """Train a BERT WordPiece vocabulary on text files (or an iterator of texts or batches of texts).

    Saves vocab.txt and tokenizer.json into `out_dir` when given.

    The five special tokens take ids 0-4 ([PAD]=0 as BERT's embeddings expect).
    """
    tok = Tokenizer(WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        continuing_subword_prefix="##",
        show_progress=True,
    )
    if texts is not None:
        tok.train_from_iterator(texts, trainer=trainer)
    else:
        paths = [str(p) for p in files or []]
        if not paths:
            raise TokenizerError("train_wordpiece needs text files or an iterator of texts")
        tok.train(paths, trainer=trainer)
    tok = _finish(tok, lowercase)
    if out_dir is not None:
        save_vocab(tok, out_dir)
    return tok


def save_vocab(tok: Tokenizer, out_dir: str | Path) -> Path:
    """Write `vocab.txt` (ids = line numbers) and `tokenizer.json` into `out_dir`; return the vocab path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = sorted(tok.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])
    ids = [i for _, i in vocab]
    if ids != list(range(len(ids))):
        raise TokenizerError("vocabulary ids are not contiguous from 0; cannot write vocab.txt")
    path = out / "vocab.txt"
    path.write_text("".join(t.split("\u0000dup")[0] + "\n" for t, _ in vocab), encoding="utf-8")
    tok.save(str(out / "tokenizer.json"))
    return path


def special_ids(tok: Tokenizer) -> dict[str, int]:
    """Ids of the BERT special tokens: keys pad, unk, cls, sep, mask."""
    ids = {name[1:-1].lower(): tok.token_to_id(name) for name in SPECIAL_TOKENS}
    missing = [k for k, v in ids.items() if v is None]
    if missing:
        raise TokenizerError(f"tokenizer lacks special tokens {missing}")
    return ids  # type: ignore[return-value]


def plain_tokenizer(tok: Tokenizer) -> Tokenizer:
    """A copy of `tok` without padding or truncation (checkpoint tokenizer.json files often set both),
    leaving the caller's tokenizer unchanged."""
    copy = Tokenizer.from_str(tok.to_str())
    copy.no_padding()
    copy.no_truncation()
    return copy
