"""Any legal PostgreSQL name replicates, and none can change the shape of a statement."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import Pipeline
from psycopg2 import sql as pgsql
from test_changes import assert_equal, sync

# Quotes and dots are legal in every name too, but the fakesnow stand-in cannot create a schema
# whose name has one, nor a table whose name has a single quote (its own catalog breaks); the SQL
# builders are tested with them in tests/unit. Its names are also case-insensitive, so no column
# here differs from another only by case.
ODD_SCHEMA = "Odd Schéma; v1 "
ODD_TABLE = "Order Items; DROP TABLE t; --"
ODD_COLUMNS = ["Mixed Case", 'quote"d', "dot.ted", "semi;colon", "select", "naïve ünïcødé", "Where"]


@pytest.fixture
def p(stack: Any):
    pipeline = Pipeline(stack)
    yield pipeline
    with pipeline.conn.cursor() as cur:
        cur.execute(
            pgsql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pgsql.Identifier(ODD_SCHEMA + pipeline.name))
        )
    pipeline.conn.commit()
    pipeline.close()


def test_odd_schema_table_and_column_names_replicate(p: Pipeline) -> None:
    schema = ODD_SCHEMA + p.name
    cols = [pgsql.Identifier(c) for c in ODD_COLUMNS]
    with p.conn.cursor() as cur:
        cur.execute(pgsql.SQL("CREATE SCHEMA {}").format(pgsql.Identifier(schema)))
        cur.execute(
            pgsql.SQL("CREATE TABLE {}.{} (id int PRIMARY KEY, {})").format(
                pgsql.Identifier(schema),
                pgsql.Identifier(ODD_TABLE),
                pgsql.SQL(", ").join(pgsql.SQL("{} text").format(c) for c in cols),
            )
        )
        # the same table name in another schema is another target
        cur.execute(f"CREATE SCHEMA {p.schema}")
        cur.execute(
            pgsql.SQL("CREATE TABLE {}.{} (id int PRIMARY KEY)").format(
                pgsql.Identifier(p.schema), pgsql.Identifier(ODD_TABLE)
            )
        )
    p.conn.commit()
    p.engine.run_window()
    insert = pgsql.SQL("INSERT INTO {}.{} VALUES (%s, {})").format(
        pgsql.Identifier(schema),
        pgsql.Identifier(ODD_TABLE),
        pgsql.SQL(", ").join(pgsql.Placeholder() * len(cols)),
    )
    with p.conn.cursor() as cur:
        for i in range(1, 4):
            cur.execute(insert, [i] + [f"{c} {i} '); DROP TABLE x; --" for c in ODD_COLUMNS])
        cur.execute(
            pgsql.SQL("UPDATE {}.{} SET {} = 'changed' WHERE id = 2").format(
                pgsql.Identifier(schema), pgsql.Identifier(ODD_TABLE), pgsql.Identifier("semi;colon")
            )
        )
        cur.execute(
            pgsql.SQL("DELETE FROM {}.{} WHERE id = 3").format(
                pgsql.Identifier(schema), pgsql.Identifier(ODD_TABLE)
            )
        )
        cur.execute(
            pgsql.SQL("INSERT INTO {}.{} VALUES (42)").format(
                pgsql.Identifier(p.schema), pgsql.Identifier(ODD_TABLE)
            )
        )
    p.conn.commit()
    sync(p)
    catalog = p.engine.source.catalog()
    odd = catalog.tables[(schema, ODD_TABLE)]
    rows = p.engine.sink.fetch_table(odd)  # type: ignore[attr-defined]
    assert [r["id"] for r in rows] == [1, 2]
    assert (
        rows[1]["semi;colon"] == "changed"
        and rows[0]["naïve ünïcødé"] == "naïve ünïcødé 1 '); DROP TABLE x; --"
    )
    other = p.engine.sink.fetch_table(catalog.tables[(p.schema, ODD_TABLE)])  # type: ignore[attr-defined]
    assert [r["id"] for r in other] == [42]
    assert_equal(p, ODD_TABLE)  # the plain schema's table
    from cdc.demo import compare_table

    diff = compare_table(p.conn, p.engine, odd)
    assert diff.equal and diff.source_rows == 2


def test_names_that_collide_in_snowflake_stop_that_table_with_a_clear_error(p: Pipeline) -> None:
    with p.conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA {p.schema}; CREATE TABLE {p.schema}.clash (id int PRIMARY KEY, "ID" int)')
        cur.execute(f"CREATE TABLE {p.schema}.fine (id int PRIMARY KEY)")
    p.conn.commit()
    p.engine.run_window()
    with p.conn.cursor() as cur:
        cur.execute(f"INSERT INTO {p.schema}.clash VALUES (1, 2); INSERT INTO {p.schema}.fine VALUES (1)")
    p.conn.commit()
    results = sync(p)
    assert f"{p.schema}.clash" in results[-1]["stopped_tables"]
    notes = " ".join(n for r in results for n in r["notes"])
    assert "column 'ID' lands in Snowflake as \"ID\", which is already taken by column 'id'" in notes
    assert_equal(p, "fine")
