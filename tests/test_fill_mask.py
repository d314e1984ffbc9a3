"""Fill-mask (`task=fill_mask mode=predict`) on a checkpoint bertlab pre-trained: top-k per [MASK], the same
tokens and probabilities as transformers' fill-mask pipeline on the export, one clear error per bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bertlab.data.errors import DataError
from bertlab.model.checkpoint import CheckpointError
from bertlab.run import ConfigError, main
from tests.cli import offline_env, run_train
from tests.hydra_helpers import compose_cfg

SENTENCES = ["the [MASK] returns a new list .", "[MASK] module of the [MASK] library ."]
K = 7
COMMON = ["logger=csv", "hardware.precision=32-true"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model pre-trained by bertlab for 5 steps on 50 documents of the embedded pydoc corpus."""
    run = tmp_path_factory.mktemp("pretrain") / "run"
    overrides = [
        *COMMON,
        "model.hidden_size=72",
        "model.num_attention_heads=3",
        "model.intermediate_size=101",
        "data.vocab_size=1100",
        "data.max_seq_length=48",
        "data.batch_size=13",
        "data.max_train_examples=50",
        "data.val_docs=0",
        "trainer.max_steps=5",
        "task.module.optimizer.lr=5e-3",
    ]
    main(compose_cfg(overrides, run))
    return run


def fill(pretrained: str | Path, out: Path, *extra: str) -> list[dict]:
    """Run task=fill_mask in-process; the lines of predictions.jsonl."""
    main(compose_cfg(["task=fill_mask", f"pretrained={pretrained}", f"data.top_k={K}", *COMMON, *extra], out))
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def test_top_k_per_mask_matches_transformers(pretrained: Path, tmp_path: Path) -> None:
    import transformers

    sentences = "data.sentences=[" + ",".join(json.dumps(s) for s in SENTENCES) + "]"
    rows = fill(pretrained / "checkpoints" / "last.ckpt", tmp_path / "ckpt", sentences)
    assert [r["sentence"] for r in rows] == SENTENCES
    assert [r["source"] for r in rows] == ["data.sentences[0]", "data.sentences[1]"]
    assert [len(r["masks"]) for r in rows] == [1, 2]
    for row in rows:
        for mask in row["masks"]:
            scores = [c["score"] for c in mask["predictions"]]
            assert len(scores) == K and scores == sorted(scores, reverse=True)
            assert 0 < sum(scores) <= 1 + 1e-6
            assert len({c["id"] for c in mask["predictions"]}) == K
        best = [m["predictions"][0]["token"] for m in row["masks"]]
        assert "[MASK]" not in row["filled"] and all(t in row["filled"] for t in best)
    # the export folder gives the same through bertlab and through transformers' pipeline
    assert fill(pretrained / "export", tmp_path / "export", sentences) == rows
    pipe = transformers.pipeline("fill-mask", model=str(pretrained / "export"), top_k=K, device="cpu")
    for sentence, row in zip(SENTENCES, rows):
        theirs = pipe(sentence)
        theirs = [theirs] if len(row["masks"]) == 1 else theirs  # one list per mask when several
        for mask, ref in zip(row["masks"], theirs, strict=True):
            assert [c["id"] for c in mask["predictions"]] == [r["token"] for r in ref]
            assert [c["token"] for c in mask["predictions"]] == [r["token_str"] for r in ref]
            torch.testing.assert_close(
                torch.tensor([c["score"] for c in mask["predictions"]]),
                torch.tensor([r["score"] for r in ref]),
                atol=1e-6,
                rtol=1e-4,
            )


def test_command_line_with_a_sentence_file(pretrained: Path, tmp_path: Path) -> None:
    """The documented command: a text file of sentences, a readable log line per mask, predictions.jsonl."""
    text = tmp_path / "sentences.txt"
    text.write_text("the [MASK] returns a new list .\n\n[MASK] module of the [MASK] library .\n")
    run = tmp_path / "run"
    args = [
        "task=fill_mask",
        f"pretrained={pretrained / 'export'}",
        f"data.test_file={text}",
        "data.top_k=3",
        *COMMON,
        f"hydra.run.dir={run}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    proc = run_train(args, env=offline_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (run / "train.log").read_text()
    assert f"{text}:3 '[MASK] module of the [MASK] library .' [MASK] 2/2: " in log
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert [r["source"] for r in rows] == [f"{text}:1", f"{text}:3"]
    assert all(len(m["predictions"]) == 3 for r in rows for m in r["masks"])


def test_bad_input_is_one_clear_error(pretrained: Path, tmp_path: Path, minilm_dir: Path) -> None:
    export = pretrained / "export"
    with pytest.raises(DataError, match=r"^data\.sentences\[1\]: 'no mask here' has no \[MASK\]; write"):
        fill(export, tmp_path / "a", 'data.sentences=["a [MASK] .","no mask here"]')
    text = tmp_path / "lines.txt"
    text.write_text("one [MASK] .\n\nlower case [mask] is not a mask\n")
    with pytest.raises(DataError, match=rf"^{text}:3: 'lower case \[mask\] is not a mask' has no \[MASK\]"):
        fill(export, tmp_path / "b", f"data.test_file={text}")
    with pytest.raises(DataError, match=r"no sentences to fill; pass 'data\.sentences="):
        fill(export, tmp_path / "c")
    with pytest.raises(DataError, match=r"data\.sentences\[0\]: 9 tokens .* max_seq_length=8"):
        fill(export, tmp_path / "d", 'data.sentences=["a [MASK] b c d e f"]', "data.max_seq_length=8")
    # MiniLM is a plain BertModel: no MLM head to fill with
    with pytest.raises(CheckpointError, match=rf"pretrained={minilm_dir} has no masked-LM head"):
        fill(minilm_dir, tmp_path / "e", 'data.sentences=["a [MASK] ."]')
    with pytest.raises(ConfigError, match=r"task=fill_mask runs with mode=predict on pretrained="):
        fill(export, tmp_path / "f", "mode=test")
