"""What the source tables look like: columns, types and keys from PostgreSQL's catalog."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from psycopg2 import sql

from cdc.model import Column, TableSchema

log = logging.getLogger(__name__)

SYSTEM_SCHEMA_FILTER = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'"
)

_TABLES_SQL = f"""
SELECT c.oid, n.nspname, c.relname, c.relreplident, c.relkind, c.relpersistence
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND {SYSTEM_SCHEMA_FILTER}
ORDER BY n.nspname, c.relname
"""

# Domains resolve to their base type so that a domain over numeric(12,2) maps like numeric(12,2).
_COLUMNS_SQL = """
SELECT a.attrelid, a.attname, a.attnum,
       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod)
            WHEN t.typtype = 'e' THEN 'enum:' || format_type(a.atttypid, a.atttypmod)
            ELSE format_type(a.atttypid, a.atttypmod) END,
       CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END,
       NOT a.attnotnull,
       a.attstorage <> 'p',
       CASE WHEN a.atthasmissing THEN a.attmissingval::text END,
       a.atthasdef
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""

# The primary key, or the replica identity index when REPLICA IDENTITY USING INDEX is set.
_KEYS_SQL = """
SELECT i.indrelid, i.indisprimary, i.indisreplident, i.indimmediate, a.attname, k.ord
FROM pg_index i
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = ANY(%s) AND (i.indisprimary OR i.indisreplident)
ORDER BY i.indrelid, k.ord
"""


def array_element(text: str) -> str | None:
    """The one element of a PostgreSQL array literal such as ``{5}`` or ``{"a \\"b\\""}``."""
    inner = text[1:-1] if text.startswith("{") and text.endswith("}") else text
    if inner.upper() == "NULL":
        return None
    if inner.startswith('"') and inner.endswith('"'):
        out, escaped = [], False
        for ch in inner[1:-1]:
            if escaped:
                out.append(ch)
                escaped = False
            elif ch == "\\":
                escaped = True
            else:
                out.append(ch)
        return "".join(out)
    return inner


# Partitions of partitioned tables: their changes count for the root table. Foreign ones too, to
# refuse their root: no change to their rows reaches the WAL. A partition's columns have the root's
# names, not always its attnums (a partition attached with its columns in another order, or created
# after a column of the root was dropped): each column's attnum in both, paired by name.
_PARTITIONS_SQL = f"""
SELECT n.nspname, c.relname, rn.nspname, r.relname, c.relkind, c.relpersistence,
       ARRAY(SELECT ARRAY[pa.attnum, ra.attnum] FROM pg_attribute pa
             JOIN pg_attribute ra ON ra.attrelid = r.oid AND ra.attname = pa.attname
             WHERE pa.attrelid = c.oid AND pa.attnum > 0 AND NOT pa.attisdropped ORDER BY pa.attnum)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class r ON r.oid = pg_partition_root(c.oid)
JOIN pg_namespace rn ON rn.oid = r.relnamespace
WHERE c.relispartition AND c.relkind IN ('r', 'p', 'f') AND {SYSTEM_SCHEMA_FILTER}
"""


_PLAIN = re.compile(r"[a-z_][a-z0-9_$]*")
NO_KEY_FIX = (
    "add a primary key, or a unique index on NOT NULL columns with ALTER TABLE ... REPLICA "
    "IDENTITY USING INDEX, or name the key in source_keys and set REPLICA IDENTITY FULL; or leave "
    "the table out of source_tables"
)


def target_spelling(name: str) -> str:
    """The spelling a schema or table name gets in Snowflake (ARCHITECTURE.md, "Target naming"):
    a plain lower-case identifier becomes its upper-case form, any other name stays as it is.
    ``cdc.snowflake.sql.ident`` quotes the same spelling (a unit test holds the two together)."""
    return name.upper() if _PLAIN.fullmatch(name) else name


def relation_sql(table: TableSchema) -> sql.Composed:
    """The table in a query that reads its rows as the stream sees them: ``ONLY "s"."t"``, without
    the rows of tables that inherit from it (wal2json reports their changes under their own names),
    or ``"s"."t"`` for a partitioned table, whose rows are its partitions'."""
    return sql.SQL("{}" if table.partitioned else "ONLY {}").format(sql.Identifier(table.schema, table.name))


def pg_name(schema: str, table: str) -> str:
    """``"schema"."table"`` as PostgreSQL reads it, embedded quotes doubled."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in (schema, table))


COLLISION_FIX = (
    "rename one of them in the source (ALTER TABLE ... RENAME TO, or ALTER SCHEMA ... RENAME TO), or "
    "leave all but one of them out of source_tables"
)


def target_collisions(names: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Every ``(schema, table)`` whose Snowflake target another of ``names`` has too (``orders`` and
    ``"ORDERS"``, or schemas ``public`` and ``"PUBLIC"``), with the note that refuses it: their
    changes would be merged into one table."""
    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for schema, table in sorted(set(names)):
        groups.setdefault((target_spelling(schema), target_spelling(table)), []).append((schema, table))
    notes: dict[tuple[str, str], str] = {}
    for (schema_t, table_t), members in groups.items():
        if len(members) < 2:
            continue
        listed = ", ".join(pg_name(s, t) for s, t in members)
        for schema, table in members:
            notes[(schema, table)] = (
                f"table {schema}.{table} cannot be replicated: the source tables {listed} all land in "
                f"Snowflake as {pg_name(schema_t, table_t)}, which would merge their rows into one "
                f"table, so none of them is replicated; {COLLISION_FIX}"
            )
    return notes


def unlogged(schema: str, table: str, partitions: Iterable[tuple[str, str]] = ()) -> tuple[str, str]:
    """The note and the fix for an UNLOGGED table, or a partitioned one with UNLOGGED partitions:
    their changes are never written to the WAL, so logical decoding never sees them and the target
    would keep the rows of the last copy forever."""
    relations = sorted(partitions) or [(schema, table)]
    fix = "; ".join(f"ALTER TABLE {pg_name(s, t)} SET LOGGED" for s, t in relations)
    listed = ", ".join(f"{s}.{t}" for s, t in relations)
    what = "is UNLOGGED" if not partitions else f"has UNLOGGED partitions ({listed})"
    note = (
        f"table {schema}.{table} {what} and cannot be replicated: PostgreSQL writes no WAL for "
        f"{'its' if not partitions else 'their'} changes, so they would never reach the target; run {fix}"
    )
    return note, fix


def foreign_partitions(schema: str, table: str, partitions: Iterable[tuple[str, str]]) -> tuple[str, str]:
    """The note and the fix for a partitioned table with foreign partitions: their rows live on
    another server, so no change to them reaches the WAL (and the target would never see one)."""
    listed = ", ".join(f"{s}.{t}" for s, t in sorted(partitions))
    fix = (
        "; ".join(
            f"ALTER TABLE {pg_name(schema, table)} DETACH PARTITION {pg_name(s, t)}"
            for s, t in sorted(partitions)
        )
        + f"; or leave {schema}.{table} out of source_tables"
    )
    note = (
        f"table {schema}.{table} has foreign partitions ({listed}) and cannot be replicated: their "
        f"rows live on another server and no change to them reaches the WAL; {fix}"
    )
    return note, fix


def replica_identity_nothing(schema: str, table: str) -> tuple[str, str]:
    """The note and the fix for a table with REPLICA IDENTITY NOTHING: wal2json skips its updates
    and deletes (with only a server warning), so the target would keep stale and deleted rows."""
    fix = (
        f"ALTER TABLE {pg_name(schema, table)} REPLICA IDENTITY DEFAULT (or FULL, or USING INDEX "
        "on a unique index of NOT NULL columns)"
    )
    note = (
        f"table {schema}.{table} has REPLICA IDENTITY NOTHING and cannot be replicated: PostgreSQL "
        f"logs no key for its updates and deletes, so they would never reach the target; run {fix}"
    )
    return note, fix


def deferrable_key(schema: str, table: str, identity_default: bool) -> tuple[str, str]:
    """The note and the fix for a table whose primary key is DEFERRABLE."""
    fix = (
        f"recreate the primary key of {pg_name(schema, table)} NOT DEFERRABLE, or add a unique index "
        "on NOT NULL columns and run ALTER TABLE ... REPLICA IDENTITY USING INDEX with it"
    )
    why = (
        "PostgreSQL does not log it for updates and deletes, which wal2json then skips, so they would "
        "never reach the target"
        if identity_default
        else "two rows can swap their keys within one statement, which changes merged by key cannot order"
    )
    note = f"table {schema}.{table} has a DEFERRABLE primary key and cannot be replicated: {why}; {fix}"
    return note, fix


@dataclass(frozen=True)
class Catalog:
    """Replicable tables, those refused with the reason, and partitions with their root table.

    ``fixes`` holds, per refused table, what to change so that it replicates."""

    tables: dict[tuple[str, str], TableSchema]
    refused: dict[tuple[str, str], str]
    partitions: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    fixes: dict[tuple[str, str], str] = field(default_factory=dict)
    oids: dict[tuple[str, str], int] = field(default_factory=dict)  # pg_class OID of each table
    # ... and of each refused table that exists: once accepted, it needs a copy (its changes were
    # skipped while it was refused)
    refused_oids: dict[tuple[str, str], int] = field(default_factory=dict)
    # partition attnum -> root attnum, for the partitions whose columns' attnums are not the root's
    partition_attnums: dict[tuple[str, str], dict[int, int]] = field(default_factory=dict)
    # per partitioned table, its partitions that hold rows (a TRUNCATE of it empties each of them)
    partition_leaves: dict[tuple[str, str], frozenset[tuple[str, str]]] = field(default_factory=dict)


def load_catalog(
    conn: Any, only: tuple[str, ...] = (), keys: dict[tuple[str, str], tuple[str, ...]] | None = None
) -> Catalog:
    """Read every user table (or only the ``schema.table`` names given) with columns and key.

    The key is the one configured for the table in ``keys``, else the primary key, else the
    replica identity index (REPLICA IDENTITY USING INDEX). A table that cannot be replicated goes to
    ``refused`` with the reason and to ``fixes`` with what to change: it has no key, it has REPLICA
    IDENTITY NOTHING, its configured key does not fit, its configured name does not exist, or its
    Snowflake target is another replicated table's too."""
    keys = keys or {}
    wanted = {tuple(name.split(".", 1)) for name in only}
    with conn.cursor() as cur:
        cur.execute(_TABLES_SQL)
        rels = [row for row in cur.fetchall() if not wanted or (row[1], row[2]) in wanted]
        oids = [r[0] for r in rels]
        columns: dict[int, list[Column]] = {oid: [] for oid in oids}
        index_keys: dict[int, dict[str, list[str]]] = {}
        deferrable: set[int] = set()  # tables whose primary key is DEFERRABLE
        if oids:
            cur.execute(_COLUMNS_SQL, (oids,))
            for row in cur.fetchall():
                relid, name, attnum, type_name, type_oid, nullable, toastable, missing, has_def = row
                columns[relid].append(
                    Column(
                        name,
                        attnum,
                        type_name,
                        type_oid,
                        nullable,
                        toastable,
                        missing=array_element(missing) if missing is not None else None,
                        has_default=has_def,
                    )
                )
            cur.execute(_KEYS_SQL, (oids,))
            for relid, primary, replident, immediate, attname, _ord in cur.fetchall():
                kinds = index_keys.setdefault(relid, {})
                if primary:
                    kinds.setdefault("primary", []).append(attname)
                    if not immediate:
                        deferrable.add(relid)
                if replident:
                    kinds.setdefault("replident", []).append(attname)
        cur.execute(_PARTITIONS_SQL)
        partitions: dict[tuple[str, str], tuple[str, str]] = {}
        partition_attnums: dict[tuple[str, str], dict[int, int]] = {}
        leaves: dict[tuple[str, str], set[tuple[str, str]]] = {}
        unlogged_parts: dict[tuple[str, str], list[tuple[str, str]]] = {}
        foreign_parts: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for schema, name, root_schema, root, kind, persistence, pairs in cur.fetchall():
            if not wanted or (root_schema, root) in wanted:
                partitions[(schema, name)] = (root_schema, root)
                if kind == "r":
                    leaves.setdefault((root_schema, root), set()).add((schema, name))
                if any(own != theirs for own, theirs in pairs):
                    partition_attnums[(schema, name)] = {own: theirs for own, theirs in pairs}
                # only a leaf holds rows: a partitioned table created UNLOGGED logs its partitions
                if kind == "r" and persistence == "u":
                    unlogged_parts.setdefault((root_schema, root), []).append((schema, name))
                elif kind == "f":
                    foreign_parts.setdefault((root_schema, root), []).append((schema, name))
    missing = wanted - {(r[1], r[2]) for r in rels}
    tables: dict[tuple[str, str], TableSchema] = {}
    refused: dict[tuple[str, str], str] = {}
    fixes: dict[tuple[str, str], str] = {}
    for schema, table in sorted(missing):
        refused[(schema, table)] = (
            f"table {schema}.{table} is configured in source_tables but does not exist "
            "(or is a partition): check the name"
        )
        fixes[(schema, table)] = "fix the name in source_tables (CDC_SOURCE_TABLES)"
    for oid, schema, name, replident, relkind, persistence in rels:
        if (schema, name) in foreign_parts:
            parts = foreign_parts[(schema, name)]
            refused[(schema, name)], fixes[(schema, name)] = foreign_partitions(schema, name, parts)
            continue
        if (relkind == "r" and persistence == "u") or (schema, name) in unlogged_parts:
            refused[(schema, name)], fixes[(schema, name)] = unlogged(
                schema, name, unlogged_parts.get((schema, name), [])
            )
            continue
        if replident == "n":  # wal2json would skip its updates and deletes with only a server warning
            refused[(schema, name)], fixes[(schema, name)] = replica_identity_nothing(schema, name)
            continue
        kinds = index_keys.get(oid, {})
        identity = kinds.get("replident") if replident == "i" else kinds.get("primary")
        key = identity
        configured = keys.get((schema, name))
        # a DEFERRABLE primary key is no replica identity (DEFAULT logs nothing then), and under FULL
        # it lets rows swap keys within one statement: refused, unless a key is configured that does
        # not hold the primary key's columns (one that does is unique only through that key)
        own_key = configured is None or set(kinds.get("primary") or ()) <= set(configured)
        if oid in deferrable and (replident == "d" or (replident == "f" and own_key)):
            refused[(schema, name)], fixes[(schema, name)] = deferrable_key(schema, name, replident == "d")
            continue
        if configured is not None:
            names = {c.name for c in columns[oid]}
            unknown = [c for c in configured if c not in names]
            if unknown:
                refused[(schema, name)] = (
                    f"table {schema}.{name}: configured key column(s) {unknown} do not exist; fix source_keys"
                )
                fixes[(schema, name)] = "name columns the table has in source_keys (CDC_SOURCE_KEYS)"
                continue
            if replident != "f" and not set(configured) <= set(identity or ()):
                refused[(schema, name)] = (
                    f"table {schema}.{name}: its configured key {list(configured)} is not part of what "
                    "PostgreSQL logs for updates and deletes; run ALTER TABLE ... REPLICA IDENTITY FULL"
                )
                fixes[(schema, name)] = f"ALTER TABLE {pg_name(schema, name)} REPLICA IDENTITY FULL"
                continue
            key = list(configured)
        if not key:
            refused[(schema, name)] = (
                f"table {schema}.{name} has no primary key "
                + ("(its replica identity index is missing) " if replident == "i" else "")
                + "and cannot be replicated: add a primary key, or a unique index on NOT NULL "
                "columns with ALTER TABLE ... REPLICA IDENTITY USING INDEX"
            )
            fixes[(schema, name)] = NO_KEY_FIX
            continue
        tables[(schema, name)] = TableSchema(
            schema, name, tuple(columns[oid]), tuple(key), partitioned=relkind == "p"
        )
    # tables whose targets collide are refused together: the others go on
    for ident, note in target_collisions(tables).items():
        del tables[ident]
        refused[ident], fixes[ident] = note, COLLISION_FIX
    rel_oids = {(schema, name): int(oid) for oid, schema, name, *_ in rels}
    table_oids = {ident: rel_oids[ident] for ident in tables}
    refused_oids = {ident: rel_oids[ident] for ident in refused if ident in rel_oids}
    partition_leaves = {root: frozenset(parts) for root, parts in leaves.items()}
    return Catalog(
        tables, refused, partitions, fixes, table_oids, refused_oids, partition_attnums, partition_leaves
    )
