"""Every config group composes, every preset builds what it names, and bad names fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from bertlab.model import BertConfig
from bertlab.run_plan import model_config
from tests.cli import run_train
from tests.hydra_helpers import REPO, compose_cfg

MODELS = {  # layers, hidden, heads as the issue lists them
    "bert_tiny": (2, 128, 2),
    "bert_mini": (4, 256, 4),
    "bert_small": (4, 512, 8),
    "bert_medium": (8, 512, 8),
    "bert_base": (12, 768, 12),
    "bert_large": (24, 1024, 16),
}
HARDWARE = ["cpu", "gpu", "ddp", "fsdp"]
LOGGERS = ["wandb", "csv", "none"]


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("hardware", HARDWARE)
@pytest.mark.parametrize("logger", LOGGERS)
def test_every_model_hardware_logger_composes(tmp_path: Path, model: str, hardware: str, logger: str) -> None:
    cfg = compose_cfg([f"model={model}", f"hardware={hardware}", f"logger={logger}"], tmp_path)
    config = BertConfig(**model_config(cfg))  # the run's model dict: the preset without `hub_name`
    layers, hidden, heads = MODELS[model]
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (
        layers,
        hidden,
        heads,
    )
    assert config.intermediate_size == 4 * hidden and config.vocab_size == 30522
    assert config.max_position_embeddings == 512
    assert cfg.trainer.precision == ("bf16-mixed" if hardware == "gpu" else "auto")  # auto: run.main decides
    assert {"gpu": "gpu", "cpu": "cpu"}.get(hardware, "auto") == cfg.trainer.accelerator
    if hardware == "fsdp":
        strategy = instantiate(cfg.trainer.strategy)
        assert type(strategy).__name__ == "FSDP2Strategy"
    assert set(cfg.logger or {}) == (
        {"wandb"} if logger == "wandb" else {"csv"} if logger == "csv" else set()
    )


def test_wandb_logger_is_offline_by_default(tmp_path: Path) -> None:
    cfg = compose_cfg([], tmp_path)
    assert cfg.logger.wandb.offline is True


@pytest.mark.parametrize("name", ["pretrain_paper_phase1", "pretrain_paper_phase2"])
def test_experiments_compose(tmp_path: Path, name: str) -> None:
    cfg = compose_cfg([f"experiment={name}", "pretrained=some/phase1/export"], tmp_path)
    assert cfg.model.hidden_size == 768 and cfg.task.module.scheduler.warmup_steps == 10000
    assert cfg.data.max_seq_length == (128 if name.endswith("1") else 512)


def test_unknown_config_name_fails_with_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigCompositionException, match="bert_huge"):
        compose_cfg(["model=bert_huge"], tmp_path)


def test_cli_unknown_task_is_one_clear_line(tmp_path: Path) -> None:
    proc = run_train(["task=nosuchtask", f"hydra.run.dir={tmp_path}"])
    assert proc.returncode != 0
    assert "Could not find 'task/nosuchtask'" in proc.stderr
    assert "Available options" in proc.stderr and "pretrain" in proc.stderr


def test_model_presets_hold_only_their_sizes_and_checkpoint() -> None:
    """The shared fields live once in model/_bert.yaml; a preset says its four sizes and the published
    uncased checkpoint of that size (Turc et al.'s names spell the sizes out), nothing else."""
    sizes = {"hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"}
    for name, (layers, hidden, heads) in MODELS.items():
        preset = OmegaConf.load(REPO / "conf" / "model" / f"{name}.yaml")
        assert set(preset) == sizes | {"defaults", "hub_name"}, name
        published = {"bert_base": "bert-base-uncased", "bert_large": "bert-large-uncased"}.get(
            name, f"google/bert_uncased_L-{layers}_H-{hidden}_A-{heads}"
        )
        assert preset.hub_name == published, name


@pytest.mark.parametrize(("task", "lr"), [("pretrain", 1e-4), ("rte", 2e-5), ("conll2003", 5e-5)])
def test_optimizer_group_keeps_each_tasks_lr(tmp_path: Path, task: str, lr: float) -> None:
    adamw = compose_cfg([f"task={task}"], tmp_path).task.module.optimizer
    lamb = compose_cfg([f"task={task}", "optimizer=lamb"], tmp_path).task.module.optimizer
    assert (adamw._target_, adamw.lr, adamw.fused) == ("torch.optim.AdamW", lr, True)
    assert (lamb._target_, lamb.lr, lamb.weight_decay) == ("pytorch_optimizer.Lamb", lr, 0.01)
    assert "fused" not in lamb  # AdamW's kernel switch; Lamb would swallow it silently (**kwargs)
    cli = compose_cfg([f"task={task}", "optimizer=lamb", "task.module.optimizer.lr=3e-3"], tmp_path)
    assert cli.task.module.optimizer.lr == 3e-3


def test_lamb_trains_a_few_steps(tmp_path: Path) -> None:
    """optimizer=lamb as composed reaches BertTask.configure_optimizers and lowers the loss."""
    from pytorch_optimizer import Lamb

    from tests.tiny import TinyClassifierTask, labelled_batches, quiet_trainer, tiny_config

    cfg = compose_cfg(["optimizer=lamb", "task.module.optimizer.lr=1e-2"], tmp_path)
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).to_dict()
    module = TinyClassifierTask(
        config,
        optimizer=instantiate(cfg.task.module.optimizer),
        scheduler=instantiate(cfg.task.module.scheduler),
    )
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    batch = labelled_batches(1)
    trainer = quiet_trainer(max_steps=6)
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batch * 6, batch_size=None))
    optimizer = trainer.optimizers[0]
    assert isinstance(optimizer, Lamb) and "fused" not in optimizer.defaults
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.01, 0.0]
    assert optimizer.defaults["weight_decouple"] is False  # decay inside the trust-ratio update (the paper)
    assert len(module.losses) == 6 and module.losses[-1] < module.losses[0] - 0.05, module.losses
    assert all(not torch.equal(p, before[n]) for n, p in module.named_parameters())


def test_renamed_option_is_one_line_error(tmp_path: Path) -> None:
    """An old option name stops train.py before Hydra with one line naming the new key (exit status 2)."""
    proc = run_train(["data.max_seq_len=64", f"hydra.run.dir={tmp_path}"])
    assert proc.returncode == 2
    assert proc.stderr == "error: data.max_seq_len was renamed to data.max_seq_length\n"
    assert proc.stdout == "" and not list(tmp_path.iterdir())


def test_renamed_error_forms() -> None:
    from bertlab.renamed import RENAMED_KEYS, renamed_error

    assert RENAMED_KEYS["data.max_seq_len"] == "data.max_seq_length"
    line = "error: data.max_seq_len was renamed to data.max_seq_length"
    for arg in ("data.max_seq_len=64", "+data.max_seq_len=64", "++data.max_seq_len=64", "~data.max_seq_len"):
        assert renamed_error(["task=rte", arg]) == line, arg
    assert renamed_error(["data.max_seq_length=64", "-m", "--cfg", "job", "model=bert_base"]) is None
    # every new name is a name nobody renamed again
    assert not set(RENAMED_KEYS.values()) & set(RENAMED_KEYS)


def test_cfg_job_resolve_prints_derived_labels_and_checkpoint() -> None:
    """`--cfg job --resolve` resolves ${labels:...} into the printed config (a list value must be a ListConfig)
    and shows the headline command's checkpoint: the size's published one."""
    out = run_train(["model=bert_large", "task=mnli", "--cfg", "job", "--resolve"])
    assert out.returncode == 0, out.stderr[-2000:]
    assert "- contradiction" in out.stdout and "${labels" not in out.stdout
    assert "\npretrained: bert-large-uncased\n" in out.stdout


def test_budget_recipe_composes(tmp_path: Path) -> None:
    """experiment=pretrain_cpu_budget: bert_mini MLM-only on a time budget, held out with the paper's masking."""
    cfg = compose_cfg(["experiment=pretrain_cpu_budget", "data.path=wiki"], tmp_path)
    assert (cfg.model.num_hidden_layers, cfg.model.hidden_size) == (4, 256)
    assert cfg.task.module.objective == "mlm" and cfg.data.nsp is False
    assert cfg.task.module.scheduler.budget == "time" and cfg.trainer.max_time == "00:00:20:00"
    assert cfg.model.hidden_dropout_prob == 0.0 and cfg.data.mlm_probability == 0.4
    assert cfg.data.max_seq_length == 64 and cfg.data.batch_size == 16
    assert dict(cfg.data.eval_masking) == {
        "mlm_probability": 0.15,
        "mask_token_prob": 0.8,
        "random_token_prob": 0.1,
    }
