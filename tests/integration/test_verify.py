"""``cdc verify`` against the real local stack: tables replicated by the pipeline compare equal;
damage done to the target directly (a row deleted, values changed, rows added, a row soft-deleted,
a table never created) is reported with exactly those keys and columns; the command line prints
one JSON object and exits 0, 1 or 2; a table of many fetch batches is streamed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import Pipeline
from psycopg2 import sql as pgsql

from cdc.app import build_engine
from cdc.demo import replicate_until_caught_up
from cdc.verify.merge import Layout
from cdc.verify.read import source_scan_sql
from cdc.verify.run import VerifyReport, verify

BIG_ROWS = 25_000
BATCH = 1_000
ODD_TABLE = 'Odd "Tä ble"; select'
TAGS = ["apple", "Apple", "Äpfel", "ähnlich", "zebra", "Zebra", "a b", "ab", "É", "e\u0301", "😀 emoji"]


class Replicated:
    """A pipeline whose tables (one in an odd schema, one of 25,000 rows) are replicated."""

    def __init__(self, p: Pipeline) -> None:
        self.p = p
        self.odd_schema = f"Vérif Sch;ema {p.name}"  # fakesnow refuses dots and quotes in schemas
        s = p.schema
        self.names = {
            "plain": f"{s}.plain",
            "odd": f"{self.odd_schema}.{ODD_TABLE}",
            "lines": f"{s}.lines",
            "tags": f"{s}.tags",
            "big": f"{s}.big",
        }
        self.later = f"{s}.later"  # configured, created only after the pipeline started

    def all_tables(self) -> list[str]:
        return sorted(self.names.values())

    def run_sql(self, statement: str | pgsql.Composable, args: Any = None) -> None:
        with self.p.conn.cursor() as cur:
            cur.execute(statement, args)
        self.p.conn.commit()

    def snowflake(self, statement: str) -> None:
        self.p.engine.sink._conn.cursor().execute(statement)  # type: ignore[attr-defined]

    def verify(self, **kwargs: Any) -> VerifyReport:
        return verify(self.p.settings, batch_size=BATCH, **kwargs)


@pytest.fixture
def replicated(stack: Any) -> Iterator[Replicated]:
    p = Pipeline(stack)
    r = Replicated(p)
    s = p.schema
    p.settings = p.settings.replace(source_tables=(*r.names.values(), r.later))
    p.engine.close()
    p.engine = build_engine(p.settings)
    odd = pgsql.SQL("{}.{}").format(pgsql.Identifier(r.odd_schema), pgsql.Identifier(ODD_TABLE))
    try:
        r.run_sql(
            f"""
            CREATE SCHEMA {s};
            CREATE TABLE {s}.plain (id int PRIMARY KEY, name text, price numeric(10,2),
                weight double precision, doc jsonb, at timestamptz, raw bytea, flag boolean,
                code char(5), ref uuid, span interval, day date, cost money, nums int[], exact numeric,
                ratio real);
            CREATE TABLE {s}.lines (order_id bigint, line smallint, sku text NOT NULL, qty int,
                PRIMARY KEY (order_id, line));
            CREATE TABLE {s}.tags (tag text COLLATE "und-x-icu" PRIMARY KEY, n int, note varchar(20));
            CREATE TABLE {s}.big (id int PRIMARY KEY, v text);
            """
        )
        r.run_sql(pgsql.SQL("CREATE SCHEMA {}").format(pgsql.Identifier(r.odd_schema)))
        r.run_sql(
            pgsql.SQL(
                'CREATE TABLE {} ("Mixed Case" int PRIMARY KEY, "select" text, "q""uote" numeric(12,3), '
                '"naïve" date)'
            ).format(odd)
        )
        assert p.engine.run_window().status == "snapshot"
        r.run_sql(
            f"""
            INSERT INTO {s}.plain
            SELECT i, 'name ' || i, i * 1.25, i / 3.0,
                   jsonb_build_object('i', i, 'tags', jsonb_build_array(i, 'x')),
                   timestamptz '2024-02-29 12:00:00+02' + i * interval '1 hour',
                   decode(lpad(to_hex(i), 4, '0'), 'hex'), i % 2 = 0,
                   'c' || i, md5(i::text)::uuid, i * interval '1 day 1 second', date '2024-02-28' + i,
                   i * 1.5, ARRAY[i, NULL, -i], 1.0 / i, i / 7.0
            FROM generate_series(1, 12) i;
            INSERT INTO {s}.plain (id, name) VALUES (13, ''), (14, NULL);
            INSERT INTO {s}.lines SELECT o, l, 'SKU-' || o || '-' || l, o * l
            FROM generate_series(1, 6) o, generate_series(1, 3) l;
            INSERT INTO {s}.big SELECT i, md5(i::text) FROM generate_series(1, {BIG_ROWS}) i;
            """
        )
        r.run_sql(
            f"INSERT INTO {s}.tags VALUES " + ", ".join(["(%s, %s, %s)"] * len(TAGS)),
            [v for i, tag in enumerate(TAGS) for v in (tag, i, f"note {i}")],
        )
        r.run_sql(
            pgsql.SQL(
                "INSERT INTO {} VALUES (1, 'a', 1.5, '2024-01-01'), (2, 'b', NULL, NULL), "
                "(3, '', -0.001, '0001-01-01')"
            ).format(odd)
        )
        replicate_until_caught_up(p.engine)
        yield r
    finally:
        p.engine.close()
        with p.admin.cursor() as cur:
            cur.execute(pgsql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pgsql.Identifier(r.odd_schema)))
        p.close()


def by_table(report: VerifyReport) -> dict[str, dict[str, Any]]:
    return {t["table"]: t for t in report.as_dict()["tables"]}


def test_replicated_tables_verify_equal_field_by_field(replicated: Replicated) -> None:
    r = replicated
    report = r.verify()
    data = report.as_dict()
    assert data["pipeline"] == r.p.name
    assert data["equal"] is True, json.dumps(data, indent=1, ensure_ascii=False)
    checkpoint = r.p.store.load()
    assert checkpoint is not None and data["checkpoint_lsn"] == str(checkpoint.lsn)
    assert data["source_wal_lsn"] is not None and data["lag_bytes"] is not None
    assert data["skipped"] == [{"table": r.later, "reason": data["skipped"][0]["reason"]}]
    assert "does not exist" in data["skipped"][0]["reason"]
    tables = by_table(report)
    assert sorted(tables) == r.all_tables()
    rows = {"plain": 14, "odd": 3, "lines": 18, "tags": len(TAGS), "big": BIG_ROWS}
    for short, name in r.names.items():
        assert tables[name] == {
            "table": name,
            "source_rows": rows[short],
            "target_rows": rows[short],
            "equal": True,
            "missing_in_target": [],
            "extra_in_target": [],
            "different": [],
            "missing_count": 0,
            "extra_count": 0,
            "different_count": 0,
            "truncated": False,
            "error": None,
        }


def test_source_reads_text_output_in_native_or_byte_order(replicated: Replicated) -> None:
    r = replicated
    catalog = r.p.engine.source.catalog()
    tags = source_scan_sql(Layout.of(catalog.tables[(r.p.schema, "tags")])).as_string(r.p.conn)
    assert tags == (
        'SELECT CASE WHEN t."tag" IS NULL THEN NULL ELSE format(\'%s\', t."tag") END, '
        'CASE WHEN t."n" IS NULL THEN NULL ELSE format(\'%s\', t."n") END, '
        'CASE WHEN t."note" IS NULL THEN NULL ELSE format(\'%s\', t."note") END '
        f'FROM ONLY "{r.p.schema}"."tags" AS t ORDER BY format(\'%s\', t."tag") COLLATE "C"'
    )
    lines = source_scan_sql(Layout.of(catalog.tables[(r.p.schema, "lines")])).as_string(r.p.conn)
    assert lines.endswith(f'FROM ONLY "{r.p.schema}"."lines" AS t ORDER BY t."order_id", t."line"')
    odd = source_scan_sql(Layout.of(catalog.tables[(r.odd_schema, ODD_TABLE)])).as_string(r.p.conn)
    assert odd.endswith(f'FROM ONLY "{r.odd_schema}"."Odd ""Tä ble""; select" AS t ORDER BY t."Mixed Case"')


def test_a_table_of_many_batches_is_streamed(replicated: Replicated) -> None:
    r = replicated
    report = r.verify(tables=[(r.p.schema, "big")])
    (big,) = report.tables
    assert big.equal and big.source_rows == big.target_rows == BIG_ROWS
    # one fetch per batch of 1,000 rows on each side, plus the empty fetch that ends the stream
    assert big.batches.source == BIG_ROWS // BATCH + 1
    assert big.batches.target == BIG_ROWS // BATCH + 1


def test_damage_to_the_target_is_reported_with_exactly_its_keys_and_columns(replicated: Replicated) -> None:
    r = replicated
    db = r.p.settings.snowflake_database
    s = r.p.schema.upper()
    odd = f'"{db}"."{r.odd_schema}"."Odd ""Tä ble""; select"'
    r.snowflake(f'DELETE FROM "{db}"."{s}"."PLAIN" WHERE "ID" = 3')
    r.snowflake(
        f'UPDATE "{db}"."{s}"."PLAIN" SET "PRICE" = 99.99, "DOC" = PARSE_JSON(\'{{"i": 7}}\') WHERE "ID" = 7'
    )
    r.snowflake(f'UPDATE "{db}"."{s}"."PLAIN" SET "NAME" = NULL WHERE "ID" = 13')  # '' -> NULL
    r.snowflake(f'ALTER TABLE "{db}"."{s}"."PLAIN" ADD COLUMN "_CDC_DELETED" BOOLEAN')
    r.snowflake(f'UPDATE "{db}"."{s}"."PLAIN" SET "_CDC_DELETED" = TRUE WHERE "ID" = 5')
    r.snowflake(f'UPDATE "{db}"."{s}"."PLAIN" SET "_CDC_DELETED" = FALSE WHERE "ID" = 6')
    r.snowflake(f'UPDATE {odd} SET "select" = \'B\' WHERE "Mixed Case" = 2')
    r.snowflake(f'ALTER TABLE {odd} DROP COLUMN "naïve"')
    r.snowflake(
        f'INSERT INTO "{db}"."{s}"."LINES" ("ORDER_ID", "LINE", "SKU", "QTY") VALUES (7, 1, \'X\', 1)'
    )
    r.snowflake(
        f'INSERT INTO "{db}"."{s}"."LINES" ("ORDER_ID", "LINE", "SKU", "QTY") VALUES (2, 9, \'X\', 1)'
    )
    r.snowflake(f'UPDATE "{db}"."{s}"."TAGS" SET "NOTE" = \'changed\' WHERE "TAG" = \'Äpfel\'')
    r.snowflake(f'DELETE FROM "{db}"."{s}"."TAGS" WHERE "TAG" = \'Zebra\'')
    r.snowflake(f'INSERT INTO "{db}"."{s}"."TAGS" ("TAG", "N") VALUES (\'zebra \', 1)')
    r.snowflake(f'UPDATE "{db}"."{s}"."BIG" SET "V" = \'x\' WHERE "ID" IN (1, 12345, {BIG_ROWS})')
    r.run_sql(f"CREATE TABLE {r.later} (id int PRIMARY KEY); INSERT INTO {r.later} VALUES (1), (2)")

    report = r.verify(tables=None, max_mismatches=10)
    assert report.equal is False
    tables = by_table(report)
    plain = tables[r.names["plain"]]
    assert plain["missing_in_target"] == [[3], [5]]  # deleted, and soft-deleted
    assert plain["extra_in_target"] == []
    assert plain["different"] == [
        {"key": [7], "columns": ["price", "doc"]},
        {"key": [13], "columns": ["name"]},
    ]
    assert (plain["source_rows"], plain["target_rows"]) == (14, 12)
    odd_t = tables[r.names["odd"]]
    assert odd_t["different"] == [{"key": [2], "columns": ["select"]}]
    assert odd_t["missing_in_target"] == odd_t["extra_in_target"] == []
    assert odd_t["error"] == "target table lacks column(s) 'naïve': the other columns were compared; " + (
        "the next window that changes the table adds them"
    )
    assert (odd_t["source_rows"], odd_t["target_rows"]) == (3, 3)
    lines = tables[r.names["lines"]]
    assert lines["extra_in_target"] == [[2, 9], [7, 1]]
    assert lines["missing_in_target"] == [] and lines["different"] == []
    assert (lines["source_rows"], lines["target_rows"]) == (18, 20)
    tags = tables[r.names["tags"]]
    assert tags["missing_in_target"] == [["Zebra"]]
    assert tags["extra_in_target"] == [["zebra "]]
    assert tags["different"] == [{"key": ["Äpfel"], "columns": ["note"]}]
    big = tables[r.names["big"]]
    assert big["different"] == [{"key": [k], "columns": ["v"]} for k in (1, 12345, BIG_ROWS)]
    assert big["different_count"] == 3 and big["truncated"] is False
    assert all(tables[n]["error"] is None for n in r.names.values() if n != r.names["odd"])
    later = tables[r.later]
    assert later["equal"] is False and later["source_rows"] == 2 and later["target_rows"] is None
    assert "does not exist" in later["error"]

    limited = by_table(r.verify(tables=[(r.p.schema, "plain")], max_mismatches=1))
    (only,) = limited.values()
    assert only["missing_in_target"] == [[3]] and only["different"] == [] and only["truncated"] is True
    assert (only["missing_count"], only["different_count"]) == (2, 2)


def _config(r: Replicated, tmp_path: Path, stack: Any) -> Path:
    tables = json.dumps([*r.names.values(), r.later], ensure_ascii=False)  # a TOML array of strings
    text = (
        Path(stack.env["config"])
        .read_text()
        .replace('pipeline = "devstack"', f'pipeline = "{r.p.name}"\nsource_tables = {tables}')
    )
    config = tmp_path / "cdc.toml"
    config.write_text(text)
    return config


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdc.verify", *args],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=300,
        check=False,
    )


def test_cli_prints_one_json_object_and_exits_by_outcome(
    replicated: Replicated, stack: Any, tmp_path: Path
) -> None:
    r = replicated
    config = _config(r, tmp_path, stack)
    odd = '"' + r.odd_schema + '"."' + ODD_TABLE.replace('"', '""') + '"'
    chosen = f"{r.names['lines']},{odd}, {r.names['tags']}"
    out = _cli("--config", str(config), "--tables", chosen, "--json")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("\n") == 1
    data = json.loads(out.stdout)
    assert data["pipeline"] == r.p.name and data["equal"] is True
    assert [t["table"] for t in data["tables"]] == [r.names["lines"], r.names["odd"], r.names["tags"]]
    assert [t["source_rows"] for t in data["tables"]] == [18, 3, len(TAGS)]

    r.snowflake(
        f'DELETE FROM "{r.p.settings.snowflake_database}"."{r.p.schema.upper()}"."LINES" WHERE "LINE" = 2'
    )
    out = _cli("--config", str(config), "--tables", chosen, "--json", "--max-mismatches", "2")
    assert out.returncode == 1, out.stderr
    data = json.loads(out.stdout)
    lines = data["tables"][0]
    assert data["equal"] is False and lines["equal"] is False
    assert lines["missing_in_target"] == [[1, 2], [2, 2]] and lines["truncated"] is True
    assert lines["missing_count"] == 6 and lines["target_rows"] == 12
    assert [t["equal"] for t in data["tables"][1:]] == [True, True]

    human = _cli("--config", str(config), "--tables", r.names["lines"])
    assert human.returncode == 1 and human.stdout == ""
    assert f"{r.names['lines']}: DIFFERENT (source 18 rows, target 12 rows)" in human.stderr
    assert "missing in target: [1, 2]" in human.stderr

    wrong = _cli("--config", str(config), "--tables", f"{r.p.schema}.nope", "--json")
    assert wrong.returncode == 2, wrong.stderr
    error = json.loads(wrong.stdout)["error"]
    assert error["class"] == "ConfigError" and "not replicated by this pipeline" in error["problems"][0]
