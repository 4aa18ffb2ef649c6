"""The apply step's orchestration: tables side by side on sinks of their own, failures stop new
applies and surface as a one-by-one apply would raise them, and no apply starts without the time
it needs."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from cdc.apply import OutOfTime, SinkPool, TableApply, TimeGuard, apply_tables
from cdc.errors import MergeError, SinkUnavailable
from cdc.model import Column, StagedTable, TableSchema


def staged(name: str) -> StagedTable:
    table = TableSchema("s", name, (Column("id", 1, "integer", 23, nullable=False),), ("id",))
    return StagedTable(table, table.stage_dir, (), 1, {"I": 1, "U": 0, "D": 0, "T": 0}, None, ())


class FakeSink:
    """Records its applies as (table, sink number); ``hooks[table]`` runs inside that apply."""

    def __init__(self, number: int, log: list[tuple[str, int]], hooks: dict[str, Any]) -> None:
        self.number = number
        self.log = log
        self.hooks = hooks
        self.busy = False
        self.closed = False

    def apply(self, table: TableSchema, rel_path: str, **kwargs: Any) -> None:
        assert not self.busy, "a sink is used by one apply at a time"
        assert rel_path == f"w/{table.name}" and kwargs["max_lsn"] == 77 and kwargs["window_id"] == "w1"
        self.busy = True
        try:
            hook = self.hooks.get(table.name)
            if hook is not None:
                hook()
            self.log.append((table.name, self.number))
        finally:
            self.busy = False

    def close(self) -> None:
        self.closed = True


def setup(hooks: dict[str, Any] | None = None) -> tuple[SinkPool, list[tuple[str, int]], list[FakeSink]]:
    """A pool whose first sink (number 0) stands for the engine's; the others are numbered 1.."""
    log: list[tuple[str, int]] = []
    made: list[FakeSink] = []
    first = FakeSink(0, log, hooks or {})

    def factory() -> FakeSink:
        sink = FakeSink(len(made) + 1, log, hooks or {})
        made.append(sink)
        return sink

    return SinkPool(lambda: first, factory), log, made


def items(*names: str) -> list[TableApply]:
    return [TableApply(staged(n), f"w/{n}") for n in names]


def run(pool: SinkPool, names: list[str], parallelism: int, **kwargs: Any) -> list[str]:
    guard = kwargs.pop("guard", TimeGuard(None, 0, 0))
    done = apply_tables(
        items(*names), pool, parallelism=parallelism, window_id="w1", max_lsn=77, guard=guard, **kwargs
    )
    return [s.table.name for s in done]


def test_tables_run_side_by_side_each_on_its_own_sink() -> None:
    all_in = threading.Barrier(3, timeout=10)  # three applies must be running at the same time
    pool, log, made = setup({n: all_in.wait for n in ("a", "b", "c")})
    between: list[int] = []
    done = run(pool, ["a", "b", "c"], 3, between=lambda: between.append(1))
    assert done == ["a", "b", "c"]
    assert sorted(t for t, _ in log) == ["a", "b", "c"]
    assert len({sink for _, sink in log}) == 3  # the engine's sink and two more
    assert len(made) == 2 and between == [1, 1]  # after each apply another one follows
    pool.close()
    assert all(s.closed for s in made)


def test_one_at_a_time_uses_only_the_engines_sink() -> None:
    pool, log, made = setup()
    between: list[int] = []
    assert run(pool, ["a", "b", "c"], 1, between=lambda: between.append(1)) == ["a", "b", "c"]
    assert [t for t, _ in log] == ["a", "b", "c"] and made == [] and between == [1, 1]


def test_more_tables_than_threads_reuse_the_sinks() -> None:
    pool, log, made = setup()
    assert run(pool, [f"t{i}" for i in range(9)], 2) == [f"t{i}" for i in range(9)]
    assert len(made) <= 1 and len(log) == 9


def test_a_failure_stops_new_applies_and_the_first_failure_in_table_order_is_raised() -> None:
    b_started = threading.Event()
    release = threading.Event()

    def a() -> None:
        assert b_started.wait(10)
        raise MergeError("table a rejected")

    def b() -> None:
        b_started.set()
        assert release.wait(10)
        raise SinkUnavailable("b lost its connection")

    def c() -> None:
        raise AssertionError("no apply starts after a failure")

    pool, log, _ = setup({"a": a, "b": b, "c": c})
    threading.Timer(0.2, release.set).start()
    with pytest.raises(MergeError, match="table a rejected"):
        run(pool, ["a", "b", "c"], 2)
    assert log == []


def test_the_guard_refuses_an_apply_without_the_reserve_or_the_slowest_apply() -> None:
    left = [100.0]
    guard = TimeGuard(lambda: left[0], safety_margin_s=10, reserve_s=20)
    guard.check("s.a")  # 90 s beyond the margin
    left[0] = 29.0
    with pytest.raises(OutOfTime) as info:
        guard.check("s.a")
    assert (info.value.left_s, info.value.needed_s) == (19.0, 20)
    assert "not enough time left to apply table s.a: 19.0 s" in str(info.value)
    assert "window_apply_margin_s (CDC_WINDOW_APPLY_MARGIN_S)" in str(info.value)
    left[0] = 50.0
    guard.record(45.0)  # an apply of this window took 45 s: the next may too
    with pytest.raises(OutOfTime, match="an apply needs 45.0 s"):
        guard.check("s.b")
    TimeGuard(None, 10, 20).check("s.c")  # outside Lambda: no limit


def test_out_of_time_before_the_second_table_keeps_the_first_applied() -> None:
    left = [100.0]
    pool, log, _ = setup({"a": lambda: left.__setitem__(0, 5.0)})
    with pytest.raises(OutOfTime, match="table s.b"):
        run(pool, ["a", "b"], 1, guard=TimeGuard(lambda: left[0], 0, 10))
    assert log == [("a", 0)]
