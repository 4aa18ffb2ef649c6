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
types arrive as JSON null (see ``cdc.nan_fill``); values of a domain are JSON strings
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
import struct
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from cdc.errors import DecodeError
from cdc.model import Column, TableSchema
from cdc.pgarray import _NOT_TEXT_ELEMENTS, parse_money, parse_pg_array, pg_array_json
from cdc.pgarray import INT_TEXT as _INT
from cdc.typemap import TypeMapping

__all__ = [
    "COMMIT_TS_TYPE",
    "SPECIAL_NUMBERS",
    "convert_column",
    "joined_texts",
    "parse_money",
    "parse_pg_array",
    "pg_array_json",
]

COMMIT_TS_TYPE = pa.timestamp("us", tz="UTC")
CONVERT_ERRORS = (
    pa.ArrowInvalid,
    pa.ArrowTypeError,
    pa.ArrowNotImplementedError,
    OverflowError,
    ValueError,
    TypeError,
)
_SHOWN = 80

SPECIAL_NUMBERS = frozenset({"NaN", "Infinity", "-Infinity"})
_NUMERIC = re.compile(r"-?\d+(?:\.\d+)?")  # numeric_out never writes an exponent
_FLOAT = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
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


def shown(value: Any) -> str:
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


def convert_column(
    table: TableSchema, column: Column, mapping: TypeMapping, values: Sequence[Any]
) -> pa.Array:
    """One column's JSON values (as wal2json sent them) as an Arrow array of ``mapping.arrow``.

    The whole column goes through one vectorised step where it can (``_whole_column``); otherwise,
    and for any column that step refuses, each value is checked and prepared on its own, so a
    value that does not fit is reported by name."""
    if values and values[0] is None and values.count(None) == len(values):  # e.g. a key's origin
        return pa.nulls(len(values), mapping.arrow)
    whole = _whole_column(mapping, values)
    if whole is not None:
        return whole
    return _each_value(table, column, mapping, values)


def _each_value(table: TableSchema, column: Column, mapping: TypeMapping, values: Sequence[Any]) -> pa.Array:
    """The per-value path: check and prepare each value; the first one that does not fit is named."""
    prepare, cast = _PREPARE[mapping.kind]

    def fail(value: Any, reason: str) -> DecodeError:
        return DecodeError(
            f"table {table.qualified} column {column.name!r} ({column.type_name}): value {shown(value)} "
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
    except CONVERT_ERRORS as exc:
        for original, item in zip(values, prepared, strict=True):
            try:
                build([item])
            except CONVERT_ERRORS as one:
                raise fail(original, f"does not fit ({one})") from one
        raise DecodeError(
            f"table {table.qualified} column {column.name!r} ({column.type_name}): cannot convert the "
            f"column to Arrow {mapping.arrow}: {exc}"
        ) from exc


# --- whole columns -----------------------------------------------------------------------------

# RE2 (Arrow) forms of the patterns above, anchored. RE2's \d is ASCII only, so each accepts no
# more than the per-value check; interval's pattern needs lookahead, which RE2 lacks. Floats are
# checked by their cast instead (``_floats``).
_WHOLE_PATTERNS: dict[str, str] = {
    "uuid": _UUID.pattern,
    "numeric": _NUMERIC.pattern + "|NaN|Infinity|-Infinity",
    **{kind: pattern.pattern for kind, (pattern, _) in _TEMPORAL.items() if kind != "interval"},
}
_NOT_SIMPLE_ARRAY = (
    r'"\\{}\x00-\x1f\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}'
)
_TEXT_KINDS = frozenset({"string", "text", "json"})
_NUMBER_TEXT_KINDS = frozenset({"numeric", "float4", "float8", "decimal"})


def _whole_column(mapping: TypeMapping, values: Sequence[Any]) -> pa.Array | None:
    """The column converted in one vectorised step, or None where the per-value path must decide.

    Accepts exactly what the per-value path accepts with the same result, or refuses: integers
    and booleans only as JSON integers and booleans, text kinds only as strings (checked against
    their pattern), numbers as their text or JSON integers, then cast by Arrow (correctly rounded,
    like ``float()``). Arrays are converted once per distinct text."""
    kind = mapping.kind
    try:
        if kind == "array":
            return _array_column(mapping, values)
        if kind in _NUMBER_TEXT_KINDS:
            array = _number_texts(values)
        elif kind in ("int", "bool"):
            array = pa.array(values)
        elif kind in _TEXT_KINDS or kind in _WHOLE_PATTERNS:
            joined = joined_texts(values)
            array = pa.array(values) if joined is None else joined
        else:
            return None
        if array.type == pa.null():
            return pa.nulls(len(array), mapping.arrow)
        if kind == "int":
            return array.cast(mapping.arrow) if array.type == pa.int64() else None
        if kind == "bool":
            return array if array.type == pa.bool_() else None
        if array.type != pa.string():
            return None
        if kind in ("float4", "float8"):
            return _floats(array)
        pattern = _WHOLE_PATTERNS.get(kind)
        if pattern is not None and not pc.all(pc.match_substring_regex(array, f"^(?:{pattern})$")).as_py():
            return None
        return array if mapping.arrow == pa.string() else array.cast(mapping.arrow)
    except CONVERT_ERRORS:
        return None


def joined_texts(values: Sequence[Any]) -> pa.Array | None:
    """A list of str as a string array, copied by one ``str.join`` and split by Arrow, which holds
    the GIL far shorter than ``pa.array`` (value by value). None for any other list (a None, a
    number) and for texts that hold a line break."""
    try:
        data = "\n".join(values).encode()
        offsets = pa.py_buffer(struct.pack("=2i", 0, len(data)))  # struct.error from 2 GiB on
    except (TypeError, UnicodeEncodeError, struct.error):
        return None
    one = pa.Array.from_buffers(pa.string(), 1, [None, offsets, pa.py_buffer(data)])
    texts = pc.split_pattern(one, "\n").values
    return texts if len(texts) == len(values) else None


def _number_texts(values: Sequence[Any]) -> pa.Array:
    """Numbers as one Arrow array: texts as they are, JSON integers as their decimal text (Arrow's
    int64 -> string cast writes what ``str()`` writes); a bool or float keeps its type (refused)."""
    joined = joined_texts(values)
    if joined is not None:
        return joined
    try:
        array = pa.array(values)
    except CONVERT_ERRORS:  # texts mixed with JSON integers, or an integer beyond int64
        return pa.array([str(v) if v.__class__ is int else v for v in values])
    return array.cast(pa.string()) if array.type == pa.int64() else array


def _floats(texts: pa.Array) -> pa.Array | None:
    """Float texts cast by Arrow, or None unless each is one the per-value check accepts. The cast
    reads the form of ``_FLOAT`` and refuses other text, but also takes a leading "+" and inf/nan
    spelt other ways (``inf``, ``-nan``): a "+" in front is refused, and a text that does not give a
    finite double must be NaN, Infinity, -Infinity or a number beyond the range (``1e400``)."""
    if pc.any(pc.starts_with(texts, "+")).as_py():
        return None
    doubles = texts.cast(pa.float64())
    other = pc.invert(pc.is_finite(doubles))
    if pc.any(other).as_py():
        for text in texts.filter(other).to_pylist():
            if text not in SPECIAL_NUMBERS and not _FLOAT.fullmatch(text):
                return None
    return doubles


def _simple_array_pattern(delimiter: str) -> str:
    """RE2: a one-dimensional array of unquoted elements that each hold more than spaces
    (``{a, b ,NULL}``): arrays ``_simple_text_array`` builds, trimming nothing but spaces. Quotes,
    escapes, nesting, controls and the spaces besides " " that str.strip() strips are left to it."""
    d = re.escape(delimiter)
    char = f"[^{d}{_NOT_SIMPLE_ARRAY}]"
    element = f"{char}*[^ {d}{_NOT_SIMPLE_ARRAY}]{char}*"
    return rf"^\{{(?:{element}(?:{d}{element})*)?\}}$"


def _array_column(mapping: TypeMapping, values: Sequence[Any]) -> pa.Array | None:
    """Arrays as JSON text, each distinct text converted once: simple arrays of text-like elements
    by Arrow (what ``_simple_text_array`` gives), any other array by ``pg_array_json``."""
    element = mapping.element
    assert element is not None
    array = pa.array(values)
    if array.type == pa.null():
        return pa.nulls(len(array), pa.string())
    if array.type != pa.string():
        return None
    codes = pc.dictionary_encode(array)
    texts = codes.dictionary
    if element.kind in _NOT_TEXT_ELEMENTS:
        others = pa.repeat(True, len(texts))
        rendered = pa.nulls(len(texts), pa.string())
    else:
        others = pc.invert(pc.match_substring_regex(texts, _simple_array_pattern(mapping.delimiter)))
        rendered = _simple_arrays(texts, mapping.delimiter)
    if pc.any(others).as_py():
        parsed = [pg_array_json(t, element, mapping.delimiter) for t in texts.filter(others).to_pylist()]
        rendered = pc.replace_with_mask(rendered, others, pa.array(parsed, pa.string()))
    return rendered.take(codes.indices)


def _simple_arrays(texts: pa.Array, delimiter: str) -> pa.Array:
    """``{a, b ,NULL}`` -> ``["a","b",null]`` in Arrow for texts that match
    ``_simple_array_pattern``; what it gives for any other text is meaningless."""
    inner = pc.utf8_slice_codeunits(texts, 1, -1)
    lists = pc.split_pattern(inner, delimiter)
    items = pc.utf8_trim(lists.values, " ")
    # NULL in any case (no other character's upper() is N, U or L) -> a NUL, which no simple array holds
    items = pc.if_else(pc.equal(pc.ascii_lower(items), "null"), "\x00", items)
    joined = pc.binary_join(pa.ListArray.from_arrays(lists.offsets, items), '","')
    quoted = pc.replace_substring(pc.binary_join_element_wise('["', joined, '"]', ""), '"\x00"', "null")
    return pc.if_else(pc.equal(inner, ""), "[]", quoted)
