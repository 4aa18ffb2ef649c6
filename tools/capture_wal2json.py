"""Capture real wal2json (format-version 2) output for the parser and writer test fixtures.

Usage::

    python tools/capture_wal2json.py --dsn "host=127.0.0.1 port=15432 user=postgres dbname=postgres" \
        --out tests/fixtures/wal2json

The tool creates a scratch database (so that nobody else's writes reach the slot), creates the
tables, a temporary wal2json slot (read with the slot reader's session settings: TimeZone=UTC,
IntervalStyle, ...), then runs one scripted workload per scenario and writes the
lines the plugin produced for it to ``OUT/<scenario>.jsonl``. ``OUT/schemas.json`` records each
table's catalog description (attnum, format_type, key) so that tests can build ``TableSchema``
values that match the captured output. The slot, the tables and the scratch database are dropped
at the end, also on failure.

``--scenarios types`` captures only the ``types`` scenario: one table with a column of every
supported type (``TYPES_SETUP``), rows with edge values written under a non-UTC session time zone,
an update and a delete. It writes ``OUT/types.jsonl`` and ``OUT/types_schema.json`` (the table as
``cdc.source.catalog.load_catalog`` describes it: domains resolved) and leaves the other fixtures
alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cdc.source.catalog import load_catalog  # noqa: E402
from cdc.source.slot import SESSION_OPTIONS  # noqa: E402  (the reader's TimeZone, DateStyle, ...)
from cdc.source.wal2json import WAL2JSON_OPTIONS  # noqa: E402

SLOT = "cdc_fixture_capture"
ODD = '"Odd ""T"""'  # public."Odd "T"": mixed case, a space and a double quote

SETUP = [
    "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')",
    """CREATE TABLE cdc_types (
        id integer PRIMARY KEY,
        dropped_early integer,
        c_smallint smallint, c_integer integer, c_bigint bigint,
        c_real real, c_double double precision, c_bool boolean,
        c_text text, c_varchar varchar(20), c_char char(5),
        c_date date, c_ts timestamp, c_ts3 timestamp(3), c_tstz timestamptz,
        c_json json, c_jsonb jsonb, c_uuid uuid, c_bytea bytea,
        c_num numeric(10,2), c_num_big numeric(38,10), c_num_free numeric,
        c_interval interval, c_int_arr integer[], c_text_arr text[], c_inet inet, c_enum mood
    )""",
    "ALTER TABLE cdc_types DROP COLUMN dropped_early",
    "CREATE TABLE cdc_t1 (id integer PRIMARY KEY, amt numeric(10,2), note text)",
    "CREATE TABLE cdc_toast (id integer PRIMARY KEY, counter integer, big text)",
    "ALTER TABLE cdc_toast ALTER COLUMN big SET STORAGE EXTERNAL",
    "CREATE TABLE cdc_composite (region text, num bigint, payload text, PRIMARY KEY (region, num))",
    "CREATE TABLE cdc_full (id integer PRIMARY KEY, v text)",
    "ALTER TABLE cdc_full REPLICA IDENTITY FULL",
    f'CREATE TABLE {ODD} ("Key Col" integer PRIMARY KEY, "Value" text, "select" integer)',
]
TYPES_SETUP = [
    "CREATE TYPE cdc_mood AS ENUM ('sad', 'ok', 'happy')",
    "CREATE DOMAIN cdc_amount AS numeric(12,2) CHECK (VALUE >= 0)",
    "CREATE DOMAIN cdc_count AS bigint",
    "CREATE DOMAIN cdc_flag AS boolean",
    "CREATE DOMAIN cdc_ratio AS double precision",
    """CREATE TABLE cdc_all_types (
        id integer PRIMARY KEY,
        c_int2 smallint, c_int4 integer, c_int8 bigint,
        c_num_10_2 numeric(10,2), c_num_38 numeric(38,10), c_num_40 numeric(40,5), c_num numeric,
        c_real real, c_double double precision, c_money money,
        c_text text, c_varchar varchar(10), c_char char(5), c_bool boolean,
        c_date date, c_time time, c_time3 time(3), c_timetz timetz,
        c_ts timestamp, c_ts3 timestamp(3), c_tstz timestamptz, c_tstz3 timestamp(3) with time zone,
        c_interval interval, c_json json, c_jsonb jsonb, c_uuid uuid, c_bytea bytea,
        c_inet inet, c_cidr cidr, c_macaddr macaddr, c_macaddr8 macaddr8,
        c_bit bit(4), c_varbit varbit(8), c_xml xml, c_enum cdc_mood,
        c_amount cdc_amount, c_count cdc_count, c_flag cdc_flag, c_ratio cdc_ratio,
        c_int_arr integer[], c_int_arr2 integer[], c_text_arr text[], c_num_arr numeric[],
        c_float_arr double precision[], c_real_arr real[], c_bool_arr boolean[], c_jsonb_arr jsonb[],
        c_date_arr date[], c_tstz_arr timestamptz[], c_enum_arr cdc_mood[], c_bytea_arr bytea[],
        c_money_arr money[], c_box_arr box[],
        c_gen numeric GENERATED ALWAYS AS (c_num_10_2 * 2) STORED,
        c_real_nn real NOT NULL DEFAULT 0, c_num_nn numeric NOT NULL DEFAULT 0
    )""",
]
TYPES_ROWS = [
    r"""INSERT INTO cdc_all_types VALUES (1,
        1, 2, 3, 12345678.91, '1234567890123456789012345678.0123456789',
        '12345678901234567890123456789012345.12345', '1.50', 0.1, 3.141592653589793, '-1234.56',
        E'h\u00e9llo "quoted"\nline \\ backslash', 'varchar', 'ab', true,
        '2024-02-29', '13:14:15.123456', '13:14:15.123', '13:14:15+05:30',
        '2024-02-29 13:14:15.123456', '2024-02-29 13:14:15.123', '2024-02-29 13:14:15.123456',
        '2024-02-29 13:14:15.5+02', '1 year 2 mons -3 days 04:05:06.789',
        '{"b": [1, 2.50, null], "a": "\u00fc", "a": 2}', '{"b": [1, 2.50, null], "z": {"n": {}}}',
        'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '\xdeadbeef00',
        '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', '08:00:2b:01:02:03:04:05',
        B'1010', B'101', '<a>x &amp; y</a>', 'happy', 12.5, 9223372036854775807, true, 'NaN',
        '{1,NULL,3}', '{{1,2},{3,NULL}}', '{"a\"b","NULL",NULL,"","\\","x y",ü}',
        '{1.50,NaN,Infinity,-Infinity,0.0000001}', '{1.5,NaN,Infinity,-Infinity,-0,1e300}',
        '{0.1,3.4e38}', '{t,f,NULL}', ARRAY['{"a": 1}'::jsonb, '[1, "x"]', 'null'],
        '{2024-02-29,infinity,0044-03-15 BC}', ARRAY['2024-07-01 12:00:00-04'::timestamptz],
        '{sad,happy}', ARRAY['\x00ff'::bytea], '{1.00,-2.50}', '{(1,2),(3,4);(5,6),(7,8)}',
        DEFAULT, 'Infinity', '-Infinity')""",
    "INSERT INTO cdc_all_types (id) VALUES (2)",
    r"""INSERT INTO cdc_all_types (id, c_int2, c_int4, c_int8, c_num_10_2, c_num, c_real, c_double,
        c_money, c_text, c_varchar, c_char, c_date, c_time, c_timetz, c_ts, c_tstz, c_interval, c_json,
        c_jsonb, c_bytea, c_int_arr, c_int_arr2, c_text_arr, c_ratio, c_real_nn, c_num_nn)
    VALUES (3, -32768, -2147483648, -9223372036854775808, -99999999.99, '-Infinity', 'NaN', '-Infinity',
        '-92233720368547758.08', '', '', '', '-infinity', '24:00:00', '00:00:00-15:59', 'infinity',
        '-infinity', 'PT0S', 'null', '[]', '\x', '{}', '[0:1][-1:0]={{1,2},{3,4}}', '{}', 'Infinity',
        'NaN', 'NaN')""",
    """INSERT INTO cdc_all_types (id, c_num_40, c_num, c_real, c_double, c_money, c_date, c_ts, c_tstz,
        c_interval, c_int_arr)
    VALUES (4, '-99999999999999999999999999999999999.99999',
        '123456789012345678901234567890123456789012345678901234567890.000000000000000000001',
        '1.17549435e-38', '4.9e-324', '92233720368547758.07', '5874897-12-31', '0044-03-15 12:00:00.5 BC',
        '10000-01-01 00:00:00+00', '-1 mons +3 days -00:00:00.000001', '[0:2]={1,2,3}')""",
]
TYPES_CHANGES = [
    "UPDATE cdc_all_types SET c_double = 'NaN', c_num = '0.000', c_date = 'infinity', c_int_arr = '{}' "
    "WHERE id = 1",
    "UPDATE cdc_all_types SET c_real = 2.5 WHERE id = 3",
    "DELETE FROM cdc_all_types WHERE id = 2",
]
TYPES_TABLES = ["cdc_all_types"]
TYPES_TEARDOWN = [
    "DROP TABLE IF EXISTS cdc_all_types",
    "DROP TYPE IF EXISTS cdc_mood",
    "DROP DOMAIN IF EXISTS cdc_amount, cdc_count, cdc_flag, cdc_ratio",
]

TABLES = ["cdc_types", "cdc_t1", "cdc_toast", "cdc_composite", "cdc_full", ODD]
TEARDOWN = [f"DROP TABLE IF EXISTS {t}" for t in TABLES] + ["DROP TYPE IF EXISTS mood"]

TYPES_ROW_1 = """INSERT INTO cdc_types VALUES (
    1, 32767, -2147483648, 9223372036854775807, 1.5, 3.141592653589793, true,
    E'h\u00e9llo "quoted"\\nline \\\\ backslash', 'varchar', 'ab', '2024-02-29',
    '2024-02-29 13:14:15.123456', '2024-02-29 13:14:15.123', '2024-02-29 13:14:15.123456+02',
    '{"a": [1, 2.50, null], "b": "x"}', '{"a": [1, 2.50, null], "b": "x"}',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\xdeadbeef00',
    12345678.91, '1234567890123456789012345678.0123456789', 0.1,
    '1 day 02:03:04', '{1,2,NULL}', '{"a b",c}', '192.168.0.1/24', 'happy')"""
TYPES_ROW_2 = "INSERT INTO cdc_types (id) VALUES (2)"
TYPES_ROW_3 = """INSERT INTO cdc_types VALUES (
    3, -32768, 0, -9223372036854775808, 'NaN', 'Infinity', false,
    '', '', '', '0001-01-01', '1970-01-01 00:00:00', '1999-12-31 23:59:59.999',
    '1970-01-01 00:00:00+00', '[]', '{}', '00000000-0000-0000-0000-000000000000', '\\x',
    -99999999.99, '-0.0000000001', 'NaN', '-1 mon', '{}', '{}', '::1', 'sad')"""
TYPES_ROW_4 = """INSERT INTO cdc_types (id, c_real, c_double, c_num_free, c_num, c_ts, c_tstz)
    VALUES (4, 3.4e38, 1e300, 1.5e-7, 0.05, '2000-01-01 00:00:00.000001', '2262-04-11 23:47:16.854775+00')"""


def _exec(cur: Any, *statements: str) -> None:
    for statement in statements:
        cur.execute(statement)


def _scenarios() -> dict[str, Callable[[Any], None]]:
    """Each scenario runs its transactions through a cursor whose connection autocommits off."""

    def tx(*statements: str) -> Callable[[Any], None]:
        def run(cur: Any) -> None:
            _exec(cur, *statements)
            cur.connection.commit()

        return run

    def seq(*steps: Callable[[Any], None]) -> Callable[[Any], None]:
        def run(cur: Any) -> None:
            for step in steps:
                step(cur)

        return run

    big = "SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 100)"
    return {
        # written under a non-UTC session time zone: the reader's session (UTC) decides the text
        "types": seq(
            tx("SET TimeZone = 'America/New_York'", *TYPES_ROWS, "RESET TimeZone"),
            tx(*TYPES_CHANGES),
        ),
        "insert_types": seq(tx(TYPES_ROW_1), tx(TYPES_ROW_2), tx(TYPES_ROW_3), tx(TYPES_ROW_4)),
        "insert_unrepresentable": seq(
            tx("INSERT INTO cdc_types (id, c_date) VALUES (10, 'infinity')"),
            tx("INSERT INTO cdc_types (id, c_date) VALUES (11, '0044-03-15 BC')"),
            tx("INSERT INTO cdc_types (id, c_ts) VALUES (12, '-infinity')"),
            tx("INSERT INTO cdc_types (id, c_tstz) VALUES (13, 'infinity')"),
            tx("INSERT INTO cdc_types (id, c_num) VALUES (14, 'NaN')"),
        ),
        "update": seq(
            tx("INSERT INTO cdc_t1 VALUES (1, 10.00, 'first')"),
            tx("UPDATE cdc_t1 SET amt = 99.99, note = NULL WHERE id = 1"),
        ),
        "update_toast": seq(
            tx(f"INSERT INTO cdc_toast VALUES (1, 0, ({big}))"),
            tx("UPDATE cdc_toast SET counter = counter + 1 WHERE id = 1"),
            tx(f"UPDATE cdc_toast SET big = ({big}) || 'x', counter = 2 WHERE id = 1"),
        ),
        "key_change": seq(
            tx("UPDATE cdc_t1 SET id = 2, amt = 5.5 WHERE id = 1"),
            tx("INSERT INTO cdc_composite VALUES ('eu', 1, 'p')"),
            tx("UPDATE cdc_composite SET num = 2 WHERE region = 'eu' AND num = 1"),
        ),
        "delete": seq(
            tx("DELETE FROM cdc_t1 WHERE id = 2"),
            tx("DELETE FROM cdc_composite"),
        ),
        "truncate": seq(
            tx("INSERT INTO cdc_t1 VALUES (7, 1, 'gone soon')"),
            tx("TRUNCATE cdc_t1"),
            tx("TRUNCATE cdc_t1, cdc_composite"),
        ),
        "odd_names": seq(
            tx(f"""INSERT INTO {ODD} VALUES (1, 'v1', 7)"""),
            tx(f"""UPDATE {ODD} SET "Value" = 'v2' WHERE "Key Col" = 1"""),
            tx(f"""DELETE FROM {ODD} WHERE "Key Col" = 1"""),
        ),
        "multi_statement": tx(
            "INSERT INTO cdc_t1 VALUES (10, 1.10, 'a'), (11, 2.20, 'b')",
            "UPDATE cdc_t1 SET note = 'b2' WHERE id = 11",
            "DELETE FROM cdc_t1 WHERE id = 10",
            "INSERT INTO cdc_composite VALUES ('us', 5, 'q')",
        ),
        "replica_full": seq(
            tx("INSERT INTO cdc_full VALUES (1, 'a')"),
            tx("UPDATE cdc_full SET v = 'b' WHERE id = 1"),
            tx("DELETE FROM cdc_full WHERE id = 1"),
        ),
        "message": seq(
            tx(
                "SELECT pg_logical_emit_message(true, 'cdc', 'in a transaction')",
                "INSERT INTO cdc_t1 VALUES (20, 0, 'with message')",
            ),
            tx("SELECT pg_logical_emit_message(false, 'cdc', 'not transactional')"),
        ),
    }


def _catalog(cur: Any) -> list[dict[str, Any]]:
    cur.execute(
        """
        SELECT n.nspname, c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
               a.atttypid::int, NOT a.attnotnull, a.attstorage <> 'p'
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE c.relkind = 'r' AND n.nspname = 'public'
        ORDER BY n.nspname, c.relname, a.attnum
        """
    )
    tables: dict[tuple[str, str], dict[str, Any]] = {}
    for schema, table, attnum, name, type_name, oid, nullable, toastable in cur.fetchall():
        entry = tables.setdefault(
            (schema, table), {"schema": schema, "table": table, "columns": [], "key": []}
        )
        entry["columns"].append(
            {
                "name": name,
                "attnum": attnum,
                "type_name": type_name,
                "type_oid": oid,
                "nullable": nullable,
                "toastable": toastable,
            }
        )
    # key columns in the primary key's order
    for entry in tables.values():
        cur.execute(
            """SELECT a.attname FROM pg_index i
               JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
               WHERE i.indrelid = format('%%I.%%I', %s, %s)::regclass AND i.indisprimary
               ORDER BY k.ord""",
            (entry["schema"], entry["table"]),
        )
        entry["key"] = [row[0] for row in cur.fetchall()]
    return list(tables.values())


def _described(conn: Any, tables: list[str]) -> list[dict[str, Any]]:
    """Tables as the pipeline's catalog describes them (domains resolved to their base type)."""
    catalog = load_catalog(conn, tuple(f"public.{t}" for t in tables))
    conn.commit()
    return [
        {
            "schema": t.schema,
            "table": t.name,
            "columns": [
                {
                    "name": c.name,
                    "attnum": c.attnum,
                    "type_name": c.type_name,
                    "type_oid": c.type_oid,
                    "nullable": c.nullable,
                    "toastable": c.toastable,
                }
                for c in t.columns
            ],
            "key": list(t.key),
        }
        for t in catalog.tables.values()
    ]


def capture(dsn: str, out: Path, scratch_db: str, only: tuple[str, ...] = ()) -> None:
    admin = psycopg2.connect(dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{scratch_db}"')
    try:
        db_dsn = psycopg2.extensions.make_dsn(dsn, dbname=scratch_db, options=SESSION_OPTIONS)
        _capture_in(db_dsn, out, only)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{scratch_db}"')
        admin.close()


def _capture_in(dsn: str, out: Path, only: tuple[str, ...] = ()) -> None:
    work = psycopg2.connect(dsn)
    reader = psycopg2.connect(dsn)
    reader.autocommit = True
    options: list[str] = [item for pair in WAL2JSON_OPTIONS.items() for item in pair]
    placeholders = ", ".join(["%s"] * len(options))
    try:
        with work.cursor() as cur:
            _exec(cur, *SETUP, *TYPES_SETUP)
            work.commit()
            schemas = [t for t in _catalog(cur) if t["table"] not in TYPES_TABLES]
            work.commit()
            types_schema = _described(work, TYPES_TABLES)
        with reader.cursor() as rcur:
            rcur.execute(
                "SELECT pg_create_logical_replication_slot(%s, 'wal2json', temporary => true)", (SLOT,)
            )
            out.mkdir(parents=True, exist_ok=True)
            if not only:
                (out / "schemas.json").write_text(json.dumps(schemas, indent=2) + "\n")
            if not only or "types" in only:
                (out / "types_schema.json").write_text(json.dumps(types_schema, indent=2) + "\n")
            for scenario, run in _scenarios().items():
                if only and scenario not in only:
                    continue
                with work.cursor() as cur:
                    run(cur)
                rcur.execute(
                    f"SELECT data FROM pg_logical_slot_get_changes(%s, NULL, NULL, {placeholders})",
                    (SLOT, *options),
                )
                lines = [row[0] for row in rcur.fetchall()]
                (out / f"{scenario}.jsonl").write_text("".join(line + "\n" for line in lines))
                print(f"{scenario}: {len(lines)} lines", file=sys.stderr)
            rcur.execute("SELECT pg_drop_replication_slot(%s)", (SLOT,))
    finally:
        work.rollback()
        with work.cursor() as cur:
            _exec(cur, *TEARDOWN, *TYPES_TEARDOWN)
        work.commit()
        work.close()
        reader.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--dsn", required=True, help="libpq DSN of a server with wal2json, wal_level=logical")
    parser.add_argument("--out", required=True, type=Path, help="fixture directory to (over)write")
    parser.add_argument(
        "--scratch-db",
        default=f"cdc_wal2json_capture_{os.getpid()}",
        help="database created for the capture and dropped afterwards",
    )
    parser.add_argument(
        "--scenarios",
        default="",
        help="comma-separated scenarios to capture (default: all; schemas.json only with all)",
    )
    args = parser.parse_args(argv)
    only = tuple(s for s in args.scenarios.split(",") if s)
    unknown = set(only) - set(_scenarios())
    if unknown:
        parser.error(f"unknown scenarios: {sorted(unknown)}")
    capture(args.dsn, args.out, args.scratch_db, only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
