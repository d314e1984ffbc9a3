"""SQuAD fine-tuning end to end through run.main on slices of the real dev files, plus configs and pieces."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from bertlab.data.squad_reader import parse_articles
from bertlab.metrics.squad import squad_v1_scores, squad_v2_scores
from bertlab.run import main
from bertlab.tasks.squad import PAD_LOGIT, THRESHOLD_KEY, QuestionAnsweringTask, pad_cat, span_loss
from tests.hydra_helpers import REPO, compose_cfg

V1_DEV = "squad/v1.1/dev-v1.1.json"
V2_DEV = "squad/v2.0/dev-v2.0.json"
TINY = {"vocab_size": 30522, "hidden_size": 72, "num_hidden_layers": 2, "num_attention_heads": 3,
        "intermediate_size": 101}  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One intra-op thread: on a busy 2-core machine a 72-wide model spends most of a step syncing threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small(minilm_dir: Path) -> list[str]:
    """A tiny odd-sized random model on the real MiniLM vocabulary, short windows, fp32, no export."""
    return ["model=bert_tiny", "model.hidden_size=72", "model.num_attention_heads=3", "model.intermediate_size=101",
            "pretrained=null", "logger=csv", "hardware.precision=32-true", f"tokenizer={minilm_dir / 'vocab.txt'}",
            "data.max_seq_length=128", "data.doc_stride=48", "data.batch_size=8", "data.eval_batch_size=16",
            "trainer.log_every_n_steps=2", "export=false"]  # fmt: skip


def fit_squad(task: str, dev: Path, val_articles: str, minilm_dir: Path, out: Path, *extra: str) -> dict:
    """A one-epoch fit of the tiny model on 24 questions of article 0, scored on 30 of `val_articles`."""
    return main(compose_cfg([f"task={task}", *small(minilm_dir), f"data.train_file={dev}", "data.train_articles=0:1",
                             "data.max_train_examples=24", f"data.val_file={dev}", f"data.val_articles={val_articles}",
                             "data.max_eval_examples=30", "trainer.max_epochs=1", *extra], out))  # fmt: skip


def articles(path: Path, spec: str) -> list[dict]:
    """The raw articles of an official json in the slice `spec`."""
    return json.loads(path.read_text(encoding="utf-8"))["data"][parse_articles(spec)]


def questions(path: Path, spec: str, limit: int) -> dict[str, tuple[str, list[str]]]:
    """`{qid: (context, gold texts)}` of the slice's first `limit` questions, read straight from the json."""
    out = {
        qa["id"]: (p["context"], [a["text"] for a in qa["answers"]])
        for art in articles(path, spec)
        for p in art["paragraphs"]
        for qa in p["qas"]
    }
    return dict(list(out.items())[:limit])


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def check_predictions(run: Path, expected: dict[str, tuple[str, list[str]]]) -> dict[str, str]:
    """predictions.json in the official `{qid: text}`: every evaluated question, texts from its context."""
    preds = read_json(run / "predictions.json")
    assert set(preds) == set(expected)
    for qid, text in preds.items():
        assert isinstance(text, str) and text in expected[qid][0]
    return preds


@pytest.fixture(scope="module")
def v1_fit(
    shared_data: Path, minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict]:
    """A short task=squad_v1 fit (24 questions of article 0, scored on 30 of article 38): run dir, metrics."""
    run = tmp_path_factory.mktemp("squad_v1") / "fit"
    return run, fit_squad("squad_v1", shared_data / V1_DEV, "38:39", minilm_dir, run)


def test_squad_v1_fit_logs_scores_of_the_written_predictions(
    shared_data: Path, v1_fit: tuple[Path, dict]
) -> None:
    run, metrics = v1_fit
    assert read_json(run / "metrics.json") == metrics
    assert {"val/exact_match", "val/f1"} <= metrics.keys()
    assert not (run / "null_odds.json").exists()
    golds = questions(shared_data / V1_DEV, "38:39", 30)
    preds = check_predictions(run, golds)
    assert all(preds.values()), "v1 always answers with a span"
    # the logged scores are those of the written file over exactly these questions
    rescored = squad_v1_scores({q: g for q, (_, g) in golds.items()}, preds)
    for key in ("exact_match", "f1"):
        assert metrics[f"val/{key}"] == pytest.approx(rescored[key], abs=1e-4)


def test_mode_test_scores_the_given_file(
    shared_data: Path, v1_fit: tuple[Path, dict], tmp_path: Path
) -> None:
    dev = shared_data / V1_DEV
    run = tmp_path / "test"
    # task= only selects a data group that has test_file; task, model and data come from the checkpoint
    scored = main(compose_cfg(["task=squad_v1", "mode=test", f"ckpt={v1_fit[0] / 'checkpoints' / 'last.ckpt'}",
                               f"data.test_file={dev}", "data.test_articles=40:41", "logger=csv",
                               "hardware.precision=32-true"], run))  # fmt: skip
    assert read_json(run / "metrics.json") == scored
    assert {"test/exact_match", "test/f1"} <= scored.keys()
    golds = questions(dev, "40:41", 30)  # max_eval_examples=30 travels in the checkpoint's data config
    preds = check_predictions(run, golds)
    rescored = squad_v1_scores({q: g for q, (_, g) in golds.items()}, preds)
    assert scored["test/f1"] == pytest.approx(rescored["f1"], abs=1e-4)


def test_mode_test_takes_task_module_overrides_over_the_checkpoint(
    shared_data: Path, v1_fit: tuple[Path, dict], tmp_path: Path
) -> None:
    """task.module.* on the command line wins over the stored config: one-token answers have no spaces."""
    common = ["task=squad_v1", "mode=test", f"ckpt={v1_fit[0] / 'checkpoints' / 'last.ckpt'}",
              f"data.test_file={shared_data / V1_DEV}", "data.test_articles=40:41", "logger=csv",
              "hardware.precision=32-true"]  # fmt: skip
    main(compose_cfg(common, tmp_path / "default"))
    main(compose_cfg([*common, "task.module.max_answer_length=1"], tmp_path / "short"))
    assert any(" " in text for text in read_json(tmp_path / "default" / "predictions.json").values())
    assert not any(" " in text for text in read_json(tmp_path / "short" / "predictions.json").values())


def test_mode_predict_answers_a_file_without_answers(
    shared_data: Path, v1_fit: tuple[Path, dict], tmp_path: Path
) -> None:
    """mode=predict reads every question of a file whose answers are gone (empty or no key), scores nothing,
    and writes the same predictions.json as mode=test on the labelled file."""
    dev = shared_data / V1_DEV
    raw = read_json(dev)
    raw["data"] = raw["data"][40:41]
    for i, qa in enumerate(qa for p in raw["data"][0]["paragraphs"] for qa in p["qas"]):
        if i % 2:
            del qa["answers"]
        else:
            qa["answers"] = []
    hidden = tmp_path / "questions.json"
    hidden.write_text(json.dumps(raw), encoding="utf-8")
    common = ["task=squad_v1", f"ckpt={v1_fit[0] / 'checkpoints' / 'last.ckpt'}", "logger=csv",
              "hardware.precision=32-true"]  # fmt: skip
    predicted = main(compose_cfg([*common, "mode=predict", f"data.test_file={hidden}"], tmp_path / "pred"))
    assert predicted == {} and read_json(tmp_path / "pred" / "metrics.json") == {}
    main(
        compose_cfg(
            [*common, "mode=test", f"data.test_file={dev}", "data.test_articles=40:41"], tmp_path / "t"
        )
    )
    preds = check_predictions(tmp_path / "pred", questions(dev, "40:41", 30))
    assert preds == read_json(tmp_path / "t" / "predictions.json")


def test_ddp_test_mode_matches_one_process(
    shared_data: Path, v1_fit: tuple[Path, dict], tmp_path: Path
) -> None:
    """Two CPU ranks (gloo) each see half the windows; the gathered scores and files equal one process's."""
    dev = shared_data / V1_DEV
    common = ["task=squad_v1", "mode=test", f"ckpt={v1_fit[0] / 'checkpoints' / 'last.ckpt'}", f"data.test_file={dev}",
              "data.test_articles=40:41", "data.eval_batch_size=7", "logger=csv", "hardware.precision=32-true"]  # fmt: skip
    single = main(compose_cfg(common, tmp_path / "one"))
    ddp = tmp_path / "ddp"
    args = [*common, "hardware=ddp", "hardware.accelerator=cpu", "hardware.devices=2", f"hydra.run.dir={ddp}",
            f"paths.cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    env = os.environ | {"WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "train.py", *args], cwd=REPO, capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "distributed_backend=gloo" in proc.stderr + proc.stdout
    assert read_json(ddp / "predictions.json") == read_json(tmp_path / "one" / "predictions.json")
    assert read_json(ddp / "metrics.json") == pytest.approx(single, abs=1e-4)


@pytest.fixture(scope="module")
def v2_fit(
    shared_data: Path, minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict]:
    """A short task=squad_v2 fit (24 questions of article 0, scored on 30 of article 30): run dir, metrics."""
    run = tmp_path_factory.mktemp("squad_v2") / "fit"
    dev = shared_data / V2_DEV
    return run, fit_squad("squad_v2", dev, "30:31", minilm_dir, run, "task.module.max_answer_length=3")


def test_squad_v2_fit_writes_null_odds_and_official_keys(
    shared_data: Path, v2_fit: tuple[Path, dict]
) -> None:
    dev = shared_data / V2_DEV
    run, metrics = v2_fit
    assert read_json(run / "metrics.json") == metrics
    keys = ["exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1", "best_exact",
            "best_exact_thresh", "best_f1", "best_f1_thresh"]  # fmt: skip
    assert {f"val/{k}" for k in keys} <= metrics.keys()
    golds = questions(dev, "30:31", 30)
    assert {bool(g) for _, g in golds.values()} == {True, False}, "the slice must hold both kinds of question"
    preds = check_predictions(run, golds)
    odds = read_json(run / "null_odds.json")
    assert set(odds) == set(golds)
    assert all(isinstance(v, float) and math.isfinite(v) for v in odds.values())
    # threshold 0.0: "" exactly where the null score beats the best span
    assert all((preds[q] == "") == (odds[q] > 0.0) for q in golds)
    # max_answer_length=3 reached post-processing: no answer spans more than 3 word pieces (so <= 3 words)
    assert all(len(text.split()) <= 3 for text in preds.values())
    rescored = squad_v2_scores({q: g for q, (_, g) in golds.items()}, preds, odds)
    for key in keys:
        assert metrics[f"val/{key}"] == pytest.approx(rescored[key], abs=1e-3), key


def v2_eval(
    dev: Path, ckpt: Path, out: Path, mode: str = "test", *overrides: str
) -> tuple[dict, dict[str, str]]:
    """mode=test|predict of a v2 checkpoint on the fit's dev questions: metrics and predictions.json."""
    args = ["task=squad_v2", f"mode={mode}", f"ckpt={ckpt}", f"data.test_file={dev}", "data.test_articles=30:31",
            "logger=csv", "hardware.precision=32-true", *overrides]  # fmt: skip
    return main(compose_cfg(args, out)), read_json(out / "predictions.json")


def test_squad_v2_checkpoint_keeps_the_dev_threshold_for_test_and_predict(
    shared_data: Path, v2_fit: tuple[Path, dict], tmp_path: Path
) -> None:
    """The fit stores its val/best_f1_thresh in the .ckpt; test and predict answer "" exactly where the null
    odds exceed the stored threshold, unless task.module.null_score_diff_threshold is given."""
    dev = shared_data / V2_DEV
    run, fit = v2_fit
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert ckpt[THRESHOLD_KEY] == pytest.approx(fit["val/best_f1_thresh"], abs=1e-4)
    # a random tiny model's best threshold is often the 0.0 default: store one that splits the questions
    # differently, so that applying it shows (half of them above it, half below)
    odds = sorted(read_json(run / "null_odds.json").values())
    k = 15 if sum(o > 0.0 for o in odds) != 15 else 10
    tuned = (odds[k - 1] + odds[k]) / 2
    ckpt[THRESHOLD_KEY] = tuned
    torch.save(ckpt, tmp_path / "tuned.ckpt")
    metrics, preds = v2_eval(dev, tmp_path / "tuned.ckpt", tmp_path / "test")
    assert metrics["test/null_score_diff_threshold"] == pytest.approx(tuned, abs=1e-5)
    odds_by_q = read_json(tmp_path / "test" / "null_odds.json")
    assert sorted(odds_by_q.values()) == odds  # the fit's last validation, the same weights and questions
    assert all((preds[q] == "") == (o > tuned) for q, o in odds_by_q.items())
    _, predicted = v2_eval(dev, tmp_path / "tuned.ckpt", tmp_path / "predict", "predict")
    assert predicted == preds
    # the command line wins over the stored threshold
    metrics, at_zero = v2_eval(
        dev, tmp_path / "tuned.ckpt", tmp_path / "zero", "test", "task.module.null_score_diff_threshold=0.0"
    )
    assert metrics["test/null_score_diff_threshold"] == 0.0 and at_zero != preds
    assert all((at_zero[q] == "") == (o > 0.0) for q, o in odds_by_q.items())
    assert metrics["test/f1"] == pytest.approx(fit["val/f1"], abs=1e-3)


def test_threshold_is_the_set_one_else_the_stored_one_outside_validation() -> None:
    """`threshold(stage)`: task.module's value wins; else test/predict use the checkpoint's, val uses 0.0."""
    trained = QuestionAnsweringTask(TINY, version=2)
    assert trained.threshold("test") == trained.threshold("val") == 0.0  # nothing tuned yet
    trained.tuned_threshold = -1.25
    checkpoint: dict = {}
    trained.on_save_checkpoint(checkpoint)
    assert checkpoint == {THRESHOLD_KEY: -1.25}
    loaded = QuestionAnsweringTask(TINY, version=2)
    loaded.on_load_checkpoint(checkpoint)
    assert loaded.threshold("test") == loaded.threshold("predict") == -1.25 and loaded.threshold("val") == 0.0
    overridden = QuestionAnsweringTask(TINY, version=2, null_score_diff_threshold=0.5)
    overridden.on_load_checkpoint(checkpoint)
    assert {overridden.threshold(s) for s in ("val", "test", "predict")} == {0.5}
    old = QuestionAnsweringTask(TINY, version=2)
    old.on_load_checkpoint({})  # a checkpoint written before thresholds were stored
    assert old.threshold("test") == 0.0


def test_short_training_lowers_the_span_loss(shared_data: Path, minilm_dir: Path, tmp_path: Path) -> None:
    dev = shared_data / V1_DEV
    run = tmp_path / "run"
    main(compose_cfg(["task=squad_v1", *small(minilm_dir), "data.batch_size=16", f"data.train_file={dev}",
                      "data.train_articles=0:2", "data.max_train_examples=300", f"data.val_file={dev}",
                      "data.val_articles=38:39", "data.max_eval_examples=10", "trainer.max_steps=24",
                      "trainer.log_every_n_steps=2", "task.module.optimizer.lr=2e-3",
                      "task.module.scheduler.warmup_ratio=0.05"], run))  # fmt: skip
    rows = list(csv.DictReader((next(run.glob("csv/version_*")) / "metrics.csv").open()))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) >= 10
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    # a start/end guess over ~128 positions starts near ln(128) = 4.85
    assert first > 4.3
    assert last < first - 0.7, f"span loss did not fall: {first:.2f} -> {last:.2f}"


# ------------------------------------------------------------------------------------------------ pieces


def test_span_loss_is_the_mean_of_start_and_end_cross_entropy() -> None:
    start, end = torch.randn(5, 11, dtype=torch.bfloat16), torch.randn(5, 11, dtype=torch.bfloat16)
    sp, ep = torch.tensor([0, 3, 10, 4, 4]), torch.tensor([0, 5, 10, 4, 7])
    loss = span_loss(start, end, sp, ep)
    assert loss.dtype == torch.float32
    expected = (F.cross_entropy(start.float(), sp) + F.cross_entropy(end.float(), ep)) / 2
    torch.testing.assert_close(loss, expected)
    assert not torch.allclose(loss, F.cross_entropy(start.float(), sp))


def test_pad_cat_keeps_rows_and_pads_narrow_blocks_low() -> None:
    a, b = torch.randn(2, 7), torch.randn(3, 4)
    out = pad_cat([a, b])
    assert out.shape == (5, 7)
    torch.testing.assert_close(out[:2], a)
    torch.testing.assert_close(out[2:, :4], b)
    assert (out[2:, 4:] == PAD_LOGIT).all()


def test_epoch_without_batches_logs_a_warning_and_writes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    module = QuestionAnsweringTask(TINY, version=2)
    module.trainer = L.Trainer(
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with caplog.at_level(logging.WARNING, logger="bertlab.tasks.squad"):
        module.on_validation_epoch_end()
        module.on_test_epoch_end()
    assert caplog.text.count("had no batches") == 2
    assert list(tmp_path.iterdir()) == []


def test_unknown_version_is_rejected() -> None:
    with pytest.raises(ValueError, match="version must be 1 or 2"):
        QuestionAnsweringTask(TINY, version=3)


# ------------------------------------------------------------------------------------------------ configs


@pytest.mark.parametrize(
    ("task", "version", "batch", "train", "dev"),
    [
        ("squad_v1", 1, 32, "v1.1/train-v1.1.json", "v1.1/dev-v1.1.json"),
        ("squad_v2", 2, 48, "v2.0/train-v2.0.json", "v2.0/dev-v2.0.json"),
    ],
)
def test_task_configs_hold_the_paper_recipe(
    tmp_path: Path, task: str, version: int, batch: int, train: str, dev: str
) -> None:
    cfg = compose_cfg([f"task={task}", "paths.data_dir=/D"], tmp_path)
    d, m = cfg.data, cfg.task.module
    assert m._target_ == "bertlab.tasks.squad.QuestionAnsweringTask" and d.version == m.version == version
    assert (d.max_seq_length, d.doc_stride, d.max_query_length, d.batch_size) == (384, 128, 64, batch)
    assert m.optimizer.lr == 5e-5 and m.scheduler.warmup_ratio == 0.1
    # v2: null = the checkpoint's dev-tuned threshold in test and predict (0.0 in validation)
    threshold = None if version == 2 else 0.0
    assert (m.n_best_size, m.max_answer_length, m.null_score_diff_threshold) == (20, 30, threshold)
    assert (d.train_file, d.val_file, d.test_file, d.hub_name) == (
        f"/D/squad/{train}",
        f"/D/squad/{dev}",
        None,
        None,
    )
    assert d.train_articles is d.val_articles is d.test_articles is None


@pytest.mark.parametrize(("task", "epochs"), [("squad_v1", 3), ("squad_v2", 2)])
def test_task_configs_set_the_paper_epochs(tmp_path: Path, task: str, epochs: int) -> None:
    assert compose_cfg([f"task={task}"], tmp_path).trainer.max_epochs == epochs


@pytest.mark.parametrize(
    ("experiment", "dev", "train_articles", "val_articles"),
    [
        ("squad_dev_split", V1_DEV, 38, 10),
        ("squad_v2_dev_split", V2_DEV, 25, 10),
    ],
)
def test_dev_split_experiments_train_and_evaluate_on_disjoint_articles(
    shared_data: Path, tmp_path: Path, experiment: str, dev: str, train_articles: int, val_articles: int
) -> None:
    cfg = compose_cfg([f"experiment={experiment}", f"paths.data_dir={shared_data}"], tmp_path)
    assert cfg.data.train_file == cfg.data.val_file == str(shared_data / dev)
    assert cfg.task.module.version == cfg.data.version == (1 if "v1" in dev else 2)
    train = articles(Path(cfg.data.train_file), cfg.data.train_articles)
    val = articles(Path(cfg.data.val_file), cfg.data.val_articles)
    total = len(read_json(shared_data / dev)["data"])
    assert (len(train), len(val)) == (train_articles, val_articles) and len(train) + len(val) == total
    assert not {a["title"] for a in train} & {a["title"] for a in val}
