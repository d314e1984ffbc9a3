"""Entry point: `python train.py model=bert_base task=mnli hardware=gpu` (see conf/ and README.md)."""

from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig

from bertlab import resolvers
from bertlab.renamed import renamed_error
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
        metrics = main(cfg)
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


if __name__ == "__main__":
    # before Hydra parses: an old option name would otherwise fail as an unknown key, or be added by `+`
    error = renamed_error(sys.argv[1:])
    if error:
        print(error, file=sys.stderr)
        sys.exit(2)
    app()
