"""Entry point: `python train.py model=bert_base task=mnli hardware=gpu` (see conf/ and README.md)."""

from __future__ import annotations

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


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def app(cfg: DictConfig) -> float | None:
    try:
        metrics = main(cfg)
    except BaseException:
        finish_wandb(exit_code=1)
        raise
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
