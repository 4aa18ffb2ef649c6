"""copy_table against the real PostgreSQL: COPY's text form (a vertical tab for NULL, backslash
escapes) read in small blocks by Arrow's streaming reader, typed columns read as their Arrow type,
parts written a row group at a time. Every staged value must equal the source's value."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2.extensions
import pyarrow.parquet as pq
import pytest
from helpers import Pipeline

from cdc.model import TableSchema
from cdc.snapshot import copy_table, create_temporary_snapshot, open_copy_connection
from cdc.snapshot.export import COPY_SESSION_OPTIONS
from cdc.source.catalog import load_catalog

PLAIN_ROWS = 3000
LONG = "é" * 9000 + "\\"  # longer than a block, with a backslash at its very end

DDL = """
CREATE TABLE {s}.texts (
    id integer PRIMARY KEY, t text, c char(5), n smallint, f real, d double precision, b boolean,
    big bigint, o oid, arr text[], raw bytea);
INSERT INTO {s}.texts
SELECT g, 'plain ' || g, 'c' || g %% 10, g %% 300 - 150, g / 8.0, g / 3.0, g %% 2 = 0, g::bigint * 1000003,
       g, ARRAY['a' || g, 'b'], decode(lpad(to_hex(g), 8, '0'), 'hex')
FROM generate_series(1, {plain}) g;
INSERT INTO {s}.texts VALUES
    (100001, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (100002, '', '', -32768, 'NaN', 'NaN', true, -9223372036854775808, 0, '{{}}', ''),
    (100003, E'\\x0b', E'\\x0b', 32767, 'Infinity', '-Infinity', false, 9223372036854775807, 4294967295,
        '{{"x y",NULL,"NULL",""}}', '\\x00ff'),
    (100004, E'\\\\N', 'ab', 0, '-0', '-0', NULL, 0, NULL, '{{"a\\\\b","c,d"}}', NULL),
    (100005, E'line\\nbreak\\r\\ttab \\b\\f\\\\', E'\\t', 1, 3.4028235e38, 4.9e-324, true, 1, 1,
        '{{"{{nested}}"}}', '\\x5c'),
    (100006, %(long)s, 'é', 2, 1.1754944e-38, 1e300, false, 2, 2, '{{NULL}}', '\\x0b');
CREATE TABLE {s}.keys (k text PRIMARY KEY);
INSERT INTO {s}.keys VALUES (''), (E'\\x0b'), (E'\\\\N'), ('plain');
"""


@pytest.fixture
def pipeline(stack: Any) -> Iterator[Pipeline]:
    p = Pipeline(stack)
    with p.conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {p.schema}")
        cur.execute(DDL.format(s=p.schema, plain=PLAIN_ROWS), {"long": LONG})
    p.conn.commit()
    yield p
    p.close()


def _source(p: Pipeline, stack: Any, table: str) -> dict[Any, tuple[Any, ...]]:
    conn = psycopg2.connect(stack.env["postgres_admin_dsn"], options=COPY_SESSION_OPTIONS)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT * FROM {p.schema}.{table}")
            return {row[0]: row for row in cur.fetchall()}
    finally:
        conn.close()


def _copy(p: Pipeline, stack: Any, table: TableSchema, spool: Path, **options: Any) -> list[dict[str, Any]]:
    params = psycopg2.extensions.parse_dsn(stack.env["postgres_dsn"])
    with create_temporary_snapshot(params) as snap:
        conn = open_copy_connection(params)
        try:
            copied = copy_table(conn, table, snap.point, spool, **options)
        finally:
            conn.close()
    rows = []
    for f in copied.staged.files:
        rows += pq.read_table(spool / table.stage_dir / f.name).to_pylist()
    assert copied.rows == len(rows)
    return rows


def _same(staged: Any, source: Any) -> bool:
    if isinstance(source, float) and math.isnan(source):
        return isinstance(staged, float) and math.isnan(staged)
    if isinstance(source, float):
        return staged == source and math.copysign(1, staged) == math.copysign(1, source)
    if isinstance(source, memoryview):
        return staged == source.tobytes()
    if isinstance(source, list):
        return json.loads(staged) == source
    return type(staged) is type(source) and staged == source


def test_every_value_of_tricky_texts_and_typed_columns_lands_exactly(
    pipeline: Pipeline, stack: Any, tmp_path: Path
) -> None:
    table = load_catalog(pipeline.admin, (f"{pipeline.schema}.texts",)).tables[(pipeline.schema, "texts")]
    rows = _copy(pipeline, stack, table, tmp_path, chunk_bytes=4096, part_max_rows=1000)
    source = _source(pipeline, stack, "texts")
    assert sorted(r["C1"] for r in rows) == sorted(source) and len(rows) == PLAIN_ROWS + 6
    assert [r["_CDC_SEQ"] for r in rows] == list(range(len(rows)))
    for r in rows:
        want = source[r["C1"]]
        for i, col in enumerate(table.columns):
            got = r[col.stage_name]
            assert (got is None and want[i] is None) or _same(got, want[i]), (r["C1"], col.name, got, want[i])
    tricky = {r["C1"]: r for r in rows if r["C1"] > 100000}
    assert tricky[100001]["C2"] is None and tricky[100002]["C2"] == "" and tricky[100003]["C2"] == "\x0b"
    assert tricky[100004]["C2"] == "\\N" and tricky[100006]["C2"] == LONG
    assert tricky[100005]["C2"] == "line\nbreak\r\ttab \b\f\\" and tricky[100005]["C3"] == "\t    "
    assert tricky[100003]["C10"] == '["x y",null,"NULL",""]'


def test_a_key_only_table_keeps_the_empty_string_the_vertical_tab_and_backslash_n(
    pipeline: Pipeline, stack: Any, tmp_path: Path
) -> None:
    table = load_catalog(pipeline.admin, (f"{pipeline.schema}.keys",)).tables[(pipeline.schema, "keys")]
    rows = _copy(pipeline, stack, table, tmp_path, chunk_bytes=2)
    assert sorted(r["C1"] for r in rows) == sorted(["", "\x0b", "\\N", "plain"])
