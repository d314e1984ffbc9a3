"""Plain transformers GLUE fine-tuning with the BERT paper's recipe: the baseline for bertlab's runs.

The same checkpoint folder, the same GLUE files (../shared/data/glue) and the hyper-parameters that
`python train.py task=<task> pretrained=<folder>` uses: AdamW (fused) lr 2e-5, betas (0.9, 0.999), eps
1e-6, weight decay 0.01 off biases and LayerNorm weights, linear warmup over 10% of the steps then linear
decay to zero, gradient norm clipped at 1.0, batch 32 shuffled with the seed, max length 128, dynamic
padding, dropout 0.1, dev batch 64. transformers' own tokenizer, model (default sdpa attention) and loss
(cross-entropy; MSE for STS-B) in a plain torch loop (transformers' `Trainer` needs `accelerate`, which
this project does not install). Prints dev metrics, wall time and training examples/s.

    python bench/finetune_hf.py --task sst2 --model <folder> --epochs 1 [--bf16] [--max-train-examples N]
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef
from torch.utils.data import DataLoader

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@dataclass(frozen=True)
class Task:
    """Where a GLUE task's text and label columns are in its official tsv files."""

    folder: str
    text_columns: tuple[str, ...]
    label_column: str
    labels: tuple[str, ...]  # () = regression
    metrics: tuple[str, ...]
    header: tuple[str, ...] | None = None  # for header-less files (CoLA)


TASKS = {
    "cola": Task(
        "CoLA", ("sentence",), "label", ("0", "1"), ("mcc",), ("source", "label", "orig", "sentence")
    ),
    "sst2": Task("SST-2", ("sentence",), "label", ("0", "1"), ("accuracy",)),
    "mrpc": Task("MRPC", ("#1 String", "#2 String"), "Quality", ("0", "1"), ("f1", "accuracy")),
    "stsb": Task("STS-B", ("sentence1", "sentence2"), "score", (), ("pearson", "spearman")),
    "rte": Task("RTE", ("sentence1", "sentence2"), "label", ("entailment", "not_entailment"), ("accuracy",)),
    "wnli": Task("WNLI", ("sentence1", "sentence2"), "label", ("0", "1"), ("accuracy",)),
}


def read_tsv(path: Path, task: Task, limit: int | None) -> tuple[list[tuple[str, ...]], list[float]]:
    """(texts, labels) of a labelled GLUE file; quotes are kept as written (QUOTE_NONE), as GLUE needs."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = list(task.header) if task.header else next(reader)
        rows = [r for r in reader if r]
    cols = [header.index(c) for c in task.text_columns]
    label = header.index(task.label_column)
    rows = rows[:limit] if limit is not None else rows
    texts = [tuple(r[c] for c in cols) for r in rows]
    labels = [float(r[label]) if not task.labels else task.labels.index(r[label]) for r in rows]
    return texts, labels


def encode(tokenizer: Any, texts: list[tuple[str, ...]], labels: list[float], max_length: int) -> list[dict]:
    """Tokenised features (unpadded; the collator pads each batch to its longest example)."""
    columns = list(zip(*texts))
    enc = tokenizer(*columns, truncation=True, max_length=max_length)
    return [
        {
            "input_ids": enc["input_ids"][i],
            "token_type_ids": enc["token_type_ids"][i],
            "attention_mask": enc["attention_mask"][i],
            "labels": labels[i],
        }
        for i in range(len(labels))
    ]


def metrics(task: Task, preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The task's GLUE metrics on dev predictions (class ids, or scores for STS-B)."""
    out: dict[str, float] = {}
    for name in task.metrics:
        if name == "accuracy":
            out[name] = float((preds == labels).mean())
        elif name == "f1":
            out[name] = float(f1_score(labels, preds))
        elif name == "mcc":
            out[name] = float(matthews_corrcoef(labels, preds))
        elif name == "pearson":
            out[name] = float(pearsonr(preds, labels)[0])
        elif name == "spearman":
            out[name] = float(spearmanr(preds, labels)[0])
    return out


def optimizer_and_schedule(
    model: torch.nn.Module, args: argparse.Namespace, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with biases and LayerNorm weights undecayed; warmup then linear decay to zero."""
    no_decay = ("bias", "LayerNorm.weight")
    named = list(model.named_parameters())
    groups = [
        {
            "params": [p for n, p in named if not any(k in n for k in no_decay)],
            "weight_decay": args.weight_decay,
        },
        {"params": [p for n, p in named if any(k in n for k in no_decay)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.999), eps=1e-6, fused=True)
    warmup = int(args.warmup_ratio * total_steps)  # floor, as bertlab and the original run_classifier.py
    return opt, transformers.get_linear_schedule_with_warmup(opt, warmup, total_steps)


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: DataLoader, task: Task, bf16: bool) -> dict[str, float]:
    """Dev metrics of `model` over `loader`."""
    model.eval()
    preds, labels = [], []
    for batch in loader:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()
        preds.append(logits.squeeze(-1) if not task.labels else logits.argmax(-1))
        labels.append(batch["labels"])
    model.train()
    return metrics(task, torch.cat(preds).numpy(), torch.cat(labels).numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument("--model", required=True, type=Path, help="transformers-format BERT folder")
    parser.add_argument("--data", type=Path, default=DATA, help="folder holding glue/<Task>/")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-batch-size", type=int, default=64)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-train-examples", type=int, default=None, help="first N training rows")
    parser.add_argument("--max-eval-examples", type=int, default=None, help="first N dev rows")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (bertlab's CPU default)")
    args = parser.parse_args()

    start = time.perf_counter()
    transformers.utils.logging.disable_progress_bar()
    transformers.set_seed(args.seed)
    task = TASKS[args.task]
    folder = args.data / "glue" / task.folder
    tokenizer = transformers.AutoTokenizer.from_pretrained(args.model)
    train = encode(
        tokenizer, *read_tsv(folder / "train.tsv", task, args.max_train_examples), args.max_seq_length
    )
    dev = encode(tokenizer, *read_tsv(folder / "dev.tsv", task, args.max_eval_examples), args.max_seq_length)
    if not task.labels:  # regression targets are float tensors
        for f in (*train, *dev):
            f["labels"] = float(f["labels"])
    collate = transformers.DataCollatorWithPadding(tokenizer, return_tensors="pt")
    generator = torch.Generator().manual_seed(args.seed)
    train_loader = DataLoader(
        train, batch_size=args.batch_size, shuffle=True, generator=generator, collate_fn=collate
    )
    dev_loader = DataLoader(dev, batch_size=args.eval_batch_size, collate_fn=collate)
    model = transformers.BertForSequenceClassification.from_pretrained(
        args.model, num_labels=len(task.labels) or 1
    )
    model.train()
    total_steps = math.ceil(len(train) / args.batch_size) * args.epochs
    optimizer, scheduler = optimizer_and_schedule(model, args, total_steps)
    print(
        f"{args.task}: {len(train)} train / {len(dev)} dev examples, {total_steps} steps, "
        f"{'bf16' if args.bf16 else 'fp32'}, torch {torch.__version__}, transformers {transformers.__version__}, "
        f"threads {torch.get_num_threads()}",
        flush=True,
    )

    train_time = 0.0
    for epoch in range(args.epochs):
        t0, losses = time.perf_counter(), []
        for batch in train_loader:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
        train_time += time.perf_counter() - t0
        t0 = time.perf_counter()
        values = evaluate(model, dev_loader, task, args.bf16)
        shown = " ".join(f"dev_{k}={v:.4f}" for k, v in values.items())
        print(
            f"epoch {epoch + 1}: train_loss={np.mean(losses):.4f} {shown} (dev {time.perf_counter() - t0:.1f}s)",
            flush=True,
        )
    wall = time.perf_counter() - start
    print(
        f"{args.task} {shown} train_time={train_time:.1f}s wall_time={wall:.1f}s "
        f"train_examples/s={len(train) * args.epochs / train_time:.1f}"
    )


if __name__ == "__main__":
    main()
