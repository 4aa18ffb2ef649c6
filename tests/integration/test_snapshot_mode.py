"""Snapshot mode through the engine: initial load, automatic fallback, manual re-snapshot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from helpers import Pipeline
from test_changes import assert_equal, sql, sync, target
from test_schema import reconfigure

from cdc.app import aws_client
from cdc.checkpoint import CheckpointStore
from cdc.model import Lsn


@pytest.fixture
def p(stack: Any):
    pipeline = Pipeline(stack)
    sql(pipeline, "CREATE SCHEMA {s}")
    yield pipeline
    pipeline.close()


def tables(p: Pipeline, rows: int = 3000) -> None:
    sql(
        p,
        "CREATE TABLE {s}.a (id int PRIMARY KEY, v text, amt numeric(10,2), at timestamptz DEFAULT now())",
        "CREATE TABLE {s}.b (id int PRIMARY KEY, doc jsonb)",
        f"INSERT INTO {{s}}.a SELECT g, 'row ' || g, g / 7.0, now() FROM generate_series(1, {rows}) g",
        f"INSERT INTO {{s}}.b SELECT g, jsonb_build_object('n', g) FROM generate_series(1, {rows}) g",
    )


class Writer(threading.Thread):
    """Commits small transactions into a table until stopped."""

    def __init__(self, p: Pipeline, table: str, start: int) -> None:
        super().__init__(daemon=True)
        self.conn = psycopg2.connect(p.admin.dsn)
        self.schema, self.table, self.next = p.schema, table, start
        self.stop = threading.Event()
        self.commits = 0

    def run(self) -> None:
        with self.conn.cursor() as cur:
            while not self.stop.is_set():
                cur.execute(f"INSERT INTO {self.schema}.{self.table} (id) VALUES (%s)", (self.next,))
                cur.execute(
                    f"UPDATE {self.schema}.{self.table} SET id = id WHERE id = %s", (self.next - 500,)
                )
                cur.execute(f"DELETE FROM {self.schema}.{self.table} WHERE id = %s", (self.next - 1000,))
                self.conn.commit()
                self.next += 1
                self.commits += 1
                time.sleep(0.002)
        self.conn.close()


def test_initial_load_copies_existing_rows_at_the_slot_point_with_writes_during_the_copy(p: Pipeline) -> None:
    reconfigure(p, part_max_rows=700)
    tables(p)
    writer = Writer(p, "a", 10_000)
    writer.start()
    try:
        first = p.engine.run_window()
    finally:
        time.sleep(0.2)
        writer.stop.set()
        writer.join()
    assert first.status == "snapshot" and first.reason and "first run" in first.reason
    assert first.snapshot is not None and first.snapshot["complete"]
    assert {t["table"] for t in first.snapshot["finished"]} == {f"{p.schema}.a", f"{p.schema}.b"}
    assert writer.commits > 10
    checkpoint = p.store.load()
    assert checkpoint is not None and str(checkpoint.lsn) == first.end_lsn == first.snapshot["lsn"]
    assert p.slot_confirmed() == checkpoint.lsn
    sync(p)  # the writes during and after the copy arrive through the slot, none twice
    assert_equal(p, "a", "b")


def test_dropped_slot_falls_back_to_snapshot(p: Pipeline) -> None:
    tables(p, 200)
    p.engine.run_window()
    sql(p, "INSERT INTO {s}.a (id, v) VALUES (5000, 'x')")
    sync(p)
    with p.admin.cursor() as cur:
        cur.execute("SELECT pg_drop_replication_slot(%s)", (p.settings.source_slot,))
    sql(p, "UPDATE {s}.a SET v = 'lost with the slot' WHERE id = 1", "DELETE FROM {s}.b WHERE id = 2")
    result = p.engine.run_window()
    assert result.status == "snapshot" and result.mode == "snapshot"
    assert result.reason is not None and "slot is missing" in result.reason
    sql(p, "INSERT INTO {s}.a (id, v) VALUES (5001, 'after')")
    sync(p)
    assert_equal(p, "a", "b")


def test_slot_recreated_behind_the_checkpoint_falls_back_to_snapshot(p: Pipeline) -> None:
    tables(p, 100)
    p.engine.run_window()
    with p.admin.cursor() as cur:
        cur.execute("SELECT pg_drop_replication_slot(%s)", (p.settings.source_slot,))
    sql(p, "UPDATE {s}.a SET v = 'changed while no slot' WHERE id = 3")
    with p.admin.cursor() as cur:
        cur.execute("SELECT pg_create_logical_replication_slot(%s, 'wal2json')", (p.settings.source_slot,))
    result = p.engine.run_window()
    assert (
        result.status == "snapshot" and result.reason is not None and "past the checkpoint" in result.reason
    )
    sync(p)
    assert_equal(p, "a", "b")


def test_invalidated_slot_falls_back_to_snapshot(p: Pipeline) -> None:
    tables(p, 100)
    p.engine.run_window()
    with p.admin.cursor() as cur:
        cur.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
        cur.execute("SELECT pg_reload_conf()")
    try:
        sql(p, "UPDATE {s}.a SET v = 'gone with the WAL' WHERE id = 1")
        with p.admin.cursor() as cur:
            for _ in range(6):  # several WAL segments past the slot, then a checkpoint removes them
                cur.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS filler (x text); INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 2000)"
                )
                cur.execute("SELECT pg_switch_wal()")
            cur.execute("CHECKPOINT")
            cur.execute(
                "SELECT wal_status FROM pg_replication_slots WHERE slot_name = %s", (p.settings.source_slot,)
            )
            assert cur.fetchone()[0] == "lost"
    finally:
        with p.admin.cursor() as cur:
            cur.execute("ALTER SYSTEM RESET max_slot_wal_keep_size")
            cur.execute("SELECT pg_reload_conf()")
    result = p.engine.run_window()
    assert result.status == "snapshot" and result.reason is not None and "invalidated" in result.reason
    sync(p)
    assert_equal(p, "a", "b")


def test_resnapshot_of_one_table_while_the_other_keeps_streaming(p: Pipeline) -> None:
    tables(p, 2000)
    p.engine.run_window()
    sync(p)
    # damage the target of a so that only a re-snapshot repairs it
    cur = p.engine.sink.connection.cursor()  # type: ignore[attr-defined]
    cur.execute(f'DELETE FROM "{p.settings.snowflake_database}"."{p.schema.upper()}"."A" WHERE "ID" <= 100')
    wa, wb = Writer(p, "a", 20_000), Writer(p, "b", 20_000)
    wa.start()
    wb.start()
    try:
        before = p.store.load()
        result = p.engine.run_window(mode="snapshot", tables=(f"{p.schema}.a",))
        after = p.store.load()
    finally:
        time.sleep(0.2)
        for w in (wa, wb):
            w.stop.set()
            w.join()
    assert result.status == "snapshot" and result.mode == "tables"
    assert [t["table"] for t in result.snapshot["finished"]] == [f"{p.schema}.a"]  # type: ignore[index]
    assert before is not None and after is not None and after.lsn == before.lsn  # the slot did not move
    assert after.extra["snapshot_lsns"][f"{p.schema}.a"] == result.snapshot["lsn"]  # type: ignore[index]
    assert Lsn.parse(result.snapshot["lsn"]) > before.lsn  # type: ignore[index]
    sync(p)
    assert_equal(p, "a", "b")


def test_failure_mid_snapshot_keeps_previous_target_and_checkpoint_and_next_run_retries(p: Pipeline) -> None:
    tables(p, 300)
    p.engine.run_window()
    sync(p)
    before = p.store.load()
    old_rows = target(p, "a")
    # a table whose values cannot be staged makes the snapshot fail after the first table
    sql(
        p,
        "CREATE TABLE {s}.z_bad (id int PRIMARY KEY, n numeric(5,2))",
        "INSERT INTO {s}.z_bad VALUES (1, 'NaN')",
    )
    sql(p, "UPDATE {s}.a SET v = 'newer' WHERE id = 1")
    confirmed = p.slot_confirmed()
    result = p.engine.run_window(mode="snapshot")
    assert result.status == "failed" and "z_bad" in result.error["message"]  # type: ignore[index]
    after = p.store.load()
    assert after is not None and before is not None and after.lsn == before.lsn
    assert p.slot_confirmed() == confirmed  # the pipeline's slot was not touched
    # the tables swapped in before the failure are recorded, so no older change is applied twice
    assert set(after.extra["snapshot_lsns"]) == {f"{p.schema}.a", f"{p.schema}.b"}
    assert len(target(p, "a")) == len(old_rows)
    sql(p, "UPDATE {s}.z_bad SET n = 1.5")
    result = p.engine.run_window(mode="snapshot")
    assert result.status == "snapshot"
    sync(p)
    assert_equal(p, "a", "b", "z_bad")


def test_snapshot_that_runs_out_of_time_says_so_and_leaves_everything(p: Pipeline) -> None:
    tables(p, 200)
    p.engine.run_window()
    before = p.store.load()
    p.engine.budget.time_left = lambda: p.settings.window_safety_margin_s + 0.0  # no time left at all
    result = p.engine.run_window(mode="snapshot")
    assert result.status == "snapshot_incomplete"
    assert any("cdc snapshot" in n for n in result.notes)
    assert p.store.load() == before


def test_cli_snapshot_of_some_tables_prints_one_json_object(stack: Any, p: Pipeline, tmp_path: Path) -> None:
    tables(p, 50)
    p.engine.run_window()
    config = tmp_path / "cdc.toml"
    config.write_text(
        Path(stack.env["config"]).read_text().replace('pipeline = "devstack"', f'pipeline = "{p.name}"')
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "cdc.cli",
            "snapshot",
            "--config",
            str(config),
            "--tables",
            f"{p.schema}.b",
            "--json",
        ],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=180,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["status"] == "snapshot" and data["mode"] == "tables"
    assert [t["table"] for t in data["snapshot"]["finished"]] == [f"{p.schema}.b"]


def _short_lease(p: Pipeline) -> None:
    """The pipeline's engine with a lease of 2 s, which the work below outlasts."""
    reconfigure(p, lease_ttl_s=2)


def test_a_snapshot_longer_than_the_lease_keeps_it_and_other_runs_wait(p: Pipeline) -> None:
    from cdc.app import build_engine

    tables(p, 300)
    _short_lease(p)
    others: list[Any] = []

    def slow(step: Any) -> None:
        if not others:
            time.sleep(3)  # the copy outlasts the lease's TTL
            other = build_engine(p.settings)  # a second run, as a scheduled invocation would be
            try:
                others.append(other.run_window())
            finally:
                other.close()

    result = p.engine.run_window(progress=slow)
    assert [o.status for o in others] == ["lease_held"]
    assert result.status == "snapshot" and result.snapshot is not None and result.snapshot["complete"]
    sync(p)
    assert_equal(p, "a", "b")


def test_a_run_that_lost_its_lease_swaps_nothing_in(p: Pipeline) -> None:
    tables(p, 300)
    p.engine.run_window()
    sync(p)
    sql(p, "UPDATE {s}.a SET v = 'newer' WHERE id <= 10")
    old = target(p, "a")
    assert not [r for r in old if r["v"] == "newer"]
    before = p.store.load()
    _short_lease(p)
    taken: list[Any] = []
    later = CheckpointStore(
        aws_client(p.settings, "dynamodb"),
        p.settings.checkpoint_table,
        p.name,
        clock=lambda: time.time() + 3600,
    )

    def take_over(step: Any) -> None:
        if not taken:
            # as if this run had stalled past its lease and another run had taken it meanwhile:
            # another run whose clock is an hour ahead finds the lease expired and takes it over
            taken.append(later.acquire_lease("another-run", ttl_s=60))
            time.sleep(1.5)  # the keeper's renewals fail now

    result = p.engine.run_window(mode="snapshot", tables=(f"{p.schema}.a",), progress=take_over)
    assert result.status == "failed" and result.error is not None
    assert result.error["class"] == "CheckpointConflict"
    assert "lost its lease to another-run" in result.error["message"]
    assert target(p, "a") == old  # the copy was not swapped in
    assert p.store.load() == before
    later.release_lease(taken[0])


def tables_and_c(p: Pipeline) -> None:
    """``tables`` and a third table c (id, n), 300 rows each."""
    tables(p, 300)
    sql(
        p,
        "CREATE TABLE {s}.c (id int PRIMARY KEY, n int)",
        "INSERT INTO {s}.c SELECT g, g FROM generate_series(1, 300) g",
    )


@pytest.mark.parametrize(
    "migration",
    [
        ("ALTER TABLE {s}.c ALTER COLUMN n TYPE bigint",),
        ("ALTER TABLE {s}.c ALTER COLUMN n TYPE int USING n + 0",),  # same columns, rows rewritten
        ("TRUNCATE {s}.c", "INSERT INTO {s}.c SELECT g, g FROM generate_series(1, 300) g"),
    ],
    ids=["new type", "same type, USING", "truncate"],
)
def test_a_table_given_a_new_file_after_the_snapshot_point_is_copied_again(
    p: Pipeline, migration: tuple[str, ...]
) -> None:
    tables_and_c(p)
    altered: list[str] = []

    def rewrite_c(step: Any) -> None:
        if not altered and step.table == f"{p.schema}.a":
            # a migration commits after the point and before c's copy: c gets a new file
            sql(p, *migration)
            altered.append(step.table)

    result = p.engine.run_window(progress=rewrite_c)
    assert altered and result.status == "snapshot", result
    assert p.engine.last_retries == 1  # c's copy saw the new file and the snapshot was taken again
    assert len(target(p, "c")) == 300
    sql(p, "UPDATE {s}.c SET n = -n WHERE id <= 5")
    sync(p)
    assert_equal(p, "a", "b", "c")


def test_a_column_added_just_before_the_snapshot_point_is_copied_with_its_values(
    p: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cdc import snapshot_mode

    tables(p, 300)
    create = snapshot_mode.create_slot_with_snapshot

    def migration_first(*args: Any, **kwargs: Any) -> Any:
        # a migration that commits while the run starts: after it looked at the slot, before the point
        sql(p, "ALTER TABLE {s}.a ADD COLUMN extra int", "UPDATE {s}.a SET extra = id * 2")
        return create(*args, **kwargs)

    monkeypatch.setattr(snapshot_mode, "create_slot_with_snapshot", migration_first)
    result = p.engine.run_window()
    assert result.status == "snapshot", result
    assert sorted(r["extra"] for r in target(p, "a"))[:3] == [2, 4, 6]
    sync(p)
    assert_equal(p, "a", "b")


def test_a_snapshot_outside_lambda_is_not_bounded_by_the_windows_reading_time(p: Pipeline) -> None:
    tables(p, 300)
    reconfigure(p, window_max_seconds=1)
    slowed: list[str] = []

    def slow(step: Any) -> None:
        if not slowed:
            slowed.append(step.table)
            time.sleep(1.5)  # the copy outlasts window_max_seconds

    result = p.engine.run_window(progress=slow)
    assert slowed and result.status == "snapshot" and result.snapshot is not None, result
    assert result.snapshot["complete"]
    sync(p)
    assert_equal(p, "a", "b")


def test_a_retry_after_a_long_failed_attempt_still_holds_the_lease(p: Pipeline) -> None:
    from cdc.errors import SourceUnavailable

    tables(p, 300)
    _short_lease(p)
    failed: list[str] = []

    def fail_once(step: Any) -> None:
        if not failed:
            failed.append(step.table)
            time.sleep(3)  # the first attempt outlasts the lease's TTL, then fails
            raise SourceUnavailable("connection lost (as a network failure would)")

    result = p.engine.run_window(progress=fail_once)
    assert failed and p.engine.last_retries == 1
    assert result.status == "snapshot", result  # the retry swaps its tables in: the lease is its own
    sync(p)
    assert_equal(p, "a", "b")
