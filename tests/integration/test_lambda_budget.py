"""The Lambda's time budget, through ``lambda/handler.handler`` with a context whose remaining time
runs down with the real clock: a window stops reading in time to apply what it read, ends on a
commit the target has, never starts a MERGE the remaining time cannot hold, and the next
invocation catches up exactly."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import Pipeline, load_handler, settings_env

from cdc.app import build_engine
from cdc.demo import compare_table
from cdc.errors import TransactionTooLarge
from cdc.model import Lsn
from cdc.reader import ReadBounds, WindowReader
from cdc.snowflake import sql as sfsql

pytestmark = pytest.mark.usefixtures("restore_logging")  # the handler configures logging
SAFETY_S = 1
# Reading all of it takes longer than the read budget below whatever the reader's speed: the
# walsender alone decodes changes of WIDE columns at about 50,000/s (measured with
# pg_logical_slot_peek_changes); one transaction is read well within it.
TRANSACTIONS = 12
ROWS_PER_TXN = 5000
WIDE = 40
OPS = {"I": 0, "U": 0, "D": 0, "T": 0}


class RunningDownContext:
    """A Lambda context whose remaining time runs down with the real clock.

    Its clock starts when the pipeline first asks (``get_remaining_time_in_millis``), so the time a
    window gets for reading does not depend on how long the invocation took to set up here.
    """

    def __init__(self, remaining_s: float) -> None:
        self.remaining_s = remaining_s
        self.deadline: float | None = None
        self.asked = 0

    def get_remaining_time_in_millis(self) -> int:
        self.asked += 1
        if self.deadline is None:
            self.deadline = time.monotonic() + self.remaining_s
        return max(0, int((self.deadline - time.monotonic()) * 1000))


@pytest.fixture
def p(stack: Any) -> Iterator[Pipeline]:
    pipeline = Pipeline(stack)
    with pipeline.conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {pipeline.schema}")
        columns = ", ".join(f"c{i} text" for i in range(WIDE))
        cur.execute(f"CREATE TABLE {pipeline.schema}.t (id int PRIMARY KEY, txn int NOT NULL, {columns})")
        cur.execute(f"CREATE TABLE {pipeline.schema}.u (id int PRIMARY KEY, note text)")
    pipeline.conn.commit()
    pipeline.settings = pipeline.settings.replace(
        source_tables=(f"{pipeline.schema}.t", f"{pipeline.schema}.u"),
        window_max_changes=10 * TRANSACTIONS * ROWS_PER_TXN,  # only the time ends a window
        window_safety_margin_s=SAFETY_S,
        log_format="text",
    )
    pipeline.engine.close()
    pipeline.engine = build_engine(pipeline.settings)
    yield pipeline
    pipeline.close()


def invoke(p: Pipeline, monkeypatch: pytest.MonkeyPatch, context: Any, **settings: Any) -> dict[str, Any]:
    """One invocation of the Lambda handler, configured by environment only."""
    with monkeypatch.context() as mp:
        for name, value in settings_env(p.settings.replace(**settings)).items():
            mp.setenv(name, value)
        result: dict[str, Any] = load_handler().handler({}, context)
    return result


def insert_wide(cur: Any, schema: str, first: int, last: int) -> None:
    """Insert ids first..last into t in the open transaction: column txn is id / ROWS_PER_TXN and
    column ci is 'ci-<id>' (what ``wide_target`` checks)."""
    values = ", ".join(f"'c{i}-' || i" for i in range(WIDE))
    cur.execute(
        f"INSERT INTO {schema}.t SELECT i, i / {ROWS_PER_TXN}, {values} FROM generate_series(%s, %s) i",
        (first, last),
    )


def insert_position(cur: Any) -> Lsn:
    """Where the WAL is written now, inside the open transaction: a read that starts there reads
    the transaction whole, and skips every commit before."""
    cur.execute("SELECT pg_current_wal_insert_lsn()::text")
    return Lsn.parse(cur.fetchone()[0])


def workload(p: Pipeline) -> None:
    """TRANSACTIONS transactions; transaction k inserts ids k*ROWS_PER_TXN.. into t."""
    with p.conn.cursor() as cur:
        for k in range(TRANSACTIONS):
            insert_wide(cur, p.schema, k * ROWS_PER_TXN, (k + 1) * ROWS_PER_TXN - 1)
            cur.execute(f"INSERT INTO {p.schema}.u VALUES (%s, %s)", (k, f"txn {k}"))
            p.conn.commit()


def target_ids(p: Pipeline, table: str) -> list[int]:
    rows = p.engine.sink.fetch_table(p.engine.source.catalog().tables[(p.schema, table)])
    return sorted(int(r["id"]) for r in rows)


def wide_target(p: Pipeline) -> tuple[int, ...]:
    """(rows, lowest id, highest id, distinct ids, rows whose every column holds exactly what the
    workload wrote for its id) of the target of t, counted in Snowflake."""
    target = sfsql.target_table(
        p.settings.snowflake_database, p.engine.source.catalog().tables[(p.schema, "t")]
    )
    exact = " AND ".join(
        [f"TXN = FLOOR(ID / {ROWS_PER_TXN})"] + [f"C{i} = 'c{i}-' || ID" for i in range(WIDE)]
    )
    cur = p.engine.sink.connection.cursor()
    cur.execute(
        f"SELECT COUNT(*), MIN(ID), MAX(ID), COUNT(DISTINCT ID), SUM(CASE WHEN {exact} THEN 1 ELSE 0 END) "
        f"FROM {target}"
    )
    row = cur.fetchone()
    return tuple(int(v) if v is not None else -1 for v in row)


def expected_wide(transactions: int) -> tuple[int, ...]:
    """What wide_target gives when the target holds exactly the first ``transactions``."""
    n = transactions * ROWS_PER_TXN
    return (n, 0, n - 1, n, n)


def assert_equal(p: Pipeline, *tables: str) -> None:
    catalog = p.engine.source.catalog()
    for name in tables:
        diff = compare_table(p.conn, p.engine, catalog.tables[(p.schema, name)])
        assert diff.equal, (name, diff.missing[:5], diff.extra[:5], diff.different[:5])
        assert diff.source_rows == diff.target_rows


def test_window_stops_reading_for_the_time_budget_and_the_next_run_catches_up(
    p: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = invoke(p, monkeypatch, RunningDownContext(900))
    assert first["status"] == "snapshot"
    workload(p)
    apply_margin, read_s = 30, 0.5
    context = RunningDownContext(SAFETY_S + apply_margin + read_s)
    result = invoke(p, monkeypatch, context, window_apply_margin_s=apply_margin, window_merge_reserve_s=5)
    assert context.asked >= 4  # the first window's check, the read budget, the check before each MERGE
    assert (result["status"], result["stop_reason"], result["caught_up"]) == ("applied", "time_budget", False)
    done = result["transactions"]
    assert 0 < done < TRANSACTIONS
    assert result["changes"] == done * (ROWS_PER_TXN + 1)
    # the checkpoint is the window's end, a commit boundary: the target holds exactly the
    # transactions before it, and the slot was confirmed there
    checkpoint = p.store.load()
    assert checkpoint is not None and str(checkpoint.lsn) == result["end_lsn"]
    assert p.slot_confirmed() == Lsn.parse(result["end_lsn"])
    assert wide_target(p) == expected_wide(done)
    assert target_ids(p, "u") == list(range(done))
    # a fresh invocation with time to spare reads the rest
    after = invoke(p, monkeypatch, RunningDownContext(900))
    assert (after["status"], after["caught_up"]) == ("applied", True)
    assert after["start_lsn"] == result["end_lsn"]
    assert after["transactions"] == TRANSACTIONS - done
    assert wide_target(p) == expected_wide(TRANSACTIONS)  # every row of t, every column exact
    assert_equal(p, "u")


def test_no_merge_starts_without_the_time_it_needs(p: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    invoke(p, monkeypatch, RunningDownContext(900))
    before = p.store.load()
    with p.conn.cursor() as cur:
        cur.execute(f"INSERT INTO {p.schema}.t (id, txn, c0) VALUES (1, 0, 'a'), (2, 0, 'b')")
        cur.execute(f"INSERT INTO {p.schema}.u VALUES (1, 'a')")
    p.conn.commit()
    # 2 s kept for applying, 3 s to read: after reading at most 5 s are left, and an apply needs 10
    context = RunningDownContext(SAFETY_S + 2 + 3)
    result = invoke(
        p, monkeypatch, context, window_apply_margin_s=2, window_merge_reserve_s=10, apply_parallelism=1
    )
    assert (result["status"], result["stop_reason"]) == ("failed", "time_budget")
    assert result["error"]["class"] == "OutOfTime" and result["error"]["kind"] == "transient"
    assert "not enough time left to apply table" in result["error"]["message"]
    assert "an apply needs 10.0 s" in result["error"]["message"]
    assert (result["transactions"], result["changes"]) == (1, 3)
    assert p.store.load() == before  # the checkpoint did not move ...
    assert before is not None and p.slot_confirmed() == before.lsn  # ... nor the slot
    assert target_ids(p, "t") == [] and target_ids(p, "u") == []  # no MERGE ran
    after = invoke(p, monkeypatch, RunningDownContext(900))
    assert (after["status"], after["changes"], after["start_lsn"]) == ("applied", 3, str(before.lsn))
    assert_equal(p, "t", "u")


def test_a_timeout_shorter_than_the_time_kept_free_is_a_configuration_error(
    p: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    invoke(p, monkeypatch, RunningDownContext(900))
    before = p.store.load()
    result = invoke(p, monkeypatch, RunningDownContext(50), window_apply_margin_s=60)  # 1 + 60 >= 50
    assert (result["status"], result["error"]["class"], result["error"]["kind"]) == (
        "failed",
        "ConfigError",
        "permanent",
    )
    assert "window_safety_margin_s + window_apply_margin_s = 61 s" in result["error"]["message"]
    assert "lower CDC_WINDOW_APPLY_MARGIN_S" in result["error"]["message"]
    assert p.store.load() == before


def test_a_transaction_longer_than_any_invocation_fails_clearly_and_a_run_without_limit_applies_it(
    p: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    invoke(p, monkeypatch, RunningDownContext(900))
    before = p.store.load()
    rows = 6 * ROWS_PER_TXN  # one transaction: more than the read budget below can ever hold
    with p.conn.cursor() as cur:
        insert_wide(cur, p.schema, 0, rows - 1)
    p.conn.commit()
    apply_margin, read_s = 30, 0.2
    for _ in range(3):
        result = invoke(
            p,
            monkeypatch,
            RunningDownContext(SAFETY_S + apply_margin + read_s),
            window_apply_margin_s=apply_margin,
        )
        if result["status"] == "failed":
            break
        # a commit of another session (an autovacuum's ANALYZE) read before the insert's: the
        # invocation ends there, its time up, with nothing applied; the next starts at the insert
        assert (result["stop_reason"], result["transactions"], result["changes"]) == ("time_budget", 0, 0)
        assert result["end_lsn"] != result["start_lsn"]
        before = p.store.load()
    assert (result["status"], result["error"]["class"], result["error"]["kind"]) == (
        "failed",
        "TransactionTooLarge",
        "permanent",
    )
    assert (
        "run this window where time is not limited (cdc sync --until-caught-up)" in result["error"]["message"]
    )
    assert p.store.load() == before and target_ids(p, "t") == []
    # the CLI's run has no invocation deadline: it reads the whole transaction and applies it
    applied = p.engine.run_window()
    assert (applied.status, applied.transactions, applied.changes) == ("applied", 1, rows)
    assert wide_target(p) == expected_wide(6)


def test_a_run_without_an_invocation_deadline_waits_for_a_transaction_still_being_decoded(
    p: Pipeline,
) -> None:
    assert p.engine.run_window().status == "snapshot"
    rows = 400_000  # the walsender reads its WAL for longer than the window's second before the first message
    with p.conn.cursor() as cur:
        cur.execute(f"INSERT INTO {p.schema}.u SELECT i, 'n' FROM generate_series(1, {rows}) i")
    p.conn.commit()
    p.engine.close()
    p.engine = build_engine(p.settings.replace(window_max_seconds=1))
    started = time.monotonic()
    result = p.engine.run_window()
    for _ in range(10):
        if result.changes:
            break
        # commits of other sessions (an autovacuum's ANALYZE) came before the insert's: a window
        # may end on the last of them, its time up, and the next goes on from there
        assert (result.stop_reason, result.transactions) == ("time_budget", 0)
        assert result.end_lsn != result.start_lsn  # it ended on such a commit, not empty-handed
        result = p.engine.run_window()
    assert (result.status, result.transactions, result.changes) == ("applied", 1, rows), (
        time.monotonic() - started
    )
    assert target_ids(p, "u") == list(range(1, rows + 1))


def test_a_retry_late_in_an_invocation_leaves_a_large_transaction_to_the_next_one(
    p: Pipeline, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """The first attempt of an invocation reads with the invocation's whole budget, and a transaction
    that outlasts it is too large for any invocation. A retry of the window (after a transient
    error) reads with whatever time is left: running out inside a transaction proves nothing then."""
    invoke(p, monkeypatch, RunningDownContext(900))
    checkpoint = p.store.load()
    assert checkpoint is not None
    with p.conn.cursor() as cur:
        insert_wide(cur, p.schema, 0, 29999)
        # the reads start here: commits of other sessions (an autovacuum's) before it do not count
        start = insert_position(cur)
    p.conn.commit()
    assert start > checkpoint.lsn
    source = p.engine.source

    def read(whole_budget: bool) -> Any:
        reader = WindowReader(source, source.catalog(), lambda table: {})
        bounds = ReadBounds(
            until=source.current_wal_lsn(),
            deadline=time.monotonic() + 0.2,  # ends inside the transaction (as in the test above)
            max_changes=10**9,
            part_max_rows=1000,
            hard_deadline=True,
            whole_budget=whole_budget,
        )
        return reader.read(start, tmp_path / str(whole_budget), bounds)

    retried = read(whole_budget=False)
    assert (retried.stop_reason, retried.transactions, retried.staged) == ("time_budget", 0, [])
    assert retried.end == start
    assert retried.cut_off is not None and retried.cut_off[1] > 0, (
        "the read ended before the transaction began"
    )
    assert not list((tmp_path / "False").rglob("*.parquet"))  # nothing to upload
    with pytest.raises(TransactionTooLarge, match="more changes than this invocation can read"):
        read(whole_budget=True)


def read_into_the_last_transaction(
    p: Pipeline,
    start: Lsn,
    tmp_path: Any,
    counts: tuple[int, int],
    staged: list[tuple[str, int, dict[str, int]]],
) -> tuple[Any, Path]:
    """A read from ``start`` that ends inside the last transaction, after the others: the read, its
    spool. Each try checks (transactions, changes) and (table, rows, ops) of what it staged: only
    what committed before the last transaction counts."""
    source = p.engine.source
    catalog = source.catalog()
    # the read's time starts before the replication connection is set up: a busy machine may need more
    for budget_s in (0.2, 0.3, 0.4):
        spool = tmp_path / str(budget_s)
        bounds = ReadBounds(
            until=source.current_wal_lsn(),
            deadline=time.monotonic() + budget_s,
            max_changes=10**9,
            part_max_rows=1000,
        )
        read = WindowReader(source, catalog, lambda table: {}).read(start, spool, bounds)
        assert (read.stop_reason, read.transactions, read.changes) == ("time_budget", *counts)
        assert [(s.table.name, s.rows, s.ops) for s in read.staged] == staged
        if read.cut_off is not None:
            assert read.cut_off[1] > 0  # rows of the last transaction were read, and written to parts
            return read, spool
    pytest.fail("every read ended before the last transaction began")


def test_a_table_only_a_cut_off_transaction_changed_is_not_staged(
    p: Pipeline, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """A window that ends inside a transaction leaves that transaction's rows out of the MERGE: a
    table nothing else changed has nothing to apply, and gets no COPY and no MERGE."""
    invoke(p, monkeypatch, RunningDownContext(900))
    with p.conn.cursor() as cur:
        cur.execute(f"INSERT INTO {p.schema}.u VALUES (1, 'before')")
        start = insert_position(cur)
    p.conn.commit()
    with p.conn.cursor() as cur:
        insert_wide(cur, p.schema, 0, 29999)
    p.conn.commit()
    _, spool = read_into_the_last_transaction(p, start, tmp_path, (1, 1), [("u", 1, OPS | {"I": 1})])
    catalog = p.engine.source.catalog()
    assert not (spool / catalog.tables[(p.schema, "t")].stage_dir).exists()  # its parts are not uploaded
    assert list((spool / catalog.tables[(p.schema, "u")].stage_dir).glob("*.parquet"))


def test_a_window_cut_off_inside_a_transaction_counts_only_what_it_applies(
    p: Pipeline, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """The rows and changes a window reports (and the metrics publish) leave out the transaction it
    cut off, which the next window reads and counts whole."""
    invoke(p, monkeypatch, RunningDownContext(900))
    key_change, delete = (
        f"UPDATE {p.schema}.t SET id = id + 10 WHERE id = %s",
        f"DELETE FROM {p.schema}.t WHERE id = %s",
    )
    with p.conn.cursor() as cur:
        insert_wide(cur, p.schema, 100_000, 100_004)
        start = insert_position(cur)
        cur.execute(key_change, (100_000,))  # a delete row and the moved row
        cur.execute(delete, (100_004,))
    p.conn.commit()
    with p.conn.cursor() as cur:  # the same operations first in the transaction the read cuts off
        cur.execute(key_change, (100_001,))
        cur.execute(delete, (100_003,))
        insert_wide(cur, p.schema, 0, 29999)
    p.conn.commit()
    # the cut-off transaction's key change and delete come first in it: read before any cut
    read_into_the_last_transaction(p, start, tmp_path, (1, 7), [("t", 8, OPS | {"I": 5, "U": 1, "D": 1})])
