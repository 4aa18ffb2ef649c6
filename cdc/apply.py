"""The apply step of a window: each staged table's COPY + MERGE, several tables at a time, each on
its own Snowflake connection, never starting one the remaining time cannot hold.

``apply_tables`` runs the tables' applies on up to ``parallelism`` threads. The sinks come from a
``SinkPool`` (the engine's own sink first, more from the factory only when tables run side by
side). A failure stops new applies from starting, waits for those already running (a statement
cannot be taken back) and raises the first failure in table order, as a one-by-one apply would
have raised it; the tables merged before it stay merged, and the MERGE's "only newer changes"
rule makes the next run's re-apply of the window harmless. ``TimeGuard.check`` runs before each
apply and raises ``OutOfTime`` when less time is left (beyond the safety margin) than an apply
needs: the larger of the configured reserve and the slowest apply of this window so far.

The caller writes the checkpoint only after ``apply_tables`` returned, so the checkpoint never
moves past a table whose MERGE did not commit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Protocol

from cdc.errors import CdcError
from cdc.model import StagedTable, TableSchema

__all__ = ["ApplySink", "OutOfTime", "SinkPool", "TableApply", "TimeGuard", "apply_tables"]

log = logging.getLogger(__name__)


class ApplySink(Protocol):
    def apply(
        self,
        table: TableSchema,
        rel_path: str,
        *,
        window_id: str,
        max_lsn: int,
        truncate: tuple[int, int] | None,
    ) -> Any: ...


class OutOfTime(CdcError):
    """Not enough of the invocation's time is left to start another table's COPY + MERGE."""

    def __init__(self, table: str, left_s: float, needed_s: float) -> None:
        self.table = table
        self.left_s = left_s
        self.needed_s = needed_s
        super().__init__(
            f"not enough time left to apply table {table}: {max(left_s, 0.0):.1f} s beyond the safety "
            f"margin, an apply needs {needed_s:.1f} s. The tables applied so far stay applied; the "
            "checkpoint did not move and the next run applies the window again. If this repeats, raise "
            "the Lambda timeout or window_apply_margin_s (CDC_WINDOW_APPLY_MARGIN_S), or lower "
            "window_max_changes (CDC_WINDOW_MAX_CHANGES)"
        )


class TimeGuard:
    """Whether another apply may start (``time_left`` None: no limit, e.g. outside Lambda)."""

    def __init__(
        self, time_left: Callable[[], float] | None, safety_margin_s: float, reserve_s: float
    ) -> None:
        self._time_left = time_left
        self._margin = safety_margin_s
        self._reserve = reserve_s
        self._slowest = 0.0
        self._lock = threading.Lock()

    def check(self, table: str) -> None:
        if self._time_left is None:
            return
        left = self._time_left() - self._margin
        with self._lock:
            needed = max(self._reserve, self._slowest)
        if left < needed:
            raise OutOfTime(table, left, needed)

    def record(self, seconds: float) -> None:
        with self._lock:
            self._slowest = max(self._slowest, seconds)


class SinkPool:
    """Sinks for applies that run side by side: ``first`` (the engine's), then new ones from
    ``factory``, each used by one apply at a time and kept for the next."""

    def __init__(self, first: Callable[[], ApplySink], factory: Callable[[], ApplySink]) -> None:
        self._first = first
        self._factory = factory
        self._idle: list[ApplySink] = []
        self._made: list[ApplySink] = []
        self._first_taken = False
        self._lock = threading.Lock()

    def take(self) -> ApplySink:
        with self._lock:
            if not self._first_taken:
                self._first_taken = True
                return self._first()
            if self._idle:
                return self._idle.pop()
        sink = self._factory()  # connects: outside the lock
        with self._lock:
            self._made.append(sink)
        return sink

    def give(self, sink: ApplySink) -> None:
        with self._lock:
            if self._made and any(sink is s for s in self._made):
                self._idle.append(sink)
            else:
                self._first_taken = False

    def close(self) -> None:
        """Close the sinks the pool made (the first belongs to the engine)."""
        with self._lock:
            made, self._made, self._idle = self._made, [], []
        for sink in made:
            close = getattr(sink, "close", None)
            if close is not None:
                close()


@dataclass(frozen=True)
class TableApply:
    staged: StagedTable
    rel_path: str  # the table's parts in the stage


def apply_tables(
    items: Sequence[TableApply],
    pool: SinkPool,
    *,
    parallelism: int,
    window_id: str,
    max_lsn: int,
    guard: TimeGuard,
    between: Callable[[], None] = lambda: None,
    fence: Callable[[], None] = lambda: None,
) -> list[StagedTable]:
    """COPY + MERGE every table of ``items``; the tables applied, in ``items`` order.

    ``between`` runs after each apply when another table is still to be applied (or running);
    ``fence`` before each, and raises when the run may no longer change the target (its lease).
    """
    if not items:
        return []
    stop = threading.Event()

    def run(item: TableApply) -> StagedTable | None:
        if stop.is_set():
            return None
        name = item.staged.table.qualified
        try:
            fence()
            guard.check(name)
            sink = pool.take()
            try:
                started = time.monotonic()
                sink.apply(
                    item.staged.table,
                    item.rel_path,
                    window_id=window_id,
                    max_lsn=max_lsn,
                    truncate=item.staged.truncate,
                )
                guard.record(time.monotonic() - started)
            finally:
                pool.give(sink)
        except BaseException:
            stop.set()  # no new apply starts; the running ones finish
            raise
        return item.staged

    workers = max(1, min(parallelism, len(items)))
    if workers == 1:
        done: list[StagedTable] = []
        for i, item in enumerate(items):
            if i:
                between()
            applied = run(item)
            assert applied is not None
            done.append(applied)
        return done
    results: list[Future[StagedTable | None]] = []
    with ThreadPoolExecutor(workers, thread_name_prefix="cdc-apply") as executor:
        results = [executor.submit(run, item) for item in items]
        for finished, future in enumerate(as_completed(results), 1):
            if future.exception() is None and finished < len(results):
                between()
    errors = [f.exception() for f in results if f.exception() is not None]
    if errors:
        first = errors[0]
        assert first is not None
        raise first
    return [s for f in results if (s := f.result()) is not None]
