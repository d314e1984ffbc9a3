"""One error type for bad input files, so every message names the file (and line) and the fix.

Also the helpers every reader shares: `read_utf8` (a whole file as text, bad bytes named by line and
byte offset) and `report_skipped` (rows a reader skips are counted, named and logged, never dropped
silently).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("bertlab.data")

UTF8_FIX = "re-encode the file as UTF-8 (for example `iconv -f latin1 -t utf-8 FILE > FILE.utf8`)"


class DataError(ValueError):
    """Bad input data: the message is one line naming the file, the line when known, and the fix."""

    def __init__(self, path: str | Path | None, problem: str, fix: str, line: int | None = None) -> None:
        where = "" if path is None else (f"{path}:{line}: " if line is not None else f"{path}: ")
        super().__init__(f"{where}{problem}; {fix}")
        self.path, self.line = path, line
        self.problem, self.fix = problem, fix

    def with_line(self, line: int) -> DataError:
        """The same error at another line (a reader that counts lines itself)."""
        return DataError(self.path, self.problem, self.fix, line)


class DataConfigError(ValueError):
    """A `data.*` setting that cannot work (a size below its minimum, a probability outside [0, 1]): the
    message names the key, the value and the fix. Raised where the value is read, before any file is."""


def not_utf8(path: str | Path, data: bytes, err: UnicodeDecodeError, offset: int = 0) -> DataError:
    """The DataError for bytes `data` (starting at byte `offset` of the file) that are not UTF-8."""
    start = offset + err.start
    line = data[: err.start].count(b"\n") + 1
    return DataError(path, f"byte {start} (0x{data[err.start]:02x}) is not valid UTF-8", UTF8_FIX, line)


def read_utf8(path: str | Path) -> str:
    """The whole file as text (a leading UTF-8 byte-order mark dropped); DataError naming line and byte
    offset of the first byte that is not UTF-8, or saying it is not a file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise DataError(path, "is a folder, not a file", "pass the path of the file itself") from None
    except OSError as err:
        raise DataError(
            path, f"cannot be read ({err.strerror})", "check the path and its permissions"
        ) from None
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        raise not_utf8(path, data, err) from None


def report_skipped(
    source: str | Path,
    count: int,
    why: str,
    lines: Sequence[int] = (),
    category: type[Warning] = UserWarning,
    note: str = "",
) -> None:
    """Say that `count` rows of `source` were skipped and why (with the first lines when known): one log
    line (in the run's log) and one warning (for library users and tests); nothing when `count` is 0."""
    if not count:
        return
    shown = ""
    if lines:
        shown = " at line(s) " + ", ".join(map(str, lines[:10])) + (", …" if len(lines) > 10 else "")
    warn_and_log(f"{source}: skipped {count} {why}{shown}{note}", category)


def warn_and_log(message: str, category: type[Warning] = UserWarning) -> None:
    """What a reader repaired or skipped: a log line (the run's log and console) and a warning (library
    users, tests with `pytest.warns`)."""
    log.warning(message)
    warnings.warn(message, category, stacklevel=4)


__all__ = [
    "UTF8_FIX",
    "DataConfigError",
    "DataError",
    "not_utf8",
    "read_utf8",
    "report_skipped",
    "warn_and_log",
]
