"""Tables the pipeline cannot replicate faithfully are refused by name, with the fix, in every mode
(the first snapshot, incremental windows, ``cdc check``), while the other tables go on: a table with
REPLICA IDENTITY NOTHING (wal2json would skip its updates and deletes), an UNLOGGED table (no WAL,
so no change ever reaches the stream) and tables whose Snowflake names collide (their rows would be
merged into one table). Once fixed, a refused table is copied before it streams."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from helpers import Pipeline, assert_stopped_then_copied

from cdc.app import build_engine
from cdc.check import run_checks
from cdc.demo import replicate_until_caught_up
from cdc.source.catalog import COLLISION_FIX, load_catalog


@pytest.fixture
def p(stack: Any) -> Iterator[Pipeline]:
    pipeline = Pipeline(stack)
    twin = pipeline.schema.upper()  # the same Snowflake schema, another PostgreSQL schema
    with pipeline.conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA {pipeline.schema}; CREATE SCHEMA "{twin}"')
    pipeline.conn.commit()
    yield pipeline
    try:
        with pipeline.admin.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{twin}" CASCADE')
    finally:
        pipeline.close()


def sql(p: Pipeline, *statements: str) -> None:
    with p.conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement.replace("{s}", p.schema).replace("{S}", p.schema.upper()))
    p.conn.commit()


def replicate(p: Pipeline, *tables: str) -> None:
    """Replicate only these ``schema.table`` names (``{s}`` is the test's schema, ``{S}`` its twin)."""
    names = tuple(t.replace("{s}", p.schema).replace("{S}", p.schema.upper()) for t in tables)
    p.settings = p.settings.replace(source_tables=names)
    p.engine.close()
    p.engine = build_engine(p.settings)


def target_tables(p: Pipeline) -> list[str]:
    cur = p.engine.sink.connection.cursor()
    cur.execute(f"SHOW TABLES IN SCHEMA {p.settings.snowflake_database}.{p.schema.upper()}")
    names = [row[1] for row in cur.fetchall()]
    return sorted(n.upper() for n in names)


def test_a_table_with_replica_identity_nothing_is_refused_by_name_while_others_replicate(p: Pipeline) -> None:
    sql(
        p,
        "CREATE TABLE {s}.quiet (id int PRIMARY KEY, v int)",
        "ALTER TABLE {s}.quiet REPLICA IDENTITY NOTHING",
        "CREATE TABLE {s}.fine (id int PRIMARY KEY, v int)",
        "INSERT INTO {s}.quiet VALUES (1, 1), (2, 2)",
        "INSERT INTO {s}.fine VALUES (1, 1), (2, 2)",
    )
    replicate(p, "{s}.quiet", "{s}.fine")
    note = (
        f"table {p.schema}.quiet has REPLICA IDENTITY NOTHING and cannot be replicated: PostgreSQL logs "
        "no key for its updates and deletes, so they would never reach the target; run ALTER TABLE "
        f'"{p.schema}"."quiet" REPLICA IDENTITY DEFAULT (or FULL, or USING INDEX on a unique index of '
        "NOT NULL columns)"
    )
    first = p.engine.run_window()  # no checkpoint yet: a snapshot
    assert (first.status, first.mode) == ("snapshot", "snapshot")
    assert first.notes == (note,)
    assert sorted(first.tables) == [f"{p.schema}.fine"]

    sql(
        p,
        "UPDATE {s}.quiet SET v = 10 WHERE id = 1",
        "DELETE FROM {s}.quiet WHERE id = 2",
        "UPDATE {s}.fine SET v = 10 WHERE id = 1",
        "DELETE FROM {s}.fine WHERE id = 2",
    )
    results = replicate_until_caught_up(p.engine)
    assert all(note in r["notes"] for r in results)
    assert {t for r in results for t in r["tables"]} == {f"{p.schema}.fine"}
    assert p.engine.source.catalog().refused == {(p.schema, "quiet"): note}
    fine = p.engine.source.catalog().tables[(p.schema, "fine")]
    assert [(r["id"], r["v"]) for r in p.engine.sink.fetch_table(fine)] == [(1, 10)]  # type: ignore[attr-defined]
    assert target_tables(p) == ["FINE"]

    report = run_checks(p.settings)
    item = report.item(f"postgres.table {p.schema}.quiet")
    assert (item.status, item.detail) == ("failed", note)
    assert item.fix == (
        f'ALTER TABLE "{p.schema}"."quiet" REPLICA IDENTITY DEFAULT (or FULL, or USING INDEX on a unique '
        "index of NOT NULL columns)"
    )
    assert report.item(f"postgres.table {p.schema}.fine").status == "ok"


def test_tables_whose_snowflake_names_collide_are_refused_together_while_others_replicate(
    p: Pipeline,
) -> None:
    s, twin = p.schema, p.schema.upper()
    sql(
        p,
        "CREATE TABLE {s}.orders (id int PRIMARY KEY, v int)",
        'CREATE TABLE {s}."ORDERS" (id int PRIMARY KEY, v int)',
        'CREATE TABLE "{S}".orders (id int PRIMARY KEY, v int)',
        "CREATE TABLE {s}.fine (id int PRIMARY KEY, v int)",
        'CREATE TABLE "{S}".other (id int PRIMARY KEY, v int)',
        "INSERT INTO {s}.orders VALUES (1, 1)",
        'INSERT INTO {s}."ORDERS" VALUES (1, 2)',
        'INSERT INTO "{S}".orders VALUES (1, 3)',
        "INSERT INTO {s}.fine VALUES (1, 1)",
    )
    replicate(p, "{s}.orders", "{s}.ORDERS", "{S}.orders", "{s}.fine", "{S}.other")
    colliding = [(s, "ORDERS"), (s, "orders"), (twin, "orders")]
    listed = f'"{twin}"."orders", "{s}"."ORDERS", "{s}"."orders"'

    def note(schema: str, table: str) -> str:
        return (
            f"table {schema}.{table} cannot be replicated: the source tables {listed} all land in "
            f'Snowflake as "{twin}"."ORDERS", which would merge their rows into one table, so none of '
            f"them is replicated; {COLLISION_FIX}"
        )

    notes = tuple(note(*ident) for ident in sorted(colliding))
    catalog = p.engine.source.catalog()
    assert catalog.refused == {ident: note(*ident) for ident in colliding}
    assert sorted(catalog.tables) == [(twin, "other"), (s, "fine")]

    first = p.engine.run_window()  # the snapshot
    assert first.status == "snapshot" and first.notes == notes
    assert sorted(first.tables) == [f"{twin}.other", f"{s}.fine"]

    sql(
        p,
        "UPDATE {s}.orders SET v = 10",
        'DELETE FROM {s}."ORDERS"',
        "INSERT INTO {s}.fine VALUES (2, 2)",
        'INSERT INTO "{S}".other VALUES (1, 1)',
    )
    results = replicate_until_caught_up(p.engine)
    assert all(r["notes"] == list(notes) for r in results)
    assert {t for r in results for t in r["tables"]} == {f"{twin}.other", f"{s}.fine"}
    assert target_tables(p) == ["FINE", "OTHER"]  # no ORDERS table: nothing was merged into one

    report = run_checks(p.settings)
    for schema, table in colliding:
        item = report.item(f"postgres.table {schema}.{table}")
        assert (item.status, item.detail, item.fix) == ("failed", note(schema, table), COLLISION_FIX)
    assert [report.item(f"postgres.table {t}").status for t in (f"{s}.fine", f"{twin}.other")] == ["ok", "ok"]


def test_an_unlogged_table_is_refused_and_copied_once_it_is_logged(p: Pipeline) -> None:
    sql(
        p,
        "CREATE UNLOGGED TABLE {s}.scratch (id int PRIMARY KEY, v int)",
        "CREATE TABLE {s}.fine (id int PRIMARY KEY, v int)",
        "INSERT INTO {s}.scratch VALUES (1, 1), (2, 2)",
        "INSERT INTO {s}.fine VALUES (1, 1)",
    )
    replicate(p, "{s}.scratch", "{s}.fine")
    fix = f'ALTER TABLE "{p.schema}"."scratch" SET LOGGED'
    note = (
        f"table {p.schema}.scratch is UNLOGGED and cannot be replicated: PostgreSQL writes no WAL for "
        f"its changes, so they would never reach the target; run {fix}"
    )
    first = p.engine.run_window()  # no checkpoint yet: a snapshot
    assert (first.status, first.mode) == ("snapshot", "snapshot")
    assert first.notes == (note,)
    assert sorted(first.tables) == [f"{p.schema}.fine"]
    item = run_checks(p.settings).item(f"postgres.table {p.schema}.scratch")
    assert (item.status, item.detail, item.fix) == ("failed", note, fix)

    sql(p, "UPDATE {s}.scratch SET v = 20 WHERE id = 2", "UPDATE {s}.fine SET v = 10 WHERE id = 1")
    results = replicate_until_caught_up(p.engine)
    assert all(note in r["notes"] for r in results)
    assert target_tables(p) == ["FINE"]

    # SET LOGGED rewrites the table without a change logical decoding reports: only a copy brings
    # the rows it holds (and the changes made while it was refused) to the target
    sql(p, "ALTER TABLE {s}.scratch SET LOGGED", "INSERT INTO {s}.scratch VALUES (3, 3)")
    results = replicate_until_caught_up(p.engine)
    reason = (
        f"table {p.schema}.scratch was refused until now and its changes were skipped meanwhile, so its "
        "target misses them"
    )
    assert_stopped_then_copied(results, f"{p.schema}.scratch", reason, 3)
    assert not results[-1]["stopped_tables"] and not any(note in r["notes"] for r in results)
    sql(p, "DELETE FROM {s}.scratch WHERE id = 1")
    replicate_until_caught_up(p.engine)
    scratch = p.engine.source.catalog().tables[(p.schema, "scratch")]
    rows = [(r["id"], r["v"]) for r in p.engine.sink.fetch_table(scratch)]  # type: ignore[attr-defined]
    assert sorted(rows) == [(2, 20), (3, 3)]
    assert target_tables(p) == ["FINE", "SCRATCH"]
    # copied once: later windows leave it alone
    assert "refused until now" not in " ".join(
        n for r in replicate_until_caught_up(p.engine) for n in r["notes"]
    )


def test_partitioned_tables_are_refused_for_partitions_outside_the_wal_naming_them(p: Pipeline) -> None:
    sql(
        p,
        "CREATE TABLE {s}.ev (id int, d date, PRIMARY KEY (id, d)) PARTITION BY RANGE (d)",
        "CREATE TABLE {s}.ev_01 PARTITION OF {s}.ev FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')",
        "CREATE UNLOGGED TABLE {s}.ev_02 PARTITION OF {s}.ev FOR VALUES FROM ('2026-02-01') TO ('2026-03-01')",
        # created UNLOGGED, but only its partitions hold rows, and they are logged
        "CREATE UNLOGGED TABLE {s}.up (id int, d date, PRIMARY KEY (id, d)) PARTITION BY RANGE (d)",
        "CREATE TABLE {s}.up_01 PARTITION OF {s}.up FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')",
    )
    fdw, s = f"fdw_{p.schema}", p.schema
    with p.admin.cursor() as cur:  # a wrapper without a handler is enough to declare foreign tables
        cur.execute(f"CREATE FOREIGN DATA WRAPPER {fdw}; CREATE SERVER {fdw}_srv FOREIGN DATA WRAPPER {fdw}")
    try:
        with p.admin.cursor() as cur:  # no unique index: PostgreSQL refuses foreign partitions under one
            cur.execute(
                f"CREATE TABLE {s}.fp (id int, d date) PARTITION BY RANGE (d); "
                f"CREATE TABLE {s}.fp_01 PARTITION OF {s}.fp FOR VALUES FROM ('2026-01-01') TO ('2026-02-01'); "
                f"CREATE FOREIGN TABLE {s}.fp_02 PARTITION OF {s}.fp FOR VALUES FROM ('2026-02-01') "
                f"TO ('2026-03-01') SERVER {fdw}_srv"
            )
        catalog = load_catalog(p.conn, (f"{s}.ev", f"{s}.up", f"{s}.fp"), {(s, "fp"): ("id", "d")})
    finally:
        with p.admin.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {p.schema}.fp; DROP FOREIGN DATA WRAPPER {fdw} CASCADE")
    unlogged_fix = f'ALTER TABLE "{p.schema}"."ev_02" SET LOGGED'
    foreign_fix = (
        f'ALTER TABLE "{p.schema}"."fp" DETACH PARTITION "{p.schema}"."fp_02"; or leave {p.schema}.fp out '
        "of source_tables"
    )
    assert list(catalog.tables) == [(p.schema, "up")]
    assert catalog.refused == {
        (p.schema, "ev"): f"table {p.schema}.ev has UNLOGGED partitions ({p.schema}.ev_02) and cannot be "
        "replicated: PostgreSQL writes no WAL for their changes, so they would never reach the target; "
        f"run {unlogged_fix}",
        (p.schema, "fp"): f"table {p.schema}.fp has foreign partitions ({p.schema}.fp_02) and cannot be "
        f"replicated: their rows live on another server and no change to them reaches the WAL; {foreign_fix}",
    }
    assert catalog.fixes == {(p.schema, "ev"): unlogged_fix, (p.schema, "fp"): foreign_fix}
    assert set(catalog.refused_oids) == {(p.schema, "ev"), (p.schema, "fp")}


def test_a_table_with_a_deferrable_primary_key_is_refused_unless_a_key_is_configured(p: Pipeline) -> None:
    sql(
        p,
        "CREATE TABLE {s}.later (id int PRIMARY KEY DEFERRABLE, v int)",
        "CREATE TABLE {s}.full_row (id int PRIMARY KEY DEFERRABLE, v int)",
        "ALTER TABLE {s}.full_row REPLICA IDENTITY FULL",
        "CREATE TABLE {s}.keyed (id int PRIMARY KEY DEFERRABLE, code int NOT NULL, v int)",
        "ALTER TABLE {s}.keyed REPLICA IDENTITY FULL",
        "CREATE TABLE {s}.same (id int PRIMARY KEY DEFERRABLE, v int)",
        "ALTER TABLE {s}.same REPLICA IDENTITY FULL",
    )
    replicate(p, "{s}.later", "{s}.full_row", "{s}.keyed", "{s}.same")
    # "same": the deferrable key and one more column, unique only through that key
    keys = {(p.schema, "keyed"): ("code",), (p.schema, "same"): ("id", "v")}
    refused = load_catalog(p.conn, p.settings.source_tables, keys).refused
    fix = "NOT DEFERRABLE, or add a unique index on NOT NULL columns and run ALTER TABLE ... REPLICA IDENTITY"
    assert sorted(refused) == [(p.schema, "full_row"), (p.schema, "later"), (p.schema, "same")]
    assert "PostgreSQL does not log it for updates and deletes" in refused[(p.schema, "later")]
    assert "swap their keys within one statement" in refused[(p.schema, "full_row")]
    assert all(
        "has a DEFERRABLE primary key and cannot be replicated" in n and fix in n for n in refused.values()
    )
