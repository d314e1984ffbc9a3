"""Entry point: `python train.py model=bert_base task=mnli hardware=gpu` (see conf/ and README.md)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from bertlab.run import main


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def app(cfg: DictConfig) -> float | None:
    metrics = main(cfg)
    # a sweeper optimises the value named by `optimized_metric` (hparams_search configs set it)
    name = cfg.get("optimized_metric")
    return metrics.get(name) if name else None


if __name__ == "__main__":
    app()
