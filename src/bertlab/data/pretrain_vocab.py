"""The pre-training DataModule's vocabulary: a given tokenizer (with `lowercase` where its files cannot say)
or one trained on the corpus into `cache_dir/tokenizer/`, found again by its stamp."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from bertlab.data.tokenizer import load_tokenizer


class CorpusVocabulary:
    """Mixin for `PretrainDataModule`: which tokenizer it uses and where a trained one lives.

    Reads the DataModule's `_tokenizer_source`, `lowercase`, `cache_dir`, `vocab_size`, the hold-out
    settings and `seed`; sets `_tokenizer`, `_plain` and `_trained_vocab`.
    """

    _tokenizer_source: str | Path | Tokenizer | None
    _tokenizer: Tokenizer | None
    _plain: Tokenizer | None
    _trained_vocab: Path | None
    tokenizer: Tokenizer
    lowercase: bool
    cache_dir: Path
    vocab_size: int
    val_fraction: float
    val_docs: int | None
    max_eval_examples: int | None
    seed: int | None

    def load_tokenizer(self) -> Tokenizer:
        """The given tokenizer, with `lowercase` where its files cannot say; a trained one comes from
        `prepare_data`."""
        src = self._tokenizer_source
        if src is None:
            raise RuntimeError(
                "the tokenizer is trained from the corpus: call prepare_data() and setup() first"
            )
        path = Path(src)
        # lowercase applies where the files cannot say (a bare vocab.txt); tokenizer.json keeps its own
        bare = (path.is_file() and path.suffix != ".json") or (
            path.is_dir() and not (path / "tokenizer.json").is_file()
        )
        return load_tokenizer(src, self.lowercase if bare else None)

    @property
    def vocab_path(self) -> Path | None:
        """The vocab.txt behind the tokenizer: the given file or folder's, or the trained one (after
        `prepare_data`); None for a tokenizer.json or a `Tokenizer` object."""
        src = self._tokenizer_source
        if src is None:
            return self._trained_vocab
        if isinstance(src, Tokenizer):
            return None
        path = Path(src)
        if path.is_file() and path.suffix == ".txt":
            return path
        if path.is_dir() and (path / "vocab.txt").is_file():
            return path / "vocab.txt"
        return None

    @property
    def vocab_size_actual(self) -> int:
        """Size of the tokenizer's vocabulary (known after `prepare_data`/`setup` when it is trained)."""
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def _use_tokenizer(self, tokenizer: Tokenizer) -> None:
        """Adopt a tokenizer found in or written to the cache (a trained one also sets `vocab_path`)."""
        self._tokenizer, self._plain = tokenizer, None
        if self._tokenizer_source is None:
            self._trained_vocab = self._vocab_dir() / "vocab.txt"

    def _vocab_dir(self) -> Path:
        """Where a trained vocabulary lives: `cache_dir/tokenizer/`."""
        return self.cache_dir / "tokenizer"

    def _vocab_stamp(self, corpus: str) -> dict[str, Any]:
        """What a trained vocabulary depends on; a mismatch with the saved stamp means retraining."""
        return {
            "corpus": corpus,
            "vocab_size": self.vocab_size,
            "lowercase": self.lowercase,
            "val_fraction": self.val_fraction,
            "val_docs": self.val_docs,
            "max_eval_examples": self.max_eval_examples,
            "seed": self.seed,
        }


__all__ = ["CorpusVocabulary"]
