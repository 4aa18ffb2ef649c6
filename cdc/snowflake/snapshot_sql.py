"""Snowflake SQL for loading a snapshot: a fresh table filled from staged parts, then swapped in.

Pure builders (names and a ``TableSchema`` in, SQL text out); ``cdc.snapshot.load`` runs them.
Every identifier goes through ``cdc.snowflake.sql.ident`` (always quoted), every literal through
``cdc.snowflake.evolve.literal``, and a snapshot token must be ``[A-Z0-9]``, so no name changes the
shape of a statement.

A snapshot of ``DB.S.T`` is loaded into ``DB.S."T__CDC_NEW_<token>"`` (the target's exact spelling
plus the suffix: same DDL as the target, ``create_target_table_sql``), through the transient load
table the sink uses (COPY ... MATCH_BY_COLUMN_NAME, then one INSERT ... SELECT with the type
mapping's load expressions). Readers keep seeing the old target until the swap:

* ``"swap"`` (real Snowflake): ``ALTER TABLE target SWAP WITH new`` is one atomic metadata
  operation; the old rows end under the new name and are dropped.
* ``"rename"`` (the fakesnow stand-in, which has no SWAP WITH): two renames in one explicit
  transaction. Only for the stand-in: in Snowflake every DDL statement commits on its own (a DDL
  inside BEGIN ... COMMIT commits the open transaction first), so between the two renames readers
  would find no target at all, and a failure after the first rename would leave it missing.

Both first create the target if it does not exist yet (empty, same DDL), so there is always a
table to swap with. Note for real Snowflake: SWAP WITH moves grants with the table object, so the
swapped-in table carries the new table's grants: give readers schema-level FUTURE GRANTS (or
re-grant after a snapshot).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Literal

from cdc.model import TableSchema
from cdc.snowflake.evolve import literal
from cdc.snowflake.sql import (
    DELETED,
    LOAD_META,
    TARGET_META,
    create_target_table_sql,
    ident,
    qualified,
    target_columns,
    target_table,
)
from cdc.typemap import column_mapping

__all__ = [
    "NEW_TAG",
    "OLD_TAG",
    "SWAP_STRATEGIES",
    "SwapStrategy",
    "count_rows_sql",
    "create_side_table_sql",
    "insert_snapshot_sql",
    "leftover_tables_sql",
    "retired_table",
    "side_table",
    "side_table_fq",
    "side_table_ref",
    "spelled",
    "swap_statements",
]

SwapStrategy = Literal["swap", "rename"]
SWAP_STRATEGIES: tuple[str, ...] = ("swap", "rename")
NEW_TAG = "__CDC_NEW_"  # the snapshot being loaded
OLD_TAG = "__CDC_OLD_"  # the previous target during a "rename" swap
_TOKEN = re.compile(r"[A-Z0-9]{1,32}")
SYNCED_AT = "_CDC_SYNCED_AT"


def spelled(name: str) -> str:
    """The exact Snowflake spelling of a source name under the naming rule (``orders`` -> ``ORDERS``)."""
    return ident(name)[1:-1].replace('""', '"')


def side_table(table: TableSchema, tag: str, token: str) -> TableSchema:
    """The table's schema under the side table's name (``<TARGET>__CDC_NEW_<token>``).

    The name is the target's exact spelling plus the suffix; it is never a plain lower-case name, so
    ``ident`` keeps it as written.
    """
    if tag not in (NEW_TAG, OLD_TAG):
        raise ValueError(f"side table tag must be {NEW_TAG!r} or {OLD_TAG!r}, got {tag!r}")
    if not _TOKEN.fullmatch(token):
        raise ValueError(f"snapshot token {token!r} must be 1-32 characters [A-Z0-9]")
    return replace(table, name=f"{spelled(table.name)}{tag}{token}")


def side_table_fq(database: str, table: TableSchema, tag: str, token: str) -> str:
    return target_table(database, side_table(table, tag, token))


def create_side_table_sql(database: str, table: TableSchema, token: str, soft_delete: bool = False) -> str:
    """The new table: exactly the target's DDL (``create_target_table_sql``) under the side name."""
    return create_target_table_sql(database, side_table(table, NEW_TAG, token), soft_delete)


def insert_snapshot_sql(new_fq: str, load_fq: str, table: TableSchema, soft_delete: bool = False) -> str:
    """Every load-table row into the new table, each column through its load expression."""
    names: list[str] = []
    values: list[str] = []
    for col, name in target_columns(table):
        names.append(name)
        values.append(column_mapping(col).load_expr.format(f"l.{ident(col.stage_name)}"))
    loaded = {name for name, _ in LOAD_META}
    for meta, _type in TARGET_META:
        if meta in loaded:
            names.append(ident(meta))
            values.append(f"l.{ident(meta)}")
        elif meta == SYNCED_AT:
            names.append(ident(meta))
            values.append("CURRENT_TIMESTAMP()")
    if soft_delete:
        names.append(ident(DELETED))
        values.append("FALSE")
    sep = ",\n  "
    return f"INSERT INTO {new_fq} (\n  {sep.join(names)}\n)\nSELECT\n  {sep.join(values)}\nFROM {load_fq} l"


def count_rows_sql(fq: str) -> str:
    return f"SELECT COUNT(*) FROM {fq}"


def swap_statements(strategy: str, target_fq: str, new_fq: str, old_fq: str) -> list[str]:
    """The statements that put ``new_fq`` in place of ``target_fq`` (see the module docstring).

    Afterwards the previous target's rows are in ``new_fq`` ("swap") or ``old_fq`` ("rename"):
    ``retired_table`` says which one to drop.
    """
    if strategy == "swap":
        return [f"ALTER TABLE {target_fq} SWAP WITH {new_fq}"]
    if strategy == "rename":
        return [
            "BEGIN",
            f"ALTER TABLE {target_fq} RENAME TO {old_fq}",
            f"ALTER TABLE {new_fq} RENAME TO {target_fq}",
            "COMMIT",
        ]
    raise ValueError(f"swap strategy must be one of {SWAP_STRATEGIES}, got {strategy!r}")


def retired_table(strategy: str, new_fq: str, old_fq: str) -> str:
    """Where the previous target's rows are after ``swap_statements``."""
    return new_fq if strategy == "swap" else old_fq


def leftover_tables_sql(database: str, table: TableSchema) -> str:
    """Names of this target's side tables (from snapshots that died before cleaning up)."""
    schema_name, base = spelled(table.schema), spelled(table.name)
    return (
        f"SELECT table_name FROM {ident(database)}.INFORMATION_SCHEMA.TABLES "
        f"WHERE table_schema = {literal(schema_name)} "
        f"AND (STARTSWITH(table_name, {literal(base + NEW_TAG)}) "
        f"OR STARTSWITH(table_name, {literal(base + OLD_TAG)})) ORDER BY table_name"
    )


def side_table_ref(database: str, table: TableSchema, name: str) -> str:
    """A side table found by ``leftover_tables_sql`` (its exact name), fully qualified."""
    base = spelled(table.name)
    if not (name.startswith(base + NEW_TAG) or name.startswith(base + OLD_TAG)):
        raise ValueError(f"{name!r} is not a side table of {table.qualified}")
    return f"{qualified(database, table.schema)}.{_exact(name)}"


def _exact(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
