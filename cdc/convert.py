"""Value conversion: JSON values as wal2json sent them -> typed Arrow arrays, column by column.

Each ``TypeMapping.kind`` has a per-value preparation that validates what the plugin sends and
turns it into the staged value; decimals are then cast to Arrow in one vectorised step. The
reader's session settings (``cdc.source.slot.SESSION_OPTIONS``) fix the text forms: UTC, ISO
dates, ISO 8601 intervals, shortest exact floats; a text in another form is an error, never a
silently different value. A value that does not fit raises ``DecodeError`` naming table, column
and value.

Forms that reach this module (captured from wal2json 2.5, see tests/fixtures/wal2json/types.jsonl):
integers and float/numeric values are bare JSON numbers (numbers with a fraction or exponent come
as their exact text, ``json.loads(parse_float=str)``), except that NaN and +/-Infinity of those
types arrive as JSON null (see ``fill_from_source``); values of a domain are JSON strings
(``"t"``, ``"12.50"``, ``"NaN"``); bytea is hex without ``\\x``; arrays are PostgreSQL's array text.
Every preparation also takes PostgreSQL's text output of the value (``format('%s', col)`` in a
session with SESSION_OPTIONS and lc_monetary=C), so rows read by SQL convert the same way.

Arrays become JSON text (a VARIANT in Snowflake) built from that array text: integers and
booleans as JSON numbers and booleans, real/double as JSON numbers (NaN, Infinity and -Infinity as
those strings), numeric and money as strings holding the exact number (``"1.50"``, ``"NaN"``),
json/jsonb elements as embedded JSON, every other element type as its PostgreSQL text; NULL
elements are null, a 2-D array is an array of arrays. An array whose lower bounds are not 1
(``[0:2]={1,2,3}``) becomes ``{"lower_bounds": [0], "values": [1, 2, 3]}`` so nothing is lost.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol

import pyarrow as pa

from cdc.errors import DecodeError
from cdc.model import Column, TableSchema
from cdc.typemap import NUMBER_KINDS, TypeMapping

COMMIT_TS_TYPE = pa.timestamp("us", tz="UTC")
_CONVERT_ERRORS = (
    pa.ArrowInvalid,
    pa.ArrowTypeError,
    pa.ArrowNotImplementedError,
    OverflowError,
    ValueError,
    TypeError,
)
_SHOWN = 80

SPECIAL_NUMBERS = frozenset({"NaN", "Infinity", "-Infinity"})
_INT = re.compile(r"-?\d+")
_NUMERIC = re.compile(r"-?\d+(?:\.\d+)?")  # numeric_out never writes an exponent
_FLOAT = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_MONEY = re.compile(r"(-?)\$?(\d{1,3}(?:,\d{3})*|\d+)\.(\d\d)")  # lc_monetary=C: "-$1,234.56"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DATE = r"\d{4,}-\d\d-\d\d"
_TIME = r"\d\d:\d\d:\d\d(?:\.\d{1,6})?"
_TEMPORAL: dict[str, tuple[re.Pattern[str], str]] = {
    # kind -> (PostgreSQL's output in the reader's session, what the session must be set to)
    "date": (re.compile(rf"{_DATE}(?: BC)?|-?infinity"), "DateStyle=ISO"),
    "time": (re.compile(_TIME), "DateStyle=ISO"),
    "timetz": (re.compile(rf"{_TIME}[+-]\d\d(?::\d\d){{0,2}}"), "DateStyle=ISO"),
    "timestamp": (re.compile(rf"{_DATE} {_TIME}(?: BC)?|-?infinity"), "DateStyle=ISO"),
    "timestamptz": (re.compile(rf"{_DATE} {_TIME}\+00(?: BC)?|-?infinity"), "DateStyle=ISO and TimeZone=UTC"),
    "interval": (
        re.compile(
            r"P(?!$)(?:-?\d+Y)?(?:-?\d+M)?(?:-?\d+D)?(?:T(?=-?\d)(?:-?\d+H)?(?:-?\d+M)?(?:-?\d+(?:\.\d+)?S)?)?"
        ),
        "IntervalStyle=iso_8601",
    ),
}


class _BadValue(Exception):
    """Internal: one value a column cannot hold; the message says why."""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


# --- scalar values ------------------------------------------------------------------------------


def _int(value: Any, _: TypeMapping) -> int:
    if isinstance(value, str) and _INT.fullmatch(value):  # a domain's value is a JSON string
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _BadValue("is not an integer")
    return value


def _bool(value: Any, _: TypeMapping) -> bool:
    if value in ("t", "f"):  # a domain's value is PostgreSQL's text
        return value == "t"
    if not isinstance(value, bool):
        raise _BadValue("is not a boolean")
    return value


def _number_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _BadValue("is not a number")


def _decimal(value: Any, mapping: TypeMapping) -> str:
    text = _number_text(value)
    if text in SPECIAL_NUMBERS:
        raise _BadValue(
            f"cannot be stored in {mapping.snowflake}, which has no {text}: set the source value to a "
            "number or NULL (the next run reads it again), or make the column unconstrained numeric "
            "(replicated as exact text) and re-snapshot the table"
        )
    return text


def _numeric(value: Any, _: TypeMapping) -> str:
    text = _number_text(value)
    if text not in SPECIAL_NUMBERS and not _NUMERIC.fullmatch(text):
        raise _BadValue("is not PostgreSQL's numeric text")
    return text


def _float(value: Any, _: TypeMapping) -> float:
    text = _number_text(value)
    if text not in SPECIAL_NUMBERS and not _FLOAT.fullmatch(text):
        raise _BadValue("is not a number")
    return float(text)  # correctly rounded; "NaN", "Infinity" and "-Infinity" included


def parse_money(text: str) -> Decimal:
    """``-$1,234.56`` (money's output under lc_monetary=C) -> ``Decimal('-1234.56')``."""
    m = _MONEY.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r} is not money as lc_monetary=C prints it ('-$1,234.56')")
    return Decimal(f"{m.group(1)}{m.group(2).replace(',', '')}.{m.group(3)}")


def _money(value: Any, _: TypeMapping) -> Decimal:
    if not isinstance(value, str):
        raise _BadValue("is not money text")
    try:
        return parse_money(value)
    except ValueError as exc:
        raise _BadValue(
            "is not money as lc_monetary=C prints it ('-$1,234.56'); run the reader's session with "
            "lc_monetary=C"
        ) from exc


def _any_text(value: Any, _: TypeMapping) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _uuid(value: Any, _: TypeMapping) -> str:
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise _BadValue("is not a uuid in PostgreSQL's text form")
    return value


def _temporal(value: Any, mapping: TypeMapping) -> str:
    pattern, session = _TEMPORAL[mapping.kind]
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise _BadValue(
            f"is not in the form the reader's session must produce ({session}; see SESSION_OPTIONS)"
        )
    return value


def _hex(value: Any, _: TypeMapping) -> bytes:
    if not isinstance(value, str):
        raise _BadValue("is not hex text")
    try:
        return bytes.fromhex(value[2:] if value.startswith("\\x") else value)
    except ValueError as exc:
        raise _BadValue("is not hex text (wal2json sends bytea as hex without the \\x prefix)") from exc


def _array(value: Any, mapping: TypeMapping) -> str:
    if not isinstance(value, str):
        raise _BadValue("is not PostgreSQL array text")
    assert mapping.element is not None
    try:
        return pg_array_json(value, mapping.element, mapping.delimiter)
    except ValueError as exc:
        raise _BadValue(f"is not PostgreSQL array text ({exc})") from exc


# kind -> (per-value preparation, whether the prepared text is then cast to the Arrow type)
_PREPARE: dict[str, tuple[Callable[[Any, TypeMapping], Any], bool]] = {
    "int": (_int, False),
    "bool": (_bool, False),
    "decimal": (_decimal, True),
    "numeric": (_numeric, False),
    "float4": (_float, False),
    "float8": (_float, False),
    "money": (_money, False),
    "string": (_any_text, False),
    "text": (_any_text, False),
    "json": (_any_text, False),
    "uuid": (_uuid, False),
    "date": (_temporal, False),
    "time": (_temporal, False),
    "timetz": (_temporal, False),
    "timestamp": (_temporal, False),
    "timestamptz": (_temporal, False),
    "interval": (_temporal, False),
    "bytes": (_hex, False),
    "array": (_array, False),
}


def convert_column(table: TableSchema, column: Column, mapping: TypeMapping, values: list[Any]) -> pa.Array:
    prepare, cast = _PREPARE[mapping.kind]

    def fail(value: Any, reason: str) -> DecodeError:
        return DecodeError(
            f"table {table.qualified} column {column.name!r} ({column.type_name}): value {_shown(value)} "
            f"{reason}; it cannot be staged as Arrow {mapping.arrow}"
        )

    prepared: list[Any] = []
    for value in values:
        if value is None:
            prepared.append(None)
            continue
        try:
            prepared.append(prepare(value, mapping))
        except _BadValue as exc:
            raise fail(value, str(exc)) from exc

    def build(items: list[Any]) -> pa.Array:
        if cast:
            return pa.array(items, pa.string()).cast(mapping.arrow)
        return pa.array(items, mapping.arrow)

    try:
        return build(prepared)
    except _CONVERT_ERRORS as exc:
        for original, item in zip(values, prepared, strict=True):
            try:
                build([item])
            except _CONVERT_ERRORS as one:
                raise fail(original, f"does not fit ({one})") from one
        raise DecodeError(
            f"table {table.qualified} column {column.name!r} ({column.type_name}): cannot convert the "
            f"column to Arrow {mapping.arrow}: {exc}"
        ) from exc


def commit_timestamps(table: TableSchema, stamps: list[str]) -> pa.Array:
    try:
        return pa.array(stamps, pa.string()).cast(COMMIT_TS_TYPE)
    except _CONVERT_ERRORS as exc:
        raise DecodeError(
            f"table {table.qualified}: a commit timestamp is not in PostgreSQL's form "
            f"'2026-11-29 07:02:32.502865+00' ({exc}); first one: {_shown(stamps[0])}"
        ) from exc


# --- arrays -------------------------------------------------------------------------------------


def parse_pg_array(text: str, delimiter: str = ",") -> tuple[list[int] | None, list[Any]]:
    """PostgreSQL array text -> (lower bounds, or None when all are 1; nested lists of element
    text, None for NULL). ``'[0:1]={"a b",NULL}'`` -> ``([0], ["a b", None])``."""
    pos = 0
    lower: list[int] | None = None
    if text.startswith("["):
        eq = text.find("=")
        if eq < 0:
            raise ValueError("dimension decoration without '='")
        bounds = re.findall(r"\[(-?\d+):(-?\d+)\]", text[:eq])
        if "".join(f"[{lo}:{hi}]" for lo, hi in bounds) != text[:eq]:
            raise ValueError(f"bad dimension decoration {text[:eq]!r}")
        lower = [int(lo) for lo, _ in bounds]
        pos = eq + 1

    def element(i: int) -> tuple[Any, int]:
        if text.startswith("{", i):
            return items(i)
        if text.startswith('"', i):
            out, i = [], i + 1
            while i < len(text) and text[i] != '"':
                if text[i] == "\\":
                    i += 1
                out.append(text[i : i + 1])
                i += 1
            if i >= len(text):
                raise ValueError("unterminated quoted element")
            return "".join(out), i + 1
        start, out, escaped = i, [], False
        while i < len(text) and text[i] not in (delimiter, "}"):
            if text[i] == "\\":
                i, escaped = i + 1, True
            out.append(text[i : i + 1])
            i += 1
        raw = "".join(out).strip()
        if not raw or i >= len(text):
            raise ValueError(f"empty or unterminated element at offset {start}")
        return (None if raw.upper() == "NULL" and not escaped else raw), i

    def items(i: int) -> tuple[list[Any], int]:
        result: list[Any] = []
        i += 1  # "{"
        if text.startswith("}", i):
            return result, i + 1
        while True:
            value, i = element(i)
            result.append(value)
            if text.startswith("}", i):
                return result, i + 1
            if not text.startswith(delimiter, i):
                raise ValueError(f"expected {delimiter!r} or '}}' at offset {i}")
            i += 1

    if not text.startswith("{", pos):
        raise ValueError("an array starts with '{'")
    values, end = items(pos)
    if end != len(text):
        raise ValueError(f"unexpected text after the array at offset {end}")
    if lower is not None and all(b == 1 for b in lower):
        lower = None
    return lower, values


def _element_json(text: str, element: TypeMapping) -> str:
    kind = element.kind
    if kind == "int" and _INT.fullmatch(text):
        return text
    if kind in ("float4", "float8") and _JSON_NUMBER.fullmatch(text):
        return text
    if kind == "bool" and text in ("t", "f"):
        return "true" if text == "t" else "false"
    if kind == "json":
        json.loads(text)  # raises ValueError when the element is not JSON
        return text
    if kind == "money":
        return json.dumps(str(parse_money(text)))
    if kind in ("int", "bool"):
        raise ValueError(f"element {text!r} is not a {kind}")
    return json.dumps(text, ensure_ascii=False)  # numeric, NaN/Infinity, and every text form


def pg_array_json(text: str, element: TypeMapping, delimiter: str = ",") -> str:
    """PostgreSQL array text -> the JSON text staged for it (see the module docstring)."""
    lower, values = parse_pg_array(text, delimiter)

    def render(value: Any) -> str:
        if value is None:
            return "null"
        if isinstance(value, list):
            return "[" + ",".join(render(v) for v in value) + "]"
        return _element_json(value, element)

    body = render(values)
    if lower is None:
        return body
    return '{"lower_bounds":' + json.dumps(lower, separators=(",", ":")) + ',"values":' + body + "}"


# --- NaN and +/-Infinity that wal2json sent as null ----------------------------------------------


class ValueLookup(Protocol):
    """Reads the current value of some columns of some rows at the source, as PostgreSQL text.

    Returns ``{key: {column: text or None}}``; a key whose row no longer exists is absent.
    ``cdc.source.lookup.SourceLookup`` implements it over a psycopg2 connection.
    """

    def __call__(
        self, table: TableSchema, columns: Sequence[str], keys: Sequence[tuple[Any, ...]]
    ) -> Mapping[tuple[Any, ...], Mapping[str, str | None]]: ...


def fill_from_source(
    table: TableSchema,
    mappings: Sequence[TypeMapping],
    values: list[list[Any]],
    ops: Sequence[str],
    unchanged: Sequence[str | None],
    lookup: ValueLookup,
) -> int:
    """Replace nulls that may be NaN or +/-Infinity with the source's current value.

    wal2json writes NaN, Infinity and -Infinity of numeric, real and double precision columns as
    JSON null, so a null in such a column of an insert or update row is looked up by key (one
    batched query per call). The value read is the row's *current* value: a later change of the
    row comes in a later window and is applied over it, so the target converges to the source;
    a row that no longer exists keeps null (its delete follows). ``values`` is the buffer of one
    table, column by column, ``ops`` and ``unchanged`` its ``_CDC_OP`` and ``_CDC_UNCHANGED``
    metadata. Returns the number of rows looked up.
    """
    numeric = [i for i, m in enumerate(mappings) if m.kind in NUMBER_KINDS]
    if not numeric:
        return 0
    position = {col.name: i for i, col in enumerate(table.columns)}
    key_index = [position[k] for k in table.key]
    wanted: list[tuple[int, tuple[Any, ...], list[int]]] = []
    for row, op in enumerate(ops):
        if op not in ("I", "U"):
            continue
        omitted = unchanged[row] or ""
        nulls = [
            i for i in numeric if values[i][row] is None and f",{table.columns[i].attnum}," not in omitted
        ]
        if not nulls:
            continue
        key = tuple(values[i][row] for i in key_index)
        if any(i in key_index for i in nulls) or any(k is None for k in key):
            names = [table.columns[i].name for i in nulls if i in key_index]
            raise DecodeError(
                f"table {table.qualified}: key column(s) {names} of a row arrived as null, which "
                "wal2json writes for NaN and +/-Infinity: such a key cannot be replicated"
            )
        wanted.append((row, key, nulls))
    if not wanted:
        return 0
    columns = sorted({i for _, _, nulls in wanted for i in nulls})
    names = [table.columns[i].name for i in columns]
    found = lookup(table, names, list(dict.fromkeys(key for _, key, _ in wanted)))
    for row, key, nulls in wanted:
        current = found.get(key)
        if current is None:
            continue  # the row is gone: its delete comes in this or a later window
        for i in nulls:
            values[i][row] = current.get(table.columns[i].name)
    return len(wanted)
