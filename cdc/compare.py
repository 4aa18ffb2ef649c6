"""Row-by-row comparison of a source table with its target, on normalised values.

Two levels:

* ``normalize(value)`` / ``normalize_json(value)``: type-blind, for quick checks of plain tables
  (the demo). Dates and timestamps become PostgreSQL's ISO text in UTC (what the target stores),
  NaN becomes ``"NaN"`` so that it equals itself.
* ``canonical_text(column, value)`` / ``normalize_for(column, value)``: type-aware and exact. Both
  sides of a comparison map a column's value to one string, the *canonical text*, so a wrong value
  is always a mismatch and a right one never is. The source side may be PostgreSQL text (read with
  ``source_select_sql``, recommended: it is exact for every type) or psycopg2's own Python values;
  the target side is what ``SnowflakeSink.fetch_table`` returns. ``compare_rows(...,
  columns=table.columns)`` compares with it.

The canonical text of a non-NULL value, per ``TypeMapping.kind``:

=============  ===========================================================================
int            decimal digits: ``-32768``
decimal        the number with exactly the column's scale: ``12.50`` (NaN/Infinity as in
               PostgreSQL; NUMBER never holds them, so they always mismatch)
numeric        PostgreSQL's numeric text, scale kept: ``1.50``, ``0.0000001``, ``NaN``,
               ``Infinity``, ``-Infinity``
float8         Python's ``repr`` of the double; ``NaN``, ``Infinity``, ``-Infinity``
float4         ``repr`` of the value rounded to float4 (the same for the shortest text and for
               the exact float4 widened to double)
money          the amount with two decimals: ``-1234.50`` (from ``-$1,234.50`` or a number)
bool           ``t`` / ``f``
bytes          ``\\x`` + lower-case hex
date, time,    PostgreSQL's ISO text with ``SESSION_OPTIONS`` (UTC, ISO, iso_8601):
timetz,        ``2024-02-29``, ``24:00:00``, ``12:00:00+05:30``, ``2024-02-29 13:14:15.5``,
timestamp,     ``2024-02-29 11:14:15.123456+00`` (timestamptz text with another offset is moved
timestamptz,   to UTC), ``P1Y2M-3DT4H5M6.789S``, ``infinity``, ``0044-03-15 BC``; Python values
interval       are rendered the same way (psycopg2 turns infinity into date.max and months of an
               interval into days: read those columns as text)
json           the JSON value with sorted keys, no spaces, numbers in shortest decimal form
               (``1.10`` -> ``1.1``); the last of duplicate keys wins
array          the staged JSON (``cdc.convert.pg_array_json``) in the canonical JSON form; from
               PostgreSQL text, from the VARIANT's JSON text or from psycopg2's lists;
               elements of real[] and double precision[] are read as doubles
others         the text as is (text, varchar, char(n) with its padding, uuid in lower case,
               inet, cidr, macaddr, bit strings, xml, enums, types without a mapping)
=============  ===========================================================================

A value that cannot be read as its column's type gives ``<unreadable kind: value>``: a mismatch,
never a crash. Source text must be PostgreSQL's output function's (``format('%s', c)``, as
``source_select_sql`` reads it; a ``::text`` cast trims char(n) and adds ``/32`` to inet), read in
a session with ``cdc.source.slot.SESSION_OPTIONS`` and ``lc_monetary=C``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any

from psycopg2 import sql

from cdc.convert import parse_money, pg_array_json
from cdc.model import Column, TableSchema
from cdc.source.catalog import relation_sql
from cdc.typemap import TypeMapping, column_mapping

_TSTZ_AD = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,6})?)([+-]\d\d)(?::(\d\d))?(?::(\d\d))?")


# --- type-blind -----------------------------------------------------------------------------------


def normalize(value: Any) -> Any:
    """One comparable form for a value read from PostgreSQL (psycopg2) or Snowflake."""
    if isinstance(value, (memoryview, bytearray)):
        return bytes(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (dt.date, dt.time)):
        return _temporal_text(value)
    if isinstance(value, Decimal):
        return value.normalize() if value.is_finite() else str(value)
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else value
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return value


def normalize_json(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        value = json.loads(value)
    return json.dumps(value, sort_keys=True)


# --- type-aware -----------------------------------------------------------------------------------


def _fraction(microsecond: int) -> str:
    return f".{microsecond:06d}".rstrip("0") if microsecond else ""


def _offset(delta: dt.timedelta | None) -> str:
    seconds = int(delta.total_seconds()) if delta is not None else 0
    sign = "-" if seconds < 0 else "+"
    hours, rest = divmod(abs(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{sign}{hours:02d}"
    if minutes or secs:
        text += f":{minutes:02d}"
    if secs:
        text += f":{secs:02d}"
    return text


def _temporal_text(value: dt.date | dt.time) -> str:
    """PostgreSQL's ISO output of a Python date, time or datetime (aware: in UTC, ``+00``)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        text = f"{value.date().isoformat()} {value:%H:%M:%S}{_fraction(value.microsecond)}"
        return text + "+00" if value.tzinfo is not None else text
    if isinstance(value, dt.date):
        return value.isoformat()
    text = f"{value:%H:%M:%S}{_fraction(value.microsecond)}"
    return text + _offset(value.utcoffset()) if value.tzinfo is not None else text


def _interval_text(value: dt.timedelta) -> str:
    """IntervalStyle=iso_8601 text of a timedelta (days and time only: months are not in it)."""
    micros = value // dt.timedelta(microseconds=1)
    days, micros = divmod(abs(micros), 86_400_000_000)
    sign = "-" if value < dt.timedelta(0) else ""
    hours, micros = divmod(micros, 3_600_000_000)
    minutes, micros = divmod(micros, 60_000_000)
    seconds, micros = divmod(micros, 1_000_000)
    text = "P" + (f"{sign}{days}D" if days else "")
    clock = (f"{sign}{hours}H" if hours else "") + (f"{sign}{minutes}M" if minutes else "")
    if seconds or micros:
        clock += f"{sign}{seconds}{_fraction(micros)}S"
    return text + ("T" + clock if clock else "") if (days or clock) else "PT0S"


def _utc_text(text: str) -> str:
    """timestamptz text with any offset (AD years) -> the same instant with ``+00``."""
    m = _TSTZ_AD.fullmatch(text)
    if m is None or (m.group(2) in ("+00", "-00") and not m.group(3) and not m.group(4)):
        return text
    hours = int(m.group(2))
    sign = -1 if m.group(2).startswith("-") else 1
    offset = dt.timedelta(
        hours=hours, minutes=sign * int(m.group(3) or 0), seconds=sign * int(m.group(4) or 0)
    )
    local = dt.datetime.fromisoformat(m.group(1))
    return _temporal_text(local.replace(tzinfo=dt.timezone(offset)))


def _as_float(value: Any) -> float:
    return float(value) if not isinstance(value, str) else float(value.strip())


def _float_text(value: Any, float4: bool) -> str:
    number = _as_float(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    if float4:
        number = struct.unpack("f", struct.pack("f", number))[0]
    return repr(number)


def _decimal_text(value: Any, scale: int | None) -> str:
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    if not number.is_finite():
        return "NaN" if number.is_nan() else ("Infinity" if number > 0 else "-Infinity")
    if scale is not None:
        with localcontext() as ctx:
            ctx.prec = 1000
            number = number.quantize(Decimal(1).scaleb(-scale))
    return format(number, "f")


def _json_number(number: Decimal) -> str:
    if not number.is_finite():
        return json.dumps(str(number))
    text = format(number.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def _json_render(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, numbers as their shortest exact decimal."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _json_number(Decimal(repr(value))) if math.isfinite(value) else json.dumps(repr(value))
    if isinstance(value, Decimal):
        return _json_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_json_render(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted((str(k), v) for k, v in value.items())
        return (
            "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_json_render(v)}" for k, v in items) + "}"
        )
    return json.dumps(str(value), ensure_ascii=False)


def _json_value(value: Any) -> Any:
    if isinstance(value, str):
        return json.loads(value, parse_float=Decimal)
    return value


def _native_element(value: Any, element: TypeMapping) -> Any:
    """A psycopg2 array element as the staged JSON holds it (see ``cdc.convert`` arrays)."""
    if value is None or isinstance(value, list):
        return None if value is None else [_native_element(v, element) for v in value]
    kind = element.kind
    if kind in ("int", "bool", "json"):
        return value
    if kind in ("float4", "float8"):
        number = _as_float(value)
        return number if math.isfinite(number) else _float_text(number, False)
    return canonical_text(element, value)


def _array_value(mapping: TypeMapping, value: Any) -> Any:
    """An array as staged JSON values: from psycopg2's lists, the VARIANT's JSON text or
    PostgreSQL's array text (never valid JSON, except ``{}``)."""
    assert mapping.element is not None
    if isinstance(value, list):
        return _native_element(value, mapping.element)
    text = str(value)
    if text == "{}":
        return []
    # Elements of a float array are doubles on both sides: read them as doubles, so that the
    # source's 2.5437690534740032e+16 and the target's 25437690534740030.0 (the same double)
    # agree; decimal elements keep every digit.
    floats = mapping.element.kind in ("float4", "float8")
    number = float if floats else Decimal
    try:
        parsed = json.loads(text, parse_float=number)
    except ValueError:
        parsed = json.loads(pg_array_json(text, mapping.element, mapping.delimiter), parse_float=number)
    if not floats:
        return parsed
    if isinstance(parsed, dict) and "values" in parsed:  # an array with other lower bounds
        return {**parsed, "values": _native_element(parsed["values"], mapping.element)}
    return _native_element(parsed, mapping.element)


def canonical_text(column: Column | TypeMapping, value: Any) -> str | None:
    """The canonical text of one value of ``column`` (see the module docstring); None for NULL.

    A value that cannot be read as the column's type (say money printed under another
    lc_monetary) gives ``<unreadable kind: value>``, which equals no canonical text of a readable
    value: a mismatch, never a crash or a false match."""
    if value is None:
        return None
    mapping = column if isinstance(column, TypeMapping) else column_mapping(column)
    try:
        return _canonical(mapping, value)
    except (ValueError, ArithmeticError, TypeError):
        return f"<unreadable {mapping.kind}: {value!r}>"


def _canonical(mapping: TypeMapping, value: Any) -> str:
    kind = mapping.kind
    if kind == "int":
        return str(int(value))
    if kind == "decimal":
        return _decimal_text(value, mapping.scale)
    if kind == "numeric":
        return value if isinstance(value, str) else _decimal_text(value, None)
    if kind in ("float4", "float8"):
        return _float_text(value, kind == "float4")
    if kind == "money":
        if isinstance(value, str):
            try:
                value = parse_money(value)
            except ValueError:
                value = Decimal(value)  # a plain number (money::numeric)
        return _decimal_text(value, 2)
    if kind == "bool":
        return "t" if value in (True, "t", "true") else "f" if value in (False, "f", "false") else str(value)
    if kind == "bytes":
        return "\\x" + bytes(value).hex() if not isinstance(value, str) else value.lower()
    if kind == "uuid":
        return str(value).lower()
    if kind in ("date", "time", "timetz", "timestamp", "timestamptz"):
        text = _temporal_text(value) if isinstance(value, (dt.date, dt.time)) else str(value)
        return _utc_text(text) if kind == "timestamptz" else text
    if kind == "interval":
        return _interval_text(value) if isinstance(value, dt.timedelta) else str(value)
    if kind == "json":
        return _json_render(_json_value(value))
    if kind == "array":
        return _json_render(_array_value(mapping, value))
    if isinstance(value, (memoryview, bytes, bytearray)):
        return bytes(value).decode()
    return str(value)


def normalize_for(column: Column, value: Any) -> str | None:
    """The comparable form of a value of ``column``: its canonical text (None for NULL)."""
    return canonical_text(column, value)


def source_select_sql(table: TableSchema) -> sql.Composed:
    """Every column of the table as PostgreSQL's text output, exact for every type.

    ``format('%s', c)`` calls the type's output function; a ``::text`` cast would not always
    (char(n) loses its padding, inet gains ``/32``, boolean reads ``true``). Run it in a session
    with SESSION_OPTIONS and lc_monetary=C."""
    cols = sql.SQL(", ").join(
        sql.SQL("CASE WHEN {0} IS NULL THEN NULL ELSE format('%s', {0}) END AS {0}").format(
            sql.Identifier(c.name)
        )
        for c in table.columns
    )
    return sql.SQL("SELECT {} FROM {}").format(cols, relation_sql(table))


# --- comparison -----------------------------------------------------------------------------------


@dataclass
class TableDiff:
    table: str
    source_rows: int
    target_rows: int
    missing: list[tuple[Any, ...]] = field(default_factory=list)  # keys in source, not in target
    extra: list[tuple[Any, ...]] = field(default_factory=list)  # keys in target, not in source
    different: list[tuple[tuple[Any, ...], list[str]]] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return not (self.missing or self.extra or self.different)


def compare_rows(
    table: str,
    key: tuple[str, ...],
    source: list[dict[str, Any]],
    target: list[dict[str, Any]],
    json_columns: frozenset[str] = frozenset(),
    *,
    columns: Sequence[Column] | None = None,
) -> TableDiff:
    """Compare rows by key. With ``columns`` (the table's columns) every value is compared on its
    canonical text; without, on ``normalize`` (``normalize_json`` for ``json_columns``)."""
    typed = {c.name: c for c in columns} if columns is not None else None

    def one(name: str, value: Any) -> Any:
        if typed is not None and name in typed:
            return canonical_text(typed[name], value)
        return normalize_json(value) if name in json_columns else normalize(value)

    def norm(row: dict[str, Any]) -> dict[str, Any]:
        return {c: one(c, v) for c, v in row.items()}

    src = {tuple(one(k, r[k]) for k in key): norm(r) for r in source}
    tgt = {tuple(one(k, r[k]) for k in key): norm(r) for r in target}
    diff = TableDiff(table, len(source), len(target))
    diff.missing = sorted((k for k in src if k not in tgt), key=repr)
    diff.extra = sorted((k for k in tgt if k not in src), key=repr)
    for k in sorted(src.keys() & tgt.keys(), key=repr):
        different = [c for c in src[k] if src[k][c] != tgt[k].get(c)]
        if different:
            diff.different.append((k, different))
    return diff
