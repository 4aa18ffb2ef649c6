"""Schema evolution of a target table: compare the source schema with the target's columns and
plan the DDL that brings the target along, or refuse what cannot be applied safely.

The sink keeps a registry of the target columns it created (table ``_CDC_COLUMNS`` in the load
schema): each column's PostgreSQL attnum, name and type. PostgreSQL never reuses an attnum within a
table, so the registry tells a renamed column (same attnum, new name) from a dropped one plus an
added one; the type tells a column whose type changed (``ALTER COLUMN ... TYPE`` rewrites the rows
without any change the WAL carries) even when the target type stays the same. Names and types are
stored hex-encoded so that none needs quoting in a literal. Pure builders: no connection.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from cdc.convert import convert_column
from cdc.errors import DecodeError, SchemaError
from cdc.model import Column, TableSchema
from cdc.snowflake.sql import DELETED, ident, target_columns, target_table
from cdc.typemap import column_mapping

UNBOUNDED_TEXT = 16_777_216
REGISTRY = "_CDC_COLUMNS"
_TYPE = re.compile(r"^([A-Z_]+)(?:\((\d+)(?:,(\d+))?\))?$")


@dataclass(frozen=True)
class TargetColumn:
    """A column of the target table as INFORMATION_SCHEMA.COLUMNS describes it."""

    name: str  # exact Snowflake name
    data_type: str
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    origin: tuple[int, str] | None = None  # (attnum, PostgreSQL name) from the registry


@dataclass
class Evolution:
    statements: list[tuple[str, str]] = field(default_factory=list)  # (what, sql)
    notes: list[str] = field(default_factory=list)
    aliases: dict[str, str | None] = field(default_factory=dict)  # old PostgreSQL name -> current
    set_aside: dict[str, str] = field(default_factory=dict)  # dropped column's target name -> new name
    fills: list[int] = field(default_factory=list)  # attnums of added columns the plan fills


def literal(text: str) -> str:
    """A Snowflake string literal (quotes doubled, backslashes escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def describe_sql(database: str, table: TableSchema) -> str:
    schema_name, table_name = (ident(p)[1:-1].replace('""', '"') for p in (table.schema, table.name))
    return (
        "SELECT column_name, data_type, character_maximum_length, numeric_precision, numeric_scale "
        f"FROM {ident(database)}.INFORMATION_SCHEMA.COLUMNS "
        f"WHERE table_schema = {literal(schema_name)} AND table_name = {literal(table_name)} "
        "ORDER BY ordinal_position"
    )


def _hex(text: str) -> str:
    return "'" + text.encode().hex() + "'"


def registry_create_sql(database: str, load_schema: str) -> list[str]:
    """Create the registry; one made by an earlier version gets the type column (empty: a type
    the registry does not know is not compared)."""
    reg = f"{ident(database)}.{ident(load_schema)}.{ident(REGISTRY)}"
    return [
        f"CREATE TABLE IF NOT EXISTS {reg} "
        "(TABLE_KEY VARCHAR, ATTNUM NUMBER(10,0), PG_NAME VARCHAR, TARGET_NAME VARCHAR, PG_TYPE VARCHAR)",
        f"ALTER TABLE {reg} ADD COLUMN IF NOT EXISTS PG_TYPE VARCHAR",
    ]


def registry_key(database: str, table: TableSchema) -> str:
    return target_table(database, table).encode().hex()


def registry_read_sql(database: str, load_schema: str, table: TableSchema) -> str:
    return (
        "SELECT ATTNUM, PG_NAME, TARGET_NAME, PG_TYPE "
        f"FROM {ident(database)}.{ident(load_schema)}.{ident(REGISTRY)} "
        f"WHERE TABLE_KEY = '{registry_key(database, table)}'"
    )


def registry_write_sql(
    database: str, load_schema: str, table: TableSchema, entries: list[tuple[int, str, str]]
) -> list[str]:
    """Replace the table's registry rows with ``(attnum, PostgreSQL name, target name)`` entries;
    a current column's entry also records its type in ``table``."""
    reg = f"{ident(database)}.{ident(load_schema)}.{ident(REGISTRY)}"
    key = registry_key(database, table)
    types = {col.attnum: recorded_type(col) for col in table.columns}
    statements = [f"DELETE FROM {reg} WHERE TABLE_KEY = '{key}'"]
    if entries:
        values = ", ".join(
            f"('{key}', {int(a)}, {_hex(pg)}, {_hex(tn)}, {_hex(types[a]) if tn and a in types else 'NULL'})"
            for a, pg, tn in entries
        )
        statements.append(
            f"INSERT INTO {reg} (TABLE_KEY, ATTNUM, PG_NAME, TARGET_NAME, PG_TYPE) VALUES {values}"
        )
    return statements


def registry_entries(
    table: TableSchema,
    existing: list[TargetColumn],
    history: list[tuple[int, str, str]] | None = None,
    set_aside: dict[str, str] | None = None,
) -> list[tuple[int, str, str]]:
    """What the registry holds after an evolution: every current column, dropped ones (under the
    name they were set aside to, if any), and the former names of renamed columns (target name
    ""), so that changes written before a rename and read by a later window still find their
    column."""
    entries = [
        (col.attnum, col.name, quoted[1:-1].replace('""', '"')) for col, quoted in target_columns(table)
    ]
    names = {col.attnum: col.name for col in table.columns}
    aside = set_aside or {}
    entries += [
        (c.origin[0], c.origin[1], aside.get(c.name, c.name))
        for c in existing
        if c.origin and c.origin[0] not in names
    ]
    former = {
        (c.origin[0], c.origin[1])
        for c in existing
        if c.origin and names.get(c.origin[0], c.origin[1]) != c.origin[1]
    }
    former |= {(a, pg) for a, pg, _ in history or () if a in names and names[a] != pg}
    entries += [(a, pg, "") for a, pg in sorted(former)]
    return entries


# registry rows as read: (attnum, PostgreSQL name, target name, PostgreSQL type or None), hex
RegistryRow = tuple[Any, ...]


def decode_registry(rows: list[RegistryRow]) -> dict[str, tuple[int, str]]:
    """target column name -> (attnum, PostgreSQL name), for the registry's current columns."""
    return {
        bytes.fromhex(tn).decode(): (int(a), bytes.fromhex(pg).decode())
        for a, pg, tn, *_ in rows
        if tn and int(a) > 0
    }


def decode_history(rows: list[RegistryRow]) -> list[tuple[int, str, str]]:
    """Every registry row decoded: (attnum, PostgreSQL name, target name or "" for a former name)."""
    return [
        (int(a), bytes.fromhex(pg).decode(), bytes.fromhex(tn).decode())
        for a, pg, tn, *_ in rows
        if int(a) > 0
    ]


def decode_types(rows: list[RegistryRow]) -> dict[int, str]:
    """attnum -> the PostgreSQL type recorded for a current column (rows written before types were
    recorded have none)."""
    return {int(row[0]): bytes.fromhex(row[3]).decode() for row in rows if len(row) > 3 and row[3] and row[2]}


def decode_pending_fills(rows: list[RegistryRow]) -> frozenset[int]:
    """The attnums of added columns whose fill may not have run (see ``pending_fill_entries``)."""
    return frozenset(-int(row[0]) for row in rows if int(row[0]) < 0)


def pending_fill_entries(table: TableSchema, attnums: list[int]) -> list[tuple[int, str, str]]:
    """Registry rows written before an evolution that fills added columns: ``(-attnum, name, "")``.

    ADD COLUMN, the UPDATE that fills it and the registry write are separate statements. A run
    that dies between them leaves the marker behind, and the next plan fills the column again
    (nothing has merged into it yet: the MERGE runs only after the evolution). The registry
    written after the evolution has no markers."""
    names = {c.attnum: c.name for c in table.columns}
    return [(-a, names[a], "") for a in attnums]


def _family(data_type: str) -> str:
    upper = data_type.upper()
    if upper in ("TEXT", "VARCHAR", "STRING", "CHAR", "CHARACTER"):
        return "TEXT"
    if upper in ("NUMBER", "FIXED", "DECIMAL", "NUMERIC", "INT", "INTEGER", "BIGINT"):
        return "NUMBER"
    if upper in ("FLOAT", "REAL", "DOUBLE", "FLOAT8", "DOUBLE PRECISION"):
        return "FLOAT"
    return upper.split("(")[0]


def _desired(col: Column) -> tuple[str, int | None, int | None]:
    match = _TYPE.match(column_mapping(col).snowflake.replace(" ", ""))
    if not match:
        return (_family(column_mapping(col).snowflake), None, None)
    family = _family(match.group(1))
    a = int(match.group(2)) if match.group(2) else None
    b = int(match.group(3)) if match.group(3) else None
    return family, a, b


def _type_change(table: TableSchema, col: Column, current: TargetColumn) -> str | None:
    """The new type when the source widened the column; None when nothing is to do.

    Raises ``SchemaError`` when the change cannot be applied safely."""
    family, a, b = _desired(col)
    have = _family(current.data_type)
    wanted = column_mapping(col).snowflake
    if family != have:
        raise SchemaError(
            f"table {table.qualified} column {col.name!r}: its type changed to {col.type_name} "
            f"({wanted} in Snowflake) but the target column is {current.data_type}; this cannot be "
            f"applied safely: re-snapshot the table (cdc snapshot --tables {table.qualified})"
        )
    if family == "NUMBER":
        precision, scale = a or 38, b or 0
        if scale != (current.scale or 0):
            raise SchemaError(
                f"table {table.qualified} column {col.name!r}: its scale changed to {scale} (target "
                f"NUMBER({current.precision},{current.scale})); re-snapshot the table "
                f"(cdc snapshot --tables {table.qualified})"
            )
        return wanted if current.precision is not None and precision > current.precision else None
    if family == "TEXT":
        have_len = current.length if current.length and current.length < UNBOUNDED_TEXT else None
        want_len = a if a and a < UNBOUNDED_TEXT else None
        if have_len is not None and (want_len is None or want_len > have_len):
            return wanted
    return None


def fill_sql(target_fq: str, column_ident: str, table: TableSchema, col: Column) -> str:
    """Give existing rows the value PostgreSQL shows for them: the added column's default.

    The missing value is PostgreSQL's text; it goes through the same conversion as a value
    wal2json sends (money text to a number, array text to JSON, ...), then into a typed literal.
    """
    assert col.missing is not None
    mapping = column_mapping(col)
    try:
        value = convert_column(table, col, mapping, [col.missing])[0].as_py()
    except DecodeError as exc:
        raise SchemaError(
            f"{exc}: the default of added column {col.name!r} cannot fill existing rows; re-snapshot "
            f"the table (cdc snapshot --tables {table.qualified})"
        ) from exc
    return f"UPDATE {target_fq} SET {column_ident} = {_typed_literal(mapping.kind, mapping.snowflake, value)}"


def _typed_literal(kind: str, snowflake_type: str, value: Any) -> str:
    """A Snowflake expression for one staged value of a column of ``kind``."""
    if value is None:
        return "NULL"
    if kind in ("json", "array"):
        return f"PARSE_JSON({literal(value)})"
    if kind == "bytes":
        return f"TO_BINARY({literal(bytes(value).hex())}, 'HEX')"
    if kind == "bool":
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        text = (
            "NaN"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    elif isinstance(value, Decimal):
        text = format(value, "f")
    else:
        text = str(value)
    return f"CAST({literal(text)} AS {snowflake_type})"


def plan(
    database: str,
    table: TableSchema,
    existing: list[TargetColumn],
    has_rows: bool,
    soft_delete: bool = False,
    pending_fills: frozenset[int] = frozenset(),
    recorded_types: dict[int, str] | None = None,
) -> Evolution:
    """What to run so the target table matches ``table``; raises ``SchemaError`` when unsafe.

    ``pending_fills``: added columns whose fill an earlier run may not have finished; they are
    filled again. ``recorded_types``: the PostgreSQL type the registry holds per attnum."""
    target_fq = target_table(database, table)
    evolution = Evolution()
    by_attnum: dict[int, TargetColumn] = {}
    by_name = {c.name: c for c in existing}
    for have in existing:
        if have.origin is not None:
            by_attnum[have.origin[0]] = have
    matched: set[str] = set()
    adds: list[tuple[str, str]] = []
    widens: list[tuple[str, str]] = []
    renames: list[tuple[str, str]] = []  # (current target name, quoted new name)
    wanted = {quoted[1:-1].replace('""', '"'): col.attnum for col, quoted in target_columns(table)}
    live = {col.attnum for col in table.columns}
    for have in existing:
        # a dropped column whose target name a current column needs (added again under the same
        # name, or another column renamed to it): move it aside, keeping its values
        if (
            have.origin is None
            or have.origin[0] in live
            or wanted.get(have.name, have.origin[0]) == have.origin[0]
        ):
            continue
        aside = _aside_name(have, by_name)
        evolution.statements.append(
            (
                "rename column",
                f"ALTER TABLE {target_fq} RENAME COLUMN {ident_exact(have.name)} TO {ident_exact(aside)}",
            )
        )
        evolution.set_aside[have.name] = aside
        evolution.notes.append(
            f"table {table.qualified}: the target column {have.name!r} of dropped column {have.origin[1]!r} "
            f"is now {aside!r}: a current column takes its name"
        )
        by_name[aside] = by_name.pop(have.name)
    for col, quoted in target_columns(table):
        name = quoted[1:-1].replace('""', '"')
        current = by_attnum.get(col.attnum)
        if current is None and name in by_name and by_name[name].origin is None:
            current = by_name[name]  # a column the registry does not know: adopt it by name
        if current is None:
            if col.name in table.key and has_rows:
                raise SchemaError(
                    f"table {table.qualified}: key column {col.name!r} is new; re-snapshot the table "
                    f"(cdc snapshot --tables {table.qualified})"
                )
            if has_rows and col.missing is None and col.has_default:
                raise SchemaError(
                    f"table {table.qualified} column {col.name!r} was added with a default whose value "
                    "in existing rows is unknown here (a volatile default, or a table rewrite since the "
                    "ALTER): those values are not in the WAL; re-snapshot the table "
                    f"(cdc snapshot --tables {table.qualified})"
                )
            mapping = column_mapping(col)
            adds.append(("add column", f"ALTER TABLE {target_fq} ADD COLUMN {quoted} {mapping.snowflake}"))
            if has_rows and col.missing is not None:
                adds.append(("fill column", fill_sql(target_fq, quoted, table, col)))
                evolution.fills.append(col.attnum)
            evolution.notes.append(
                f"table {table.qualified}: added column {col.name!r} ({mapping.snowflake})"
            )
            continue
        matched.add(current.name)
        if col.attnum in pending_fills and has_rows and col.missing is not None:
            adds.append(("fill column", fill_sql(target_fq, quoted, table, col)))
            evolution.fills.append(col.attnum)
            evolution.notes.append(f"table {table.qualified}: filled added column {col.name!r} again")
        origin = current.origin
        if current.name != name:
            renames.append((current.name, quoted))
            old = origin[1] if origin else current.name
            evolution.notes.append(f"table {table.qualified}: column {old!r} renamed to {col.name!r}")
        if origin is not None and origin[1] != col.name:
            evolution.aliases[origin[1]] = col.name
        was = (recorded_types or {}).get(col.attnum)
        if has_rows and was is not None and not _keeps_values(was, recorded_type(col)):
            raise SchemaError(
                f"table {table.qualified} column {col.name!r}: its type changed from "
                f"{_split_type(was)[1]} to {col.type_name}; PostgreSQL rewrote the rows without "
                "changes the WAL carries, so the target holds their values in the old type's form: "
                "re-snapshot the table "
                f"(cdc snapshot --tables {table.qualified})"
            )
        new_type = _type_change(table, col, current)
        if new_type is not None:
            widens.append(
                ("widen column", f"ALTER TABLE {target_fq} ALTER COLUMN {quoted} SET DATA TYPE {new_type}")
            )
            evolution.notes.append(f"table {table.qualified}: column {col.name!r} widened to {new_type}")
    evolution.statements += _rename_statements(target_fq, renames) + widens + adds
    if soft_delete and DELETED not in by_name:
        evolution.statements.append(
            ("add column", f"ALTER TABLE {target_fq} ADD COLUMN {ident(DELETED)} BOOLEAN")
        )
        evolution.notes.append(f"table {table.qualified}: added {DELETED} for soft deletes")
    for have in existing:
        origin = have.origin
        if have.name in matched or have.name.startswith("_CDC_") or origin is None:
            continue
        evolution.aliases[origin[1]] = None
        evolution.notes.append(
            f"table {table.qualified}: column {origin[1]!r} was dropped in the source; the target keeps "
            f"{have.name!r} and new rows get NULL there"
        )
    return evolution


_INTEGERS = frozenset({"smallint", "integer", "bigint"})
_NUMERIC = re.compile(r"numeric(?:\((\d+),(\d+)\))?")
_TEXT = re.compile(r"text|character varying(?:\((\d+)\))?")
_MODIFIER = re.compile(r"\([\d,]+\)")


def recorded_type(col: Column) -> str:
    """What the registry records of a column's type: its OID and its name (as format_type writes
    it, with the modifier: ``1043 character varying(32)``)."""
    return f"{col.type_oid} {col.type_name}"


def _keeps_values(was: str, now: str) -> bool:
    """Whether a column whose type changed from ``was`` to ``now`` (``recorded_type``) shows every
    value it holds as before, so the target needs no new copy: the same type (its name may read
    otherwise, a renamed enum), integers widened, varchar made longer or text, numeric made wider
    with the same scale or without a scale; arrays of such. ``ALTER COLUMN ... TYPE ... USING``
    can rewrite values under any types: that is not seen here."""
    was_oid, was_name = _split_type(was)
    now_oid, now_name = _split_type(now)
    if (
        was_oid is not None
        and was_oid == now_oid
        and _MODIFIER.findall(was_name) == _MODIFIER.findall(now_name)
    ):
        return True
    return was_name == now_name or _same_text(was_name, now_name)


def _split_type(recorded: str) -> tuple[str | None, str]:
    """(OID, name) of a recorded type; a name alone (no OID: an earlier form) has OID None."""
    oid, _, name = recorded.partition(" ")
    return (oid, name) if oid.isdigit() else (None, recorded)


def _same_text(was: str, now: str) -> bool:
    if was.endswith("[]") and now.endswith("[]"):
        return _same_text(was[:-2], now[:-2])
    if was in _INTEGERS and now in _INTEGERS:
        return True
    old_text, new_text = _TEXT.fullmatch(was), _TEXT.fullmatch(now)
    if old_text and new_text:  # longer: a shorter varchar cuts trailing spaces
        old_len, new_len = old_text.group(1), new_text.group(1)
        return was == now or new_len is None or (old_len is not None and int(new_len) >= int(old_len))
    old, new = _NUMERIC.fullmatch(was), _NUMERIC.fullmatch(now)
    return bool(old and new and (new.group(2) is None or new.group(2) == old.group(2)))


def _aside_name(have: TargetColumn, taken: dict[str, TargetColumn]) -> str:
    assert have.origin is not None
    base = f"{have.name}_DROPPED_{have.origin[0]}"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    return name


def _rename_statements(target_fq: str, renames: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Renames in an order that never collides: when one column takes a name another renamed
    column still holds (a swap), every renamed column first moves to a temporary name."""
    sources = {current for current, _ in renames}
    targets = {quoted[1:-1].replace('""', '"') for _, quoted in renames}
    rename = "ALTER TABLE {} RENAME COLUMN {} TO {}"
    if not sources & targets:
        return [("rename column", rename.format(target_fq, ident_exact(c), q)) for c, q in renames]
    temporary = [(c, ident_exact(f"_CDC_RENAME_{i}"), q) for i, (c, q) in enumerate(renames)]
    return [("rename column", rename.format(target_fq, ident_exact(c), t)) for c, t, _ in temporary] + [
        ("rename column", rename.format(target_fq, t, q)) for _, t, q in temporary
    ]


def ident_exact(name: str) -> str:
    """A Snowflake identifier for a name exactly as Snowflake reports it."""
    return '"' + name.replace('"', '""') + '"'
