"""The speed knobs of the `hardware` config group; none of them changes the numbers a run computes.

- `hardware.threads`: intra-op threads of this process (`torch.set_num_threads`), set before the data
  and the model are built; null = torch's default. Jobs sharing a machine should each take their share
  of the cores: oversubscribed intra-op threads thrash. DataLoader workers already run one thread each
  (torch's and torchdata's worker loops call `torch.set_num_threads(1)`).
- `hardware.activation_checkpointing`: every `BertEncoder` recomputes each layer's activations in
  backward (`BertEncoder.gradient_checkpointing`): memory for compute, e.g. BERT-Large at 512 tokens.
- `hardware.compile`: `torch.compile` each encoder layer's forward in place (parameter names, hence
  checkpoints and exports, are unchanged). When compilation fails (no C compiler, a dynamo or inductor
  error) the run logs one warning line and continues eagerly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from bertlab.model.bert import BertEncoder, BertLayer
from bertlab.run_plan import ConfigError

log = logging.getLogger("bertlab")

# what `torch.compile` compiles with; tests swap in a backend that fails
COMPILE_BACKEND: str | Callable[..., Any] = "inductor"


@dataclass(frozen=True)
class HardwareKnobs:
    """The checked values of hardware.compile, hardware.threads and hardware.activation_checkpointing."""

    compile: bool = False
    threads: int | None = None
    activation_checkpointing: bool = False


def check_knobs(hardware: Any) -> HardwareKnobs:
    """The knobs from the `hardware` config node (absent keys: off); a bad value is one ConfigError line."""
    get = hardware.get if hasattr(hardware, "get") else (lambda key, default=None: default)
    values: dict[str, Any] = {}
    for key in ("compile", "activation_checkpointing"):
        value = get(key, False)
        if not isinstance(value, bool):
            raise ConfigError(f"hardware.{key}={value!r} must be true or false")
        values[key] = value
    threads = get("threads", None)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(
            f"hardware.threads={threads!r} must be a whole number >= 1 (intra-op threads of this process), "
            "or null for torch's default"
        )
    return HardwareKnobs(threads=threads, **values)


def native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX); without it bf16 autocast is emulated."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def cpu_precision(precision: Any, accelerator: Any) -> Any:
    """hardware.precision=auto: on a CPU, bf16-mixed where the CPU has native bf16 (2-3x fp32 on the AVX-512
    machines we measured), else 32-true (bf16 was 5-10x *slower* than fp32 on an AVX2-only EPYC); on other
    accelerators bf16-mixed. Any other value is returned as it is."""
    if precision != "auto":
        return precision
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if not on_cpu:
        return "bf16-mixed"
    chosen = "bf16-mixed" if native_bf16() else "32-true"
    # debug, not info: the resolved value is in the run's logged config (hardware.precision), and an
    # offline error must stay the only line a failed run prints
    log.debug(
        "hardware.precision=auto: %s (this CPU %s native bf16: %s)",
        chosen,
        "has" if chosen == "bf16-mixed" else "lacks",
        torch.backends.cpu.get_cpu_capability(),
    )
    return chosen


def set_threads(threads: int | None) -> None:
    """Intra-op threads for this process; None leaves torch's setting as it is (its default in a fresh
    process: one per core, or OMP_NUM_THREADS), so a caller that chose a count keeps it."""
    if threads is None:
        return
    torch.set_num_threads(threads)
    log.info("hardware.threads=%d: torch uses %d intra-op threads", threads, torch.get_num_threads())


def set_activation_checkpointing(model: nn.Module, enabled: bool) -> int:
    """Turn per-layer activation checkpointing on or off in every `BertEncoder` inside `model`; returns
    how many encoders were set (0: the model has none, and the knob does nothing)."""
    encoders = [m for m in model.modules() if isinstance(m, BertEncoder)]
    for encoder in encoders:
        encoder.gradient_checkpointing = enabled
    if enabled and not encoders:
        log.warning(
            "hardware.activation_checkpointing: %s has no BertEncoder; nothing to checkpoint",
            type(model).__name__,
        )
    return len(encoders)


def compile_forward(modules: list[nn.Module], backend: str | Callable[..., Any] | None = None) -> None:
    """Give each module a compiled `forward` (an instance attribute; `del m.forward` undoes it). The first
    time compiling fails, every module of the list goes back to eager for good, with one warning line.

    dynamic=None: the first shape compiles static; when another comes (batches are padded to their
    longest row), torch recompiles with that dimension symbolic, so later lengths reuse the graph.
    """
    failed: list[bool] = []  # shared by the modules: one failure, one warning, all eager

    def fall_back(err: Exception) -> None:
        failed.append(True)
        for module in modules:
            module.__dict__.pop("forward", None)
        first = (str(err).strip().splitlines() or [""])[0][:200]
        log.warning(
            "hardware.compile: torch.compile failed (%s: %s); running eagerly", type(err).__name__, first
        )

    for module in modules:
        eager = module.forward
        compiled = torch.compile(eager, backend=backend or COMPILE_BACKEND, dynamic=None)

        def forward(*args: Any, _compiled: Any = compiled, _eager: Any = eager, **kwargs: Any) -> Any:
            if failed:
                return _eager(*args, **kwargs)
            try:
                return _compiled(*args, **kwargs)
            except Exception as err:  # compiling failed: a missing C compiler, a dynamo or inductor error
                fall_back(err)
                return _eager(*args, **kwargs)  # a real error in the model raises here, as without compile

        module.forward = forward  # type: ignore[method-assign]


def compile_layers(model: nn.Module, backend: str | Callable[..., Any] | None = None) -> int:
    """Compile every `BertLayer` of `model` (`compile_forward`); returns how many.

    The layers, not the whole forward: that has data-dependent steps (whether a batch has padding, the
    padding-free path's packing and length buckets, the masked positions MLM scores) where torch.compile
    breaks the graph and warns; the layers hold nearly all the work and trace whole. On the padding-free
    path a layer also recompiles for each new bucket layout (how many buckets, which need a mask): a few
    slow first steps (4 graphs within 4 pre-training batches of 32 x 128 in our check), then none.
    """
    layers = [m for m in model.modules() if isinstance(m, BertLayer)]
    compile_forward(layers, backend)
    if not layers:
        log.warning("hardware.compile: %s has no BertLayer; nothing compiled", type(model).__name__)
    return len(layers)


def apply_knobs(knobs: HardwareKnobs, task: nn.Module) -> None:
    """Set activation checkpointing and compilation on the task's model (`task.model`, else the task)."""
    model = getattr(task, "model", None)
    model = model if isinstance(model, nn.Module) else task
    set_activation_checkpointing(model, knobs.activation_checkpointing)
    if knobs.compile and compile_layers(model):
        log.info("hardware.compile: %s's encoder layers compile on the first batch", type(model).__name__)


__all__ = [
    "HardwareKnobs",
    "apply_knobs",
    "check_knobs",
    "compile_forward",
    "compile_layers",
    "set_activation_checkpointing",
    "set_threads",
]
