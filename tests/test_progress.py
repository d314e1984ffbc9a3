"""Data preparation shows progress: a tqdm bar on a terminal, log lines when stderr is not one; the
chunked encoders give what one call over the whole split gives."""

from __future__ import annotations

import io
import logging
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from bertlab.data import progress
from bertlab.data.conll import Sentence
from bertlab.data.glue import GLUEDataModule, encode_pairs
from bertlab.data.ner import word_pieces
from bertlab.data.pretrain import PretrainDataModule
from bertlab.data.progress import Progress, track
from bertlab.data.squad_reader import SquadExample
from bertlab.data.squad_windows import make_features
from bertlab.data.swag import SwagExample, encode_swag
from tests.fixtures_glue import _SENTENCES, write_mnli

LOGGER = "bertlab.data.progress"


class Stderr(io.StringIO):
    """A stderr that is (or is not) a terminal and keeps what is written to it."""

    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def mnli(root: Path, tokenizer: Any, n_train: int) -> GLUEDataModule:
    write_mnli(root, n_train=n_train, n_dev=3, n_test=3, diagnostic=False)
    return GLUEDataModule(task="mnli", data_dir=str(root), tokenizer=tokenizer, max_seq_length=32)


def test_glue_split_logs_start_progress_and_end_without_terminal(
    tmp_path: Path, minilm_tokenizer: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    err = Stderr(tty=False)
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(progress, "EVERY_S", 0.0)  # a line at every tenth, not every 30 s
    dm = mnli(tmp_path, minilm_tokenizer, n_train=9001)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        data = dm.load("train")
    assert len(data.features) == 9001
    lines = messages(caplog)
    # chunks of 4096: progress after 4096 and 8192 (the last 809 rows are under a tenth: the end line says it)
    assert lines[0] == "tokenising MNLI train: 9001 examples ..."
    assert lines[1].startswith("tokenising MNLI train: 4096/9001 examples (46%), ")
    assert lines[2].startswith("tokenising MNLI train: 8192/9001 examples (91%), ")
    assert re.fullmatch(r"tokenising MNLI train: 9001 examples in [0-9.:]+( s)?", lines[3]), lines[3]
    assert len(lines) == 4
    assert err.getvalue() == "", "a bar was drawn without a terminal"


def test_glue_split_draws_a_bar_on_a_terminal(
    tmp_path: Path, minilm_tokenizer: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    err = Stderr(tty=True)
    monkeypatch.setattr(sys, "stderr", err)
    bars: list[dict[str, Any]] = []
    real = progress.tqdm

    def spy(**kwargs: Any) -> Any:
        bars.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(progress, "tqdm", spy)
    dm = mnli(tmp_path, minilm_tokenizer, n_train=50)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        dm.load("train")
    assert [(b["desc"], b["total"]) for b in bars] == [("tokenising MNLI train", 50)]
    assert "tokenising MNLI train" in err.getvalue() and "0/50" in err.getvalue()
    # no start or progress lines beside the bar; the end line still goes to the log (train.log)
    (line,) = messages(caplog)
    assert line.startswith("tokenising MNLI train: 50 examples in ")


def test_track_counts_and_stays_silent_without_a_name_or_off_rank_zero(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sys, "stderr", Stderr(tty=False))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        assert sum(track(range(2500), "counting", unit="rows")) == sum(range(2500))
        assert list(track(iter("abc"), None)) == ["a", "b", "c"]
        monkeypatch.setattr(rank_zero_only, "rank", 1)
        with Progress("on rank 1", 3) as p:
            p.update(3)
    lines = messages(caplog)
    assert lines[0] == "counting: 2500 rows ..." and lines[-1].startswith("counting: 2500 rows in ")
    assert len(lines) == 2


def test_chunked_encoders_equal_one_call(minilm_tokenizer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunk boundaries change nothing: 3 rows a chunk gives what one call over everything gives."""
    tok = minilm_tokenizer
    texts_a = [_SENTENCES[i % len(_SENTENCES)] for i in range(11)]
    texts_b = [_SENTENCES[(3 * i + 1) % len(_SENTENCES)] for i in range(11)]
    contexts = [" ".join(_SENTENCES[i : i + 4]) for i in range(3)]
    squad = [
        SquadExample(
            qid=f"q{i}",
            question=_SENTENCES[i % 5],
            context=contexts[i % 3],  # shared contexts across chunk boundaries: tokenised once, found again
            answers=(contexts[i % 3].split()[2],),
            answer_starts=(contexts[i % 3].index(contexts[i % 3].split()[2]),),
        )
        for i in range(8)
    ]
    sentences = [Sentence(words=tuple(s.split()), tags=("O",) * len(s.split()), doc=0) for s in texts_a]
    swag = [SwagExample(c, "Then", (a, b, a, b), 1) for c, a, b in zip(texts_a, texts_b, texts_a[::-1])]

    def everything() -> tuple[Any, ...]:
        return (
            encode_pairs(tok, texts_a, texts_b, 24),
            encode_pairs(tok, texts_a, None, 12),
            make_features(squad, tok, max_seq_length=40, doc_stride=8, max_query_length=10, training=True),
            word_pieces(tok, [s.words for s in sentences]),
            encode_swag(swag, tok, 20),
        )

    monkeypatch.setattr(progress, "CHUNK", 10**9)
    whole = everything()
    monkeypatch.setattr(progress, "CHUNK", 3)
    chunked = everything()
    assert chunked == whole
    assert len(whole[2]) > len(squad)  # several windows per question: the boundary case is exercised


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_pretraining_steps_log_without_terminal_and_keep_their_bars_on_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """datasets.map draws its own bar on a terminal; without one, log lines say what it did instead."""
    drawn = {}
    for tty in (False, True):
        err = Stderr(tty=tty)
        monkeypatch.setattr(sys, "stderr", err)
        caplog.clear()
        dm = PretrainDataModule(
            vocab_size=600,
            max_train_examples=40,
            max_seq_length=48,
            cache_dir=tmp_path / str(tty),
            val_docs=4,
        )
        with caplog.at_level(logging.INFO, logger=LOGGER):
            dm.prepare_data()
        lines = messages(caplog)
        for step in ("reading pydoc", "tokenising train documents", "building train instances"):
            assert any(re.match(rf"{step}: \d+ documents in ", line) for line in lines), (step, lines)
        assert any(line.endswith("documents ...") for line in lines) is not tty  # start lines: log file only
        drawn[tty] = "Tokenising train documents" in err.getvalue()
    assert drawn == {False: False, True: True}, "datasets' bar: on a terminal only"
