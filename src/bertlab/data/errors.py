"""One error type for bad input files, so every message names the file (and line) and the fix."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad input data: the message is one line naming the file, the line when known, and the fix."""

    def __init__(self, path: str | Path | None, problem: str, fix: str, line: int | None = None) -> None:
        where = "" if path is None else (f"{path}:{line}: " if line is not None else f"{path}: ")
        super().__init__(f"{where}{problem}; {fix}")
        self.path, self.line = path, line
