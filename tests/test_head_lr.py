"""task.module.head_lr_scale: the head (pooler, classifier) trains at optimizer.lr times the scale, the
embeddings and encoder layers at optimizer.lr; 1 keeps the paper's two weight-decay groups."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from bertlab.tasks.base import is_body
from bertlab.tasks.schedule import ScheduleError
from tests.hydra_helpers import hydra_cfg

# odd sizes: a head parameter mistaken for a body one (or the reverse) changes the counts below
MODEL = ["model=bert_tiny", "model.hidden_size=36", "model.num_attention_heads=3", "model.intermediate_size=53",
         "model.vocab_size=101", "model.num_hidden_layers=3", "pretrained=null"]  # fmt: skip
HEAD = ("model.bert.pooler.dense.weight", "model.bert.pooler.dense.bias", "model.classifier.weight",
        "model.classifier.bias")  # fmt: skip


def sst2_module(*overrides: str) -> torch.nn.Module:
    """The SST-2 task module as train.py instantiates it (conf/ composed with `overrides`)."""
    cfg = hydra_cfg(["task=sst2", *MODEL, "task.module.optimizer.lr=1e-4", *overrides])
    return instantiate(cfg.task.module, model_config=dict(cfg.model), pretrained=None, _convert_="all")


def test_the_default_is_one_lr_in_two_weight_decay_groups() -> None:
    module = sst2_module()
    groups = module.parameter_groups()
    assert len(groups) == 2 and all("lr" not in g for g in groups)
    assert sum(len(g["params"]) for g in groups) == len(list(module.parameters()))


def test_the_head_gets_its_scaled_lr_and_the_body_keeps_the_base_lr() -> None:
    module = sst2_module("task.module.head_lr_scale=10")
    names = {id(p): n for n, p in module.named_parameters()}
    groups = module.parameter_groups()
    assert [g.get("lr") for g in groups] == [None, None, pytest.approx(1e-3), pytest.approx(1e-3)]
    assert [g.get("weight_decay") for g in groups] == [None, 0.0, None, 0.0]
    head = {names[id(p)] for g in groups[2:] for p in g["params"]}
    assert head == set(HEAD)
    body = [names[id(p)] for g in groups[:2] for p in g["params"]]
    assert len(body) + len(head) == len(names) and all(is_body(n) for n in body)
    # through the optimizer: Adam's first step moves every weight by about its lr
    optimizer = module.optimizer_factory(groups)
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    for p in module.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    moved = {n: (p.detach() - before[n]).abs().max().item() for n, p in module.named_parameters()}
    assert moved["model.classifier.bias"] == pytest.approx(1e-3, rel=1e-3)
    assert moved["model.bert.embeddings.LayerNorm.bias"] == pytest.approx(1e-4, rel=1e-3)


@pytest.mark.parametrize("scale", ["0", "-2"])
def test_a_scale_that_is_not_positive_is_one_line_naming_the_key(scale: str) -> None:
    with pytest.raises(Exception) as info:  # Hydra wraps it; train.py prints the bertlab cause
        sst2_module(f"task.module.head_lr_scale={scale}")
    cause = info.value.__cause__
    assert isinstance(cause, ScheduleError) and f"task.module.head_lr_scale={scale}:" in str(cause)
