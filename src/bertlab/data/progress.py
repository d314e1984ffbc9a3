"""Progress of data preparation: a tqdm bar on a terminal, log lines when output goes to a file.

Tokenising a split takes from a blink (RTE dev) to a minute (MNLI train, 393k pairs; SQuAD train). On a
terminal a bar shows it. Without one (a batch job, `> run.log`), where a bar is carriage-return noise,
`Progress` logs a line at the start, one every `every_s` seconds once another tenth is done, and one at
the end, e.g. `tokenising MNLI train: 392702 examples in 41 s`. The end line is logged on a terminal too,
so the run's train.log has it. Ranks other than 0 stay silent: every rank encodes the same splits.

Encoders that call `Tokenizer.encode_batch` on a whole split go through `chunks` instead, a few thousand
rows a call, so the count can advance; a call that size still keeps every tokenizer thread busy.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TypeVar

from tqdm import tqdm

log = logging.getLogger(__name__)
T = TypeVar("T")

CHUNK = 4096  # rows per encode_batch call
EVERY_S = 30.0  # seconds between log lines without a terminal (and at least a tenth more done)


def on_terminal() -> bool:
    """Whether stderr is a terminal (bars draw there; log lines otherwise)."""
    return sys.stderr.isatty()


def is_rank_zero() -> bool:
    """Rank 0 of a distributed run, or a single process (Lightning sets the rank before `setup`)."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def seconds(s: float) -> str:
    """`0.4 s`, `41 s`, `2:03`."""
    if s < 10:
        return f"{s:.1f} s"
    if s < 60:
        return f"{s:.0f} s"
    m, sec = divmod(round(s), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class Progress:
    """Counts one preparation step's work (`update(n)`), shown as a bar or as log lines (module docstring).

    desc: what is being done (`tokenising RTE train`); None makes it silent (callers of the pure
    functions that pass no description). bar=False: log lines only, for steps that draw their own bar on a
    terminal (`datasets.map`).
    """

    def __init__(
        self,
        desc: str | None,
        total: int | None = None,
        unit: str = "examples",
        *,
        bar: bool = True,
        every_s: float | None = None,
    ) -> None:
        self.desc, self.total, self.unit, self.draw = desc, total, unit, bar
        self.every_s = EVERY_S if every_s is None else every_s
        self.done = 0
        self.active = desc is not None and is_rank_zero()
        self.logging = False  # periodic log lines (no terminal)
        self._bar: tqdm | None = None
        self._start = self._last = 0.0
        self._last_done = 0

    def __enter__(self) -> Progress:
        if not self.active:
            return self
        self._start = self._last = time.perf_counter()
        if on_terminal():
            if self.draw:
                self._bar = tqdm(total=self.total, desc=self.desc, unit=f" {self.unit}", leave=False)
        else:
            self.logging = True
            count = f"{self.total} {self.unit}" if self.total is not None else self.unit
            log.info("%s: %s ...", self.desc, count)
        return self

    def update(self, n: int) -> None:
        """`n` more units done."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.logging:
            now = time.perf_counter()
            tenth = self.total / 10 if self.total else 0
            if now - self._last >= self.every_s and self.done - self._last_done >= tenth:
                self._last, self._last_done = now, self.done
                of = f"/{self.total}" if self.total else ""
                pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
                elapsed = seconds(now - self._start)
                log.info("%s: %d%s %s%s, %s so far", self.desc, self.done, of, self.unit, pct, elapsed)

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.active and kind is None:
            count = self.done or self.total or 0  # bar=False steps count nothing themselves
            log.info(
                "%s: %d %s in %s", self.desc, count, self.unit, seconds(time.perf_counter() - self._start)
            )


def track(
    items: Iterable[T], desc: str | None, total: int | None = None, unit: str = "examples"
) -> Iterator[T]:
    """`items`, one by one, counted as they are taken (`total`: `len(items)` when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    # count in steps of ~0.1%: the per-item cost stays one addition
    step = max(1, (total or 0) // 1000) if total else 256
    with Progress(desc, total, unit) as progress:
        pending = 0
        for item in items:
            yield item
            pending += 1
            if pending >= step:
                progress.update(pending)
                pending = 0
        progress.update(pending)


def chunks(n: int, desc: str | None, unit: str = "examples", size: int | None = None) -> Iterator[slice]:
    """Slices of `range(n)`, `size` (default `CHUNK`) at a time, counted as each is done: the rows of one
    `encode_batch` call."""
    size = size or CHUNK
    with Progress(desc, n, unit) as progress:
        for start in range(0, n, size):
            part = slice(start, min(start + size, n))
            yield part
            progress.update(part.stop - part.start)


@contextmanager
def datasets_step(desc: str, total: int | None = None, unit: str = "documents") -> Iterator[Progress]:
    """A `datasets` step (`map`, `from_generator`): its own bar on a terminal; without one, the start and
    end log lines instead of the bar's carriage-return updates. `update` the yielded Progress with the
    count when `total` was not known before."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    with Progress(desc, total, unit, bar=False) as progress:
        hide = progress.logging and not are_progress_bars_disabled()
        if hide:
            disable_progress_bars()
        try:
            yield progress
        finally:
            if hide:
                enable_progress_bars()


__all__ = ["CHUNK", "Progress", "chunks", "datasets_step", "on_terminal", "track"]
