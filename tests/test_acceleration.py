"""hardware.activation_checkpointing, hardware.compile and hardware.threads (bertlab.acceleration): each
leaves the numbers as they were, is really applied, and a bad value is one ConfigError line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from bertlab import acceleration
from bertlab.acceleration import (
    HardwareKnobs,
    apply_knobs,
    check_knobs,
    compile_layers,
    set_activation_checkpointing,
    set_threads,
)
from bertlab.data.loaders import eval_loader, train_loader
from bertlab.model import BertForSequenceClassification
from bertlab.model.bert import BertLayer
from bertlab.run_plan import ConfigError
from tests.tiny import TinyClassifierTask, labelled_batches, padded_batch, quiet_trainer, tiny_config

HARDWARE = ("cpu", "gpu", "ddp", "fsdp")
# (batch has padding, config.unpad): the padding-free path (a `Padding` reaches every layer), the padded
# grid with a key mask, and a batch with no padding at all
PATHS = {"unpadded": (True, True), "padded_grid": (True, False), "no_padding": (False, True)}


def classifier(unpad: bool = True) -> BertForSequenceClassification:
    """The tiny odd-sized classifier, dropout on (the config's 0.1), in training mode."""
    torch.manual_seed(3)
    return BertForSequenceClassification(tiny_config(unpad=unpad), num_labels=3).train()


def batch(padding: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    ids, mask, types = padded_batch(seed=1)
    if not padding:
        mask = torch.ones_like(mask)
    return ids, mask, types, torch.arange(ids.shape[0]) % 3


def loss_and_grads(model: torch.nn.Module, padding: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Cross-entropy of one batch under a fixed dropout seed, and every parameter's gradient."""
    ids, mask, types, labels = batch(padding)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(11)
    loss = F.cross_entropy(model(ids, mask, types), labels)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def count_layer_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that counts `BertLayer.forward` calls (a checkpointed layer runs again in backward; module
    hooks do not see that recomputation, so the method itself is counted)."""
    calls, forward = [0], BertLayer.forward

    def counted(self: BertLayer, *args: object) -> torch.Tensor:
        calls[0] += 1
        return forward(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(BertLayer, "forward", counted)
    return calls


@pytest.mark.parametrize("path", PATHS)
def test_checkpointing_keeps_loss_and_gradients(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    padding, unpad = PATHS[path]
    model = classifier(unpad)
    calls = count_layer_calls(monkeypatch)
    loss, grads = loss_and_grads(model, padding)
    assert calls[0] == 2  # two layers, once each
    assert set_activation_checkpointing(model, True) == 1
    loss_ckpt, grads_ckpt = loss_and_grads(model, padding)
    assert calls[0] == 2 + 4  # each layer ran again in backward: the activations were recomputed
    torch.testing.assert_close(loss_ckpt, loss, rtol=1e-6, atol=1e-7)
    assert grads_ckpt.keys() == grads.keys() and len(grads) == len(list(model.parameters()))
    for name in grads:
        torch.testing.assert_close(grads_ckpt[name], grads[name], rtol=1e-5, atol=1e-7, msg=name)


def test_checkpointing_is_off_in_eval_and_without_grad(monkeypatch: pytest.MonkeyPatch) -> None:
    model = classifier()
    set_activation_checkpointing(model, True)
    calls = count_layer_calls(monkeypatch)
    ids, mask, types, _ = batch(padding=True)
    model.eval()
    plain = model(ids, mask, types)
    plain.sum().backward()  # eval with grad enabled: nothing recomputed
    assert calls[0] == 2
    model.train()
    with torch.no_grad():
        torch.manual_seed(5)
        out = model(ids, mask, types)
    assert calls[0] == 4 and not out.requires_grad
    set_activation_checkpointing(model, False)
    with torch.no_grad():
        torch.manual_seed(5)
        torch.testing.assert_close(model(ids, mask, types), out, rtol=0, atol=0)


def train_losses(steps: int = 3, knobs: HardwareKnobs | None = None, dropout: float = 0.1) -> list[float]:
    """Training losses of the tiny classifier task (fp32), knobs applied as run.py does."""
    torch.manual_seed(0)
    config = tiny_config(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    task = TinyClassifierTask(config.to_dict())
    if knobs is not None:
        apply_knobs(knobs, task)
    batches = DataLoader(labelled_batches(steps), batch_size=None)  # type: ignore[arg-type]
    quiet_trainer(max_steps=steps, precision="32-true").fit(task, train_dataloaders=batches)
    return task.losses


def test_compile_failure_falls_back_to_eager_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    def broken_backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):
        raise RuntimeError("C compiler not found (a test's broken backend)")

    eager = train_losses()
    monkeypatch.setattr(acceleration, "COMPILE_BACKEND", broken_backend)
    torch._dynamo.reset()
    with caplog.at_level(logging.INFO, logger="bertlab"):
        compiled = train_losses(knobs=HardwareKnobs(compile=True))
    assert compiled == eager
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1, warned
    assert "hardware.compile" in warned[0] and "eagerly" in warned[0] and "\n" not in warned[0]
    captured = capfd.readouterr()
    assert "Traceback" not in captured.out + captured.err


def test_compile_compiles_and_keeps_the_loss() -> None:
    """Every encoder layer's forward is really traced (the eager backend: dynamo's capture, no C compiler),
    on both paths and over a change of length, with the eager model's numbers."""
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    model = classifier().eval()
    inputs = [batch(padding=True)[:3], batch(padding=False)[:3], [t[:, :5] for t in batch(padding=True)[:3]]]
    eager = [model(*x) for x in inputs]
    counter = CompileCounterWithBackend("eager")
    assert compile_layers(model, backend=counter) == 2
    for x, expected in zip(inputs, eager):
        torch.testing.assert_close(model(*x), expected, rtol=1e-5, atol=1e-6)
    layers = list(model.bert.encoder.layer)
    assert counter.frame_count >= 1 and all("forward" in m.__dict__ for m in layers)  # not fallen back
    for m in layers:
        del m.forward


@pytest.mark.slow
def test_inductor_training_loss_matches_eager() -> None:
    """hardware.compile=true with the real backend (inductor, a C compiler): the same training losses
    (dropout off: inductor's kernels draw their own random masks)."""
    eager = train_losses(steps=2, dropout=0.0)
    torch._dynamo.reset()
    compiled = train_losses(steps=2, knobs=HardwareKnobs(compile=True), dropout=0.0)
    torch.testing.assert_close(torch.tensor(compiled), torch.tensor(eager), rtol=1e-4, atol=1e-5)


def test_threads_set_and_restored() -> None:
    before = torch.get_num_threads()
    try:
        set_threads(1)
        assert torch.get_num_threads() == 1
        set_threads(None)  # null: left as it is
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_run_sets_threads_before_building(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """run.main applies hardware.threads=1 before it plans the run or builds data and model."""
    from bertlab import run
    from tests.hydra_helpers import compose_cfg

    seen: list[int] = []

    def stop(cfg: object) -> None:
        seen.append(torch.get_num_threads())
        raise KeyboardInterrupt  # nothing else of the run is needed

    before = torch.get_num_threads()
    monkeypatch.setattr(run, "plan_run", stop)
    cfg = compose_cfg(["hardware.threads=1", "logger=csv"], tmp_path / "run")
    try:
        with pytest.raises(KeyboardInterrupt):
            run.main(cfg)
    finally:
        torch.set_num_threads(before)
    assert seen == [1]


@pytest.mark.parametrize(
    ("key", "value"),
    [("threads", 0), ("threads", "two"), ("threads", 1.5), ("threads", True), ("compile", "yes"),
     ("activation_checkpointing", 1)],
)  # fmt: skip
def test_bad_knob_is_one_config_error(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"hardware.{key}=") as err:
        check_knobs(OmegaConf.create({key: value}))
    assert "\n" not in str(err.value)


def test_bad_knob_on_the_command_line_is_one_error_line(tmp_path: Path) -> None:
    from tests.cli import offline_env, run_train

    args = ["hardware.threads=0", "logger=csv", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = run_train([*args, f"paths.cache_dir={tmp_path / 'cache'}"], env=offline_env())
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "hardware.threads=0" in errors[0], proc.stderr[-3000:]


@pytest.mark.parametrize("hardware", HARDWARE)
def test_presets_carry_the_knobs_off(hardware: str, tmp_path: Path) -> None:
    from tests.hydra_helpers import compose_cfg

    cfg = compose_cfg([f"hardware={hardware}"], tmp_path)
    assert check_knobs(cfg.hardware) == HardwareKnobs(
        compile=False, threads=None, activation_checkpointing=False
    )
    for key in ("compile", "threads", "activation_checkpointing"):
        assert key in cfg.hardware


def test_apply_knobs_sets_the_task_encoder() -> None:
    task = TinyClassifierTask(tiny_config().to_dict())
    apply_knobs(HardwareKnobs(activation_checkpointing=True), task)
    assert task.model.bert.encoder.gradient_checkpointing
    apply_knobs(HardwareKnobs(), task)
    assert not task.model.bert.encoder.gradient_checkpointing and "forward" not in task.model.__dict__


class _Threads(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> int:
        return torch.get_num_threads()


def test_loader_workers_use_one_thread() -> None:
    """DataLoader workers do not oversubscribe: torch's and torchdata's worker loops set one thread."""
    for loader in (
        train_loader(_Threads(), 2, list, num_workers=1, seed=0),
        eval_loader(_Threads(), 2, list, 1),
    ):
        assert [n for b in loader for n in b] == [1, 1, 1, 1]


def test_precision_auto_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """hardware.precision=auto: bf16 autocast only where the CPU has native bf16 (emulated bf16 was 5-10x
    slower than fp32 on an AVX2 EPYC); an explicit precision is kept."""
    for native, expected in ((True, "bf16-mixed"), (False, "32-true")):
        monkeypatch.setattr(acceleration, "native_bf16", lambda native=native: native)
        assert acceleration.cpu_precision("auto", "cpu") == expected
    monkeypatch.setattr(acceleration.torch.cuda, "is_available", lambda: False)
    assert acceleration.cpu_precision("auto", "auto") == "32-true"  # ddp/fsdp presets on a CPU machine
    assert acceleration.cpu_precision("auto", "gpu") == "bf16-mixed"
    assert acceleration.cpu_precision("16-mixed", "cpu") == "16-mixed"


def test_cuda_runs_turn_off_cudnn_attention(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With CUDA, run.set_environment turns SDPA's cuDNN backend off: it rebuilds a graph for each new
    shape, which the padding-free path's length buckets bring nearly every batch (0.11x on an H200)."""
    from bertlab.run import set_environment

    for name in ("WANDB_MODE", "WANDB_SILENT", "HF_HOME", "HF_DATASETS_CACHE"):
        monkeypatch.delenv(name, raising=False)  # monkeypatch restores them, and whatever set_environment set
    was = torch.backends.cuda.cudnn_sdp_enabled()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch, "set_float32_matmul_precision", lambda _: None)
    torch.backends.cuda.enable_cudnn_sdp(True)
    try:
        set_environment(OmegaConf.create({"logger": None, "paths": {"cache_dir": str(tmp_path)}}))
        assert not torch.backends.cuda.cudnn_sdp_enabled()
    finally:
        torch.backends.cuda.enable_cudnn_sdp(was)
