"""The issue's named bad inputs through train.py, as a new user meets them: exit status 2, one line
`error: <message>` naming the file or the config key with its fix, and no traceback.

Each runs train.py's command line in-process (tests/cli.py; BERTLAB_TEST_SUBPROCESS=1: a real subprocess);
tests/test_bad_input.py covers every class of bad input through bertlab.run.main.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli import offline_env, run_train


def glue_copy(shared: Path, out: Path, corrupt: Callable[[bytes], bytes] = lambda b: b) -> Path:
    """<out>/glue/RTE with the first rows of the real train.tsv (corrupted) and dev.tsv."""
    folder = out / "glue" / "RTE"
    folder.mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv"):
        head = b"".join((shared / "glue/RTE" / name).read_bytes().splitlines(keepends=True)[:12])
        (folder / name).write_bytes(corrupt(head) if name == "train.tsv" else head)
    return folder.parent


def squad_beyond(shared: Path, out: Path) -> Path:
    """The first article of the real dev-v1.1.json, one answer_start moved past its context."""
    obj = json.loads((shared / "squad/v1.1/dev-v1.1.json").read_text(encoding="utf-8"))
    obj["data"] = obj["data"][:1]
    qa = obj["data"][0]["paragraphs"][0]["qas"][0]
    qa["answers"][0]["answer_start"] = 100_000
    path = out / "train-bad.json"
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def truncated_model(minilm: Path, out: Path) -> Path:
    """A copy of the MiniLM folder whose model.safetensors stops after 3 MB (an interrupted download)."""
    folder = out / "minilm-truncated"
    folder.mkdir()
    for name in ("config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((minilm / name).read_bytes())
    with (minilm / "model.safetensors").open("rb") as f:
        (folder / "model.safetensors").write_bytes(f.read(3_000_000))
    return folder


def case_args(case: str, shared: Path, minilm: Path, out: Path) -> tuple[list[str], list[str]]:
    """(train.py overrides, strings the one error line must hold) of one named case."""
    glue = ["task=rte", f"pretrained={minilm}"]
    if case == "glue_invalid_utf8":
        root = glue_copy(shared, out, lambda b: b.replace(b"Iraq", b"Ir\xffaq", 1))
        train = root / "RTE" / "train.tsv"
        return [*glue, f"data.data_dir={root}"], [f"{train}:2: byte", "is not valid UTF-8", "iconv"]
    if case == "squad_answer_beyond_context":
        path = squad_beyond(shared, out)
        args = ["task=squad_v1", f"pretrained={minilm}", f"data.train_file={path}", f"data.val_file={path}"]
        return args, [
            f"{path}: answer_start 100000 of question",
            "lies outside its context",
            "fix the offset",
        ]
    if case == "truncated_safetensors":
        folder = truncated_model(minilm, out)
        return ["task=rte", f"pretrained={folder}", f"data.data_dir={glue_copy(shared, out)}"], [
            f"{folder / 'model.safetensors'}: cannot be read as safetensors",
            "download or copy it again",
        ]
    if case == "junk_ckpt":
        junk = out / "junk.ckpt"
        junk.write_bytes(b"not a checkpoint\n" * 20)
        return [*glue, "mode=test", f"ckpt={junk}", f"data.data_dir={glue_copy(shared, out)}"], [
            f"{junk}: cannot be read as a bertlab .ckpt"
        ]
    if case == "missing_glue_folder":
        missing = out / "nowhere" / "glue"
        folder = str((missing / "RTE").resolve())
        return [*glue, f"data.data_dir={missing}"], [
            f"{folder}: GLUE RTE files not found",
            f"put the official GLUE files in {folder}",
            "go online once",
        ]
    if case == "batch_size_0":
        return [*glue, f"data.data_dir={glue_copy(shared, out)}", "data.batch_size=0"], [
            "data.batch_size=0 must be >= 1"
        ]
    if case == "max_seq_length_beyond_positions":
        return [*glue, f"data.data_dir={glue_copy(shared, out)}", "data.max_seq_length=1000"], [
            "data.max_seq_length=1000 exceeds the 512 position embeddings",
            "data.max_seq_length<=512",
        ]
    raise AssertionError(case)


CASES = [
    "glue_invalid_utf8",
    "squad_answer_beyond_context",
    "truncated_safetensors",
    "junk_ckpt",
    "missing_glue_folder",
    "batch_size_0",
    "max_seq_length_beyond_positions",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_error_line(case: str, shared_data: Path, minilm_dir: Path, tmp_path: Path) -> None:
    args, expected = case_args(case, shared_data, minilm_dir, tmp_path)
    common = [
        "logger=csv",
        "export=false",
        "trainer.max_steps=1",
        "hardware.precision=32-true",
        f"hydra.run.dir={tmp_path / 'run'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    proc = run_train([*args, *common], env=offline_env())
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr[-3000:]
    for part in expected:
        assert part in errors[0], errors[0]
