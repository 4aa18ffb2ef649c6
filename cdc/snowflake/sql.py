"""Snowflake SQL text for one table: DDL, COPY and the MERGE that applies a staged window.

Pure builders: names and a ``TableSchema`` in, SQL text out, no connection. Every identifier goes
through ``ident`` (always double-quoted), every number through ``_number``, and a stage path must
match a short character class, so no name or value can change the shape of a statement.

The MERGE applies the latest change per key of one window's load table:

* rows of a transaction past ``max_lsn`` (cut off at the window end) are ignored;
* a change applies only if its ``_CDC_LSN`` is newer than the row's, so re-applying a window
  changes nothing;
* a toastable column an update left out (``_CDC_UNCHANGED``) takes its value from the latest
  change of the same row in the window that did send it, else keeps the target's value. A row
  whose key changed in the window (``_CDC_CHAIN``, origin key ``O<attnum>``) takes it from its
  own earlier changes since the move, else from the changes of its origin key before the move,
  else from the target row under the origin key;
* a truncate ``(lsn, seq)`` ignores the window's rows before it and deletes every target row
  older than it, in the same statement (so the table is never seen half-applied).

Every transformation happens inside the USING subquery: WHEN clauses only copy plain source
columns (the fakesnow stand-in supports nothing else there).
"""

from __future__ import annotations

import hashlib
import re

from cdc.errors import SchemaError
from cdc.model import Column, TableSchema
from cdc.typemap import column_mapping

__all__ = [
    "LOAD_META",
    "TARGET_META",
    "copy_sql",
    "create_load_table_sql",
    "create_schema_sql",
    "create_target_table_sql",
    "drop_table_sql",
    "omitted_attnums",
    "omitted_sql",
    "fetch_columns",
    "ident",
    "load_table_name",
    "merge_sql",
    "qualified",
    "select_table_sql",
    "stage_ref",
    "target_columns",
    "target_table",
]

_PLAIN = re.compile(r"[a-z_][a-z0-9_$]*")
_REL_PATH = re.compile(r"[A-Za-z0-9_.$/-]+")
_MAX_NUMBER = 1 << 64

# (name, type) of the metadata columns in the target table and in the load table
TARGET_META: tuple[tuple[str, str], ...] = (
    ("_CDC_LSN", "NUMBER(20,0)"),
    ("_CDC_SEQ", "NUMBER(19,0)"),
    ("_CDC_OP", "VARCHAR(1)"),
    ("_CDC_COMMIT_TS", "TIMESTAMP_TZ(6)"),
    ("_CDC_SYNCED_AT", "TIMESTAMP_TZ(6)"),
)
LOAD_META: tuple[tuple[str, str], ...] = (
    *TARGET_META[:4],
    ("_CDC_UNCHANGED", "VARCHAR"),
    ("_CDC_MOVED", "BOOLEAN"),
    ("_CDC_CHAIN", "NUMBER(19,0)"),
)
# metadata the MERGE copies from the load table (``_CDC_SYNCED_AT`` is the MERGE's own clock)
_COPIED_META = tuple(name for name, _ in TARGET_META[:4])
DELETED = "_CDC_DELETED"  # with soft delete: TRUE for rows deleted in the source


def ident(name: str) -> str:
    """A quoted Snowflake identifier under the target naming rule.

    A plain lower-case name becomes its upper-case form (what Snowflake makes of it unquoted);
    any other name keeps its exact spelling. Always quoted, embedded quotes doubled.
    """
    if not name:
        raise ValueError("an identifier must not be empty")
    spelled = name.upper() if _PLAIN.fullmatch(name) else name
    return '"' + spelled.replace('"', '""') + '"'


def qualified(*parts: str) -> str:
    """``"A"."B"."C"``: each part through ``ident``."""
    return ".".join(ident(p) for p in parts)


def stage_ref(stage: str) -> str:
    """A configured stage name (``DB.SCHEMA.STAGE``) split on dots, each part quoted."""
    parts = stage.split(".")
    if any(not p for p in parts) or len(parts) > 3:
        raise ValueError(f"stage name {stage!r} must be written [database.][schema.]stage")
    return qualified(*parts)


def target_table(database: str, table: TableSchema) -> str:
    return qualified(database, table.schema, table.name)


def target_columns(table: TableSchema) -> list[tuple[Column, str]]:
    """Each source column with its quoted target name; refuses names that collide."""
    seen: dict[str, str] = {name: "metadata column" for name, _ in TARGET_META}
    seen["_CDC_DELETED"] = "metadata column"
    result: list[tuple[Column, str]] = []
    for col in table.columns:
        quoted = ident(col.name)
        key = quoted[1:-1].replace('""', '"')
        if key in seen:
            raise SchemaError(
                f"table {table.qualified}: column {col.name!r} lands in Snowflake as {quoted}, "
                f"which is already taken by {seen[key]}; rename one of them in the source"
            )
        seen[key] = f"column {col.name!r}"
        result.append((col, quoted))
    if not table.key:
        raise SchemaError(f"table {table.qualified} has no key columns: it cannot be merged")
    return result


def create_schema_sql(database: str, schema_name: str) -> str:
    return f"CREATE SCHEMA IF NOT EXISTS {qualified(database, schema_name)}"


def create_target_table_sql(database: str, table: TableSchema, soft_delete: bool = False) -> str:
    lines = []
    for col, name in target_columns(table):
        not_null = " NOT NULL" if col.name in table.key else ""
        lines.append(f"{name} {column_mapping(col).snowflake}{not_null}")
    lines += [f"{ident(name)} {type_}" for name, type_ in TARGET_META]
    if soft_delete:
        lines.append(f"{ident(DELETED)} BOOLEAN")
    body = ",\n  ".join(lines)
    return f"CREATE TABLE IF NOT EXISTS {target_table(database, table)} (\n  {body}\n)"


def load_table_name(pipeline: str, window_id: str, table: TableSchema) -> str:
    """A plain upper-case name, unique per (pipeline, window, table): ``L_<16 hex>``."""
    text = "\x00".join((pipeline, window_id, table.schema, table.name))
    return "L_" + hashlib.sha256(text.encode()).hexdigest()[:16].upper()


def create_load_table_sql(database: str, load_schema: str, load_name: str, table: TableSchema) -> str:
    lines = [f"{ident(c.stage_name)} {column_mapping(c).load_snowflake}" for c in table.columns]
    lines += [f"{ident(name)} {type_}" for name, type_ in LOAD_META]
    lines += [f"{ident(c.origin_name)} {column_mapping(c).load_snowflake}" for c in table.key_columns]
    body = ",\n  ".join(lines)
    fq = qualified(database, load_schema, load_name)
    return f"CREATE OR REPLACE TRANSIENT TABLE {fq} (\n  {body}\n)"


def copy_sql(load_fq: str, stage_fq: str, rel_path: str) -> str:
    """COPY every Parquet part under ``<stage>/<rel_path>/`` into the load table.

    FORCE = TRUE: the load table is new for every apply, and a re-applied window must load its
    parts again even where the service remembers loading them before.
    """
    path = rel_path.strip("/")
    segments = path.split("/")
    if not _REL_PATH.fullmatch(path) or any(s in ("", ".", "..") for s in segments):
        raise ValueError(
            f"stage path {rel_path!r} must be relative, made of [A-Za-z0-9_.$-] segments separated by '/'"
        )
    return (
        f"COPY INTO {load_fq} FROM @{stage_fq}/{path}/ FILE_FORMAT = (TYPE = PARQUET) "
        "MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE FORCE = TRUE"
    )


def drop_table_sql(fq: str) -> str:
    return f"DROP TABLE IF EXISTS {fq}"


def fetch_columns(table: TableSchema, soft_delete: bool = False) -> list[tuple[str, str, bool]]:
    """(result key, quoted target column, is a timestamp) for every column ``select_table_sql`` reads."""
    result = [
        (col.name, name, column_mapping(col).snowflake.startswith("TIMESTAMP"))
        for col, name in target_columns(table)
    ]
    result += [(name, ident(name), type_.startswith("TIMESTAMP")) for name, type_ in TARGET_META]
    if soft_delete:
        result.append((DELETED, ident(DELETED), False))
    return result


def select_table_sql(database: str, table: TableSchema, soft_delete: bool = False) -> str:
    """Every target row ordered by key: the columns of ``fetch_columns``, then ``<col> IS NULL``
    for each timestamp column (the fakesnow stand-in returns a NULL timestamp as 1970-01-01)."""
    columns = fetch_columns(table, soft_delete)
    names = [quoted for _, quoted, _ in columns] + [f"{quoted} IS NULL" for _, quoted, ts in columns if ts]
    order = ", ".join(ident(k) for k in table.key)
    return f"SELECT {', '.join(names)} FROM {target_table(database, table)} ORDER BY {order}"


def _number(value: int, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _MAX_NUMBER:
        raise ValueError(f"{what} must be a whole number in [0, 2**64), got {value!r}")
    return str(value)


def _unchanged(alias: str, col: Column) -> str:
    return f"CONTAINS(COALESCE({alias}.\"_CDC_UNCHANGED\", ''), ',{col.attnum},')"


def _value(col: Column, alias: str) -> str:
    """A load column as the target stores it (json text becomes VARIANT)."""
    ref = f"{alias}.{ident(col.stage_name)}"
    return column_mapping(col).load_expr.format(ref)


def omitted_sql(load_fq: str) -> str:
    """The distinct ``_CDC_UNCHANGED`` lists of a load table (see ``omitted_attnums``)."""
    return f'SELECT DISTINCT "_CDC_UNCHANGED" FROM {load_fq} WHERE "_CDC_UNCHANGED" IS NOT NULL'


def omitted_attnums(rows: list[tuple[str | None]]) -> frozenset[int]:
    """The attnums some update of the window left out, from ``omitted_sql``'s rows (``,3,7,``)."""
    return frozenset(int(part) for (text,) in rows for part in (text or "").split(",") if part)


def merge_sql(
    target_fq: str,
    load_fq: str,
    table: TableSchema,
    *,
    max_lsn: int,
    truncate: tuple[int, int] | None = None,
    soft_delete: bool = False,
    omitted: frozenset[int] | None = None,
    min_lsn: int | None = None,
) -> str:
    """The MERGE of one window's load table into the target (see the module docstring).

    With ``soft_delete`` a delete keeps the row and sets ``_CDC_DELETED``; a later insert of the
    same key clears it. ``omitted``, the attnums that some update of the window left out
    (``omitted_attnums``), limits the fill to those columns: a window whose updates sent every
    column merges its latest change per key without joining the target again (None: every
    column an update may leave out is filled). ``min_lsn``: changes (and a truncate) committed
    before it are left out (a replay onto a table re-snapshotted at that LSN, whose copy holds them)."""
    cols = target_columns(table)
    key_cols = table.key_columns
    # columns an update may leave out: TOASTable ones, and ones added with a default after some
    # of the window's updates were written (those updates do not carry them)
    toast = [
        c
        for c in table.columns
        if (c.toastable or c.missing is not None)
        and c.name not in table.key
        and (omitted is None or c.attnum in omitted)
    ]

    where = f'x."_CDC_LSN" <= {_number(max_lsn, "max_lsn")}'
    if min_lsn is not None:
        where += f' AND x."_CDC_LSN" >= {_number(min_lsn, "min_lsn")}'
        if truncate is not None and truncate[0] < min_lsn:
            truncate = None
    if truncate is not None:
        trunc_lsn, trunc_seq = _number(truncate[0], "truncate LSN"), _number(truncate[1], "truncate seq")
        where += f' AND x."_CDC_SEQ" > {trunc_seq}'
    partition = ", ".join(f"x.{ident(c.stage_name)}" for c in key_cols)
    running = 'ORDER BY x."_CDC_SEQ" ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW'

    # w: every change of the window with, per row, the running bookkeeping the fill needs
    inner = [
        "x.*",
        f"ROW_NUMBER() OVER (PARTITION BY {partition} "
        'ORDER BY x."_CDC_LSN" DESC, x."_CDC_SEQ" DESC) AS "_RN"',
    ]
    if toast:
        # the seq of the key's last change in its transaction: the one that wrote the key's row
        inner.append(f'MAX(x."_CDC_SEQ") OVER (PARTITION BY {partition}, x."_CDC_LSN") AS "_LK"')
        # the seq where the key's current life began in this window (an insert or a move in)
        inner.append(
            f'MAX(CASE WHEN x."_CDC_OP" = \'I\' OR x."_CDC_MOVED" THEN x."_CDC_SEQ" END) '
            f'OVER (PARTITION BY {partition} {running}) AS "_LS"'
        )
    for c in toast:
        sent = f'CASE WHEN x."_CDC_OP" <> \'D\' AND NOT {_unchanged("x", c)} THEN x."_CDC_SEQ" END'
        inner.append(f'MAX({sent}) OVER (PARTITION BY {partition} {running}) AS "_KS{c.attnum}"')
        inner.append(f'MAX({sent}) OVER (PARTITION BY x."_CDC_CHAIN" {running}) AS "_CS{c.attnum}"')

    moved = f"l.{ident(key_cols[0].origin_name)} IS NOT NULL"
    select = []
    joins = []
    for col, name in cols:
        expr = _value(col, "l")
        if col in toast:
            n = col.attnum
            source = (
                f'CASE WHEN l."_KS{n}" >= COALESCE(l."_LS", -1) THEN l."_KS{n}" '
                f'WHEN {moved} THEN COALESCE(l."_CS{n}", '
                f'CASE WHEN d."_KS{n}" >= COALESCE(d."_LS", -1) THEN d."_KS{n}" END) END'
            )
            joins.append(f'LEFT JOIN {load_fq} v{n} ON v{n}."_CDC_SEQ" = {source}')
            # a moved row no change of the window sent the column for keeps the value it had under
            # its origin key, which the target holds there; or, when a run that merged part of this
            # window was killed before its checkpoint (the window is read again), under the key of
            # the chain's latest change that run merged (tc), which is the same value
            expr = (
                f'CASE WHEN v{n}."_CDC_SEQ" IS NOT NULL THEN {_value(col, f"v{n}")} '
                f'WHEN {moved} AND tc."_CDC_CH" IS NOT NULL THEN tc.{name} '
                f"WHEN {moved} THEN org.{name} ELSE cur.{name} END"
            )
        select.append(f"{expr} AS {name}")
    select += [f"l.{ident(m)} AS {ident(m)}" for m in _COPIED_META]
    if soft_delete:
        select.append(f"(l.\"_CDC_OP\" = 'D') AS {ident(DELETED)}")

    if toast:
        newer = f' AND cur."_CDC_LSN" >= {trunc_lsn}' if truncate is not None else ""
        org_newer = f' AND org."_CDC_LSN" >= {trunc_lsn}' if truncate is not None else ""
        on_cur = " AND ".join(f"cur.{ident(c.name)} = l.{ident(c.stage_name)}" for c in key_cols)
        on_org = " AND ".join(f"org.{ident(c.name)} = l.{ident(c.origin_name)}" for c in key_cols)
        joins = [
            'LEFT JOIN w d ON d."_CDC_SEQ" = l."_CDC_CHAIN" - 1',
            'LEFT JOIN tc ON tc."_CDC_CH" = l."_CDC_CHAIN"',
            *joins,
            f"LEFT JOIN {target_fq} cur ON {on_cur}{newer}",
            f"LEFT JOIN {target_fq} org ON {on_org}{org_newer}",
        ]

    sep, inner_sep, set_sep = ",\n    ", ",\n      ", ",\n  "
    if not toast:
        using = (
            f"  SELECT\n    {sep.join(select)}\n"
            f"  FROM (\n    SELECT\n      x.*\n"
            f"    FROM {load_fq} x\n"
            f"    WHERE {where}\n"
            f"    QUALIFY ROW_NUMBER() OVER (PARTITION BY {partition} "
            'ORDER BY x."_CDC_LSN" DESC, x."_CDC_SEQ" DESC) = 1\n'
            "  ) l"
        )
    else:
        # tc: per chain of moves, the target row its latest change the target holds already wrote:
        # a target row with a transaction's LSN was written by the key's last change in it (a
        # window never splits a transaction, whatever its start)
        carried = ", ".join(f"kept.{name}" for col, name in cols if col in toast)
        on_kept = " AND ".join(f"kept.{ident(c.name)} = c.{ident(c.stage_name)}" for c in key_cols)
        using = (
            f"  WITH w AS (\n    SELECT\n      {inner_sep.join(inner)}\n"
            f"    FROM {load_fq} x\n"
            f"    WHERE {where}\n"
            "  ),\n"
            f'  tc AS (\n    SELECT c."_CDC_CHAIN" AS "_CDC_CH", {carried}\n'
            f"    FROM w c JOIN {target_fq} kept\n"
            f'      ON {on_kept} AND kept."_CDC_LSN" = c."_CDC_LSN"\n'
            '    WHERE c."_CDC_CHAIN" IS NOT NULL AND c."_CDC_SEQ" = c."_LK"\n'
            '    QUALIFY ROW_NUMBER() OVER (PARTITION BY c."_CDC_CHAIN" ORDER BY c."_CDC_SEQ" DESC) = 1\n'
            "  )\n"
            f"  SELECT\n    {sep.join(select)}\n"
            "  FROM w l"
        )
        for join in joins:
            using += f"\n  {join}"
        using += '\n  WHERE l."_RN" = 1'
    if truncate is not None:
        # one delete marker for every target row older than the truncate that no later change
        # in this window touches
        marks = [
            f"cur.{name} AS {name}" if col.name in table.key else f"NULL AS {name}" for col, name in cols
        ]
        marks += [
            f'{trunc_lsn} AS "_CDC_LSN"',
            f'{trunc_seq} AS "_CDC_SEQ"',
            "'D' AS \"_CDC_OP\"",
            'NULL AS "_CDC_COMMIT_TS"',
        ]
        if soft_delete:
            marks.append(f"TRUE AS {ident(DELETED)}")
        same_key = " AND ".join(f"x.{ident(c.stage_name)} = cur.{ident(c.name)}" for c in key_cols)
        using += (
            f"\n  UNION ALL\n  SELECT\n    {sep.join(marks)}\n"
            f"  FROM {target_fq} cur\n"
            f'  WHERE cur."_CDC_LSN" < {trunc_lsn}\n'
            + (f"    AND NOT COALESCE(cur.{ident(DELETED)}, FALSE)\n" if soft_delete else "")
            + f"    AND NOT EXISTS (SELECT 1 FROM {load_fq} x WHERE {where} AND {same_key})"
        )

    match = " AND ".join(f"t.{name} = s.{name}" for col, name in cols if col.name in table.key)
    newer = 's."_CDC_LSN" > t."_CDC_LSN"'
    updates = [f"{name} = s.{name}" for col, name in cols if col.name not in table.key]
    meta = [f"{ident(m)} = s.{ident(m)}" for m in _COPIED_META]
    if soft_delete:
        meta.append(f"{ident(DELETED)} = s.{ident(DELETED)}")
    meta.append('"_CDC_SYNCED_AT" = CURRENT_TIMESTAMP()')
    updates += meta
    all_names = [name for _, name in cols] + [ident(m) for m in _COPIED_META]
    if soft_delete:
        all_names.append(ident(DELETED))
    insert_cols = ", ".join([*all_names, '"_CDC_SYNCED_AT"'])
    insert_vals = ", ".join([*(f"s.{n}" for n in all_names), "CURRENT_TIMESTAMP()"])
    on_delete = f"UPDATE SET\n  {set_sep.join(meta)}" if soft_delete else "DELETE"
    return (
        f"MERGE INTO {target_fq} t USING (\n{using}\n) s ON {match}\n"
        f"WHEN MATCHED AND {newer} AND s.\"_CDC_OP\" = 'D' THEN {on_delete}\n"
        f"WHEN MATCHED AND {newer} THEN UPDATE SET\n  {set_sep.join(updates)}\n"
        f"WHEN NOT MATCHED AND s.\"_CDC_OP\" <> 'D' THEN INSERT ({insert_cols})\n"
        f"  VALUES ({insert_vals})"
    )
