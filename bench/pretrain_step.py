"""Pre-training step speed: bertlab vs transformers' BertForPreTraining, same config, batch and inputs.

One process, interleaved timing (both sides share the allocator and the machine's state). Each step is
forward + backward + fused AdamW step (transformers' Trainer default on torch>=2.8) with MLM + NSP loss.
Prints tokens/s and sequences/s for both, MFU (bench/mfu.py's model FLOPs, the same count for both sides:
the MLM decoder on masked positions only, though transformers computes it on every position, against the
best measured `F.linear` rate at the model's shapes, in the step's dtype) and the ratio; the last lines
read `bert_tiny ratio=…` per config.

    python bench/pretrain_step.py [--steps 10] [--bf16] [--configs bert_tiny:32 bert_base:8] [--length 128]
        [--device cuda] [--compile] [--flash]

--compile: transformers' model through `torch.compile` whole; bertlab's encoder layers compiled in place, as
hardware.compile does (its masking and packing stay eager). --flash: every row full length (no short
rows, so no attention mask on either side) and SDPA restricted to the flash kernel, which raises rather
than fall back. On a GPU, e.g. bert_base at 128 and 512 tokens in bf16:
    python bench/pretrain_step.py --device cuda --bf16 --compile --flash --configs bert_base:256 --length 128
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
import yaml
from mfu import counts, gemm_rates, model_flops, sync  # bench/mfu.py, beside this script
from torch.nn.attention import SDPBackend, sdpa_kernel

from bertlab.acceleration import compile_layers
from bertlab.model import BertConfig, BertForPreTraining
from bertlab.model.convert import load_state
from bertlab.run_plan import PRESET_ONLY

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"


def preset(name: str) -> BertConfig:
    """conf/model/<name>.yaml over its defaults (_bert.yaml), as Hydra composes it; Hydra-only keys dropped."""
    values = yaml.safe_load((CONF / "_bert.yaml").read_text()) | yaml.safe_load(
        (CONF / f"{name}.yaml").read_text()
    )
    return BertConfig(**{k: v for k, v in values.items() if k not in ("defaults", *PRESET_ONLY)})


def make_inputs(
    batch: int, length: int, vocab: int, seed: int = 0, short_rows: bool = True
) -> dict[str, torch.Tensor]:
    """Pre-training-like batch: 10% of rows shorter (short_seq_prob; none when not short_rows), 15% of
    real tokens masked; each `(B, T)` but nsp `(B,)`."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    for i in range(0, batch, 10) if short_rows else ():
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
    full = bool(b["attention_mask"].all())  # no mask at all: SDPA may take the flash kernel
    out = model(
        input_ids=b["input_ids"],
        attention_mask=None if full else b["attention_mask"],
        token_type_ids=b["token_type_ids"],
        labels=b["mlm_labels"],
        next_sentence_label=b["nsp"],
    )
    out.loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(out.loss.detach())


def bertlab_step(model: BertForPreTraining, opt: torch.optim.Optimizer, b: dict[str, torch.Tensor]) -> float:
    masked = b["mlm_labels"] != -100
    mlm, nsp = model(b["input_ids"], b["attention_mask"], b["token_type_ids"], masked_positions=masked)
    loss = F.cross_entropy(mlm.float(), b["mlm_labels"][masked]) + F.cross_entropy(nsp.float(), b["nsp"])
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach())


def timed(step: Callable[[], float], device: torch.device, bf16: bool, flash: bool) -> float:
    sync(device)
    start = time.perf_counter()
    with (
        torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16),
        sdpa_kernel(SDPBackend.FLASH_ATTENTION) if flash else nullcontext(),
    ):
        step()
    sync(device)
    return time.perf_counter() - start


def compile_models(ref: torch.nn.Module, ours: BertForPreTraining) -> None:
    """transformers' model whole; bertlab's layers in place with hardware.compile's own `compile_layers`."""
    ref.forward = torch.compile(ref.forward)  # type: ignore[method-assign]
    compile_layers(ours)


def bench(name: str, batch: int, length: int, args: argparse.Namespace) -> float:
    device, bf16 = torch.device(args.device), args.bf16
    config = preset(name)
    torch.manual_seed(0)
    ref = transformers.BertForPreTraining(transformers.BertConfig(**config.to_dict())).train()
    ours = BertForPreTraining(config).train()
    load_state(ours, ref.state_dict())
    ref, ours = ref.to(device), ours.to(device)
    if args.compile:
        compile_models(ref, ours)
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-4, weight_decay=0.01, fused=True)
    our_opt = torch.optim.AdamW(ours.parameters(), lr=1e-4, weight_decay=0.01, fused=True)
    b = make_inputs(batch, length, config.vocab_size, short_rows=not args.flash)
    n = counts([b])
    b = {k: v.to(device) for k, v in b.items()}
    ref_flash = args.flash
    try:
        timed(lambda: reference_step(ref, ref_opt, b), device, bf16, ref_flash)
    except RuntimeError as err:  # compiled, transformers builds a (B, 1, T, T) mask even when given none
        print(f"  transformers cannot run flash-only here ({str(err).splitlines()[0][:80]}): SDPA's choice")
        ref_flash = False
    for _ in range(args.warmup):  # allocator, kernels, optimizer state; compiling when --compile
        timed(lambda: reference_step(ref, ref_opt, b), device, bf16, ref_flash)
        timed(lambda: bertlab_step(ours, our_opt, b), device, bf16, args.flash)
    t_ref = t_ours = 0.0
    for _ in range(args.steps):  # interleaved so drift hits both sides alike
        t_ref += timed(lambda: reference_step(ref, ref_opt, b), device, bf16, ref_flash)
        t_ours += timed(lambda: bertlab_step(ours, our_opt, b), device, bf16, args.flash)
    flops = model_flops(config, n, nsp=True)
    rates = gemm_rates(config, n["real"], n["masked"], device, 0.2)["bfloat16" if bf16 else "float32"]
    peak = max(rates.values())
    print(
        f"{name} batch={batch} length={length} {'bf16' if bf16 else 'fp32'} {device.type}"
        f"{' compile' if args.compile else ''}{' flash' if args.flash else ''}: measured GEMM peak "
        f"{peak / 1e12:.1f} TFLOP/s, model {flops / n['real'] / 1e6:.1f} MFLOP per token"
    )
    for side, s in (("transformers", t_ref), ("bertlab", t_ours)):
        s /= args.steps
        print(
            f"  {side:<12} {n['padded'] / s:>12,.0f} tokens/s {n['seqs'] / s:>10,.1f} sequences/s "
            f"{s * 1e3:8.1f} ms/step mfu={flops / s / peak:.3f}"
        )
    return t_ref / t_ours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["bert_tiny:32", "bert_base:8"])
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per side (compile: 3+)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast on both sides")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--compile", action="store_true", help="torch.compile both sides")
    parser.add_argument("--flash", action="store_true", help="full rows, SDPA flash kernel only")
    args = parser.parse_args()
    where = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"{torch.get_num_threads()} threads"
    )
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {where}")
    ratios = {}
    for item in args.configs:
        name, batch = item.split(":")
        ratios[name] = bench(name, int(batch), args.length, args)
    for name, ratio in ratios.items():
        print(f"{name} ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
