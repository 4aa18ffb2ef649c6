"""The demo: a small shop schema written to PostgreSQL and replicated into the local Snowflake.

``python -m cdc.demo --dir DIR`` starts the embedded stack (unless it already runs), runs the
workload in bursts, replicates with repeated windows until caught up, prints a per-table summary
and stops what it started. ``run_workload`` is also used by the integration tests.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extras

from cdc import devstack
from cdc.app import build_engine
from cdc.compare import TableDiff, compare_rows, source_select_sql
from cdc.engine import Engine
from cdc.errors import CdcError
from cdc.logs import setup_logging
from cdc.model import TableSchema
from cdc.settings import Settings, load
from cdc.verify.run import verify

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE {schema}.customers (
    id serial PRIMARY KEY, name text NOT NULL, email varchar(120), vip boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE {schema}.products (
    sku text PRIMARY KEY, title text NOT NULL, price numeric(10,2) NOT NULL, attrs jsonb,
    updated_on date NOT NULL DEFAULT current_date);
CREATE TABLE {schema}.orders (
    id bigserial PRIMARY KEY, customer_id int NOT NULL REFERENCES {schema}.customers,
    status text NOT NULL DEFAULT 'new', total numeric(12,2) NOT NULL DEFAULT 0,
    placed_at timestamp NOT NULL DEFAULT localtimestamp, ref uuid NOT NULL DEFAULT gen_random_uuid(),
    weight double precision, note bytea);
CREATE TABLE {schema}.order_items (
    order_id bigint NOT NULL REFERENCES {schema}.orders ON DELETE CASCADE, line smallint NOT NULL,
    sku text NOT NULL REFERENCES {schema}.products, qty integer NOT NULL, price numeric(10,2) NOT NULL,
    PRIMARY KEY (order_id, line));
"""

TABLES = ("customers", "products", "orders", "order_items")


def create_schema(conn: Any, schema: str) -> None:
    with conn.cursor() as cur:
        cur.execute(SCHEMA_SQL.format(schema=schema))
    conn.commit()


def run_workload(conn: Any, schema: str, transactions: int, seed: int = 7) -> int:
    """Inserts, updates and deletes over many transactions; returns the number of transactions."""
    rng = random.Random(seed)
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {schema}.customers")
        if cur.fetchone()[0] == 0:
            for i in range(20):
                cur.execute(
                    f"INSERT INTO {schema}.customers (name, email, vip) VALUES (%s, %s, %s)",
                    (f"Customer {i}", f"c{i}@example.com", i % 5 == 0),
                )
            for i in range(15):
                cur.execute(
                    f"INSERT INTO {schema}.products (sku, title, price, attrs) VALUES (%s, %s, %s, %s)",
                    (
                        f"SKU-{i:03d}",
                        f"Product {i}",
                        f"{rng.randint(100, 99999) / 100:.2f}",
                        psycopg2.extras.Json({"color": rng.choice(["red", "blue"]), "tags": [i, i * 2]}),
                    ),
                )
            conn.commit()
        for _ in range(transactions):
            action = rng.random()
            if action < 0.55:
                cur.execute(f"SELECT id FROM {schema}.customers ORDER BY random() LIMIT 1")
                customer = cur.fetchone()[0]
                cur.execute(
                    f"INSERT INTO {schema}.orders (customer_id, weight, note) "
                    "VALUES (%s, %s, %s) RETURNING id",
                    (customer, rng.random() * 10, bytes(rng.randrange(256) for _ in range(6))),
                )
                order = cur.fetchone()[0]
                for line in range(1, rng.randint(2, 5)):
                    cur.execute(
                        f"INSERT INTO {schema}.order_items SELECT %s, %s, sku, %s, price "
                        f"FROM {schema}.products ORDER BY random() LIMIT 1",
                        (order, line, rng.randint(1, 9)),
                    )
                cur.execute(
                    f"UPDATE {schema}.orders SET total = (SELECT coalesce(sum(qty * price), 0) "
                    f"FROM {schema}.order_items WHERE order_id = %s) WHERE id = %s",
                    (order, order),
                )
            elif action < 0.75:
                cur.execute(
                    f"UPDATE {schema}.orders SET status = %s WHERE id = "
                    f"(SELECT id FROM {schema}.orders ORDER BY random() LIMIT 1)",
                    (rng.choice(["paid", "shipped", "delivered"]),),
                )
            elif action < 0.87:
                cur.execute(
                    f"UPDATE {schema}.products SET price = price * 1.1, updated_on = current_date + 1, "
                    f"attrs = attrs || '{{\"sale\": true}}' WHERE sku = "
                    f"(SELECT sku FROM {schema}.products ORDER BY random() LIMIT 1)"
                )
            elif action < 0.97:
                cur.execute(
                    f"DELETE FROM {schema}.orders WHERE id = "
                    f"(SELECT id FROM {schema}.orders ORDER BY random() LIMIT 1)"
                )
            else:
                cur.execute(
                    f"UPDATE {schema}.customers SET vip = NOT vip, email = NULL WHERE id = "
                    f"(SELECT id FROM {schema}.customers ORDER BY random() LIMIT 1)"
                )
            conn.commit()
    return transactions


def source_rows(conn: Any, table: TableSchema) -> list[dict[str, Any]]:
    """Every source row, each value in PostgreSQL's text form (the form the comparison reads)."""
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(
            "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'iso_8601'; "
            "SET extra_float_digits = 3; SET lc_monetary = 'C'"
        )
        cur.execute(source_select_sql(table))
        return [dict(r) for r in cur.fetchall()]


def compare_table(conn: Any, engine: Engine, table: TableSchema) -> TableDiff:
    """Source and target of one table, row by row on canonical values (soft-deleted rows count as absent)."""
    target = [r for r in engine.sink.fetch_table(table) if not r.get("_CDC_DELETED")]  # type: ignore[attr-defined]
    return compare_rows(table.qualified, table.key, source_rows(conn, table), target, columns=table.columns)


def replicate_until_caught_up(engine: Engine, max_windows: int = 200) -> list[dict[str, Any]]:
    results = []
    for _ in range(max_windows):
        result = engine.run_window().as_dict()
        results.append(result)
        if result["status"] == "failed":
            raise SystemExit(f"window failed: {result['error']['class']}: {result['error']['message']}")
        if result["caught_up"] and result["status"] in ("applied", "empty"):
            return results
    raise SystemExit(f"not caught up after {max_windows} windows")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cdc.demo", description=__doc__)
    parser.add_argument("--dir", default=".devstack/demo")
    parser.add_argument("--transactions", type=int, default=300)
    parser.add_argument("--keep", action="store_true", help="leave the stack running afterwards")
    args = parser.parse_args(argv)
    setup_logging("WARNING", "text")
    directory = Path(args.dir).resolve()
    try:
        devstack.env(directory)
        started_here = False
    except CdcError:
        started_here = True
    t0 = time.monotonic()
    print(f"starting the embedded stack in {directory} ...", flush=True)
    env = devstack.up(directory)
    try:
        return _run(env, args.transactions, t0)
    finally:
        if started_here and not args.keep:
            devstack.down(directory)
            print("stack stopped", flush=True)


def _run(env: dict[str, Any], transactions: int, t0: float) -> int:
    schema = f"shop_{int(time.time())}"
    settings: Settings = load(env["config"]).replace(
        pipeline=f"demo-{schema.replace('_', '-')}",
        source_tables=tuple(f"{schema}.{t}" for t in TABLES),
        window_max_changes=100,
    )
    conn = psycopg2.connect(env["postgres_dsn"])
    create_schema(conn, schema)
    engine = build_engine(settings)
    try:
        first = engine.run_window().as_dict()
        print(
            f"pipeline {settings.pipeline}: {first['status']} ({first['reason']}) at {first['end_lsn']}",
            flush=True,
        )
        windows = 0
        for burst in range(4):
            run_workload(conn, schema, transactions // 4, seed=burst)
            results = replicate_until_caught_up(engine)
            windows += len(results)
            changes = sum(r["changes"] for r in results)
            print(
                f"burst {burst + 1}: {transactions // 4} transactions -> {len(results)} windows, "
                f"{changes} changes applied",
                flush=True,
            )
        # the same check users run: cdc verify streams both sides and compares every value
        report = verify(settings)
        print(f"\n{'table (cdc verify)':<32}{'source rows':>12}{'target rows':>12}  equal", flush=True)
        for t in report.tables:
            print(
                f"{t.table:<32}{t.source_rows or 0:>12}{t.target_rows or 0:>12}  {'yes' if t.equal else 'NO'}"
            )
            if not t.equal:
                print(f"    {json.dumps(t.as_dict())[:400]}")
        print(
            f"\n{windows} windows in {time.monotonic() - t0:.1f}s; target "
            f"{'equals' if report.equal else 'DIFFERS FROM'} source",
            flush=True,
        )
        return 0 if report.equal and len(report.tables) == len(TABLES) else 1
    finally:
        engine.close()
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
