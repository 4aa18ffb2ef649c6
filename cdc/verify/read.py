"""Reading both sides in key order, in batches: SQL text builders and streaming readers.

Source statements are built with ``psycopg2.sql`` (every name an ``Identifier``); target statements
through ``cdc.snowflake.sql.ident`` / ``target_table`` (always quoted, under the target naming
rule). The source is read as PostgreSQL's own text output of every value (``format('%s', c)``,
exact for every type, see ``cdc.compare``) through a server-side cursor; the target through a
Snowflake cursor with ``fetchmany``. Neither side is ever held in memory whole.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg2
from psycopg2 import sql as pgsql

from cdc.errors import CdcError, SourceError, SourceUnavailable
from cdc.model import TableSchema
from cdc.snowflake import sql as sfsql
from cdc.snowflake.sink import map_error
from cdc.source.catalog import relation_sql
from cdc.verify.merge import Layout, VerifyError

SOFT_DELETE_COLUMN = "_CDC_DELETED"
# Snowflake types the fakesnow stand-in returns as 1970-01-01 when NULL: read an IS NULL flag too
_TEMPORAL = ("TIMESTAMP", "DATE", "TIME")
_BINARY_COLLATION = "utf8"  # Snowflake's collation specifier for plain UTF-8 (code point) order
_READ_HINT = "check that the target table exists and the role may read it"


@dataclass
class Batches:
    """Round trips each side made (one per fetch): proof that a table was streamed."""

    source: int = 0
    target: int = 0


# --- PostgreSQL ---------------------------------------------------------------------------------


def _text(column: str) -> pgsql.Composable:
    return pgsql.SQL("format('%s', t.{})").format(pgsql.Identifier(column))


def source_scan_sql(layout: Layout) -> pgsql.Composed:
    """Every compared column as its text output (NULL stays NULL), ordered by key as ``merge``
    expects: number, float, boolean and bytea keys natively, any other key by its text, byte-wise."""
    table = layout.table
    columns = pgsql.SQL(", ").join(
        pgsql.SQL("CASE WHEN t.{0} IS NULL THEN NULL ELSE {1} END").format(
            pgsql.Identifier(c.name), _text(c.name)
        )
        for c in layout.columns
    )
    order = []
    for i, klass in zip(layout.key_index, layout.key_classes, strict=True):
        name = layout.columns[i].name
        if klass == "text":
            order.append(pgsql.SQL('{} COLLATE "C"').format(_text(name)))
        else:
            order.append(pgsql.SQL("t.{}").format(pgsql.Identifier(name)))
    return pgsql.SQL("SELECT {} FROM {} AS t ORDER BY {}").format(
        columns, relation_sql(table), pgsql.SQL(", ").join(order)
    )


def source_count_sql(table: TableSchema) -> pgsql.Composed:
    return pgsql.SQL("SELECT count(*) FROM {}").format(relation_sql(table))


def source_error(exc: psycopg2.Error, what: str) -> CdcError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, psycopg2.OperationalError):
        return SourceUnavailable(f"PostgreSQL unreachable while {what}: {text}; retry later")
    return SourceError(f"PostgreSQL error while {what}: {text}")


def stream_source(
    conn: Any, layout: Layout, batch_size: int, batches: Batches, cursor_name: str = "cdc_verify"
) -> Generator[tuple[Any, ...], None, None]:
    """The table's rows in key order through a server-side cursor, ``batch_size`` rows per fetch.

    Runs in the connection's current transaction (a named cursor needs one): the caller ends it.
    """
    what = f"reading table {layout.table.qualified}"
    try:
        with conn.cursor(name=cursor_name) as cur:
            cur.itersize = batch_size
            cur.execute(source_scan_sql(layout))
            while True:
                rows = cur.fetchmany(batch_size)
                batches.source += 1
                if not rows:
                    return
                yield from rows
    except psycopg2.Error as exc:
        raise source_error(exc, what) from exc


# --- Snowflake ----------------------------------------------------------------------------------


def spelled(name: str) -> str:
    """A name as Snowflake stores it under the target naming rule (``ident`` without quotes)."""
    return sfsql.ident(name)[1:-1].replace('""', '"')


def target_columns_sql(database: str) -> str:
    """Columns of one target table with their collation: bind (schema, table) as spelled."""
    columns = sfsql.qualified(database, "information_schema", "columns")
    return (
        f'SELECT "COLUMN_NAME", "COLLATION_NAME" FROM {columns} '
        'WHERE "TABLE_SCHEMA" = %s AND "TABLE_NAME" = %s'
    )


@dataclass(frozen=True)
class TargetShape:
    """What the target table has: its columns (as spelled) with their collation."""

    collations: dict[str, str | None]

    @property
    def soft_delete(self) -> bool:
        return SOFT_DELETE_COLUMN in self.collations

    def has(self, quoted: str) -> bool:
        return quoted[1:-1].replace('""', '"') in self.collations

    def collated(self, quoted: str) -> bool:
        """True when the column has a collation other than plain UTF-8 order."""
        collation = self.collations.get(quoted[1:-1].replace('""', '"'))
        return bool(collation) and str(collation).lower() != _BINARY_COLLATION


def target_shape(conn: Any, database: str, table: TableSchema) -> TargetShape | None:
    """The target table's columns, or None when the table does not exist (or cannot be seen)."""
    try:
        cur = conn.cursor()
        cur.execute(target_columns_sql(database), (spelled(table.schema), spelled(table.name)))
        rows = cur.fetchall()
    except Exception as exc:
        raise map_error(
            exc, action=f"column lookup for table {table.qualified}", hint=_READ_HINT, rejected=VerifyError
        ) from exc
    if not rows:
        return None
    return TargetShape({str(name): collation for name, collation in rows})


def target_scan_sql(
    database: str, layout: Layout, quoted: Sequence[str], shape: TargetShape
) -> tuple[str, list[int]]:
    """The target rows in the key order ``merge`` expects, and the positions of NULL flags.

    ``quoted`` holds the target name of each compared column. Returns the statement and, for each
    temporal column, its position: the statement reads ``<col> IS NULL`` for those after the
    values. Rows soft-deleted (``_CDC_DELETED`` is TRUE) are left out.
    """
    flagged = [i for i, m in enumerate(layout.mappings) if m.snowflake.upper().startswith(_TEMPORAL)]
    names = list(quoted) + [f"{quoted[i]} IS NULL" for i in flagged]
    order = []
    for i, klass in zip(layout.key_index, layout.key_classes, strict=True):
        name = quoted[i]
        if klass == "text" and shape.collated(name):
            order.append(f"COLLATE({name}, '{_BINARY_COLLATION}')")
        else:
            order.append(name)
    where = f" WHERE NOT COALESCE({sfsql.ident(SOFT_DELETE_COLUMN)}, FALSE)" if shape.soft_delete else ""
    text = (
        f"SELECT {', '.join(names)} FROM {sfsql.target_table(database, layout.table)}{where} "
        f"ORDER BY {', '.join(order)}"
    )
    return text, flagged


def stream_target(
    conn: Any, text: str, flagged: Sequence[int], width: int, batch_size: int, batches: Batches, table: str
) -> Generator[tuple[Any, ...], None, None]:
    """The rows of ``target_scan_sql`` in order, ``batch_size`` rows per fetch, NULL flags applied."""
    cur = None
    try:
        cur = conn.cursor()
        cur.execute(text)
        while True:
            rows = cur.fetchmany(batch_size)
            batches.target += 1
            if not rows:
                return
            for raw in rows:
                if flagged:
                    values = list(raw[:width])
                    for i, is_null in zip(flagged, raw[width:], strict=True):
                        if is_null:
                            values[i] = None
                    yield tuple(values)
                else:
                    yield tuple(raw)
    except Exception as exc:
        raise map_error(exc, action=f"read of table {table}", hint=_READ_HINT, rejected=VerifyError) from exc
    finally:
        if cur is not None:
            cur.close()
