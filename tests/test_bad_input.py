"""Every class of bad input is one bertlab error naming the file (and line) or the config key, with the fix.

In-process on the readers (fast); tests/test_bad_input_cli.py runs the issue's named cases through
train.py, and tests/test_fuzz_readers.py throws random corruptions at the same readers.
"""

from __future__ import annotations

import gzip
import json
import logging
import sys
import types
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from bertlab.data.conll import read_conll
from bertlab.data.corpus import read_corpus, resolve_corpus
from bertlab.data.errors import DataConfigError, DataError
from bertlab.data.glue_files import SkippedRowsWarning, read_glue_split, read_glue_tsv
from bertlab.data.squad_reader import parse_squad, read_squad_file
from bertlab.data.swag import read_swag_csv
from bertlab.data.tokenizer import TokenizerError, from_vocab, load_tokenizer
from bertlab.model import BertModel
from bertlab.model.checkpoint import CheckpointError, check_ckpt_file, read_checkpoint, read_folder_config
from bertlab.run_plan import ConfigError, check_model_values
from tests.tiny import tiny_config

RTE_HEADER = "index\tsentence1\tsentence2\tlabel\n"
RTE_ROW = "0\tA man sleeps.\tSomeone sleeps.\tentailment\n"
SWAG_HEADER = ",video-id,fold-ind,startphrase,sent1,sent2,gold-source,ending0,ending1,ending2,ending3,label\n"
SWAG_ROW = '0,v,1,"A man sits. He",A man sits.,He,gold,stands.,eats.,runs.,sleeps.,2\n'
CONLL = "-DOCSTART- -X- O O\n\nEU NNP I-NP I-ORG\nrejects VBZ I-VP O\n\nPeter NNP I-NP I-PER\n"


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


# ---------------------------------------------------------------------------------------------- GLUE


def test_glue_invalid_utf8_names_file_line_and_byte(tmp_path: Path) -> None:
    bad = write(
        tmp_path / "RTE/train.tsv", (RTE_HEADER + RTE_ROW).encode() + b"1\tCaf\xe9.\tB.\tentailment\n"
    )
    with pytest.raises(DataError, match=r"RTE/train\.tsv:3: byte 80 \(0xe9\) is not valid UTF-8.*iconv"):
        read_glue_tsv("rte", bad, "train")


@pytest.mark.parametrize(
    ("content", "problem"),
    [("", "empty file"), ("\n\n", "empty file"), (RTE_HEADER, "no rows under the header")],
)
def test_glue_empty_or_header_only_file(tmp_path: Path, content: str, problem: str) -> None:
    bad = write(tmp_path / "RTE/dev.tsv", content)
    with pytest.raises(DataError, match=rf"dev\.tsv: {problem}; put the official GLUE RTE/dev\.tsv there"):
        read_glue_tsv("rte", bad, "val")


@pytest.mark.parametrize(
    ("task", "row", "match"),
    [
        ("rte", "0\tA.\tB.\tmaybe\n", r":2: label 'maybe' in column 'label' is not one of"),
        ("rte", "0\tA.\tB.\n", r":2: expected 4 tab-separated fields, found 3"),
        ("rte", "0\tA.\tB.\tentailment\textra\n", r":2: expected 4 tab-separated fields, found 5"),
        ("stsb", "0\tg\tf\ty\t1\ts\ts\tA.\tB.\t5.5\n", r":2: score '5\.5' is not a number in \[0, 5\]"),
        ("stsb", "0\tg\tf\ty\t1\ts\ts\tA.\tB.\tnan\n", r":2: score 'nan' is not a number in \[0, 5\]"),
    ],
)
def test_glue_bad_rows(tmp_path: Path, task: str, row: str, match: str) -> None:
    header = (
        RTE_HEADER
        if task == "rte"
        else "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    )
    bad = write(tmp_path / "train.tsv", header + row)
    with pytest.raises(DataError, match=match):
        read_glue_tsv(task, bad, "train")


def test_glue_skipped_rows_are_counted_in_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    header = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
    good = "0\t1\t2\tA?\tB?\t1\n"
    path = write(tmp_path / "QQP/train.tsv", header + good + "1\t3\t4\tbroken\n" + "2\t5\t6\tC?\tD?\t\n")
    with caplog.at_level(logging.WARNING), pytest.warns(SkippedRowsWarning):
        split = read_glue_tsv("qqp", path, "train")
    assert split.labels == [1] and split.skipped_lines == [3, 4]
    assert f"{path}: skipped 2 malformed row(s) at line(s) 3, 4" in caplog.text


def test_missing_glue_folder_names_full_path_and_both_fixes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = types.ModuleType("datasets")

    def offline(*args: object, **kwargs: object) -> None:
        raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub (OfflineModeIsEnabled)")

    fake.load_dataset = offline  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", fake)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as err:
        read_glue_split("rte", "train", "relative/glue")
    message = str(err.value)
    folder = str((tmp_path / "relative/glue/RTE").resolve())
    assert message.startswith(f"{folder}: GLUE RTE files not found (no such folder)")
    assert f"put the official GLUE files in {folder}" in message and "data.data_dir" in message
    assert "go online once" in message and "OfflineModeIsEnabled" in message


# ---------------------------------------------------------------------------------------------- CoNLL


def test_conll_invalid_utf8_names_line(tmp_path: Path) -> None:
    bad = write(tmp_path / "eng.train", CONLL.encode().replace(b"Peter", b"P\xe9ter"))
    with pytest.raises(DataError, match=r"eng\.train:6: byte \d+ \(0xe9\) is not valid UTF-8"):
        read_conll(bad)


def test_conll_byte_order_mark_is_not_a_word(tmp_path: Path) -> None:
    path = write(tmp_path / "eng.train", "\ufeff" + CONLL)
    sentences = read_conll(path)
    assert [s.words for s in sentences] == [("EU", "rejects"), ("Peter",)]
    assert [s.doc for s in sentences] == [0, 0]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("", r"no sentences found"),
        ("-DOCSTART- -X- O O\n\n", r"no sentences found"),
        (CONLL.replace("I-PER", "I-FOO"), r":6: unknown NER tag 'I-FOO'"),
        (CONLL.replace("rejects VBZ I-VP O", "rejects VBZ O"), r":4: expected 4 space-separated columns"),
    ],
)
def test_conll_bad_files(tmp_path: Path, content: str, match: str) -> None:
    with pytest.raises(DataError, match=match):
        read_conll(write(tmp_path / "eng.train", content))


# ---------------------------------------------------------------------------------------------- SQuAD


def squad_obj(answers: list[dict[str, object]], qid: str = "q1") -> dict[str, object]:
    context = "The Broncos won the game in Denver. Denver was cold."
    qas = [{"id": qid, "question": "Where?", "answers": answers}]
    return {"data": [{"title": "T", "paragraphs": [{"context": context, "qas": qas}]}]}


def test_squad_answer_start_beyond_context_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "train.json", json.dumps(squad_obj([{"text": "Denver", "answer_start": 500}])))
    with pytest.raises(DataError) as err:
        read_squad_file(path, version=1)
    assert str(err.value) == (
        f"{path}: answer_start 500 of question 'q1' (data[0].paragraphs[0].qas[0].answers[0]) lies outside "
        "its context (52 characters); fix the offset, or check the answers belong to this paragraph"
    )


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        (squad_obj([{"text": "Denver", "answer_start": "28"}]), r"answer_start '28' .* is not an integer"),
        (squad_obj([{"text": "Denver", "answer_start": -3}]), r"answer_start -3 .* lies outside its context"),
        (squad_obj([{"text": "Denver"}]), r"answer_start None .* is not an integer"),
        (squad_obj("Denver"), r"data\[0\]\.paragraphs\[0\]\.qas\[0\]\.answers is a str, not a list"),  # type: ignore[arg-type]
        (squad_obj([{"text": 7, "answer_start": 1}]), r"answers\[0\]\.text is a int, not a string"),
        ({"data": [{"paragraphs": "oops"}]}, r"data\[0\]\.paragraphs is a str, not a list"),
        ({"data": ["oops"]}, r"data\[0\] is a str, not a json object"),
        ({"rows": []}, r"no top-level 'data' list"),
    ],
)
def test_squad_malformed_entries_name_their_place(obj: object, match: str) -> None:
    with pytest.raises(DataError, match=match):
        parse_squad(obj, "train.json", version=1)


def test_squad_duplicate_id_is_an_error() -> None:
    obj = squad_obj([{"text": "Denver", "answer_start": 28}])
    qas = obj["data"][0]["paragraphs"][0]["qas"]  # type: ignore[index]
    qas.append(dict(qas[0]))
    with pytest.raises(DataError, match=r"question id 'q1' at .*qas\[1\] was already used at .*qas\[0\]"):
        parse_squad(obj, "dev.json", version=1)


def test_squad_unplaceable_answer_is_skipped_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    obj = squad_obj([{"text": "Paris", "answer_start": 3}])
    qas = obj["data"][0]["paragraphs"][0]["qas"]  # type: ignore[index]
    qas.append({"id": "q2", "question": "Who?", "answers": [{"text": "Broncos", "answer_start": 6}]})
    path = write(tmp_path / "train.json", json.dumps(obj))
    with caplog.at_level(logging.WARNING), pytest.warns(UserWarning, match="1 questions skipped"):
        examples, stats = read_squad_file(path, version=1)
    assert [e.qid for e in examples] == ["q2"] and examples[0].answer_starts == (4,)
    assert (stats.dropped_answers, stats.skipped_questions, stats.fixed_answer_starts) == (1, 1, 1)
    assert f"{path}: 1 answer_start values fixed" in caplog.text and "1 questions skipped" in caplog.text


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", r"train\.json: empty file"),
        (
            b'{"data": [{"title": "T", "paragr',
            r"train\.json:1: not valid JSON .*\(the file ends early: truncated\?\)",
        ),
        (b'{"data": [], "x": "caf\xe9"}', r"train\.json:1: byte 22 \(0xe9\) is not valid UTF-8"),
    ],
)
def test_squad_unreadable_files(tmp_path: Path, data: bytes, match: str) -> None:
    with pytest.raises(DataError, match=match):
        read_squad_file(write(tmp_path / "train.json", data))


# ---------------------------------------------------------------------------------------------- SWAG


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", r"empty file"),
        (SWAG_HEADER.encode(), r"no examples found"),
        ((SWAG_HEADER + SWAG_ROW).encode().replace(b"eats", b"e\xffats"), r"swag\.csv:2: byte \d+ \(0xff\)"),
        (
            (SWAG_HEADER + SWAG_ROW).replace(",2\n", ",7\n").encode(),
            r"swag\.csv:2: label '7' is not one of 0-3",
        ),
        ((SWAG_HEADER + SWAG_ROW)[:-20].encode(), r"swag\.csv:2: row has 9 columns but the header has 12"),
        (
            (SWAG_HEADER + SWAG_ROW.replace('"A man sits. He"', '"A man sits')).encode(),
            r"swag\.csv:2: malformed csv",
        ),
    ],
)
def test_swag_bad_files(tmp_path: Path, data: bytes, match: str) -> None:
    with pytest.raises(DataError, match=match):
        read_swag_csv(write(tmp_path / "swag.csv", data))


# ---------------------------------------------------------------------------------------------- corpora


@pytest.mark.parametrize(
    ("name", "data", "fmt", "match"),
    [
        (
            "c.txt",
            b"One. Two.\nThree.\n\nFour.\nFi\xffve.\n",
            "text",
            r"c\.txt:5: byte 26 \(0xff\) is not valid UTF-8",
        ),
        ("c.txt", b"", "text", r"holds no documents"),
        ("c.txt", gzip.compress(b"One.\nTwo.\n"), "text", r"compressed archive, not text; decompress it"),
        (
            "c.jsonl",
            b'{"text": "A. B."}\n{"text": null}\n',
            "jsonl",
            r"c\.jsonl:2: field 'text' holds NoneType",
        ),
        ("c.jsonl", b'{"text": "A. B."}\n{"text": "A. B.\n', "jsonl", r"c\.jsonl:2: not valid JSON"),
        (
            "w",
            b'<doc id="1">\nT\nOne. Two.\n</doc>\n<doc id="2">\nT\nOne',
            "wiki",
            r"opened at line 5 is never closed",
        ),
    ],
)
def test_corpus_bad_files(tmp_path: Path, name: str, data: bytes, fmt: str, match: str) -> None:
    path = write(tmp_path / name, data)
    with pytest.raises(DataError, match=match):
        list(read_corpus(path, format=fmt))


def test_corpus_empty_folder_and_glob(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="folder holds no files"):
        resolve_corpus(tmp_path / "empty")
    with pytest.raises(DataError, match="glob matches no files"):
        resolve_corpus(str(tmp_path / "none*" / "*.txt"))


# ---------------------------------------------------------------------------------------------- vocabularies


def test_vocab_invalid_utf8_names_line(tmp_path: Path) -> None:
    vocab = write(tmp_path / "vocab.txt", b"[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\ncaf\xe9\n")
    with pytest.raises(TokenizerError, match=r"vocab\.txt:6: byte 34 \(0xe9\) is not valid UTF-8"):
        from_vocab(vocab)


def test_truncated_tokenizer_json_and_config(tmp_path: Path, minilm_dir: Path) -> None:
    write(tmp_path / "tok/tokenizer.json", (minilm_dir / "tokenizer.json").read_bytes()[:5000])
    with pytest.raises(TokenizerError, match=r"tok/tokenizer\.json: not a usable tokenizer\.json"):
        load_tokenizer(tmp_path / "tok")
    write(tmp_path / "cfg/vocab.txt", (minilm_dir / "vocab.txt").read_bytes())
    write(tmp_path / "cfg/tokenizer_config.json", b'{"do_lower_case": tr')
    with pytest.raises(TokenizerError, match=r"tokenizer_config\.json: not valid JSON"):
        load_tokenizer(tmp_path / "cfg")


# ---------------------------------------------------------------------------------------------- checkpoints


@pytest.fixture()
def tiny_folder(tmp_path: Path) -> Path:
    BertModel(tiny_config()).save_pretrained(str(tmp_path / "tiny"))
    return tmp_path / "tiny"


def test_truncated_safetensors_names_the_file(tiny_folder: Path) -> None:
    weights = tiny_folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:2000])
    with pytest.raises(
        CheckpointError, match=r"model\.safetensors: cannot be read as safetensors .*2000 bytes"
    ):
        read_checkpoint(tiny_folder)


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (b'{"hidden_size": 64,', r"config\.json: not valid JSON"),
        (b"[1, 2]", r"config\.json: holds a list, not a json object"),
        (
            json.dumps(tiny_config().to_dict() | {"hidden_size": 65}).encode(),
            r"cannot build a BERT \(hidden_size 65",
        ),
    ],
)
def test_damaged_config_json(tiny_folder: Path, config: bytes, match: str) -> None:
    (tiny_folder / "config.json").write_bytes(config)
    with pytest.raises(CheckpointError, match=match):
        read_folder_config(tiny_folder)


def test_weights_of_the_wrong_shape(tiny_folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(tiny_folder / "model.safetensors"))
    state["encoder.layer.1.intermediate.dense.weight"] = torch.zeros(36, 64)
    save_file(state, str(tiny_folder / "model.safetensors"))
    with pytest.raises(
        CheckpointError, match=r"shape mismatch.*intermediate\.dense\.weight \(36, 64\) vs model \(37, 64\)"
    ):
        BertModel.from_pretrained(str(tiny_folder))


@pytest.mark.parametrize("content", [b"this is not a checkpoint\n" * 10, b"", b"PK\x03\x04junk"])
def test_junk_ckpt_names_the_file(tmp_path: Path, content: bytes) -> None:
    junk = write(tmp_path / "junk.ckpt", content)
    with pytest.raises(CheckpointError, match=r"junk\.ckpt: cannot be read as a bertlab \.ckpt"):
        read_checkpoint(junk)
    with pytest.raises(CheckpointError, match=r"junk\.ckpt: cannot be read"):
        check_ckpt_file(junk)


def test_ckpt_without_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "plain.ckpt"
    torch.save({"epoch": 1}, path)
    with pytest.raises(CheckpointError, match=r"plain\.ckpt: not a bertlab checkpoint"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"plain\.ckpt: has no state_dict"):
        check_ckpt_file(path)


# ---------------------------------------------------------------------------------------------- config values


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("batch_size", 0, r"data\.batch_size=0 must be >= 1"),
        ("eval_batch_size", -2, r"data\.eval_batch_size=-2 must be >= 1"),
        ("max_seq_length", 0, r"data\.max_seq_length=0 must be >= 1"),
        ("max_train_examples", 0, r"data\.max_train_examples=0 must be >= 1 or null"),
        ("num_workers", -1, r"data\.num_workers=-1 must be >= 0"),
    ],
)
def test_non_positive_data_sizes(key: str, value: int, match: str) -> None:
    from bertlab.data.glue import GLUEDataModule

    with pytest.raises(DataConfigError, match=match):
        GLUEDataModule(task="rte", data_dir=None, **{key: value})


def test_max_seq_length_beyond_position_embeddings() -> None:
    model = tiny_config(max_position_embeddings=101).to_dict()
    cfg = OmegaConf.create({"pretrained": "/ckpt/dir", "data": {"max_seq_length": 128}})
    with pytest.raises(
        ConfigError,
        match=r"data\.max_seq_length=128 exceeds the 101 position embeddings of pretrained=/ckpt/dir; set data\.max_seq_length<=101",
    ):
        check_model_values(model, cfg)
    cfg = OmegaConf.create({"pretrained": None, "data": {"max_seq_length": 128}})
    with pytest.raises(ConfigError, match=r"model\.max_position_embeddings=128 \(training from scratch\)"):
        check_model_values(model, cfg)
    check_model_values(model, OmegaConf.create({"pretrained": None, "data": {"max_seq_length": 101}}))


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("hidden_dropout_prob", 1.5, r"hidden_dropout_prob must be in \[0, 1\)"),
        ("num_hidden_layers", 0, "num_hidden_layers must be positive, got 0"),
    ],
)
def test_invalid_model_values_name_the_key(field: str, value: object, match: str) -> None:
    model = tiny_config().to_dict() | {field: value}
    with pytest.raises(ConfigError, match=rf"^model\.{match}.*; set a valid value"):
        check_model_values(model, OmegaConf.create({"data": {"max_seq_length": 7}}))
