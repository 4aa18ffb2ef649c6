"""Every supported PostgreSQL type, replicated by the engine, lands in Snowflake value by value.

One table holds a column of every type (NOT NULL variants where NULL means something else on the
wire), rows with edge values are written under a non-UTC session time zone, some columns are
updated, and the engine runs windows until caught up. The target must then equal the source on
the type-aware canonical text of ``cdc.compare`` *and* hold the hard-coded values below, so the
test cannot pass by comparing two wrong things.

The engine is given the NaN/Infinity resolver (``cdc.source.lookup.SourceLookup``) by wrapping
``WindowWriter`` where the read step builds it (``resolver=`` is only added when the engine does not
pass one itself).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg2
import psycopg2.extras
import pytest
from helpers import Pipeline
from psycopg2 import sql

from cdc.app import build_engine
from cdc.batch import WindowWriter
from cdc.compare import canonical_text, compare_rows, source_select_sql
from cdc.model import Column, TableSchema
from cdc.source.lookup import SourceLookup
from cdc.source.slot import SESSION_OPTIONS

TABLE = "all_types"

DDL = """
CREATE TYPE {s}.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN {s}.amount AS numeric(12,2) CHECK (VALUE >= 0);
CREATE DOMAIN {s}.ratio AS double precision;
CREATE TABLE {s}.all_types (
    id integer PRIMARY KEY,
    c_int2 smallint, c_int4 integer, c_int8 bigint,
    c_num_10_2 numeric(10,2), c_num_38 numeric(38,10), c_num_40 numeric(40,5), c_num numeric,
    c_real real, c_double double precision, c_money money,
    c_text text, c_varchar varchar(10), c_char char(5), c_bool boolean,
    c_date date, c_time time, c_timetz timetz, c_ts timestamp, c_tstz timestamptz,
    c_tstz3 timestamp(3) with time zone, c_interval interval,
    c_json json, c_jsonb jsonb, c_uuid uuid, c_bytea bytea,
    c_inet inet, c_cidr cidr, c_macaddr macaddr,
    c_bit bit(4), c_varbit bit varying(8), c_xml xml, c_enum {s}.mood, c_amount {s}.amount, c_ratio {s}.ratio,
    c_int_arr integer[], c_int_arr2 integer[], c_text_arr text[], c_num_arr numeric[],
    c_float_arr double precision[], c_bool_arr boolean[], c_jsonb_arr jsonb[], c_date_arr date[],
    c_gen numeric GENERATED ALWAYS AS (c_num_10_2 * 2) STORED,
    c_real_nn real NOT NULL DEFAULT 0, c_double_nn double precision NOT NULL DEFAULT 0,
    c_num_nn numeric NOT NULL DEFAULT 0, c_text_nn text NOT NULL DEFAULT ''
)
"""

ROWS = [
    r"""INSERT INTO {s}.all_types VALUES (1,
        1, 2, 3, 12345678.91, '1234567890123456789012345678.0123456789',
        '12345678901234567890123456789012345.12345', '1.50', 0.1, 3.141592653589793, '-1234.56',
        E'h\u00e9llo "quoted"\nline \\ backslash \U0001F600', 'varchar', 'ab', true,
        '2024-02-29', '13:14:15.123456', '13:14:15+05:30', '2024-02-29 13:14:15.123456',
        '2024-02-29 13:14:15.123456', '2024-02-29 13:14:15.5+02', '1 year 2 mons -3 days 04:05:06.789',
        '{{"b": [1, 2.50, null], "a": "\u00fc", "a": 2}}', '{{"b": [1, 2.50, null], "z": {{"ü": {{}}}}}}',
        'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '\xdeadbeef00',
        '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', B'1010', B'101', '<a>x &amp; y</a>', 'happy',
        12.5, 'NaN',
        '{{1,NULL,3}}', '{{{{1,2}},{{3,NULL}}}}', '{{"a\"b","NULL",NULL,"","\\","x y",ü}}',
        '{{1.50,NaN,Infinity,-Infinity,0.0000001}}', '{{1.5,NaN,Infinity,-Infinity,-0,1e300}}',
        '{{t,f,NULL}}', ARRAY['{{"a": 1}}'::jsonb, '[1, "x"]', 'null'],
        '{{2024-02-29,infinity,0044-03-15 BC}}',
        DEFAULT, 'NaN', 'Infinity', 'NaN', 'x')""",
    "INSERT INTO {s}.all_types (id) VALUES (2)",
    r"""INSERT INTO {s}.all_types (id, c_int2, c_int4, c_int8, c_num_10_2, c_num_38, c_num, c_real,
        c_double, c_money, c_text, c_varchar, c_char, c_date, c_time, c_timetz, c_ts, c_tstz, c_interval,
        c_json, c_jsonb, c_bytea, c_int_arr, c_int_arr2, c_text_arr, c_ratio, c_real_nn, c_double_nn,
        c_num_nn)
    VALUES (3, -32768, -2147483648, -9223372036854775808, -99999999.99,
        '-9999999999999999999999999999.9999999999', '-Infinity', 'NaN', '-Infinity',
        '-92233720368547758.08', '', '', '', '-infinity', '24:00:00', '00:00:00-15:59', 'infinity',
        '-infinity', 'PT0S', 'null', '[]', '\x', '{{}}', '[0:1][-1:0]={{{{1,2}},{{3,4}}}}', '{{}}',
        'Infinity', '-Infinity', 'NaN', 'Infinity')""",
    r"""INSERT INTO {s}.all_types (id, c_int2, c_int4, c_int8, c_num_40, c_num, c_real, c_double,
        c_money, c_date, c_ts, c_tstz, c_interval, c_int_arr)
    VALUES (4, 32767, 2147483647, 9223372036854775807, '-99999999999999999999999999999999999.99999',
        '123456789012345678901234567890123456789012345678901234567890.000000000000000000001',
        '1.17549435e-38', '4.9e-324', '92233720368547758.07', '5874897-12-31', '0044-03-15 12:00:00.5 BC',
        '10000-01-01 00:00:00+00', '-1 mons +3 days -00:00:00.000001', '[0:2]={{1,2,3}}')""",
    # NaN in a row deleted before the window reads it: the lookup finds nothing, the delete follows
    "INSERT INTO {s}.all_types (id, c_double) VALUES (5, 'NaN')",
    "DELETE FROM {s}.all_types WHERE id = 5",
]

UPDATES = [
    "UPDATE {s}.all_types SET c_double = 'NaN', c_num = '0.000', c_date = 'infinity', c_int_arr = '{{}}', "
    "c_text = NULL WHERE id = 1",
    "UPDATE {s}.all_types SET c_real = 2.5, c_num = NULL, c_ratio = NULL WHERE id = 3",
    "UPDATE {s}.all_types SET c_double = 'Infinity', c_real = '-Infinity' WHERE id = 2",
]


@pytest.fixture
def types_pipeline(stack: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    p = Pipeline(stack)
    p.settings = p.settings.replace(source_tables=(f"{p.schema}.{TABLE}",))
    p.engine.close()
    lookup_conn = psycopg2.connect(stack.env["postgres_dsn"], options=SESSION_OPTIONS)
    lookup_conn.autocommit = True

    def writer(*args: Any, **kwargs: Any) -> WindowWriter:
        kwargs.setdefault("resolver", SourceLookup(lookup_conn))
        return WindowWriter(*args, **kwargs)

    # wherever the engine's read step builds its writer (cdc.engine, or cdc.reader once split out)
    for module in list(sys.modules.values()):
        name = getattr(module, "__name__", "")
        if (
            name.startswith("cdc.")
            and name != "cdc.batch"
            and getattr(module, "WindowWriter", None) is WindowWriter
        ):
            monkeypatch.setattr(module, "WindowWriter", writer)
    p.engine = build_engine(p.settings)
    with p.conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {p.schema}")
        cur.execute(DDL.format(s=p.schema))
    p.conn.commit()
    yield p
    lookup_conn.close()
    p.close()


def run_until_caught_up(p: Pipeline) -> list[dict[str, Any]]:
    results = []
    for _ in range(20):
        result = p.engine.run_window().as_dict()
        results.append(result)
        assert result["status"] != "failed", result["error"]
        if result["caught_up"] and result["status"] in ("applied", "empty"):
            return results
    pytest.fail(f"not caught up after 20 windows: {results[-1]}")


def execute(p: Pipeline, statements: list[str], time_zone: str = "America/New_York") -> None:
    with p.conn.cursor() as cur:
        cur.execute("SET TimeZone = %s", (time_zone,))  # the writer's zone must not matter
        for statement in statements:
            cur.execute(statement.format(s=p.schema))
        cur.execute("RESET TimeZone")
    p.conn.commit()


def table_schema(p: Pipeline) -> TableSchema:
    return p.engine.source.catalog().tables[(p.schema, TABLE)]


def source_rows(dsn: str, table: TableSchema) -> list[dict[str, Any]]:
    """Every column as PostgreSQL text, read with the reader's session settings."""
    conn = psycopg2.connect(dsn, options=SESSION_OPTIONS)
    try:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute("SET lc_monetary = 'C'")
            cur.execute(source_select_sql(table))
            return [dict(r) for r in cur.fetchall()]
    finally:
        conn.close()


def target_rows(p: Pipeline, table: TableSchema) -> dict[int, dict[str, Any]]:
    rows = p.engine.sink.fetch_table(table)  # type: ignore[attr-defined]
    return {r["id"]: r for r in rows}


def test_every_type_round_trips_exactly(stack: Any, types_pipeline: Pipeline) -> None:
    p = types_pipeline
    assert p.engine.run_window().status == "snapshot"
    execute(p, ROWS)
    run_until_caught_up(p)
    execute(p, UPDATES)
    run_until_caught_up(p)

    table = table_schema(p)
    source = source_rows(stack.env["postgres_dsn"], table)
    target = target_rows(p, table)
    diff = compare_rows(table.qualified, table.key, source, list(target.values()), columns=table.columns)
    assert diff.equal, (diff.missing, diff.extra, diff.different)
    assert sorted(target) == [1, 2, 3, 4]

    r1, r2, r3, r4 = (target[i] for i in (1, 2, 3, 4))
    # numbers: exact, NUMBER(p,s) for p <= 38, exact text beyond, NaN/Infinity via the lookup
    assert (r1["c_int2"], r1["c_int8"], r3["c_int2"], r3["c_int8"]) == (1, 3, -32768, -9223372036854775808)
    assert (r4["c_int4"], r4["c_int8"]) == (2147483647, 9223372036854775807)
    assert r1["c_num_10_2"] == Decimal("12345678.91")
    assert r1["c_num_38"] == Decimal("1234567890123456789012345678.0123456789")
    assert r3["c_num_38"] == Decimal("-9999999999999999999999999999.9999999999")
    assert r1["c_num_40"] == "12345678901234567890123456789012345.12345"
    assert r4["c_num_40"] == "-99999999999999999999999999999999999.99999"
    assert (r1["c_num"], r3["c_num"], r4["c_num"][:12]) == ("0.000", None, "123456789012")
    assert r4["c_num"].endswith(".000000000000000000001")
    assert r1["c_num_nn"] == "NaN" and r3["c_num_nn"] == "Infinity" and r2["c_num_nn"] == "0"
    assert r1["c_real"] == 0.1 and r4["c_real"] == 1.1754944e-38 and r3["c_real"] == 2.5
    assert math.isnan(r1["c_double"]) and r2["c_double"] == math.inf and r3["c_double"] == -math.inf
    assert r2["c_real"] == -math.inf and r4["c_double"] == 5e-324
    assert math.isnan(r1["c_real_nn"]) and r3["c_real_nn"] == -math.inf and r2["c_real_nn"] == 0.0
    assert r1["c_double_nn"] == math.inf and math.isnan(r3["c_double_nn"])
    assert math.isnan(r1["c_ratio"]) and r3["c_ratio"] is None  # domain over double precision
    assert r1["c_amount"] == Decimal("12.50")  # domain over numeric(12,2)
    assert (r1["c_money"], r3["c_money"], r4["c_money"]) == (
        Decimal("-1234.56"),
        Decimal("-92233720368547758.08"),
        Decimal("92233720368547758.07"),
    )
    assert r1["c_gen"] == "24691357.82"  # stored generated column
    # text: unicode, empty strings, char(n) keeps PostgreSQL's padding
    assert r1["c_text"] is None and r3["c_text"] == "" and r1["c_text_nn"] == "x"
    assert (r1["c_varchar"], r1["c_char"], r3["c_char"]) == ("varchar", "ab   ", "     ")
    assert r1["c_bool"] is True and r2["c_bool"] is None
    # date/time: PostgreSQL's ISO text in UTC, infinity and BC included
    assert (r1["c_date"], r3["c_date"], r4["c_date"]) == ("infinity", "-infinity", "5874897-12-31")
    assert (r1["c_time"], r3["c_time"]) == ("13:14:15.123456", "24:00:00")
    assert (r1["c_timetz"], r3["c_timetz"]) == ("13:14:15+05:30", "00:00:00-15:59")
    assert (r1["c_ts"], r3["c_ts"], r4["c_ts"]) == (
        "2024-02-29 13:14:15.123456",
        "infinity",
        "0044-03-15 12:00:00.5 BC",
    )
    # written as America/New_York local time: stored in UTC
    assert (r1["c_tstz"], r1["c_tstz3"]) == ("2024-02-29 18:14:15.123456+00", "2024-02-29 11:14:15.5+00")
    assert (r3["c_tstz"], r4["c_tstz"]) == ("-infinity", "10000-01-01 00:00:00+00")
    assert (r1["c_interval"], r3["c_interval"], r4["c_interval"]) == (
        "P1Y2M-3DT4H5M6.789S",
        "PT0S",
        "P-1M3DT-0.000001S",
    )
    # json/jsonb -> VARIANT (json's duplicate key: the last one wins), JSON null is not SQL NULL
    assert json.loads(r1["c_json"]) == {"b": [1, 2.5, None], "a": 2}
    assert json.loads(r1["c_jsonb"]) == {"b": [1, 2.5, None], "z": {"ü": {}}}
    assert (json.loads(r3["c_json"]), json.loads(r3["c_jsonb"]), r2["c_json"]) == (None, [], None)
    assert r3["c_json"] is not None
    # bytes, uuid and text-form types
    assert bytes(r1["c_bytea"]) == b"\xde\xad\xbe\xef\x00" and bytes(r3["c_bytea"]) == b""
    assert r1["c_uuid"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    assert (r1["c_inet"], r1["c_cidr"], r1["c_macaddr"]) == (
        "192.168.0.1/24",
        "10.0.0.0/8",
        "08:00:2b:01:02:03",
    )
    assert (r1["c_bit"], r1["c_varbit"], r1["c_xml"], r1["c_enum"]) == (
        "1010",
        "101",
        "<a>x &amp; y</a>",
        "happy",
    )
    # arrays -> VARIANT: element types kept, numerics as exact strings, bounds kept
    assert json.loads(r1["c_int_arr"]) == [] and json.loads(r4["c_int_arr"]) == {
        "lower_bounds": [0],
        "values": [1, 2, 3],
    }
    assert json.loads(r1["c_int_arr2"]) == [[1, 2], [3, None]]
    assert json.loads(r3["c_int_arr2"]) == {"lower_bounds": [0, -1], "values": [[1, 2], [3, 4]]}
    assert json.loads(r1["c_text_arr"]) == ['a"b', "NULL", None, "", "\\", "x y", "ü"]
    assert json.loads(r3["c_text_arr"]) == []
    assert json.loads(r1["c_num_arr"]) == ["1.50", "NaN", "Infinity", "-Infinity", "0.0000001"]
    assert json.loads(r1["c_float_arr"]) == [1.5, "NaN", "Infinity", "-Infinity", -0.0, 1e300]
    assert json.loads(r1["c_bool_arr"]) == [True, False, None]
    assert json.loads(r1["c_jsonb_arr"]) == [{"a": 1}, [1, "x"], None]
    assert json.loads(r1["c_date_arr"]) == ["2024-02-29", "infinity", "0044-03-15 BC"]

    # the comparison is not vacuous: each of these near misses is a mismatch
    for row_id, column, wrong in [
        (1, "c_num", "0"),  # scale lost
        (1, "c_char", "ab"),  # padding lost
        (1, "c_double", None),  # NaN lost to NULL
        (1, "c_real", 0.10000000894069672),  # the next float4 after 0.1
        (3, "c_real_nn", math.inf),
        (1, "c_num_nn", "Infinity"),
        (1, "c_tstz", "2024-02-29 13:14:15.123456+00"),
        (1, "c_date", "9999-12-31"),
        (1, "c_num_arr", '["1.5","NaN","Infinity","-Infinity","0.0000001"]'),
        (1, "c_json", '{"a": "ü", "b": [1, 2.5, null]}'),
        (3, "c_json", None),
        (1, "c_money", Decimal("-1234.50")),
        (1, "c_bytea", b"\xde\xad\xbe\xef"),
    ]:
        changed = {**target[row_id], column: wrong}
        rows = [changed if r["id"] == row_id else r for r in target.values()]
        assert not compare_rows(table.qualified, table.key, source, rows, columns=table.columns).equal, column
    # ... and the same value in another representation is not: real widened from float4, 1.5 vs 1.50
    for row_id, column, same in [
        (1, "c_real", 0.10000000149011612),
        (1, "c_num_10_2", Decimal("12345678.910")),
        (1, "c_json", '{"a":2,"b":[1,2.5,null]}'),
        (1, "c_float_arr", '[1.500000000000000e+00,"NaN","Infinity","-Infinity",-0,1e300]'),
    ]:
        changed = {**target[row_id], column: same}
        rows = [changed if r["id"] == row_id else r for r in target.values()]
        assert compare_rows(table.qualified, table.key, source, rows, columns=table.columns).equal, column


def test_a_nan_in_a_typed_number_column_stops_the_window_until_the_source_row_changes(
    types_pipeline: Pipeline,
) -> None:
    p = types_pipeline
    p.engine.run_window()
    execute(p, ["INSERT INTO {s}.all_types (id, c_num_10_2, c_double) VALUES (7, 'NaN', 'NaN')"])
    failed = p.engine.run_window()
    assert failed.status == "failed" and failed.error is not None
    assert "c_num_10_2" in failed.error["message"] and "NUMBER(10,2)" in failed.error["message"]
    # fixing the source row lets the next run through: the lookup reads the current value
    execute(p, ["UPDATE {s}.all_types SET c_num_10_2 = 1.25 WHERE id = 7"])
    run_until_caught_up(p)
    row = target_rows(p, table_schema(p))[7]
    assert row["c_num_10_2"] == Decimal("1.25") and math.isnan(row["c_double"])


def test_canonical_text_of_psycopg2_values_matches_the_target(types_pipeline: Pipeline) -> None:
    """psycopg2's own Python values compare equal too, for the types it reads without loss."""
    p = types_pipeline
    p.engine.run_window()
    execute(p, [ROWS[0]])
    run_until_caught_up(p)
    table = table_schema(p)
    target = target_rows(p, table)[1]
    # psycopg2 turns an interval's months into days and cannot read BC dates: read those as text
    columns = [c for c in table.columns if c.name not in ("c_interval", "c_date_arr")]
    select = sql.SQL("SELECT {} FROM {}.{} WHERE id = 1").format(
        sql.SQL(", ").join(sql.Identifier(c.name) for c in columns),
        sql.Identifier(p.schema),
        sql.Identifier(TABLE),
    )
    with p.conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(select)
        native = dict(cur.fetchone())
    p.conn.commit()
    assert isinstance(native["c_tstz"], datetime) and isinstance(native["c_int_arr2"], list)
    for col in columns:
        assert canonical_text(col, native[col.name]) == canonical_text(col, target[col.name]), col.name


def test_lookup_reads_current_values_by_key_whatever_the_names_and_key_types(stack: Any) -> None:
    p = Pipeline(stack)
    mood = sql.Identifier(p.schema, 'Mood "m"').as_string(p.conn)
    try:
        odd = TableSchema(
            p.schema,
            'Odd "T"; x',
            (
                Column("Key Num", 1, "numeric(10,2)", 1700, nullable=False),
                Column('k"b', 2, "bytea", 17, nullable=False),
                Column("k ts", 3, "timestamp with time zone", 1184, nullable=False),
                Column("select", 4, "double precision", 701),
                Column("v", 5, "numeric", 1700),
                Column("k e", 6, "enum:" + mood, 0, nullable=False),
            ),
            ("Key Num", 'k"b', "k ts", "k e"),
        )
        with p.conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(p.schema)))
            cur.execute(sql.SQL("CREATE TYPE {} AS ENUM ('a', 'b')").format(sql.SQL(mood)))
            cur.execute(
                sql.SQL(
                    'CREATE TABLE {}.{} ("Key Num" numeric(10,2), "k""b" bytea, "k ts" timestamptz, '
                    '"select" double precision, v numeric, "k e" {}, '
                    'PRIMARY KEY ("Key Num", "k""b", "k ts", "k e"))'
                ).format(sql.Identifier(p.schema), sql.Identifier(odd.name), sql.SQL(mood))
            )
            cur.execute(
                sql.SQL(
                    "INSERT INTO {}.{} VALUES "
                    "(1.50, '\\x00ff', '2024-02-29 13:14:15-05', 'NaN', 'Infinity', 'b'), "
                    "(2, '\\x', 'infinity', '-Infinity', NULL, 'a')"
                ).format(sql.Identifier(p.schema), sql.Identifier(odd.name))
            )
        p.conn.commit()
        conn = psycopg2.connect(stack.env["postgres_dsn"], options=SESSION_OPTIONS)
        conn.autocommit = True
        try:
            # keys as wal2json sends them: numeric text, bytea hex without \x, timestamptz in UTC
            keys = [
                ("1.50", "00ff", "2024-02-29 18:14:15+00", "b"),
                (2, "", "infinity", "a"),
                ("1.50", "00ff", "2024-02-29 18:14:15+00", "a"),
            ]
            found = SourceLookup(conn)(odd, ["select", "v"], keys)
        finally:
            conn.close()
        assert found == {
            keys[0]: {"select": "NaN", "v": "Infinity"},
            keys[1]: {"select": "-Infinity", "v": None},
        }
    finally:
        p.close()
