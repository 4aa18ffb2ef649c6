"""Snapshots against the real local servers: PostgreSQL 15 + wal2json and the fakesnow stand-in.

Each test has its own schema, slot and stage prefix (``helpers.Pipeline``). Tables hold a few
thousand rows of several types; one has an odd name and odd column names. A writer thread keeps
committing while snapshots are taken and copied, so "the copy equals the source at the consistent
point" is tested against a moving source.
"""

from __future__ import annotations

import json
import random
import shlex
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras
import pyarrow.parquet as pq
import pytest
import snowflake.connector
from helpers import Pipeline
from psycopg2 import sql as pgsql

from cdc.batch import WindowWriter
from cdc.compare import canonical_text, compare_rows, source_select_sql
from cdc.errors import CdcError, MergeError, SourceError
from cdc.model import Begin, Change, Commit, Lsn, TableSchema
from cdc.snapshot import (
    SnapshotDeadline,
    SnapshotLoader,
    copy_table,
    create_slot_with_snapshot,
    create_temporary_snapshot,
    drop_slot,
    in_snapshot,
    open_copy_connection,
    run_snapshot,
    snapshot_row_lsn,
)
from cdc.snapshot.export import COPY_SESSION_OPTIONS
from cdc.snowflake import snapshot_sql as ssql
from cdc.snowflake import sql as sfsql
from cdc.snowflake.sink import SnowflakeSink
from cdc.source.catalog import load_catalog
from cdc.source.lookup import SourceLookup
from cdc.source.slot import PostgresSource, StreamPosition
from cdc.stage import open_stage, read_manifest

ITEMS_ROWS = 3000
ODD_ROWS = 800
ODD = 'Odd "Tbl" x'

DDL = """
CREATE TABLE {s}.items (
    id integer PRIMARY KEY, name text, amount numeric(12,2), ratio double precision, flag boolean,
    created timestamptz, doc jsonb, blob bytea, tags text[], v integer NOT NULL DEFAULT 0);
CREATE TABLE {s}.{odd} ("Key Col" bigint PRIMARY KEY, "select" text, "Mixed Case" numeric, v integer NOT NULL);
INSERT INTO {s}.items
SELECT g, CASE WHEN g % 10 = 0 THEN NULL WHEN g % 10 = 1 THEN '' ELSE 'name ' || g || E' "q",\\n' END,
       CASE WHEN g % 7 = 0 THEN NULL ELSE (g * 37 % 1000000) / 100.0 END, g / 7.0, g % 3 = 0,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute 1.5 second',
       jsonb_build_object('g', g, 's', 'ü' || g), decode(md5(g::text), 'hex'),
       ARRAY['a' || g, NULL, ''], 0
FROM generate_series(1, {items}) g;
INSERT INTO {s}.{odd} SELECT g, 'sel ' || g, g::numeric / 3, 0 FROM generate_series(1, {odd_rows}) g;
"""


@dataclass
class Env:
    p: Pipeline
    params: dict[str, Any]
    sf: Any
    sink: SnowflakeSink
    stage: Any
    tmp: Path

    def tables(self) -> dict[str, TableSchema]:
        catalog = load_catalog(self.p.admin, (f"{self.p.schema}.items", f"{self.p.schema}.{ODD}"))
        return {name: t for (_, name), t in catalog.tables.items()}

    def loader(self, strategy: str = "rename", connection: Any = None) -> SnapshotLoader:
        s = self.p.settings
        return SnapshotLoader(
            connection or self.sf,
            database=s.snowflake_database,
            stage=s.snowflake_stage,
            load_schema=s.snowflake_load_schema,
            pipeline=self.p.name,
            swap_strategy=strategy,
        )

    def execute(self, *statements: str) -> None:
        with self.p.conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement.format(s=self.p.schema, odd=pgsql.Identifier(ODD).as_string(cur)))
        self.p.conn.commit()

    def side_tables(self, table: TableSchema) -> list[str]:
        cur = self.sf.cursor()
        cur.execute(ssql.leftover_tables_sql(self.p.settings.snowflake_database, table))
        return [r[0] for r in cur.fetchall()]


@pytest.fixture
def env(stack: Any, tmp_path: Path) -> Iterator[Env]:
    p = Pipeline(stack)
    params = psycopg2.extensions.parse_dsn(stack.env["postgres_dsn"])
    sf = snowflake.connector.connect(**stack.env["snowflake"], network_timeout=60)
    s = p.settings
    sink = SnowflakeSink(
        sf,
        database=s.snowflake_database,
        stage=s.snowflake_stage,
        load_schema=s.snowflake_load_schema,
        pipeline=p.name,
    )
    e = Env(p, params, sf, sink, open_stage(s.stage_url), tmp_path)
    e.execute(
        "CREATE SCHEMA {s}",
        DDL.replace("{items}", str(ITEMS_ROWS)).replace("{odd_rows}", str(ODD_ROWS)),
    )
    yield e
    sf.cursor().execute(f"DROP SCHEMA IF EXISTS {sfsql.qualified(s.snowflake_database, p.schema)} CASCADE")
    sf.close()
    p.close()


class Writer:
    """Commits small random transactions on both tables until stopped."""

    def __init__(self, dsn: str, schema: str, seed: int) -> None:
        self.conn = psycopg2.connect(dsn)
        self.schema = schema
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.commits = 0
        self.next_id = 1_000_000
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.conn.close()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        odd = pgsql.Identifier(ODD).as_string(self.conn)
        try:
            while not self.stop.is_set():
                with self.conn.cursor() as cur:
                    for _ in range(self.rng.randint(1, 4)):
                        action = self.rng.random()
                        key = self.rng.randint(1, ITEMS_ROWS)
                        if action < 0.5:
                            cur.execute(
                                f"UPDATE {self.schema}.items SET v = v + 1, name = %s, amount = amount + 1 "
                                "WHERE id = %s",
                                (f"w{self.commits}", key),
                            )
                        elif action < 0.7:
                            self.next_id += 1
                            cur.execute(
                                f"INSERT INTO {self.schema}.items (id, name, v) VALUES (%s, 'new', 1)",
                                (self.next_id,),
                            )
                        elif action < 0.8:
                            cur.execute(f"DELETE FROM {self.schema}.items WHERE id = %s", (key,))
                        else:
                            cur.execute(
                                f'UPDATE {self.schema}.{odd} SET v = v + 1, "select" = %s WHERE "Key Col" = %s',
                                (f"w{self.commits}", self.rng.randint(1, ODD_ROWS)),
                            )
                self.conn.commit()
                self.commits += 1
                time.sleep(0.002)
        except BaseException as exc:  # surfaced by __exit__
            self.error = exc


def rows_at(env: Env, snapshot_name: str, table: TableSchema) -> list[dict[str, Any]]:
    """The table as the exported snapshot sees it, every column as PostgreSQL's text."""
    conn = psycopg2.connect(**env.params, options=COPY_SESSION_OPTIONS)
    try:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            cur.execute("SET TRANSACTION SNAPSHOT %s", (snapshot_name,))
            cur.execute(source_select_sql(table))
            rows = [dict(r) for r in cur.fetchall()]
            cur.execute("COMMIT")
        return rows
    finally:
        conn.close()


def current_rows(env: Env, table: TableSchema) -> list[dict[str, Any]]:
    conn = psycopg2.connect(**env.params, options=COPY_SESSION_OPTIONS)
    try:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(source_select_sql(table))
            return [dict(r) for r in cur.fetchall()]
    finally:
        conn.close()


def parquet_rows(directory: Path, table: TableSchema) -> list[dict[str, Any]]:
    """Rows of the staged parts, keyed by source column names (plus the metadata columns)."""
    names = {c.stage_name: c.name for c in table.columns}
    rows: list[dict[str, Any]] = []
    for path in sorted((directory / table.stage_dir).glob("part-*.parquet")):
        for r in pq.read_table(path).to_pylist():
            rows.append({names.get(k, k): v for k, v in r.items()})
    return rows


def canonical(table: TableSchema, rows: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    key = table.key_columns[0]
    return {
        canonical_text(key, r[key.name]): {c.name: canonical_text(c, r[c.name]) for c in table.columns}
        for r in rows
    }


def stream_changes(env: Env, slot: str, start: Lsn) -> list[tuple[Begin, Change]]:
    """Every change the slot holds from ``start`` up to the current WAL end, with its transaction."""
    source = PostgresSource(env.params, slot)
    try:
        until = source.current_wal_lsn()
        position = StreamPosition(server_lsn=start)
        out: list[tuple[Begin, Change]] = []
        txn: Begin | None = None
        for message, _ in source.stream(start, until, time.monotonic() + 60, position):
            if isinstance(message, Begin):
                txn = message
            elif isinstance(message, Commit):
                txn = None
            elif isinstance(message, Change):
                assert txn is not None
                out.append((txn, message))
        assert position.caught_up
        return out
    finally:
        source.close()


def apply_changes(
    state: dict[Any, tuple[Any, ...]], changes: list[Change], key: str, fields: tuple[str, ...]
) -> None:
    """Apply stream changes to ``{key: (fields...)}`` (the fields every change of the test carries)."""
    for ch in changes:
        if ch.op == "D":
            assert ch.identity is not None
            state.pop(ch.identity[key], None)
        elif ch.op in ("I", "U"):
            assert ch.values is not None
            state[ch.values[key]] = tuple(ch.values[f] for f in fields)


# --- the copy at an exported snapshot ---------------------------------------------------------------


def test_exported_snapshot_copy_holds_exactly_the_commits_before_the_consistent_point(env: Env) -> None:
    tables = env.tables()
    items, odd = tables["items"], tables[ODD]
    slot = env.p.settings.source_slot
    with Writer(_dsn(env), env.p.schema, 1) as writer:
        time.sleep(0.3)
        with create_slot_with_snapshot(env.params, slot) as snap:
            lsn, name, held = snap  # unpacks like the tuple (consistent LSN, snapshot name, connection)
            assert (lsn, name, held) == (snap.lsn, snap.name, snap.connection)
            # committed after the consistent point: never in the copy, always in the stream
            env.execute(
                "INSERT INTO {s}.items (id, name, v) VALUES (999999, 'after', 7)",
                "UPDATE {s}.items SET v = v + 1000, name = 'after' WHERE id = 5",
                "DELETE FROM {s}.items WHERE id = 6",
            )
            expected = {t.name: rows_at(env, name, t) for t in (items, odd)}
            commits_before = writer.commits
            copied = {}
            for t in (items, odd):
                conn = open_copy_connection(env.params)
                try:
                    copied[t.name] = copy_table(conn, t, snap.point, env.tmp, part_max_rows=700)
                finally:
                    conn.close()
            assert writer.commits > commits_before, "the writer must commit while the copy runs"
        assert copied["items"].rows == len(expected["items"]) and len(copied["items"].staged.files) >= 4
        for t in (items, odd):
            got = canonical(t, parquet_rows(env.tmp, t))
            want = canonical(t, expected[t.name])
            assert got == want, t.name
        by_id = canonical(items, parquet_rows(env.tmp, items))
        assert "999999" not in by_id and "6" in by_id and by_id["5"]["name"] != "after"
        assert {r["_CDC_LSN"] for r in parquet_rows(env.tmp, items)} == {snapshot_row_lsn(lsn)}
    # the stream from the consistent point holds exactly what the copy lacks
    changes = stream_changes(env, slot, lsn)
    assert changes and all(txn.commit_lsn >= lsn for txn, _ in changes)
    state = {r["id"]: (r["v"], r["name"]) for r in parquet_rows(env.tmp, items)}
    apply_changes(state, [c for _, c in changes if c.table == "items"], "id", ("v", "name"))
    now = {int(r["id"]): (int(r["v"]), r["name"]) for r in current_rows(env, items)}
    assert state == now
    assert state[999999] == (7, "after") and 6 not in state
    odd_state = {r["Key Col"]: (r["v"], r["select"]) for r in parquet_rows(env.tmp, odd)}
    apply_changes(odd_state, [c for _, c in changes if c.table == ODD], "Key Col", ("v", "select"))
    assert odd_state == {int(r["Key Col"]): (int(r["v"]), r["select"]) for r in current_rows(env, odd)}


def test_an_existing_slot_cannot_export_a_snapshot_until_it_is_dropped(env: Env) -> None:
    slot = env.p.settings.source_slot
    with create_slot_with_snapshot(env.params, slot) as first:
        assert not first.temporary and _slot_state(env, slot) is not None
    with pytest.raises(SourceError, match="already exists"):
        create_slot_with_snapshot(env.params, slot)
    assert drop_slot(env.params, slot) is True
    assert drop_slot(env.params, slot) is False
    with create_slot_with_snapshot(env.params, slot) as second:
        assert second.lsn > first.lsn
    with pytest.raises(SourceError, match="invalid"):
        create_slot_with_snapshot(env.params, "Bad-Name")


def _dsn(env: Env) -> str:
    return " ".join(f"{k}={v}" for k, v in env.params.items())


# --- load and swap ------------------------------------------------------------------------------------


def test_run_snapshot_swaps_in_targets_equal_to_the_source_at_the_snapshot(env: Env) -> None:
    tables = env.tables()
    items, odd = tables["items"], tables[ODD]
    # a previous target with stale rows: the snapshot replaces it whole
    env.sink.ensure_table(items)
    target = sfsql.target_table(env.p.settings.snowflake_database, items)
    env.sf.cursor().execute(f'INSERT INTO {target} ("ID", "V", "_CDC_LSN") VALUES (-1, 5, 1), (1, 99, 1)')
    events: list[str] = []
    with Writer(_dsn(env), env.p.schema, 2), create_temporary_snapshot(env.params) as snap:
        result = run_snapshot(
            snap,
            [items, odd],
            conn_params=env.params,
            stage=env.stage,
            loader=env.loader("rename"),
            pipeline=env.p.name,
            deadline=time.monotonic() + 120,
            part_max_rows=500,
            progress=lambda e: events.append(f"{e.phase}:{e.table}"),
        )
        expected = {t.name: rows_at(env, snap.name, t) for t in (items, odd)}
    assert result.complete and result.stopped == "complete"
    assert result.table_lsns == {items.qualified: str(snap.lsn), odd.qualified: str(snap.lsn)}
    assert [t.table for t in result.finished] == [items.qualified, odd.qualified]
    assert "load:" + items.qualified in events and "done:" + odd.qualified in events
    for t in (items, odd):
        target_rows = env.sink.fetch_table(t)
        diff = compare_rows(t.qualified, t.key, expected[t.name], target_rows, columns=t.columns)
        assert diff.equal, (t.name, diff.missing[:3], diff.extra[:3], diff.different[:3])
        assert {r["_CDC_LSN"] for r in target_rows} == {snapshot_row_lsn(snap.lsn)}
        assert {r["_CDC_OP"] for r in target_rows} == {"I"}
        assert env.side_tables(t) == []
    manifest = read_manifest(env.stage, result.prefix)
    assert manifest["kind"] == "snapshot" and manifest["lsn"] == str(snap.lsn)
    assert [m["table"] for m in manifest["tables"]] == ["items", ODD]
    assert manifest["tables"][0]["rows"] == result.finished[0].rows
    assert len(manifest["tables"][0]["files"]) == result.finished[0].parts >= 6
    assert json.dumps(result.as_dict())


# --- failures leave the previous target -----------------------------------------------------------------


class FailingConnection:
    """A Snowflake connection whose statements fail once one starts with ``prefix``."""

    def __init__(self, real: Any, prefix: str) -> None:
        self.real = real
        self.prefix = prefix
        self.failed = False

    def cursor(self) -> Any:
        outer = self

        class Cursor:
            def __init__(self) -> None:
                self.cur = outer.real.cursor()

            def execute(self, text: str, *args: Any) -> Any:
                if text.startswith(outer.prefix) and not outer.failed:
                    outer.failed = True
                    raise snowflake.connector.errors.ProgrammingError(msg="injected failure", errno=1)
                return self.cur.execute(text, *args)

            def __getattr__(self, name: str) -> Any:
                return getattr(self.cur, name)

        return Cursor()


def _load_once(env: Env, table: TableSchema) -> list[dict[str, Any]]:
    with create_temporary_snapshot(env.params) as snap:
        run_snapshot(
            snap,
            [table],
            conn_params=env.params,
            stage=env.stage,
            loader=env.loader("rename"),
            pipeline=env.p.name,
            deadline=time.monotonic() + 120,
        )
    return env.sink.fetch_table(table)


def test_a_failure_during_the_load_keeps_the_previous_target_and_drops_the_new_table(env: Env) -> None:
    items = env.tables()["items"]
    before = _load_once(env, items)
    assert len(before) == ITEMS_ROWS
    env.execute("UPDATE {s}.items SET v = v + 1", "DELETE FROM {s}.items WHERE id <= 100")
    with create_temporary_snapshot(env.params) as snap:
        conn = open_copy_connection(env.params)
        try:
            copied = copy_table(conn, items, snap.point, env.tmp / "spool", part_max_rows=400)
        finally:
            conn.close()
    prefix = f"{env.p.name}/snapshots/failing"
    env.stage.publish(env.tmp / "spool", prefix)
    rel = f"{prefix}/{items.stage_dir}"
    # a part missing from the stage: the load table's count does not match what the copy staged
    part = Path(env.p.settings.stage_url[len("file://") :]) / rel / "part-00003.parquet"
    missing = pq.read_metadata(part)
    part.unlink()
    with pytest.raises(
        MergeError, match=rf"has {copied.rows - missing.num_rows} rows, the snapshot staged {copied.rows}"
    ):
        env.loader("rename").load(copied.staged, rel, token="MISSING")
    assert env.sink.fetch_table(items) == before
    assert env.side_tables(items) == []
    # a statement failing in the middle of the load, and the swap failing half-way (rename strategy:
    # the transaction is rolled back) leave the target as it was too
    env.stage.publish(env.tmp / "spool", prefix)
    new_fq = ssql.side_table_fq(env.p.settings.snowflake_database, items, ssql.NEW_TAG, "FAIL")
    for failing in ("INSERT INTO", f"ALTER TABLE {new_fq} RENAME TO"):
        conn_ = FailingConnection(env.sf, failing)
        with pytest.raises(CdcError, match="injected failure"):
            env.loader("rename", conn_).load(copied.staged, rel, token="FAIL")
        assert conn_.failed
        assert env.sink.fetch_table(items) == before
        assert env.side_tables(items) == []
    # and the same staged snapshot, complete, loads
    env.loader("rename").load(copied.staged, rel, token="OK")
    after = env.sink.fetch_table(items)
    assert len(after) == ITEMS_ROWS - 100 and all(r["v"] == 1 for r in after)


# --- a temporary slot for one table while the pipeline's slot streams ----------------------------------------


def test_temporary_snapshot_of_one_table_leaves_the_pipeline_slot_untouched(env: Env) -> None:
    items = env.tables()["items"]
    slot = env.p.settings.source_slot
    with env.p.admin.cursor() as cur:
        cur.execute("SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'wal2json')", (slot,))
    main_before = _slot_state(env, slot)
    env.execute("UPDATE {s}.items SET v = v + 1 WHERE id <= 50", "DELETE FROM {s}.items WHERE id = 3000")
    with Writer(_dsn(env), env.p.schema, 3):
        with create_temporary_snapshot(env.params) as snap:
            temp = _slot_state(env, snap.slot)
            assert temp["temporary"] and temp["active_pid"] is not None
            assert snap.lsn > main_before["confirmed_flush_lsn"]
            env.execute("UPDATE {s}.items SET v = v + 10 WHERE id <= 20")  # after S: stream only
            conn = open_copy_connection(env.params)
            try:
                copy_table(conn, items, snap.point, env.tmp, part_max_rows=1000)
            finally:
                conn.close()
        time.sleep(0.2)
    assert _slot_state(env, snap.slot) is None  # dropped with its connection
    assert _slot_state(env, slot) == main_before  # the pipeline's slot did not move
    # the pipeline's slot streams from its own position: skip what the copy holds, apply the rest
    changes = [(txn, c) for txn, c in stream_changes(env, slot, main_before["lsn"]) if c.table == "items"]
    skipped = [c for txn, c in changes if in_snapshot(txn.commit_lsn, snap.lsn)]
    applied = [c for txn, c in changes if not in_snapshot(txn.commit_lsn, snap.lsn)]
    assert len(skipped) >= 51 and len(applied) >= 20
    state = {r["id"]: (r["v"],) for r in parquet_rows(env.tmp, items)}
    apply_changes(state, applied, "id", ("v",))
    assert state == {int(r["id"]): (int(r["v"]),) for r in current_rows(env, items)}


def _slot_state(env: Env, slot: str) -> dict[str, Any] | None:
    with env.p.admin.cursor() as cur:
        cur.execute(
            "SELECT confirmed_flush_lsn::text, restart_lsn::text, temporary, active_pid "
            "FROM pg_replication_slots WHERE slot_name = %s",
            (slot,),
        )
        row = cur.fetchone()
    if row is None:
        return None
    return {
        "lsn": Lsn.parse(row[0]),
        "confirmed_flush_lsn": Lsn.parse(row[0]),
        "restart_lsn": row[1],
        "temporary": row[2],
        "active_pid": row[3],
    }


# --- the time budget --------------------------------------------------------------------------------------


def test_the_deadline_stops_between_tables_and_leaves_the_rest_untouched(env: Env) -> None:
    tables = env.tables()
    items, odd = tables["items"], tables[ODD]
    previous = _load_once(env, odd)
    env.execute("UPDATE {s}.{odd} SET v = v + 1")
    now = [0.0]
    with create_temporary_snapshot(env.params) as snap:
        result = run_snapshot(
            snap,
            [items, odd],
            conn_params=env.params,
            stage=env.stage,
            loader=env.loader("rename"),
            pipeline=env.p.name,
            deadline=100.0,
            clock=lambda: now[0],
            on_table=lambda done: now.__setitem__(0, 100.0),  # the budget runs out after items
        )
    assert result.stopped == "deadline" and not result.complete
    assert [t.table for t in result.finished] == [items.qualified]
    assert result.unfinished == (odd.qualified,)
    assert f"cdc snapshot --config FILE --tables {shlex.quote(odd.qualified)}" in result.message
    assert env.sink.fetch_table(odd) == previous  # untouched
    assert len(env.sink.fetch_table(items)) == ITEMS_ROWS
    assert read_manifest(env.stage, result.prefix)["unfinished"] == [odd.qualified]


def test_the_deadline_cancels_a_copy_mid_table_and_the_connection_stays_usable(env: Env) -> None:
    items = env.tables()["items"]
    with create_temporary_snapshot(env.params) as snap:
        conn = open_copy_connection(env.params)
        try:
            started = time.monotonic()
            with pytest.raises(SnapshotDeadline) as err:
                copy_table(conn, items, snap.point, env.tmp, chunk_bytes=4096, deadline=time.monotonic() - 1)
            assert 0 < err.value.rows < ITEMS_ROWS
            assert time.monotonic() - started < 5
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                assert cur.fetchone() == (1,)
        finally:
            conn.close()


# --- the copy's values are the stream's values ----------------------------------------------------------------

TYPES_DDL = """
CREATE TYPE {s}.mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE {s}.all_types (
    id integer PRIMARY KEY, c_int2 smallint, c_int8 bigint, c_num_10_2 numeric(10,2),
    c_num_38 numeric(38,10), c_num_40 numeric(40,5), c_num numeric, c_real real, c_double double precision,
    c_money money, c_text text, c_varchar varchar(10), c_char char(5), c_bool boolean, c_date date,
    c_time time, c_timetz timetz, c_ts timestamp, c_tstz timestamptz, c_interval interval, c_json json,
    c_jsonb jsonb, c_uuid uuid, c_bytea bytea, c_inet inet, c_bit bit(4), c_enum {s}.mood,
    c_int_arr integer[], c_text_arr text[], c_num_arr numeric[], c_float_arr double precision[])
"""
TYPES_ROWS = [
    r"""INSERT INTO {s}.all_types VALUES (1, 1, 3, 12345678.91, '1234567890123456789012345678.0123456789',
        '12345678901234567890123456789012345.12345', '1.50', 0.1, 3.141592653589793, '-1234.56',
        E'h\u00e9llo "quoted"\nline \\ backslash \U0001F600', 'varchar', 'ab', true, '2024-02-29',
        '13:14:15.123456', '13:14:15+05:30', '2024-02-29 13:14:15.123456', '2024-02-29 13:14:15.5+02',
        '1 year 2 mons -3 days 04:05:06.789', '{{"b": [1, 2.50], "a": 1, "a": 2}}', '{{"z": {{"ü": {{}}}}}}',
        'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '\xdeadbeef00', '192.168.0.1/24', B'1010', 'happy',
        '{{1,NULL,3}}', '{{"a\"b","NULL",NULL,"","x y"}}', '{{1.50,NaN,Infinity}}', '{{1.5,NaN,-Infinity,1e300}}')""",
    "INSERT INTO {s}.all_types (id) VALUES (2)",
    r"""INSERT INTO {s}.all_types (id, c_int2, c_int8, c_num_10_2, c_num, c_real, c_double, c_money, c_text,
        c_varchar, c_char, c_date, c_time, c_ts, c_tstz, c_interval, c_json, c_jsonb, c_bytea, c_int_arr)
    VALUES (3, -32768, -9223372036854775808, -99999999.99, '-Infinity', 'NaN', 'Infinity',
        '-92233720368547758.08', '', '', '', '-infinity', '24:00:00', 'infinity', '0044-03-15 12:00:00.5 BC',
        'PT0S', 'null', '""', '\x', '[0:1]={{7,8}}')""",
    r"""INSERT INTO {s}.all_types (id, c_num, c_double, c_date, c_tstz)
    VALUES (4, '123456789012345678901234567890123456789012345678901234567890.000000000000000000001',
        '4.9e-324', '5874897-12-31', '10000-01-01 00:00:00+00')""",
]


def test_copied_values_equal_the_streamed_values_of_the_same_rows(env: Env) -> None:
    env.execute(TYPES_DDL)
    table = load_catalog(env.p.admin, (f"{env.p.schema}.all_types",)).tables[(env.p.schema, "all_types")]
    slot = env.p.settings.source_slot
    with env.p.admin.cursor() as cur:
        cur.execute("SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'wal2json')", (slot,))
        start = Lsn.parse(cur.fetchone()[0])
    with env.p.conn.cursor() as cur:
        cur.execute("SET TimeZone = 'America/New_York'")
        for statement in TYPES_ROWS:
            cur.execute(statement.format(s=env.p.schema))
    env.p.conn.commit()
    # the rows through the stream, as the window writer stages them (NaN filled by the lookup)
    lookup_conn = psycopg2.connect(**env.params, options=COPY_SESSION_OPTIONS)
    lookup_conn.autocommit = True
    try:
        writer = WindowWriter(env.tmp / "stream", lambda s, t: table, resolver=SourceLookup(lookup_conn))
        for txn, change in stream_changes(env, slot, start):
            writer.add(change, txn.commit_lsn, txn.commit_ts)
        writer.close()
    finally:
        lookup_conn.close()
    # the same rows through the copy
    with create_temporary_snapshot(env.params) as snap:
        conn = open_copy_connection(env.params)
        try:
            copy_table(conn, table, snap.point, env.tmp / "copy")
        finally:
            conn.close()
    streamed = {r["id"]: r for r in parquet_rows(env.tmp / "stream", table)}
    copied = {r["id"]: r for r in parquet_rows(env.tmp / "copy", table)}
    assert sorted(copied) == sorted(streamed) == [1, 2, 3, 4]
    for key, row in copied.items():
        for col in table.columns:
            a, b = row[col.name], streamed[key][col.name]
            assert repr(a) == repr(b), (key, col.name, a, b)
