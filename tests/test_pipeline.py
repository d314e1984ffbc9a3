"""The ablation pipelines (issue 12): experiment=ablation_{table5,table6,table8,steps} compose for every
variant at every scale, and each runs end to end at scale=smoke (pre-train, fine-tune, pipeline.json) on
a tiny GLUE/CoNLL folder written here; a failing task is recorded and the next one still runs; the steps
ablation keeps exactly the step<N>.ckpt files asked for and fine-tunes from each."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from bertlab import resolvers
from bertlab.checkpointing import PeriodicCheckpoint
from bertlab.pipeline import (
    finetune_overrides,
    pipeline_config,
    pretrain_overrides,
    reusable_pretraining,
    summary_table,
    task_record,
    tasks_of,
)
from bertlab.pipeline_stage import StageResult, compose_stage, forwarded_overrides, job_config, one_line
from tests.cli import offline_env, run_train
from tests.hydra_helpers import REPO

SCALES = ("smoke", "cpu", "paper")
VARIANTS = {
    "table5": ["bert", "no_nsp", "ltr", "ltr_bilstm"],
    "table6": ["l3_h768_a12", "l6_h768_a3", "l6_h768_a12", "l12_h768_a12", "l12_h1024_a16", "l24_h1024_a16"],
    "table8": ["m80_s10_r10", "m100_s0_r0", "m80_s0_r20", "m80_s20_r0", "m0_s20_r80", "m0_s0_r100"],
    "steps": ["mlm", "ltr"],
}
TABLE6 = {"l3_h768_a12": (3, 768, 12), "l6_h768_a3": (6, 768, 3), "l24_h1024_a16": (24, 1024, 16)}
# Table 8: MASK/SAME/RND -> (data.mask_token_prob, data.random_token_prob)
TABLE8 = {"m80_s10_r10": (0.8, 0.1), "m100_s0_r0": (1.0, 0.0), "m80_s0_r20": (0.8, 0.2)}
TABLE8 |= {"m80_s20_r0": (0.8, 0.0), "m0_s20_r80": (0.0, 0.8), "m0_s0_r100": (0.0, 1.0)}


@pytest.fixture
def hydra_cfg() -> Iterator[Callable[[list[str]], DictConfig]]:
    """compose(overrides) of the real conf/, Hydra initialised once per test (each compose is then ~30%
    cheaper than tests.hydra_helpers.hydra_cfg's, and these tests compose ~80 configs)."""
    resolvers.register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        yield lambda overrides: compose("config", overrides=overrides)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("ablation", VARIANTS)
def test_every_variant_composes_at_every_scale(ablation: str, scale: str, hydra_cfg: Callable) -> None:
    spec = hydra_cfg([f"experiment=ablation_{ablation}", f"scale={scale}"]).pipeline
    assert list(spec.variants) == VARIANTS[ablation] and spec.scale == scale
    divisors = dict(spec.model_divisors)
    for variant in VARIANTS[ablation]:
        spec.variant = variant
        cfg = hydra_cfg(pretrain_overrides(spec, []))
        model, data = cfg.model, cfg.data
        if ablation == "table5":
            objective = "mlm_nsp" if variant == "bert" else "mlm" if variant == "no_nsp" else "ltr"
            assert cfg.task.module.objective == objective
            assert model.is_decoder is variant.startswith("ltr") and data.nsp is (variant == "bert")
        if ablation == "table6":
            layers, hidden, heads = spec.variants[variant].model_size
            assert model.num_hidden_layers == max(1, layers // divisors["layers"])
            assert model.hidden_size == hidden // divisors["hidden"] and model.num_attention_heads == heads
            assert model.intermediate_size == 4 * model.hidden_size
        if ablation == "table8":
            assert (data.mask_token_prob, data.random_token_prob) == TABLE8[variant]
        kept = cfg.callbacks.model_checkpoint.keep_steps
        assert kept == (list(spec.keep_steps) if ablation == "steps" else None)
    tasks = tasks_of(spec)
    assert {"table8": {"conll2003", "conll2003_feature"}}.get(ablation, set()) <= set(tasks)
    if scale == "paper":
        assert spec.model_divisors == {"layers": 1, "hidden": 1, "heads": 1}
        assert set(tasks) >= ({"mnli"} if ablation in ("table8", "steps") else {"mnli", "qnli", "squad_v1"})
    if ablation == "table5":  # the BiLSTM is the variant's fine-tuning override, on no other variant
        for variant in ("ltr", "ltr_bilstm"):
            spec.variant = variant
            ft = hydra_cfg(finetune_overrides(spec, tasks[0], Path("/pre/export"), []))
            assert ft.task.module.bilstm is (variant == "ltr_bilstm")


@pytest.mark.parametrize("scale", SCALES)
def test_every_task_of_a_scale_composes_as_a_fine_tuning_stage(scale: str, hydra_cfg: Callable) -> None:
    spec = hydra_cfg(["experiment=ablation_table5", f"scale={scale}"]).pipeline
    for task in dict.fromkeys(t for tasks in spec.task_sets.values() for t in tasks):
        ft = hydra_cfg(finetune_overrides(spec, task, Path("/pre/export"), ["logger=csv"]))
        assert ft.task.name == task and ft.pretrained == "/pre/export" and ft.export is False
        assert ft.task.main_metric.startswith("val/") and "wandb" not in ft.logger


def test_table6_paper_sizes_and_forwarded_overrides(hydra_cfg: Callable) -> None:
    spec = hydra_cfg(["experiment=ablation_table6", "scale=paper"]).pipeline
    for variant, (layers, hidden, heads) in TABLE6.items():
        spec.variant = variant
        model = hydra_cfg(pretrain_overrides(spec, [])).model
        assert (model.num_hidden_layers, model.hidden_size, model.num_attention_heads) == (
            layers,
            hidden,
            heads,
        )
    line = ["experiment=ablation_table6", "scale=cpu", "pipeline.variant=x", "logger=csv", "model=bert_base"]
    line += ["model.hidden_size=64", "model.hidden_dropout_prob=0.2", "paths.data_dir=/d", "hydra.run.dir=/r"]
    assert forwarded_overrides(line, "pretrain") == line[3:8]
    assert forwarded_overrides(line, "finetune") == [
        "logger=csv",
        "model.hidden_dropout_prob=0.2",
        "paths.data_dir=/d",
    ]


def test_stage_config_folder_paths_and_wandb_group(tmp_path: Path) -> None:
    paths = {"data_dir": "/data", "cache_dir": "/cache"}
    cfg = compose_stage(["task=rte", "pretrained=/pre/export"], tmp_path / "rte", paths)
    assert cfg.hydra.runtime.output_dir == str(tmp_path / "rte") and "task=rte" in cfg.hydra.overrides.task
    job = job_config(cfg, {"group": "ablation_table5", "name": "table5/ltr/rte"})
    assert (
        "hydra" not in job and job.paths.output_dir == str(tmp_path / "rte") and job.paths.data_dir == "/data"
    )
    assert (job.logger.wandb.group, job.logger.wandb.name) == ("ablation_table5", "table5/ltr/rte")


def test_one_line_errors_and_bad_keep_steps(tmp_path: Path) -> None:
    try:
        raise RuntimeError("wrapped") from ValueError("plain")
    except RuntimeError as err:
        assert one_line(err) == "RuntimeError: wrapped"
    assert one_line(ValueError("first\n   second")) == "ValueError: first second"
    with pytest.raises(ValueError, match=r"keep_steps=\[0\]: must be optimizer steps >= 1"):
        PeriodicCheckpoint(dirpath=tmp_path, keep_steps=[0])


def test_pipeline_run_config_names_the_variant_recipes_and_pretraining(hydra_cfg: Callable) -> None:
    cfg = hydra_cfg(["experiment=ablation_table8", "scale=cpu", "pipeline.variant=m0_s20_r80"])
    pre = {"status": "ok", "step": 301, "wall_s": 380.5, "metrics": {"val/mlm_acc": 0.07}}
    values = pipeline_config(cfg, {"variant": "m0_s20_r80", "pretrain": pre})
    assert values["pipeline.variant"] == "m0_s20_r80" and values["pipeline.scale"] == "cpu"
    assert values["pipeline.variants.m0_s20_r80.label"] == "0/20/80"
    assert not any(k.startswith("pipeline.variants.m80_s10_r10") for k in values)  # this variant's alone
    assert "trainer.max_time=00:00:06:00" in values["pipeline.pretrain_overrides"]
    assert values["pipeline.tasks"] == ["sst2", "conll2003", "conll2003_feature"]  # resolved
    assert (values["pretrain.step"], values["pretrain.val/mlm_acc"]) == (301, 0.07)


@pytest.mark.parametrize("task", ["conll2003", "conll2003_feature", "squad_v1", "squad_v2", "sst2", "swag"])
def test_every_score_is_a_fraction(task: str, tmp_path: Path, hydra_cfg: Callable) -> None:
    """NER and SQuAD log their metric in percent, GLUE and SWAG as a fraction: a row holds fractions only
    (the report scales every task x100; a CoNLL F1 of 70.9 once printed as 7089)."""
    composed = hydra_cfg([f"task={task}"]).task
    value = 70.9 if composed.main_metric_percent else 0.709
    stage = StageResult(tmp_path, metrics={composed.main_metric: value}, main_metric=composed.main_metric)
    stage.main_metric_percent = composed.main_metric_percent
    assert task_record(stage)["score"] == pytest.approx(0.709)
    assert composed.main_metric_percent == (task.startswith(("conll", "squad")))


def test_ltr_bilstm_reuses_ltrs_pretraining_only_when_it_matches(tmp_path: Path, hydra_cfg: Callable) -> None:
    spec = hydra_cfg(["experiment=ablation_table5", "scale=cpu"]).pipeline
    spec.variant = "ltr"
    ltr_over = pretrain_overrides(spec, ["paths.data_dir=/d", "pipeline.variant=ltr"])
    spec.variant = "ltr_bilstm"
    over = pretrain_overrides(spec, ["paths.data_dir=/d", "pipeline.variant=ltr_bilstm"])
    assert over == ltr_over  # the same pre-training: the variant's own name is not forwarded
    sweep = tmp_path / "sweep"
    job, sibling = sweep / "ltr_bilstm", sweep / "ltr"
    assert reusable_pretraining(spec, job, over) is None  # ltr has not run here (a lone job)
    sibling.mkdir(parents=True)
    pre = {
        "status": "ok",
        "run_dir": str(sibling / "pretrain"),
        "step": 330,
        "overrides": over,
        "metrics": {},
    }
    (sibling / "pipeline.json").write_text(json.dumps({"pretrain": pre}))
    assert reusable_pretraining(spec, job, over) == {**pre, "reused_from": str(sibling)}
    assert reusable_pretraining(spec, job, [*over, "seed=2"]) is None  # pre-trained otherwise
    (sibling / "pipeline.json").write_text(json.dumps({"pretrain": {**pre, "status": "failed"}}))
    assert reusable_pretraining(spec, job, over) is None
    spec.variant = "no_nsp"  # no pretrain_from
    (sibling / "pipeline.json").write_text(json.dumps({"pretrain": pre}))
    assert reusable_pretraining(spec, sweep / "no_nsp", over) is None


def test_summary_table_has_one_line_per_row() -> None:
    ok = {"status": "ok", "metric": "val/acc", "score": 0.75, "wall_s": 2.0, "run_dir": "r"}
    failed = {"status": "failed", "error": "DataError: x", "wall_s": 0.5}
    result = {"ablation": "steps", "variant": "mlm", "label": "MLM", "scale": "smoke", "pretrain": {}}
    result["rows"] = [{"step": 2, "tasks": {"sst2": ok, "rte": failed}}, {"step": 4, "tasks": {"sst2": ok}}]
    columns, lines = summary_table(result)
    assert columns == [
        "ablation",
        "variant",
        "label",
        "scale",
        "step",
        "sst2",
        "rte",
        "sst2/wall_s",
        "rte/wall_s",
    ]
    assert lines == [
        ["steps", "mlm", "MLM", "smoke", 2, 0.75, None, 2.0, 0.5],
        ["steps", "mlm", "MLM", "smoke", 4, 0.75, None, 2.0, None],
    ]


# -- end to end at scale=smoke -------------------------------------------------------------------------
WORDS = ["good", "bad", "great", "awful", "fine", "poor", "nice", "dull"]


def _write_data(root: Path) -> Path:
    """SST-2 and RTE (GLUE tsv), MRPC with train.tsv only (its dev file is missing: the failing task) and
    CoNLL-2003 train/dev, 16 examples each."""

    def tsv(path: Path, header: str, rows: list[str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")

    for split in ("train", "dev"):
        sst = [f"a {WORDS[i % 8]} movie , truly {WORDS[(i + 3) % 8]} .\t{i % 2}" for i in range(16)]
        tsv(root / "glue" / "SST-2" / f"{split}.tsv", "sentence\tlabel", sst)
        labels = ("entailment", "not_entailment")
        rte = [
            f"{i}\tThe cat is {WORDS[i % 8]} .\tA cat is {WORDS[(i + i % 2) % 8]} .\t{labels[i % 2]}"
            for i in range(16)
        ]
        tsv(root / "glue" / "RTE" / f"{split}.tsv", "index\tsentence1\tsentence2\tlabel", rte)
        sentences = ["EU NNP I-NP I-ORG\nrejects VBZ I-VP O\nGerman JJ I-NP I-MISC\ncall NN I-NP O"] * 16
        (root / "conll2003").mkdir(parents=True, exist_ok=True)
        name = "eng.train" if split == "train" else "eng.testa"
        (root / "conll2003" / name).write_text("-DOCSTART- -X- O O\n\n" + "\n\n".join(sentences) + "\n")
    mrpc = [f"{i % 2}\t{i}\t{i + 1}\tOne {WORDS[i % 8]} .\tTwo {WORDS[i % 8]} ." for i in range(16)]
    tsv(root / "glue" / "MRPC" / "train.tsv", "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String", mrpc)
    return root


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data folder, cache folder) shared by the pipelines below: the pydoc corpus is read once."""
    root = tmp_path_factory.mktemp("pipeline")
    return _write_data(root / "data"), root / "cache"


def _pipeline(ablation: str, variant: str, run: Path, shared: tuple[Path, Path], *extra: str) -> dict:
    """`python train.py experiment=ablation_<ablation> pipeline.variant=<variant>`: its pipeline.json."""
    data, cache = shared
    args = [f"experiment=ablation_{ablation}", "scale=smoke", f"pipeline.variant={variant}", "logger=csv"]
    args += [f"paths.data_dir={data}", f"paths.cache_dir={cache}", f"hydra.run.dir={run}", *extra]
    proc = run_train(args, env=offline_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((run / "pipeline.json").read_text())


def _ok(entry: dict, metric: str) -> None:
    assert entry["status"] == "ok" and entry["metric"] == metric, entry
    assert 0.0 <= entry["score"] <= 1.0 and entry["wall_s"] > 0 and Path(entry["run_dir"]).is_dir()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_table5_ltr_bilstm_end_to_end_with_a_failing_task(tmp_path: Path, shared: tuple[Path, Path]) -> None:
    run = tmp_path / "job"
    result = _pipeline("table5", "ltr_bilstm", run, shared, "pipeline.tasks=[sst2,mrpc,rte]")
    assert {k: result[k] for k in ("ablation", "variant", "label", "scale")} == {
        "ablation": "table5", "variant": "ltr_bilstm", "label": "LTR & No NSP + BiLSTM", "scale": "smoke",
    }  # fmt: skip
    pre = result["pretrain"]
    assert pre["status"] == "ok" and pre["step"] == 4 and pre["run_dir"] == str(run / "pretrain")
    assert {"val/lm_loss", "val/perplexity"} <= pre["metrics"].keys() and pre["wall_s"] > 0
    [row] = result["rows"]
    assert row["step"] == 4 and list(row["tasks"]) == ["sst2", "mrpc", "rte"]
    _ok(row["tasks"]["sst2"], "val/acc")
    _ok(row["tasks"]["rte"], "val/acc")  # after the failed task: it still ran
    failed = row["tasks"]["mrpc"]
    assert failed["status"] == "failed" and set(failed) == {"status", "error", "wall_s"}
    assert "\n" not in failed["error"] and "dev.tsv" in failed["error"], failed
    # the BiLSTM is on at fine-tuning only; the stage folders are run folders (their .hydra/config.yaml)
    ft = (run / "finetune" / "sst2" / ".hydra" / "config.yaml").read_text()
    assert "bilstm: true" in ft and "pretrained: " + str(run / "pretrain" / "export") in ft
    assert "is_decoder: true" in (run / "pretrain" / ".hydra" / "config.yaml").read_text()
    lines = list(csv.reader((run / "pipeline.csv").open()))
    assert (
        lines[0][:7] == ["ablation", "variant", "label", "scale", "step", "sst2", "mrpc"] and len(lines) == 2
    )


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_steps_ablation_keeps_exactly_the_asked_steps(tmp_path: Path, shared: tuple[Path, Path]) -> None:
    run = tmp_path / "job"
    result = _pipeline("steps", "mlm", run, shared, "pipeline.keep_steps=[2,4,9]")
    kept = sorted(p.name for p in (run / "pretrain" / "checkpoints").glob("*.ckpt"))
    assert kept == ["last.ckpt", "step2.ckpt", "step4.ckpt"]  # 9 is past the run's 4 steps
    assert [row["step"] for row in result["rows"]] == [2, 4, 9]
    for row in result["rows"][:2]:
        _ok(row["tasks"]["sst2"], "val/acc")
        assert row["tasks"]["sst2"]["run_dir"].endswith(f"finetune/sst2-step{row['step']}")
    missing = result["rows"][2]["tasks"]["sst2"]
    assert missing["status"] == "failed" and "step9.ckpt was not written" in missing["error"]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_table8_mix_scored_fine_tuned_and_feature_based(tmp_path: Path, shared: tuple[Path, Path]) -> None:
    run = tmp_path / "job"
    result = _pipeline("table8", "m0_s20_r80", run, shared, "pipeline.tasks=[conll2003,conll2003_feature]")
    assert result["label"] == "0/20/80" and result["pretrain"]["status"] == "ok"
    pre = (run / "pretrain" / ".hydra" / "config.yaml").read_text()
    assert "mask_token_prob: 0.0" in pre and "random_token_prob: 0.8" in pre
    [row] = result["rows"]
    for task in ("conll2003", "conll2003_feature"):
        _ok(row["tasks"][task], "val/f1")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_table6_smallest_size_end_to_end(tmp_path: Path, shared: tuple[Path, Path]) -> None:
    run = tmp_path / "job"
    result = _pipeline("table6", "l3_h768_a12", run, shared, "pipeline.tasks=[rte]")
    assert result["label"] == "L=3/H=768/A=12"
    config = json.loads((run / "pretrain" / "export" / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"]) == (1, 24, 12)
    _ok(result["rows"][0]["tasks"]["rte"], "val/acc")
