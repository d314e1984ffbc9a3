"""Entry point: `python train.py model=bert_base task=mnli hardware=gpu` (see conf/ and README.md)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from bertlab import resolvers
from bertlab.pipeline import run_pipeline
from bertlab.renamed import renamed_error
from bertlab.resume import LATEST, resolve_fit_checkpoint, run_folder_of
from bertlab.run import main

resolvers.register()  # ${labels:...} in conf/task/ resolves inside the app


def finish_wandb(exit_code: int) -> None:
    """End the W&B run: the jobs of a multirun share this process, and an open run would absorb the next."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=exit_code)


def bertlab_error(err: BaseException) -> ValueError | None:
    """bertlab's own error (DataError, ConfigError, CheckpointError, TokenizerError: ValueErrors defined in
    bertlab, each a one-line message with its fix) behind `err`, also when wrapped (Hydra's instantiate)."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, ValueError) and type(seen).__module__.startswith("bertlab."):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def app(cfg: DictConfig) -> float | None:
    try:
        # experiment=ablation_* sets `pipeline`: pre-train, fine-tune and score one variant (bertlab.pipeline)
        metrics = run_pipeline(cfg) if cfg.get("pipeline") else main(cfg)
    except BaseException as err:
        finish_wandb(exit_code=1)
        known = bertlab_error(err)
        if known is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        # one line, no traceback: what is wrong and how to fix it (HYDRA_FULL_ERROR=1 shows the traceback)
        print(f"error: {known}", file=sys.stderr)
        sys.exit(2)
    finish_wandb(exit_code=0)
    # a sweeper optimises the value named by `optimized_metric` (hparams_search configs set it)
    name = cfg.get("optimized_metric")
    return metrics.get(name) if name else None


def continue_in_run_folder(argv: list[str]) -> list[str]:
    """mode=fit with ckpt=: `argv` plus `hydra.run.dir=<the checkpoint's run folder>`, so the resumed run,
    Hydra's own files (.hydra/, train.log) included, goes on in that folder (bertlab/resume.py). `argv`
    as it is when that cannot be told here: run.main then resolves ckpt= and reports a missing one."""
    if any(arg.startswith("-") for arg in argv):  # -m: each job's folder is Hydra's; --cfg, --help, ...
        return argv
    given = dict(arg.split("=", 1) for arg in argv if "=" in arg and not arg.startswith(("+", "~")))
    ckpt = given.get("ckpt")
    if given.get("mode", "fit") != "fit" or ckpt in (None, "", "null"):
        return argv
    try:
        found = resolve_fit_checkpoint(ckpt, outputs_folder(argv) if ckpt == LATEST else Path())
    except Exception:  # run.main reports it, as one line
        return argv
    folder = run_folder_of(found)
    if folder is None:
        return argv
    if Path(given.get("hydra.run.dir", str(folder)).strip("\"'")).resolve() != folder.resolve():
        print(f"ckpt={ckpt}: continuing in its run folder {folder}, not hydra.run.dir", file=sys.stderr)
    return [*argv, f'hydra.run.dir="{folder}"']


def outputs_folder(argv: list[str]) -> Path:
    """The folder of this task's run folders: the parent of the one Hydra would make for `argv`."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(Path(__file__).resolve().parent / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=argv, return_hydra_config=True)
    return Path(str(cfg.hydra.run.dir)).parent


if __name__ == "__main__":
    # before Hydra parses: an old option name would otherwise fail as an unknown key, or be added by `+`
    error = renamed_error(sys.argv[1:])
    if error:
        print(error, file=sys.stderr)
        sys.exit(2)
    sys.argv[1:] = continue_in_run_folder(sys.argv[1:])  # a resumed run writes into its own folder
    app()
