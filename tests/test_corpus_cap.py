"""data.max_train_examples caps the usable documents of the whole corpus, not of each file."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertlab.data.corpus import resolve_corpus
from bertlab.data.pretrain_cache import corpus_key, read_documents


def test_cap_counts_documents_across_files(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    folder.mkdir()
    for f in range(3):  # 3 files x 5 usable documents (2 sentences each) + a 1-sentence one
        docs = [f"file {f} doc {d} first.\nfile {f} doc {d} second." for d in range(5)] + ["lonely one."]
        (folder / f"part{f}.txt").write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    source = resolve_corpus(folder, "text")
    assert len(source.files) == 3
    for cap, expected in ((7, 7), (None, 15)):
        key = corpus_key(source, "text", "train", cap)
        with pytest.warns(UserWarning) as caught:  # only the documents too short count as skipped
            docs, usable = read_documents(
                source, key, str(folder), "text", "train", tmp_path / "cache", cap, 1
            )
        (message,) = [str(w.message) for w in caught]
        assert "skipped 3 of 18 documents with fewer than 2 sentences" in message, message
        assert len(usable) == expected, (cap, len(usable))  # per-file capping gave 3 x 5 = 15 at cap 7
        firsts = [docs[int(i)]["sentences"][0] for i in usable]
        assert firsts == sorted(firsts, key=lambda s: (s.split()[1], int(s.split()[3])))  # the corpus's order
        assert firsts[0] == "file 0 doc 0 first."
