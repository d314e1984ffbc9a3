"""Hugging Face hub datasets for users with internet: one place turns every failure into a `DataError`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bertlab.data.errors import DataError


def load_hub_split(
    hub_name: str, config: str | None, split: str, problem: str, fix: str, where: str | Path | None = None
) -> Any:
    """`datasets.load_dataset(hub_name, config, split=split)`, or one `DataError` line: `where` (the local
    path that was looked for, else the hub name), `problem` with the error's type and first words, `fix`."""
    try:
        import datasets  # only here: importing it is slow, and offline users never need it

        if config is None:
            return datasets.load_dataset(hub_name, split=split)
        return datasets.load_dataset(hub_name, config, split=split)
    except Exception as err:  # offline, missing and auth errors come in many types
        reason = " ".join(str(err).split())[:200]
        raise DataError(where or hub_name, f"{problem} ({type(err).__name__}: {reason})", fix) from err
