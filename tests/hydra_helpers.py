"""Compose the real conf/ tree in tests, as `python train.py ...overrides` would."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from bertlab import resolvers

REPO = Path(__file__).resolve().parents[1]


def hydra_cfg(overrides: list[str]) -> DictConfig:
    """The composed config with its `hydra` node, bertlab's resolvers registered (as train.py does)."""
    resolvers.register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


def compose_cfg(overrides: list[str], out: Path) -> DictConfig:
    """The job config for `overrides`, with the run folder at `out` and the Hydra context set."""
    cfg = hydra_cfg(overrides)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(out)
        cfg.hydra.runtime.cwd = str(REPO)
        cfg.hydra.job.num = 0
        cfg.hydra.overrides.task = list(overrides)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.paths.cache_dir = str(out.parent / "cache")
        del cfg.hydra
    return cfg
