"""What the pre-training benches share: model FLOPs per batch and the machine's measured GEMM rate.

Imported by bench/pretrain_e2e.py and bench/pretrain_step.py (run as scripts, so bench/ is on the path).
FLOPs (fwd + bwd = 3 x fwd, a matmul of (m,k)x(k,n) = 2mkn), counted on real tokens, exactly per batch:
  6 * N * R                     N = L * (4H^2 + 2HI): the encoder's matmul weights (no embeddings, biases)
  + 12 * L * H * sum_i t_i^2    attention scores and values; t_i the real length of sequence i
  + 6 * (H*H + H*V) * Mm        MLM head (transform + decoder), on the masked positions only
  + 6 * (H*H + 2H) * B          pooler + NSP classifier (objective mlm_nsp)
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F

Batch = dict[str, torch.Tensor]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def counts(batches: list[Batch]) -> dict[str, int]:
    """Padded cells, real tokens, sum of squared real lengths, masked positions, sequences."""
    lengths = torch.cat([b["attention_mask"].sum(1) for b in batches]).long()
    return {
        "padded": sum(b["input_ids"].numel() for b in batches),
        "real": int(lengths.sum()),
        "len2": int((lengths**2).sum()),
        "masked": sum(int((b["mlm_labels"] != -100).sum()) for b in batches),
        "seqs": len(lengths),
    }


def model_flops(c: Any, n: dict[str, int], nsp: bool) -> float:
    """Training FLOPs (fwd + bwd) of the batches counted in `n` (formula in the module docstring)."""
    L_, H, I_, V = c.num_hidden_layers, c.hidden_size, c.intermediate_size, c.vocab_size
    total = 6 * L_ * (4 * H * H + 2 * H * I_) * n["real"] + 12 * L_ * H * n["len2"]
    total += 6 * (H * H + H * V) * n["masked"]
    return float(total + (6 * (H * H + 2 * H) * n["seqs"] if nsp else 0))


def gemm_rates(c: Any, m: int, mm: int, device: torch.device, budget: float) -> dict[str, dict[str, float]]:
    """FLOP/s of `F.linear` per shape and dtype: x (rows, k) times a (n, k) weight, best of repeats."""
    H, I_, V = c.hidden_size, c.intermediate_size, c.vocab_size
    shapes = {
        "qkv HxH": (m, H, H), "qkv Hx3H": (m, H, 3 * H), "ffn HxI": (m, H, I_), "ffn IxH": (m, I_, H),
        "mlm HxH": (mm, H, H), "mlm HxV": (mm, H, V),
    }  # fmt: skip
    rates: dict[str, dict[str, float]] = {}
    for dtype in (torch.float32, torch.bfloat16):
        key = str(dtype).removeprefix("torch.")
        rates[key] = {}
        for label, (rows, k, n) in shapes.items():
            x = torch.randn(rows, k, device=device, dtype=dtype)
            w = torch.randn(n, k, device=device, dtype=dtype)
            F.linear(x, w)  # first call: kernel choice, packing
            best, spent = float("inf"), 0.0
            while spent < budget or best == float("inf"):
                sync(device)
                start = time.perf_counter()
                F.linear(x, w)
                sync(device)
                took = time.perf_counter() - start
                best, spent = min(best, took), spent + took
            rates[key][f"{label} ({rows}x{k})x({k}x{n})"] = 2 * rows * k * n / best
    return rates
