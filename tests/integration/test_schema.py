"""Schema evolution while replicating, soft delete, partitioned and inherited tables, configured keys."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import Pipeline, assert_stopped_then_copied, copied_tables, load_handler, settings_env
from test_changes import assert_equal, source, sql, sync, target

from cdc.app import build_engine
from cdc.source.catalog import relation_sql


@pytest.fixture
def p(stack: Any):
    pipeline = Pipeline(stack)
    sql(pipeline, "CREATE SCHEMA {s}")
    yield pipeline
    pipeline.close()


def reconfigure(p: Pipeline, **changes: Any) -> None:
    p.engine.close()
    p.settings = p.settings.replace(**changes)
    p.engine = build_engine(p.settings)


def test_add_column_with_and_without_default_flows_including_the_same_window(p: Pipeline) -> None:
    sql(p, "CREATE TABLE {s}.t (id int PRIMARY KEY, v text)")
    p.engine.run_window()
    sql(p, "INSERT INTO {s}.t VALUES (1, 'a'), (2, 'b')")
    sync(p)
    # in one window: a change before the ALTER, the ALTERs, changes using the new columns
    sql(p, "INSERT INTO {s}.t VALUES (3, 'c')")
    sql(p, "ALTER TABLE {s}.t ADD COLUMN n int DEFAULT 7, ADD COLUMN note text")
    sql(p, "INSERT INTO {s}.t VALUES (4, 'd', 8, 'new')", "UPDATE {s}.t SET note = 'set' WHERE id = 1")
    results = sync(p)
    assert any("added column 'n'" in n for r in results for n in r["notes"])
    rows = {r["id"]: (r["v"], r["n"], r["note"]) for r in target(p, "t")}
    assert rows == {1: ("a", 7, "set"), 2: ("b", 7, None), 3: ("c", 7, None), 4: ("d", 8, "new")}
    assert_equal(p, "t")


def test_drop_column_keeps_target_column_and_says_so(p: Pipeline) -> None:
    sql(p, "CREATE TABLE {s}.t (id int PRIMARY KEY, v text, old int)")
    p.engine.run_window()
    sql(p, "INSERT INTO {s}.t VALUES (1, 'a', 10)")
    sync(p)
    sql(p, "UPDATE {s}.t SET old = 11 WHERE id = 1")  # before the drop: carries 'old'
    sql(p, "ALTER TABLE {s}.t DROP COLUMN old")
    sql(p, "INSERT INTO {s}.t VALUES (2, 'b')")
    results = sync(p)
    notes = " ".join(n for r in results for n in r["notes"])
    assert "'old' was dropped in the source" in notes
    rows = {r["id"]: r for r in target(p, "t")}
    assert rows[2]["v"] == "b"
    assert_equal(p, "t")  # compares the source's columns; the target keeps OLD as well


def test_renamed_column_is_renamed_in_the_target_and_values_follow(p: Pipeline) -> None:
    sql(p, "CREATE TABLE {s}.t (id int PRIMARY KEY, before_name text)")
    p.engine.run_window()
    sql(p, "INSERT INTO {s}.t VALUES (1, 'a')")
    sync(p)
    sql(p, "UPDATE {s}.t SET before_name = 'b' WHERE id = 1")  # carries the old name
    sql(p, "ALTER TABLE {s}.t RENAME COLUMN before_name TO after_name")
    sql(p, "INSERT INTO {s}.t VALUES (2, 'c')")
    results = sync(p)
    notes = " ".join(n for r in results for n in r["notes"])
    assert "renamed to 'after_name'" in notes
    assert sorted((r["id"], r["after_name"]) for r in target(p, "t")) == [(1, "b"), (2, "c")]
    assert_equal(p, "t")


def test_widening_changes_are_applied(p: Pipeline) -> None:
    sql(p, "CREATE TABLE {s}.t (id int PRIMARY KEY, n integer, s varchar(5), amt numeric(6,2))")
    p.engine.run_window()
    sql(p, "INSERT INTO {s}.t VALUES (1, 1, 'abc', 1.25)")
    sync(p)
    sql(
        p,
        "ALTER TABLE {s}.t ALTER COLUMN n TYPE bigint, ALTER COLUMN s TYPE varchar(50), "
        "ALTER COLUMN amt TYPE numeric(12,2)",
    )
    sql(p, "INSERT INTO {s}.t VALUES (2, 9000000000, 'a much longer text', 1234567890.12)")
    results = sync(p)
    notes = " ".join(n for r in results for n in r["notes"])
    assert "widened to NUMBER(19,0)" in notes and "widened to VARCHAR(50)" in notes
    assert_equal(p, "t")


def test_a_type_change_that_rewrites_values_in_the_same_target_type_re_snapshots(p: Pipeline) -> None:
    sql(
        p,
        "CREATE TABLE {s}.t (id int PRIMARY KEY, d date, n int)",
        "INSERT INTO {s}.t VALUES (1, '2024-01-02', 1)",
    )
    p.engine.run_window()
    sql(p, "ALTER TABLE {s}.t ALTER COLUMN n TYPE bigint", "INSERT INTO {s}.t VALUES (2, '2024-01-03', 2)")
    assert copied_tables(sync(p)) == []  # a wider integer shows every value as before
    sql(p, "ALTER TABLE {s}.t ALTER COLUMN d TYPE timestamp", "INSERT INTO {s}.t VALUES (3, '2024-01-04', 3)")
    results = sync(p)
    notes = " ".join(n for r in results for n in r["notes"])
    assert "column 'd': its type changed from date to timestamp without time zone" in notes, notes
    assert copied_tables(results) == [{f"{p.schema}.t": {"snapshot_rows": 3}}]
    assert sorted((r["id"], r["d"]) for r in target(p, "t")) == [
        (1, "2024-01-02 00:00:00"),
        (2, "2024-01-03 00:00:00"),
        (3, "2024-01-04 00:00:00"),
    ]
    sql(p, "INSERT INTO {s}.t VALUES (4, '2024-01-05 06:07:08', 4)")
    assert copied_tables(sync(p)) == []
    assert_equal(p, "t")


def test_unsafe_type_change_stops_only_that_table_and_names_column_and_fix(p: Pipeline) -> None:
    reconfigure(p, resnapshot_stopped_tables=False)
    sql(p, "CREATE TABLE {s}.bad (id int PRIMARY KEY, v text)", "CREATE TABLE {s}.good (id int PRIMARY KEY)")
    p.engine.run_window()
    sql(p, "INSERT INTO {s}.bad VALUES (1, '5')", "INSERT INTO {s}.good VALUES (1)")
    sync(p)
    sql(p, "ALTER TABLE {s}.bad ALTER COLUMN v TYPE integer USING v::integer")
    sql(p, "INSERT INTO {s}.bad VALUES (2, 6)", "INSERT INTO {s}.good VALUES (2)")
    results = sync(p)
    last = results[-1]
    assert f"{p.schema}.bad" in last["stopped_tables"]
    notes = " ".join(n for r in results for n in r["notes"])
    assert "column 'v'" in notes and "re-snapshot the table" in notes
    assert "next run re-snapshots" not in notes
    sql(p, "INSERT INTO {s}.good VALUES (3)")
    results = sync(p)
    assert f"{p.schema}.bad" in results[-1]["stopped_tables"]  # waits for an operator
    assert sorted(r["id"] for r in target(p, "good")) == [1, 2, 3]
    assert_equal(p, "good")
    assert [(r["id"], r["v"]) for r in target(p, "bad")] == [(1, "5")]
    # the operator's fix: re-snapshot the table; it replicates again from there
    assert p.engine.run_window(mode="snapshot", tables=(f"{p.schema}.bad",)).status == "snapshot"
    sql(p, "INSERT INTO {s}.bad VALUES (3, 7)")
    assert not sync(p)[-1]["stopped_tables"]
    assert_equal(p, "bad")


def test_a_table_stopped_by_a_schema_change_is_re_snapshotted_by_the_next_run(p: Pipeline) -> None:
    sql(p, "CREATE TABLE {s}.bad (id int PRIMARY KEY, v text)", "CREATE TABLE {s}.good (id int PRIMARY KEY)")
    p.engine.run_window()
    sql(p, "INSERT INTO {s}.bad VALUES (1, '5')", "INSERT INTO {s}.good VALUES (1)")
    sync(p)
    sql(p, "ALTER TABLE {s}.bad ALTER COLUMN v TYPE integer USING v::integer")
    sql(p, "INSERT INTO {s}.bad VALUES (2, 6)", "INSERT INTO {s}.good VALUES (2)")
    results = sync(p)
    stopped_at = next(i for i, r in enumerate(results) if f"{p.schema}.bad" in r["stopped_tables"])
    assert any("next run re-snapshots it" in n for n in results[stopped_at]["notes"])
    resnapshot = results[stopped_at + 1]
    assert (resnapshot["status"], resnapshot["mode"]) == ("snapshot", "tables")
    assert resnapshot["reason"] == "re-snapshot of tables a schema change stopped"
    assert resnapshot["tables"] == {f"{p.schema}.bad": {"snapshot_rows": 2}}
    assert not results[-1]["stopped_tables"]
    sql(p, "INSERT INTO {s}.bad VALUES (3, 7)", "UPDATE {s}.bad SET v = 50 WHERE id = 1")
    sync(p)
    assert sorted((r["id"], r["v"]) for r in target(p, "bad")) == [(1, 50), (2, 6), (3, 7)]
    assert_equal(p, "bad")
    assert_equal(p, "good")


def test_the_scheduled_lambda_re_snapshots_a_table_a_schema_change_stopped(
    p: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    sql(p, "CREATE TABLE {s}.bad (id int PRIMARY KEY, v text)")
    p.engine.run_window()
    sql(p, "INSERT INTO {s}.bad VALUES (1, '5')")
    sync(p)
    sql(p, "ALTER TABLE {s}.bad ALTER COLUMN v TYPE integer USING v::integer")
    sql(p, "INSERT INTO {s}.bad VALUES (2, 6)")
    p.engine.run_window()
    checkpoint = p.store.load()
    assert checkpoint is not None and f"{p.schema}.bad" in checkpoint.extra["stopped_tables"]
    for name, value in settings_env(p.settings).items():
        monkeypatch.setenv(name, value)
    result = load_handler().handler({}, None)  # the schedule's event
    assert (result["status"], result["mode"]) == ("snapshot", "tables"), result
    assert result["tables"] == {f"{p.schema}.bad": {"snapshot_rows": 2}}
    sql(p, "INSERT INTO {s}.bad VALUES (3, 7)")
    sync(p)
    assert sorted((r["id"], r["v"]) for r in target(p, "bad")) == [(1, 5), (2, 6), (3, 7)]


def test_an_automatic_re_snapshot_that_fails_for_a_passing_reason_is_tried_again(p: Pipeline) -> None:
    from cdc.errors import SourceUnavailable

    stop_by_a_type_change(p)
    failed: list[str] = []

    def fail_once(step: Any) -> None:
        if not failed:
            failed.append(step.table)
            raise SourceUnavailable("connection lost (as a network failure would)")

    result = p.engine.run_window(progress=fail_once)
    assert failed and p.engine.last_retries == 1
    assert (result.status, result.mode, result.reason) == (
        "snapshot",
        "tables",
        "re-snapshot of tables a schema change stopped",
    )
    sql(p, "INSERT INTO {s}.bad VALUES (3, 7)")
    sync(p)
    assert sorted((r["id"], r["v"]) for r in target(p, "bad")) == [(1, 5), (2, 6), (3, 7)]


def test_an_automatic_re_snapshot_failing_on_every_attempt_lets_the_other_tables_go_on(p: Pipeline) -> None:
    from cdc.errors import SourceUnavailable

    stop_by_a_type_change(p, "CREATE TABLE {s}.good (id int PRIMARY KEY)")

    def always_fail(step: Any) -> None:
        raise SourceUnavailable("connection lost (as a middlebox dropping long copies would)")

    failed = p.engine.run_window(progress=always_fail)
    assert failed.status == "failed" and p.engine.last_retries == p.settings.retry_attempts - 1
    checkpoint = p.store.load()
    assert checkpoint is not None
    record = checkpoint.extra["stopped_tables"][f"{p.schema}.bad"]
    assert record["resnapshot_failed"].startswith("SourceUnavailable: connection lost")
    sql(p, "INSERT INTO {s}.good VALUES (1)")
    results = sync(p)  # the other tables go on; bad waits for an operator
    assert all(r["mode"] == "incremental" for r in results)
    assert [r["id"] for r in target(p, "good")] == [1]


def test_a_volatile_default_added_column_is_filled_by_a_re_snapshot(p: Pipeline) -> None:
    sql(p, "CREATE TABLE {s}.t (id int PRIMARY KEY)", "INSERT INTO {s}.t VALUES (1), (2)")
    p.engine.run_window()
    sql(p, "ALTER TABLE {s}.t ADD COLUMN r double precision DEFAULT random()", "INSERT INTO {s}.t VALUES (3)")
    results = sync(p)
    notes = " ".join(n for r in results for n in r["notes"])
    assert "column 'r' was added with a default whose value in existing rows is unknown" in notes
    assert not results[-1]["stopped_tables"]
    rows = {r["id"]: r["r"] for r in target(p, "t")}
    assert sorted(rows) == [1, 2, 3] and all(v is not None for v in rows.values())
    assert_equal(p, "t")


def test_soft_delete_keeps_rows_flagged_and_reinsert_clears_the_flag(p: Pipeline) -> None:
    reconfigure(p, delete_mode="soft")
    sql(p, "CREATE TABLE {s}.t (id int PRIMARY KEY, v text)")
    p.engine.run_window()
    sql(p, "INSERT INTO {s}.t VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    sync(p)
    sql(p, "DELETE FROM {s}.t WHERE id IN (1, 2)")
    sync(p)
    rows = {r["id"]: (r["v"], r["_CDC_DELETED"]) for r in target(p, "t")}
    assert rows == {1: ("a", True), 2: ("b", True), 3: ("c", False)}
    sql(p, "INSERT INTO {s}.t VALUES (1, 'again')")
    sync(p)
    rows = {r["id"]: (r["v"], r["_CDC_DELETED"]) for r in target(p, "t")}
    assert rows == {1: ("again", False), 2: ("b", True), 3: ("c", False)}
    sql(p, "TRUNCATE {s}.t")
    sync(p)
    assert all(r["_CDC_DELETED"] for r in target(p, "t"))
    assert_equal(p, "t")


def test_a_truncate_in_a_transaction_the_window_cuts_off_waits_for_that_transaction(p: Pipeline) -> None:
    reconfigure(p, delete_mode="soft")
    sql(p, "CREATE TABLE {s}.t (id int PRIMARY KEY, v text)", "INSERT INTO {s}.t VALUES (1, 'a'), (2, 'b')")
    p.engine.run_window()
    source = p.engine.source
    before = [source.catalog()]  # the next window starts with the schema before the column is added
    sql(p, "UPDATE {s}.t SET v = 'bb' WHERE id = 2")
    # the window ends before this transaction, at the insert that has the added column
    sql(p, "TRUNCATE {s}.t", "ALTER TABLE {s}.t ADD COLUMN n int", "INSERT INTO {s}.t VALUES (1, 'new', 5)")
    catalog = source.catalog
    source.catalog = lambda: before.pop() if before else catalog()  # type: ignore[method-assign]
    try:
        results = sync(p)
    finally:
        del source.catalog
    assert results[0]["stop_reason"] == "schema_change"
    rows = {r["id"]: (r["v"], r["n"], r["_CDC_DELETED"]) for r in target(p, "t")}
    assert rows == {1: ("new", 5, False), 2: ("bb", None, True)}
    assert_equal(p, "t")


def test_partitioned_table_replicates_into_one_target(p: Pipeline) -> None:
    sql(
        p,
        "CREATE TABLE {s}.events (id int, day date, v text, PRIMARY KEY (id, day)) PARTITION BY RANGE (day)",
        "CREATE TABLE {s}.events_2026_01 PARTITION OF {s}.events FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')",
        "CREATE TABLE {s}.events_2026_02 PARTITION OF {s}.events FOR VALUES FROM ('2026-02-01') TO ('2026-03-01')",
        "INSERT INTO {s}.events VALUES (0, '2026-02-02', 'z')",  # copied by the first run's snapshot
    )
    assert p.engine.run_window().status == "snapshot"
    sql(
        p,
        "INSERT INTO {s}.events VALUES (1, '2026-01-05', 'a'), (2, '2026-02-07', 'b'), (3, '2026-01-09', 'c')",
    )
    sql(p, "UPDATE {s}.events SET v = 'bb' WHERE id = 2", "DELETE FROM {s}.events WHERE id = 3")
    # a partition created while replicating
    sql(
        p,
        "CREATE TABLE {s}.events_2026_03 PARTITION OF {s}.events FOR VALUES FROM ('2026-03-01') TO ('2026-04-01')",
    )
    sql(p, "INSERT INTO {s}.events VALUES (4, '2026-03-02', 'd')")
    results = sync(p)
    assert any(f"{p.schema}.events" in r["tables"] for r in results)
    assert not any("events_2026" in t for r in results for t in r["tables"])
    assert sorted((r["id"], r["v"]) for r in target(p, "events")) == [(0, "z"), (1, "a"), (2, "bb"), (4, "d")]
    assert_equal(p, "events")


def test_partitions_whose_columns_sit_elsewhere_than_the_roots_replicate_by_name(p: Pipeline) -> None:
    sql(
        p,
        "CREATE TABLE {s}.events (id int, gone int, day date, v text, PRIMARY KEY (id, day)) "
        "PARTITION BY RANGE (day)",
        "ALTER TABLE {s}.events DROP COLUMN gone",
        # attnums id 1, day 2, v 3 (the root's are 1, 3, 4)
        "CREATE TABLE {s}.events_01 PARTITION OF {s}.events FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')",
        # attached with its columns in another order: v 1, id 2, day 3
        "CREATE TABLE {s}.events_02 (v text, id int NOT NULL, day date NOT NULL)",
        "ALTER TABLE {s}.events ATTACH PARTITION {s}.events_02 FOR VALUES FROM ('2026-02-01') TO ('2026-03-01')",
        "INSERT INTO {s}.events VALUES (0, '2026-01-02', 'z'), (9, '2026-02-02', 'y')",
    )
    assert p.engine.run_window().status == "snapshot"
    sql(
        p,
        "INSERT INTO {s}.events VALUES (1, '2026-01-05', 'a'), (2, '2026-02-07', 'b'), (3, '2026-02-09', 'c')",
        "UPDATE {s}.events SET v = v || '!' WHERE id IN (0, 2, 9)",
        "DELETE FROM {s}.events WHERE id = 3",
    )
    sync(p)
    assert sorted((r["id"], str(r["day"]), r["v"]) for r in target(p, "events")) == [
        (0, "2026-01-02", "z!"),
        (1, "2026-01-05", "a"),
        (2, "2026-02-07", "b!"),
        (9, "2026-02-02", "y!"),
    ]
    assert_equal(p, "events")


def test_a_truncated_partition_empties_only_its_rows(p: Pipeline) -> None:
    sql(
        p,
        "CREATE TABLE {s}.events (id int, day date, PRIMARY KEY (id, day)) PARTITION BY RANGE (day)",
        "CREATE TABLE {s}.events_01 PARTITION OF {s}.events FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')",
        "CREATE TABLE {s}.events_02 PARTITION OF {s}.events FOR VALUES FROM ('2026-02-01') TO ('2026-03-01')",
        "INSERT INTO {s}.events VALUES (1, '2026-01-02'), (2, '2026-02-02')",
    )
    assert p.engine.run_window().status == "snapshot"
    sql(p, "INSERT INTO {s}.events VALUES (3, '2026-01-03'), (4, '2026-02-04')", "TRUNCATE {s}.events_01")
    sql(p, "INSERT INTO {s}.events VALUES (5, '2026-01-05')")
    results = sync(p)
    notes = " ".join(n for r in results for n in r["notes"])
    emptied = f"its partitions {p.schema}.events_01 were truncated and not {p.schema}.events_02"
    assert emptied in notes, notes
    assert copied_tables(results) == [{f"{p.schema}.events": {"snapshot_rows": 3}}]
    assert sorted(r["id"] for r in target(p, "events")) == [2, 4, 5]
    # a TRUNCATE of the root empties every partition: it applies as it is, without a copy
    sql(p, "INSERT INTO {s}.events VALUES (7, '2026-01-07')", "TRUNCATE {s}.events")
    sql(p, "INSERT INTO {s}.events VALUES (6, '2026-02-06')")
    results = sync(p)
    assert copied_tables(results) == [] and not any(r["stopped_tables"] for r in results)
    assert [r["id"] for r in target(p, "events")] == [6]
    assert_equal(p, "events")


def test_bytea_replicates_whatever_bytea_output_the_database_sets(p: Pipeline) -> None:
    [(db,)] = source(p, "SELECT current_database()")
    sql(
        p,
        "CREATE TABLE {s}.blobs (id int PRIMARY KEY, b bytea)",
        "INSERT INTO {s}.blobs VALUES (1, 'ab1234')",
    )
    sql(p, f'ALTER DATABASE "{db}" SET bytea_output = escape')
    try:
        assert p.engine.run_window().status == "snapshot"
        sql(p, "INSERT INTO {s}.blobs VALUES (2, 'xxcafe'), (3, '\\000\\377')")
        sync(p)
    finally:
        sql(p, f'ALTER DATABASE "{db}" RESET bytea_output')
    rows = {r["id"]: bytes(r["b"]) for r in target(p, "blobs")}
    assert rows == {1: b"ab1234", 2: b"xxcafe", 3: b"\x00\xff"}
    assert_equal(p, "blobs")


def test_inherited_tables_each_hold_only_their_own_rows(p: Pipeline) -> None:
    """A table that others inherit from is read without their rows (in the snapshot and by verify):
    wal2json reports the changes of an inheriting table under that table's name."""
    sql(
        p,
        "CREATE TABLE {s}.base (id int PRIMARY KEY, v text)",
        "CREATE TABLE {s}.sub (extra int) INHERITS ({s}.base)",
        "ALTER TABLE {s}.sub ADD PRIMARY KEY (id)",
        "INSERT INTO {s}.base VALUES (1, 'base one'), (5, 'base five')",
        "INSERT INTO {s}.sub VALUES (2, 'sub two', 20)",
    )
    catalog = p.engine.source.catalog()
    assert relation_sql(catalog.tables[(p.schema, "base")]).as_string(p.conn) == f'ONLY "{p.schema}"."base"'
    assert p.engine.run_window().status == "snapshot"
    assert sorted((r["id"], r["v"]) for r in target(p, "base")) == [(1, "base one"), (5, "base five")]
    sql(
        p,
        "UPDATE {s}.sub SET v = 'sub two bis'",
        "INSERT INTO {s}.sub VALUES (3, 'sub three', 30)",
        "INSERT INTO {s}.base VALUES (4, 'base four')",
        "DELETE FROM {s}.base WHERE id = 1",
    )
    sync(p)
    assert sorted((r["id"], r["v"]) for r in target(p, "base")) == [(4, "base four"), (5, "base five")]
    assert sorted((r["id"], r["v"], r["extra"]) for r in target(p, "sub")) == [
        (2, "sub two bis", 20),
        (3, "sub three", 30),
    ]
    assert_equal(p, "base", "sub")


def test_configured_key_for_a_table_without_primary_key(p: Pipeline) -> None:
    reconfigure(p, source_keys=f"{p.schema}.logs:code")
    sql(p, "CREATE TABLE {s}.logs (code text NOT NULL, v int)", "ALTER TABLE {s}.logs REPLICA IDENTITY FULL")
    p.engine.run_window()
    sql(p, "INSERT INTO {s}.logs VALUES ('a', 1), ('b', 2)")
    sql(p, "UPDATE {s}.logs SET v = 3 WHERE code = 'a'", "DELETE FROM {s}.logs WHERE code = 'b'")
    sync(p)
    assert [(r["code"], r["v"]) for r in target(p, "logs")] == [("a", 3)]
    assert source(p, "SELECT count(*) FROM {s}.logs") == [(1,)]


def stop_by_a_type_change(p: Pipeline, *also: str) -> Any:
    """Table bad (and the ``also`` statements' tables), replicated; then a type change stops bad.
    The result of the window that stopped it (the next run re-snapshots it)."""
    sql(p, "CREATE TABLE {s}.bad (id int PRIMARY KEY, v text)", *also)
    p.engine.run_window()
    sql(p, "INSERT INTO {s}.bad VALUES (1, '5')")
    sync(p)
    sql(
        p,
        "ALTER TABLE {s}.bad ALTER COLUMN v TYPE integer USING v::integer",
        "INSERT INTO {s}.bad VALUES (2, 6)",
    )
    return p.engine.run_window()


def test_an_automatic_re_snapshot_that_fails_is_not_tried_again_and_says_why(p: Pipeline) -> None:
    stopped = stop_by_a_type_change(p, "CREATE TABLE {s}.good (id int PRIMARY KEY)")
    assert f"{p.schema}.bad" in stopped.stopped_tables and not stopped.caught_up
    sql(p, "DROP TABLE {s}.bad")  # nothing left to copy: the re-snapshot fails
    failed = p.engine.run_window()
    assert (failed.status, failed.error and failed.error["class"]) == ("failed", "ConfigError")
    checkpoint = p.store.load()
    assert checkpoint is not None
    record = checkpoint.extra["stopped_tables"][f"{p.schema}.bad"]
    assert record["resnapshot_failed"].startswith("ConfigError: ")
    # the next run replicates the other tables again; the stop stays, with the failure
    sql(p, "INSERT INTO {s}.good VALUES (1)")
    results = sync(p)
    assert all(r["mode"] == "incremental" for r in results)
    assert f"{p.schema}.bad" in results[-1]["stopped_tables"]
    assert any("the automatic re-snapshot failed: ConfigError" in n for n in results[0]["notes"])
    assert_equal(p, "good")


def test_a_renamed_table_is_re_snapshotted_under_its_new_name(p: Pipeline) -> None:
    sql(
        p,
        "CREATE TABLE {s}.old (id int PRIMARY KEY, v text)",
        "INSERT INTO {s}.old VALUES (1, 'a'), (2, 'b')",
    )
    p.engine.run_window()
    sql(p, "INSERT INTO {s}.old VALUES (3, 'c')")
    sync(p)
    sql(p, "ALTER TABLE {s}.old RENAME TO new", "UPDATE {s}.new SET v = 'B' WHERE id = 2")
    results = sync(p)
    notes = " ".join(n for r in results for n in r["notes"])
    assert f"table {p.schema}.old was renamed to {p.schema}.new" in notes
    assert copied_tables(results) == [{f"{p.schema}.new": {"snapshot_rows": 3}}]
    assert not results[-1]["stopped_tables"]
    sql(p, "INSERT INTO {s}.new VALUES (4, 'd')")
    sync(p)
    assert sorted((r["id"], r["v"]) for r in target(p, "new")) == [(1, "a"), (2, "B"), (3, "c"), (4, "d")]
    assert_equal(p, "new")


def replicate_a_only(p: Pipeline, *statements: str) -> None:
    """Tables a and b (id, v), filled by ``statements``; the pipeline starts with a alone."""
    sql(
        p,
        "CREATE TABLE {s}.a (id int PRIMARY KEY, v text)",
        "CREATE TABLE {s}.b (id int PRIMARY KEY, v text)",
    )
    sql(p, *statements)
    reconfigure(p, source_tables=(f"{p.schema}.a",))
    assert p.engine.run_window().status == "snapshot"


def test_a_table_added_to_source_tables_is_copied_before_it_streams(p: Pipeline) -> None:
    replicate_a_only(p, "INSERT INTO {s}.a VALUES (1, 'a1')", "INSERT INTO {s}.b VALUES (1, 'b1'), (2, 'b2')")
    sql(p, "UPDATE {s}.b SET v = 'b2 bis' WHERE id = 2", "INSERT INTO {s}.a VALUES (2, 'a2')")
    sync(p)
    # b joins: the rows it has (and the change above, which no window read) come with a copy
    reconfigure(p, source_tables=(f"{p.schema}.a", f"{p.schema}.b"))
    sql(p, "INSERT INTO {s}.b VALUES (3, 'b3')")
    results = sync(p)
    reason = f"table {p.schema}.b was added to source_tables: its target holds none of the rows it had before"
    assert_stopped_then_copied(results, f"{p.schema}.b", reason, 3)
    sql(p, "DELETE FROM {s}.b WHERE id = 1")
    results = sync(p)
    assert not any("source_tables" in n for r in results for n in r["notes"])  # copied once
    assert sorted((r["id"], r["v"]) for r in target(p, "b")) == [(2, "b2 bis"), (3, "b3")]
    assert_equal(p, "a", "b")


def test_a_table_added_to_source_tables_of_an_idle_source_is_copied(p: Pipeline) -> None:
    replicate_a_only(p, "INSERT INTO {s}.b VALUES (1, 'b1'), (2, 'b2')")
    sync(p)
    # nothing is written from here on: the window that finds b reads no change
    reconfigure(p, source_tables=(f"{p.schema}.a", f"{p.schema}.b"))
    results = sync(p)
    reason = f"table {p.schema}.b was added to source_tables: its target holds none of the rows it had before"
    assert_stopped_then_copied(results, f"{p.schema}.b", reason, 2)
    assert sorted((r["id"], r["v"]) for r in target(p, "b")) == [(1, "b1"), (2, "b2")]
    assert copied_tables(sync(p)) == []  # copied once
    assert_equal(p, "a", "b")


def test_a_table_copied_on_request_after_joining_is_not_copied_again(p: Pipeline) -> None:
    replicate_a_only(p, "INSERT INTO {s}.b VALUES (1, 'b1'), (2, 'b2')")
    reconfigure(p, source_tables=(f"{p.schema}.a", f"{p.schema}.b"))
    copy = p.engine.run_window(mode="snapshot", tables=(f"{p.schema}.b",))  # before any window
    assert copy.tables == {f"{p.schema}.b": {"snapshot_rows": 2}}
    sql(p, "INSERT INTO {s}.b VALUES (3)")
    results = sync(p)
    assert copied_tables(results) == []
    assert not any("source_tables" in n for r in results for n in r["notes"])
    assert sorted(r["id"] for r in target(p, "b")) == [1, 2, 3]
    assert_equal(p, "b")


def test_changes_of_a_table_outside_source_tables_read_the_catalog_once(p: Pipeline) -> None:
    sql(p, "CREATE TABLE {s}.a (id int PRIMARY KEY)", "CREATE TABLE {s}.other (id int PRIMARY KEY)")
    reconfigure(p, source_tables=(f"{p.schema}.a",))
    assert p.engine.run_window().status == "snapshot"
    sql(p, "INSERT INTO {s}.other SELECT generate_series(1, 300)", "INSERT INTO {s}.a VALUES (1)")
    sql(p, "UPDATE {s}.other SET id = id + 1000")
    source = p.engine.source
    reads = []
    catalog = source.catalog
    source.catalog = lambda: reads.append(1) or catalog()  # type: ignore[method-assign]
    try:
        results = sync(p)
    finally:
        del source.catalog
    # per window: the catalog at its start, and once more for the unknown table's first change
    assert len(reads) <= 2 * len(results), (len(reads), len(results))
    assert [r["id"] for r in target(p, "a")] == [1]
    assert all(f"{p.schema}.other" not in r["tables"] for r in results)


def test_a_configured_table_created_later_streams_all_its_rows(p: Pipeline) -> None:
    sql(p, "CREATE TABLE {s}.a (id int PRIMARY KEY)")
    reconfigure(p, source_tables=(f"{p.schema}.a", f"{p.schema}.later"))
    first = p.engine.run_window()
    assert first.status == "snapshot"
    assert first.notes == (
        f"table {p.schema}.later is configured in source_tables but does not exist (or is a partition): "
        "check the name",
    )
    sql(
        p,
        "CREATE TABLE {s}.later (id int PRIMARY KEY, v text)",
        "INSERT INTO {s}.later VALUES (1, 'x'), (2, 'y')",
    )
    sql(p, "UPDATE {s}.later SET v = 'z' WHERE id = 2", "INSERT INTO {s}.a VALUES (1)")
    results = sync(p)
    assert copied_tables(results) == []  # created after the checkpoint: every row of it streams
    assert sorted((r["id"], r["v"]) for r in target(p, "later")) == [(1, "x"), (2, "z")]
    assert_equal(p, "a", "later")
