"""bench/core_claim.py's report: medians and ranges over seeds, the difference per task, the mean over tasks."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.bench_scripts import load_bench


@pytest.fixture(scope="module")
def core_claim() -> ModuleType:
    return load_bench("core_claim")


def result(task: str, start: str, seed: int, score: float | None, wall: float = 10.0) -> dict[str, Any]:
    return {"task": task, "start": start, "seed": seed, "score": score, "wall_s": wall}


def test_summary_is_median_and_range_times_100(core_claim: ModuleType) -> None:
    assert core_claim.summary([0.5, 0.9, 0.7]) == "70.0 (50.0–90.0)"
    assert core_claim.summary([]) == "failed"


def test_table_rows_difference_and_mean(core_claim: ModuleType) -> None:
    results = [
        # sst2: pre-trained median 0.80, random median 0.70 -> +10.0; walls summed over seeds
        *(result("sst2", "pretrained", s, v, 11.0) for s, v in ((1, 0.80), (2, 0.78), (3, 0.83))),
        *(result("sst2", "random", s, v, 12.0) for s, v in ((1, 0.70), (2, 0.69), (3, 0.75))),
        # stsb: pre-trained median 0.25, random median 0.31 -> -6.0
        *(result("stsb", "pretrained", s, v) for s, v in ((1, 0.25), (2, 0.20), (3, 0.26))),
        *(result("stsb", "random", s, v) for s, v in ((1, 0.31), (2, 0.30), (3, 0.40))),
    ]
    lines = core_claim.table(results, ["sst2", "stsb"]).splitlines()
    assert lines[2] == "| sst2 (acc) | 80.0 (78.0–83.0) | 70.0 (69.0–75.0) | +10.0 | 33 / 36 |"
    assert lines[3] == "| stsb (spearmanr) | 25.0 (20.0–26.0) | 31.0 (30.0–40.0) | -6.0 | 30 / 30 |"
    # mean of the medians: (80 + 25) / 2 against (70 + 31) / 2
    assert lines[4] == "| mean | 52.5 | 50.5 | +2.0 | |"


def test_a_task_that_failed_everywhere_has_no_difference_and_no_mean(core_claim: ModuleType) -> None:
    results = [
        result("rte", "pretrained", 1, None),
        result("rte", "random", 1, 0.5),
        result("sst2", "pretrained", 1, 0.6),
        result("sst2", "random", 1, 0.5),
    ]
    lines = core_claim.table(results, ["rte", "sst2"]).splitlines()
    assert lines[2].startswith("| rte (acc) | failed | 50.0 (50.0–50.0) | — |")
    assert not any(line.startswith("| mean") for line in lines)


@pytest.mark.parametrize(
    "extra",
    [
        ["--pretrained", "x"],
        ["--tokenizer", "v.txt", "--vocab-size", "8192"],
        ["--vocab-size", "8", "--pretrained", "x"],
    ],
)
def test_vocabulary_arguments_are_checked_before_any_run(
    core_claim: ModuleType, tmp_path: Path, extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        core_claim.main(["--out", str(tmp_path / "out"), *extra])
    assert exit_info.value.code == 2
    assert "--tokenizer" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing was started


@pytest.mark.parametrize("pairs", [False, True])
def test_pretraining_overrides_compose_to_the_budget_recipe(core_claim: ModuleType, pairs: bool) -> None:
    from tests.hydra_helpers import hydra_cfg

    args = argparse.Namespace(
        wiki="/w",
        tokenizer=None,
        vocab_size=8191,
        budget="00:00:07:00",
        model="bert_mini",
        segment_pairs=pairs,
        long_share=0.0,
    )
    cfg = hydra_cfg(core_claim.pretrain_args(args))
    assert cfg.data.path == "/w" and cfg.tokenizer is None and cfg.data.vocab_size == 8191
    assert cfg.data.nsp is False and cfg.data.segment_pairs is pairs
    assert cfg.task.module.objective == "mlm" and cfg.trainer.max_time == "00:00:07:00"
    assert cfg.data.max_seq_length == 64 and cfg.model.hidden_size == 256


@pytest.mark.parametrize(
    ("budget", "short", "long"),
    [("00:01:00:00", "00:00:54:00", "00:00:06:00"), ("01:00:07:00", "00:21:42:18", "00:02:24:42")],
)
def test_the_long_phase_takes_its_share_of_one_budget(
    core_claim: ModuleType, budget: str, short: str, long: str
) -> None:
    """--long-share 0.1: the short phase runs 90% of --budget at the recipe's 64 tokens, then the long phase
    the rest at --long-length from the short phase's export, its vocabulary and size (no model= that could
    disagree with it), with a fresh optimizer at --long-lr."""
    from tests.hydra_helpers import hydra_cfg

    args = argparse.Namespace(
        wiki="/w", tokenizer=None, vocab_size=8191, budget=budget, model="bert_mini", segment_pairs=True,
        long_share=0.1, long_length=127, long_lr=5e-4,
    )  # fmt: skip
    assert core_claim.phase_budgets(args) == (short, long)
    assert hydra_cfg(core_claim.pretrain_args(args)).trainer.max_time == short
    overrides = core_claim.long_phase_args(args, "/runs/pretrain/export")
    assert not any(o.startswith("model=") for o in overrides)
    cfg = hydra_cfg(overrides)
    assert cfg.pretrained == "/runs/pretrain/export" and cfg.tokenizer is None and cfg.data.segment_pairs
    assert (cfg.data.max_seq_length, cfg.task.module.optimizer.lr, cfg.trainer.max_time) == (127, 5e-4, long)
    assert cfg.task.module.objective == "mlm" and cfg.task.module.continue_from is None
    one_phase = argparse.Namespace(**{**vars(args), "long_share": 0.0})
    assert core_claim.phase_budgets(one_phase) == (budget, None)


@pytest.mark.parametrize("share", ["1", "-0.1"])
def test_a_long_share_outside_the_budget_is_refused_before_any_run(
    core_claim: ModuleType, tmp_path: Path, share: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        core_claim.main(["--out", str(tmp_path / "out"), "--long-share", share])
    assert exit_info.value.code == 2 and f"--long-share {float(share)}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_finetuning_overrides_compose_to_one_recipe(core_claim: ModuleType, pooling: str) -> None:
    from tests.hydra_helpers import hydra_cfg

    args = argparse.Namespace(
        glue="/d/glue", lr=3e-4, head_lr_scale=7.0, epochs=3, batch_size=31, max_train_examples=8001,
        max_seq_length=63,
        tokenizer=None, pooling=pooling, model="bert_mini", extra=["trainer.log_every_n_steps=7"],
    )  # fmt: skip
    recipe = core_claim.finetune_args(args, "/runs/pretrain/export", 8191)
    cfg = hydra_cfg(["task=sst2", "pretrained=null", "seed=2", *recipe])
    assert cfg.model.pooling == pooling and cfg.model.vocab_size == 8191 and cfg.model.hidden_size == 256
    assert cfg.tokenizer == "/runs/pretrain/export" and cfg.paths.data_dir == "/d"
    assert cfg.task.module.optimizer.lr == 3e-4 and cfg.trainer.max_epochs == 3
    assert cfg.task.module.head_lr_scale == 7.0
    assert (cfg.data.batch_size, cfg.data.max_train_examples, cfg.data.max_seq_length) == (31, 8001, 63)
    assert cfg.export is False and cfg.trainer.log_every_n_steps == 7


def test_a_finished_run_is_reused_only_for_the_same_command(
    core_claim: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A widened or interrupted comparison reruns nothing that finished the same command; another command
    (here another lr) runs again, and a failed run leaves no record to reuse."""
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], **_: Any) -> Any:
        calls.append(cmd)
        ok = "lr=1" in cmd
        if ok:
            (tmp_path / "run" / "metrics.json").write_text('{"val/acc": 0.75}', encoding="utf-8")
        return argparse.Namespace(returncode=0 if ok else 1)

    monkeypatch.setattr(core_claim.subprocess, "run", fake_run)
    first = core_claim.train(["lr=1"], tmp_path / "run", 1)
    assert first[0] == {"val/acc": 0.75} and first[2] == "" and len(calls) == 1
    again = core_claim.train(["lr=1"], tmp_path / "run", 1)
    assert again == first and len(calls) == 1  # reused: same metrics and wall time, nothing run
    failed = core_claim.train(["lr=2"], tmp_path / "run", 1)  # another command: runs, fails
    assert failed[0] == {} and failed[2] == "exit 1" and len(calls) == 2
    assert not (tmp_path / "run" / "metrics.json").exists()  # lr=1's metrics cannot pass for lr=2's
    core_claim.train(["lr=1"], tmp_path / "run", 1)
    assert len(calls) == 3  # its record names lr=1 but its metrics are gone: run again
