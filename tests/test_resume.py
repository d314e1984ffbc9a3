"""Resume means continue (bertlab/resume.py): a run SIGKILLed mid-epoch and resumed with ckpt= trains on
exactly as the uninterrupted run does, in the same run folder, with one CSV log and one W&B run id.

Each case runs train.py three ways in subprocesses: uninterrupted for 30 steps; killed by `KillAtStep`
(below, a test-only callback added through the config) at step 17, its newest checkpoint at step 15;
and that run resumed. Validation every 7 steps and an epoch boundary fall on both sides of the resume.
"""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from bertlab.data.loaders import train_loader
from bertlab.data.sampler import LengthGroupedSampler
from bertlab.resume import (
    LATEST,
    checkpoint_step,
    newest_checkpoint,
    resolve_fit_checkpoint,
    rng_states,
    run_folder_of,
    set_rng_states,
)
from bertlab.run_folder import CheckpointNotFound
from tests.cli import run_train
from tests.fixtures_glue import write_qqp
from tests.hydra_helpers import REPO

STEPS, EVERY, KILL = 30, 5, 17  # the killed run's newest checkpoint: step 15 (mid-epoch, after a validation)
RESUMED = KILL // EVERY * EVERY
ENV = os.environ | {
    "WANDB_MODE": "offline",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
}
TINY = ["model=bert_tiny", "model.hidden_size=36", "model.num_attention_heads=3", "model.intermediate_size=37",
        "hardware.precision=32-true", "trainer.enable_model_summary=false", "+trainer.enable_progress_bar=false",
        "export=false", f"trainer.max_steps={STEPS}", "trainer.max_epochs=-1", "trainer.val_check_interval=7",
        "trainer.check_val_every_n_epoch=null", "trainer.log_every_n_steps=1",
        f"callbacks.model_checkpoint.every_n_train_steps={EVERY}"]  # fmt: skip
WORDS = [
    "the",
    "a",
    "river",
    "city",
    "north",
    "old",
    "new",
    "house",
    "road",
    "king",
    "war",
    "year",
    "first",
    "small",
    "born",
    "music",
]


class KillAtStep(Callback):
    """Test only: SIGKILL this process as training step `step` starts (nothing flushed, no checkpoint)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def train(args: list[str], run: Path, cache: Path, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "train.py", *args, f"hydra.run.dir={run}", f"paths.cache_dir={cache}"]
    proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def kill_and_resume(
    args: list[str], tmp: Path, resume: list[str], killed: Path | None = None, elsewhere: Path | None = None
) -> Path:
    """Run `args` killed at step KILL in `killed`; resume it with `resume` (hydra.run.dir elsewhere: the
    resumed run must still write into `killed`). Returns the run folder."""
    killed = killed or tmp / "killed"
    kill = [f"+callbacks.kill._target_={__name__}.KillAtStep", f"+callbacks.kill.step={KILL}"]
    proc = train([*args, *kill, "+logger.csv.flush_logs_every_n_steps=1"], killed, tmp / "cache", check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert checkpoint_step(killed / "checkpoints" / "last.ckpt") == RESUMED
    assert max(logged(killed, "train/loss")) >= RESUMED, "rows after the checkpoint reached the CSV (to drop)"
    elsewhere = elsewhere or tmp / "elsewhere"
    train([*args, *resume], elsewhere, tmp / "cache")
    assert not elsewhere.exists(), "the resumed run wrote outside its run folder"
    return killed


def logged(run: Path, key: str) -> dict[int, float]:
    """step -> value of `key` in the run's one CSV log (every step once)."""
    (version,) = (run / "csv").glob("version_*")
    rows = [r for r in csv.DictReader((version / "metrics.csv").open()) if r.get(key)]
    steps = [int(r["step"]) for r in rows]
    assert len(steps) == len(set(steps)), f"{key}: a step logged twice"
    return dict(zip(steps, (float(r[key]) for r in rows)))


def assert_continues(reference: Path, resumed: Path) -> None:
    """Per-step training losses equal (1e-6) to the uninterrupted run's, before and after the resume."""
    ref, got = logged(reference, "train/loss"), logged(resumed, "train/loss")
    assert sorted(ref) == sorted(got) == list(range(STEPS)), "the CSV log covers every step of the run"
    after = [s for s in ref if s >= RESUMED]
    diff = max(abs(ref[s] - got[s]) for s in after)
    print(f"resume at step {RESUMED}: {len(after)} steps compared, largest difference {diff:.3g}")
    assert diff <= 1e-6
    assert all(abs(ref[s] - got[s]) <= 1e-6 for s in ref), "the rows before the resume are the killed run's"
    assert logged(resumed, "val/loss").keys() == logged(reference, "val/loss").keys()
    assert checkpoint_step(resumed / "checkpoints" / "last.ckpt") == STEPS
    assert (resumed / "metrics.json").is_file()
    assert "resuming" in (resumed / "train.log").read_text(), "Hydra's log continues in the run folder"


# -- pre-training ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A text corpus (one sentence a line, documents apart) and a vocab.txt of its words: pre-training
    overrides for a fixed tokenizer (a trained one is not deterministic run to run)."""
    root = tmp_path_factory.mktemp("corpus")
    rng = random.Random(3)
    docs = [[" ".join(rng.choices(WORDS, k=rng.randint(4, 9))) + " ." for _ in range(6)] for _ in range(44)]
    (root / "corpus.txt").write_text("\n\n".join("\n".join(d) for d in docs) + "\n", encoding="utf-8")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *WORDS]
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return ["data=text", f"data.path={root / 'corpus.txt'}", f"tokenizer={root / 'vocab.txt'}",
            f"model.vocab_size={len(vocab)}", "data.max_seq_length=24", "data.batch_size=8", "data.val_docs=4",
            "logger=csv", *TINY]  # fmt: skip


def uninterrupted(args: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of `args` trained without a stop (torchdata orders batches differently with
    workers, so each worker count has its own)."""
    key = tuple(args)
    if key not in _REFERENCES:
        tmp = tmp_path_factory.mktemp("uninterrupted")
        train(args, tmp / "run", tmp / "cache")
        _REFERENCES[key] = tmp / "run"
    return _REFERENCES[key]


_REFERENCES: dict[tuple[str, ...], Path] = {}


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_pretraining_resumes_exactly(
    corpus: list[str], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, workers: int
) -> None:
    """Plain shuffling, dynamic masking. num_workers=0: ckpt=last; 2: ckpt=<run folder>."""
    args = [*corpus, f"data.num_workers={workers}"]
    if workers == 0:  # ckpt=last: the newest run folder of the task beside the one Hydra would make
        killed = tmp_path / "outputs" / "pretrain" / "killed"
        new = tmp_path / "outputs" / "pretrain" / "new"
        run = kill_and_resume(args, tmp_path, ["ckpt=last"], killed, elsewhere=new)
    else:
        run = kill_and_resume(args, tmp_path, [f"ckpt={tmp_path / 'killed'}"])
    assert_continues(uninterrupted(args, tmp_path_factory), run)


# -- fine-tuning ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def glue(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("glue")
    write_qqp(root, n_train=70, n_dev=9, malformed=False)
    return ["task=qqp", f"data.data_dir={root}", f"tokenizer={minilm_dir / 'vocab.txt'}", "pretrained=null",
            "data.max_seq_length=32", "data.batch_size=8", "data.eval_batch_size=5",
            "task.module.optimizer.lr=1e-3", "data.group_by_length=true", *TINY]  # fmt: skip


@pytest.mark.parametrize("workers", [pytest.param(0, marks=pytest.mark.slow), 2])
def test_finetuning_resumes_exactly(
    glue: list[str], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, workers: int
) -> None:
    """Length-grouped batches (a custom sampler; pre-training shuffles plainly). num_workers=0:
    ckpt=<run>/checkpoints/last.ckpt; 2: ckpt=<run folder>, and W&B (offline) keeps its run id."""
    args = [*glue, f"data.num_workers={workers}"]
    if workers == 0:
        run = kill_and_resume(
            [*args, "logger=csv"], tmp_path, [f"ckpt={tmp_path / 'killed/checkpoints/last.ckpt'}"]
        )
    else:
        run = kill_and_resume([*args, "logger=[csv,wandb]"], tmp_path, [f"ckpt={tmp_path / 'killed'}"])
        run_id = (run / "wandb_id.txt").read_text().strip()
        offline = sorted((run / "wandb").glob("offline-run-*"))
        assert len(offline) == 2 and all(d.name.endswith(f"-{run_id}") for d in offline), offline
    assert_continues(uninterrupted([*args, "logger=csv"], tmp_path_factory), run)


# -- which checkpoint ------------------------------------------------------------------------------------
def test_ckpt_names_a_file_a_run_folder_or_last(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs" / "pretrain"
    old, new, empty = outputs / "2026-01-01_10-00-00", outputs / "2026-01-01_11-00-00", outputs / "z"
    for run in (old, new, empty):
        (run / "checkpoints").mkdir(parents=True)

    def write(path: Path, age: float) -> None:
        path.write_bytes(b"x")
        os.utime(path, (time.time() - age, time.time() - age))

    write(old / "checkpoints" / "last.ckpt", 40)
    write(new / "checkpoints" / "last.ckpt", 30)
    write(new / "checkpoints" / "step20.ckpt", 20)
    write(old / "checkpoints" / "step5.ckpt", 25)
    # a run folder: last.ckpt, or a step*.ckpt written after it
    assert resolve_fit_checkpoint(new, outputs) == new / "checkpoints" / "step20.ckpt"
    assert newest_checkpoint(new / "checkpoints") == new / "checkpoints" / "step20.ckpt"
    write(new / "checkpoints" / "last.ckpt", 10)
    assert resolve_fit_checkpoint(new, outputs) == new / "checkpoints" / "last.ckpt"
    # last: the newest checkpoint of any run folder of the task
    assert resolve_fit_checkpoint(LATEST, outputs) == new / "checkpoints" / "last.ckpt"
    write(old / "checkpoints" / "step5.ckpt", 5)
    assert resolve_fit_checkpoint(LATEST, outputs) == old / "checkpoints" / "step5.ckpt"
    # a file as it is; its run folder is the one holding checkpoints/
    assert (
        resolve_fit_checkpoint(old / "checkpoints" / "last.ckpt", outputs)
        == old / "checkpoints" / "last.ckpt"
    )
    assert run_folder_of(old / "checkpoints" / "last.ckpt") == old
    assert run_folder_of(tmp_path / "loose.ckpt") is None
    with pytest.raises(
        CheckpointNotFound, match=r"ckpt=.*/z: neither .*/z/checkpoints/last\.ckpt nor .*step\*\.ckpt"
    ):
        resolve_fit_checkpoint(empty, outputs)
    with pytest.raises(
        CheckpointNotFound, match=r"ckpt=.*/missing: no such file or folder; pass a run folder"
    ):
        resolve_fit_checkpoint(tmp_path / "missing", outputs)
    with pytest.raises(
        CheckpointNotFound, match=r"ckpt=last: no run folder under .*/nothing has checkpoints/"
    ):
        resolve_fit_checkpoint(LATEST, tmp_path / "nothing")


def test_ckpt_not_found_is_one_line(tmp_path: Path) -> None:
    run, cache = tmp_path / "outputs" / "pretrain" / "run", tmp_path / "cache"
    proc = run_train(["ckpt=last", "logger=csv", f"hydra.run.dir={run}", f"paths.cache_dir={cache}"], env=ENV)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ckpt=last: no run folder under ") and "outputs/pretrain has" in last


def _indices(items: list[dict[str, Any]]) -> torch.Tensor:
    return torch.tensor([item["i"] for item in items])


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("workers", [0, 2])
def test_training_loader_resumes_mid_epoch(workers: int, grouped: bool) -> None:
    """train_loader's state (as Lightning saves it) continues the epoch and the epochs after it, whatever
    the global RNG does meanwhile: seeded shuffling, and a custom sampler ordered by seed and epoch."""
    data = [{"i": i, "input_ids": [0] * (i * 7 % 11 + 1)} for i in range(37)]

    def loader() -> Any:
        sampler = LengthGroupedSampler([len(d["input_ids"]) for d in data], 4, 2, seed=3) if grouped else None
        return train_loader(data, 4, _indices, workers, sampler=sampler, seed=None if grouped else 7)

    def epochs(source: Any, first: int, last: int, stop: int = 10**9) -> list[list[int]]:
        """Batches of epochs first..last-1 as Lightning's fit loop asks for them (at most `stop`)."""
        out: list[list[int]] = []
        for epoch in range(first, last):
            if grouped and epoch > first:
                source.sampler.set_epoch(epoch)
            iterator = iter(source)
            if grouped and epoch == first:  # the first iter() (resumed, or epoch 0) comes before set_epoch
                source.sampler.set_epoch(epoch)
            for batch in iterator:
                out.append(batch.tolist())
                if len(out) == stop:
                    return out
        return out

    torch.manual_seed(0)
    reference = epochs(loader(), 0, 3)
    torch.manual_seed(0)
    killed = loader()
    taken = epochs(killed, 0, 3, stop=13)  # mid-epoch 1 (10 batches an epoch)
    state = killed.state_dict()
    torch.manual_seed(123)
    resumed = loader()
    resumed.load_state_dict(state)
    assert taken + epochs(resumed, 1, 3) == reference


def test_rng_states_round_trip() -> None:
    import numpy as np

    states = rng_states()
    first = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(123), np.random.seed(5), random.seed(9)
    set_rng_states(states)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and (first[1] == again[1]).all() and first[2] == again[2]
    loaded = torch.load(_saved(states), weights_only=True)  # checkpoints load under weights_only
    set_rng_states(loaded)
    assert torch.equal(torch.rand(3), first[0])


def _saved(obj: Any) -> Any:
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return buffer
