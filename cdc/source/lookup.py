"""Read current column values at the source, by primary key: what wal2json could not send.

wal2json 2.5 writes NaN, Infinity and -Infinity of numeric, real and double precision columns as
JSON null, and has no option to send them as text. The window writer
(``WindowWriter(..., resolver=SourceLookup(conn))``) therefore asks, once per table and Parquet
part, for the current text of the float/numeric columns that arrived as null in insert and update
rows (see ``cdc.nan_fill.fill_from_source`` for the semantics). One query per chunk of keys:

    SELECT e.n, t."c"::text, ...
    FROM json_array_elements(%s::json) WITH ORDINALITY AS e(doc, n)
    CROSS JOIN LATERAL json_to_record(e.doc) AS k("id" integer [, ...])
    JOIN "schema"."table" AS t ON t."id" = k."id" [AND ...]

The keys travel as one JSON parameter and are typed by the key columns' own types (domains by
their base type, as the catalog reports them), so the join uses the primary key index whatever
the key types are. Only the key columns are read from the JSON: the table's other columns (a NOT
NULL domain among them) never go through their input functions. Every name is quoted with
``psycopg2.sql.Identifier``; type names are PostgreSQL's own ``format_type`` text. The
connection must use the reader's session settings (``cdc.source.slot.SESSION_OPTIONS``: shortest
exact float text, UTC) and autocommit; the user needs SELECT on the replicated tables (the
snapshot needs it too).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import psycopg2
from psycopg2 import sql

from cdc.errors import SourceError, SourceUnavailable
from cdc.model import TableSchema
from cdc.source.catalog import relation_sql

log = logging.getLogger(__name__)

CHUNK = 1000  # keys per query


def _key_json(table: TableSchema, key: tuple[Any, ...]) -> dict[str, Any]:
    """One key as a JSON object PostgreSQL's record input reads back into the key's type."""
    doc: dict[str, Any] = {}
    for column, value in zip(table.key_columns, key, strict=True):
        if column.type_name == "bytea" and isinstance(value, str):
            value = "\\x" + value  # wal2json sends bytea as hex without the prefix
        doc[column.name] = value
    return doc


def lookup_sql(table: TableSchema, columns: Sequence[str]) -> sql.Composed:
    """The statement that reads ``columns`` as text for a JSON array of keys (one parameter)."""
    rel = relation_sql(table)
    values = sql.SQL(", ").join(sql.SQL("t.{}::text").format(sql.Identifier(c)) for c in columns)
    on = sql.SQL(" AND ").join(sql.SQL("t.{0} = k.{0}").format(sql.Identifier(k)) for k in table.key)
    keys = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(_type_text(c.type_name)))
        for c in table.key_columns
    )
    return sql.SQL(
        "SELECT e.n, {values} FROM json_array_elements(%s::json) WITH ORDINALITY AS e(doc, n) "
        "CROSS JOIN LATERAL json_to_record(e.doc) AS k({keys}) "
        "JOIN {rel} AS t ON {on}"
    ).format(values=values, keys=keys, rel=rel, on=on)


def _type_text(type_name: str) -> str:
    """The SQL type of a key column from the catalog's ``format_type`` text (enums carry a prefix)."""
    return type_name.removeprefix("enum:")


def current_text(
    conn: Any, table: TableSchema, columns: Sequence[str], keys: Sequence[tuple[Any, ...]]
) -> dict[tuple[Any, ...], dict[str, str | None]]:
    """The current text of ``columns`` for the rows with these keys (wal2json's key values).

    Rows that do not exist (any more) are absent from the result.
    """
    if not columns or not keys:
        return {}
    statement = lookup_sql(table, columns)
    found: dict[tuple[Any, ...], dict[str, str | None]] = {}
    try:
        with conn.cursor() as cur:
            for start in range(0, len(keys), CHUNK):
                chunk = keys[start : start + CHUNK]
                cur.execute(statement, (json.dumps([_key_json(table, k) for k in chunk]),))
                for n, *texts in cur.fetchall():
                    found[chunk[n - 1]] = dict(zip(columns, texts, strict=True))
    except psycopg2.OperationalError as exc:
        raise SourceUnavailable(
            f"PostgreSQL unreachable while reading NaN/Infinity values of table {table.qualified}: "
            f"{str(exc).strip()}"
        ) from exc
    except psycopg2.Error as exc:
        raise SourceError(
            f"reading NaN/Infinity values of table {table.qualified} by key failed: {str(exc).strip()}. "
            "Grant SELECT on the table to the replication user"
        ) from exc
    log.debug(
        "looked up values wal2json sent as null",
        extra={"table": table.qualified, "columns": list(columns), "keys": len(keys), "found": len(found)},
    )
    return found


class SourceLookup:
    """``cdc.nan_fill.ValueLookup`` over one psycopg2 connection (autocommit, SESSION_OPTIONS)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def __call__(
        self, table: TableSchema, columns: Sequence[str], keys: Sequence[tuple[Any, ...]]
    ) -> dict[tuple[Any, ...], dict[str, str | None]]:
        return current_text(self._conn, table, columns, keys)
