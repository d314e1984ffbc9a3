"""Pre-training step speed: bertlab vs transformers' BertForPreTraining, same config, batch and inputs.

One process, interleaved timing (both sides share the allocator and the machine's state). Each step is
forward + backward + fused AdamW step (transformers' Trainer default on torch>=2.8) with MLM + NSP loss.
Prints tokens/s for both and the ratio; the last lines read `bert_tiny ratio=…` per config.

    python bench/pretrain_step.py [--steps 10] [--bf16] [--configs bert_tiny:32 bert_base:8] [--length 128]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
import yaml

from bertlab.model import BertConfig, BertForPreTraining
from bertlab.model.convert import load_state

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"


def make_inputs(batch: int, length: int, vocab: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Pre-training-like batch: 10% of rows shorter (short_seq_prob), 15% of real tokens masked."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    for i in range(0, batch, 10):
        mask[i, int(torch.randint(length // 4, length, (1,), generator=g)) :] = 0
    types = torch.zeros_like(ids)
    types[:, length // 2 :] = 1
    picked = (torch.rand(batch, length, generator=g) < 0.15) & mask.bool()
    picked[:, 0] = False
    labels = torch.where(picked, ids, torch.full_like(ids, -100))
    nsp = torch.randint(0, 2, (batch,), generator=g)
    return {
        "input_ids": ids * mask,
        "attention_mask": mask,
        "token_type_ids": types * mask,
        "mlm_labels": labels,
        "nsp": nsp,
    }


def reference_step(
    model: transformers.BertForPreTraining, opt: torch.optim.Optimizer, b: dict[str, torch.Tensor]
) -> float:
    out = model(
        input_ids=b["input_ids"],
        attention_mask=b["attention_mask"],
        token_type_ids=b["token_type_ids"],
        labels=b["mlm_labels"],
        next_sentence_label=b["nsp"],
    )
    out.loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(out.loss)


def bertlab_step(model: BertForPreTraining, opt: torch.optim.Optimizer, b: dict[str, torch.Tensor]) -> float:
    masked = b["mlm_labels"] != -100
    mlm, nsp = model(b["input_ids"], b["attention_mask"], b["token_type_ids"], masked_positions=masked)
    loss = F.cross_entropy(mlm.float(), b["mlm_labels"][masked]) + F.cross_entropy(nsp.float(), b["nsp"])
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss)


def timed(step: Callable[[], float], bf16: bool) -> float:
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        step()
    return time.perf_counter() - start


def bench(name: str, batch: int, length: int, steps: int, bf16: bool) -> float:
    values = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    config = BertConfig(**values)
    torch.manual_seed(0)
    ref = transformers.BertForPreTraining(transformers.BertConfig(**config.to_dict())).train()
    ours = BertForPreTraining(config).train()
    load_state(ours, ref.state_dict())
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-4, weight_decay=0.01, fused=True)
    our_opt = torch.optim.AdamW(ours.parameters(), lr=1e-4, weight_decay=0.01, fused=True)
    b = make_inputs(batch, length, config.vocab_size)
    tokens = int(b["attention_mask"].sum())
    for _ in range(2):  # warm-up: allocator, kernels, optimizer state
        timed(lambda: reference_step(ref, ref_opt, b), bf16)
        timed(lambda: bertlab_step(ours, our_opt, b), bf16)
    t_ref = t_ours = 0.0
    for _ in range(steps):  # interleaved so drift hits both sides alike
        t_ref += timed(lambda: reference_step(ref, ref_opt, b), bf16)
        t_ours += timed(lambda: bertlab_step(ours, our_opt, b), bf16)
    ref_tps, our_tps = tokens * steps / t_ref, tokens * steps / t_ours
    print(
        f"{name} batch={batch} length={length} {'bf16' if bf16 else 'fp32'}: "
        f"transformers {ref_tps:,.0f} tokens/s, bertlab {our_tps:,.0f} tokens/s"
    )
    return our_tps / ref_tps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["bert_tiny:32", "bert_base:8"])
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast on both sides")
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, threads {torch.get_num_threads()}"
    )
    ratios = {}
    for item in args.configs:
        name, batch = item.split(":")
        ratios[name] = bench(name, int(batch), args.length, args.steps, args.bf16)
    for name, ratio in ratios.items():
        print(f"{name} ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
