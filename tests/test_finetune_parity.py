"""Fine-tuning loop parity: bertlab's real training machinery against a plain transformers loop.

bertlab side: `SequenceClassificationTask` (its parameter groups, fused AdamW, warmup-linear schedule,
loss and gradient clipping) driven by a Lightning `Trainer`. Reference side: transformers'
`BertForSequenceClassification` in a plain torch loop with the paper's recipe (AdamW with biases and
LayerNorm weights undecayed, `get_linear_schedule_with_warmup` over 10% warmup, `clip_grad_norm_` at
1.0, transformers' own CE / MSE loss). Both start from the real MiniLM weights with the same classifier
head, see the same 20 real GLUE batches in the same order, dropout off: the loss of every step must
agree within 1e-4, and the weights after the last step within 1e-6.

The learning rate is 1e-4 (five times the recipe's 2e-5) so that a wrong schedule, clipping or Adam
epsilon moves the losses apart within 20 steps; a wrong weight-decay group shows in the final weights.
RTE is truncated to 64 tokens (about a fifth of the batch is still padding) to keep the test short.

The fine-tuning speed of bertlab comes from its padding-free path, whose attention runs on length
buckets; the last tests prove that path equal to the plain padded one, with many buckets forced.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import transformers
from torch.utils.data import DataLoader

import bertlab.model.unpad as unpadding
from bertlab.data.glue import collate_glue, encode_pairs
from bertlab.data.glue_files import read_glue_split
from bertlab.data.glue_tasks import get_task
from bertlab.model import BertForSequenceClassification
from bertlab.model.checkpoint import read_model_config
from bertlab.tasks.classification import SequenceClassificationTask
from bertlab.tasks.schedule import warmup_linear
from tests.tiny import padded_batch, quiet_trainer, tiny_config

STEPS, BATCH, MAX_LENGTH = 20, 8, 64
LR, BETAS, EPS, WEIGHT_DECAY, WARMUP_RATIO, CLIP = 1e-4, (0.9, 0.999), 1e-6, 0.01, 0.1, 1.0
NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
LOSS_ATOL, PARAM_ATOL = 1e-4, 1e-6


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One intra-op thread for these small batches (restored afterwards). On this 2-core machine the
    MiniLM runs took 19 s with two threads and 27 s with one when quiet, but 214 s vs 45 s when shared
    with other jobs (load 5): two OpenMP threads wait on each other whenever one is descheduled."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def real_batches(data_dir: Path, task: str, tokenizer: Any) -> list[dict[str, torch.Tensor]]:
    """The first STEPS * BATCH training examples of `task`, in file order, dynamically padded."""
    split = read_glue_split(task, "train", data_dir / "glue", hub_name=None).head(STEPS * BATCH)
    ids, seg_a = encode_pairs(tokenizer, split.text_a, split.text_b, MAX_LENGTH)
    regression = task == "stsb"
    features = [
        {"input_ids": x, "n_a": n, "idx": i, "label": y}
        for x, n, i, y in zip(ids, seg_a, split.idx, split.labels, strict=True)
    ]
    return [
        collate_glue(features[s : s + BATCH], regression=regression) for s in range(0, len(features), BATCH)
    ]


class LossRecorder(L.Callback):
    """Keeps the training loss of every step (computed before that step's update)."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(
        self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, *args: Any
    ) -> None:
        self.losses.append(float(outputs["loss"]))


def bertlab_losses(
    minilm_dir: Path, task: str, batches: list[dict[str, torch.Tensor]]
) -> tuple[list[float], SequenceClassificationTask, dict[str, torch.Tensor]]:
    """Per-step losses of the real task module under a Lightning Trainer, the trained module, and the
    classifier head it started from."""
    config = read_model_config(minilm_dir).to_dict() | NO_DROPOUT
    torch.manual_seed(0)  # the fresh classifier head
    module = SequenceClassificationTask(
        model_config=config,
        task=task,
        label_names=list(get_task(task).labels),  # [] for STS-B: one regression output
        pretrained=str(minilm_dir),
        # the recipe of conf/task/_finetune.yaml, lr raised so that drift shows
        optimizer=partial(
            torch.optim.AdamW, lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY, fused=True
        ),
        scheduler=partial(warmup_linear, warmup_steps=None, warmup_ratio=WARMUP_RATIO),
    )
    head = {k: v.clone() for k, v in module.model.classifier.state_dict().items()}
    recorder = LossRecorder()
    trainer = quiet_trainer(
        precision="32-true", max_steps=STEPS, gradient_clip_val=CLIP, callbacks=[recorder]
    )
    # batch_size=None: the loader hands over the prepared batches as they are, in order
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None, shuffle=False))
    return recorder.losses, module, head


def reference_losses(
    minilm_dir: Path, num_labels: int, head: dict[str, torch.Tensor], batches: list[dict[str, torch.Tensor]]
) -> tuple[list[float], transformers.BertForSequenceClassification]:
    """Per-step losses of transformers' model in a plain torch loop with the paper's recipe (and the model)."""
    model = transformers.BertForSequenceClassification.from_pretrained(
        minilm_dir, num_labels=num_labels, **NO_DROPOUT
    )
    model.classifier.load_state_dict(head)
    model.train()
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)]},
        {
            "params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)],
            "weight_decay": 0.0,
        },
    ]
    optimizer = torch.optim.AdamW(groups, lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)
    scheduler = transformers.get_linear_schedule_with_warmup(
        optimizer, num_warmup_steps=int(WARMUP_RATIO * STEPS), num_training_steps=STEPS
    )
    losses = []
    for batch in batches:
        out = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"],
            labels=batch["labels"],
        )
        losses.append(float(out.loss.detach()))
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return losses, model


@pytest.mark.parametrize("task", ["rte", "stsb"])
def test_finetuning_matches_transformers_loop(
    shared_data: Path, minilm_dir: Path, minilm_tokenizer: Any, task: str
) -> None:
    batches = real_batches(shared_data, task, minilm_tokenizer)
    assert len(batches) == STEPS
    assert any(not bool(b["attention_mask"].all()) for b in batches)  # the unpadded path is exercised
    ours, module, head = bertlab_losses(minilm_dir, task, batches)
    assert module.trainer.global_step == STEPS
    reference, ref_model = reference_losses(minilm_dir, module.num_labels, head, batches)
    assert len(ours) == len(reference) == STEPS
    for step, (a, b) in enumerate(zip(ours, reference)):
        assert a == pytest.approx(b, abs=LOSS_ATOL), f"step {step}: bertlab {a:.6f} vs transformers {b:.6f}"
    # Weight decay at lr 1e-4 moves the loss by < 1e-4 in 20 steps but a LayerNorm weight by ~1.5e-5;
    # the weights themselves agree to ~1e-7, so comparing them catches a wrong decay group.
    reference_params = dict(ref_model.named_parameters())
    for name, param in module.model.named_parameters():
        torch.testing.assert_close(param, reference_params[name], atol=PARAM_ATOL, rtol=0, msg=name)


# ---------------------------------------------------------------- length buckets of the unpadded path


def test_packed_rows_are_rounded_only_under_cpu_autocast() -> None:
    cpu = torch.device("cpu")
    assert unpadding.pack_multiple(cpu) == 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert unpadding.pack_multiple(cpu) == unpadding.PACK_MULTIPLE


def test_length_buckets_group_the_sorted_batch() -> None:
    lengths = [5, 0, 3, 5, 7, 1, 3]
    assert unpadding.length_buckets(lengths, bucket_cost=0) == [[5], [2, 6], [0, 3], [4]]  # one per length
    assert unpadding.length_buckets(lengths, bucket_cost=10**9) == [[5, 2, 6, 0, 3, 4]]  # one grid
    # three long rows among short ones: two buckets instead of 32 x 128²
    assert unpadding.length_buckets([128] * 3 + [20] * 29) == [list(range(3, 32)), [0, 1, 2]]
    assert unpadding.length_buckets([0, 0]) == []


@pytest.mark.parametrize("multiple", [1, 7, 64, 10_000])
def test_bucketed_attention_equals_padded_grid(monkeypatch: pytest.MonkeyPatch, multiple: int) -> None:
    """Outputs and gradients with one bucket per distinct length equal the padded path's, with the packed
    rows rounded up by filler rows (7: some fillers; 64, 10000: every padding position is one)."""
    monkeypatch.setattr(unpadding, "length_buckets", partial(unpadding.length_buckets, bucket_cost=0))
    monkeypatch.setattr(unpadding, "pack_multiple", lambda device: multiple)
    ids, mask, types = padded_batch(seed=11, length=11)
    mask[3, 1:] = 0  # a one-token row
    mask[5, 2:6] = 0  # a hole: real tokens need not be contiguous
    packed = unpadding.Padding(mask, multiple)
    rows, real = packed.indices.numel(), int(mask.sum())
    assert rows == min(-(-real // multiple) * multiple, mask.numel())
    assert (rows > real) == (multiple > 1)  # this batch's real count is a multiple of none of 7, 64
    models = []
    for unpad in (True, False):
        torch.manual_seed(0)
        models.append(BertForSequenceClassification(tiny_config(unpad=unpad, **NO_DROPOUT), num_labels=3))
    logits = []
    for model in models:
        out = model(ids, mask, types)
        out.square().sum().backward()
        logits.append(out)
    torch.testing.assert_close(logits[0], logits[1], atol=1e-5, rtol=0)
    padded = dict(models[1].named_parameters())
    for name, param in models[0].named_parameters():
        torch.testing.assert_close(param.grad, padded[name].grad, atol=1e-5, rtol=1e-4, msg=name)
