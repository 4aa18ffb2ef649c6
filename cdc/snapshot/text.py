"""PostgreSQL text forms (as ``COPY ... TO STDOUT`` writes them) -> typed Arrow columns.

A snapshot reads every column as text (``unescape_copy_text`` undoes COPY's escapes), in the
session settings the stream uses
(``cdc.source.slot.SESSION_OPTIONS``), so a value has the same text form in the copy as in the
wal2json output (or the lookup that fills wal2json's NaN gaps). ``cdc.convert.convert_column``
stays the single source of truth for value conversion. A column is converted here with one
vectorised Arrow operation only where its kind has an exact equivalent of what ``convert_column``
does with a text form of that session:

* kinds whose staged value *is* the text (character types, unconstrained numeric, uuid, json,
  the date/time kinds; their Arrow type is string): the column as read;
* ``int``, ``float4``/``float8`` and ``decimal``: Arrow's string cast (correctly rounded, like
  ``float()``; a failure falls back, so ``convert_column`` raises its own error);
* ``bool``: ``t``/``f``; ``bytes``: table-driven hex decoding of ``encode(column, 'hex')``, the
  digits wal2json sends;
* one-dimensional ``,``-delimited arrays (lower bound 1) whose elements are all unquoted: their
  JSON text by substring replacement (``{a,NULL}`` -> ``["a",null]``, ``{1,2}`` -> ``[1,2]``,
  ``{t,f}`` -> ``[true,false]``) where the element's JSON is its text (integers, JSON numbers,
  booleans) or its text in quotes (every element kind ``cdc.convert`` writes as a JSON string; an
  unquoted element holds no quote, backslash, blank or control character, so nothing needs
  escaping). The other rows of the column (quoted elements, several dimensions, other bounds,
  NaN) go through ``convert_column``.

Every other kind (money, json arrays, anything added later), an Arrow type other than the one
expected, or a value the fast path refuses goes through ``convert_column`` itself, value by value,
with ``wal2json_value`` giving it the JSON value wal2json would have sent. Tests hold the fast paths to
``convert_column``'s results (unit) and to the stream's Parquet values for the same rows
(integration).
"""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from cdc.convert import convert_column
from cdc.errors import DecodeError
from cdc.model import Column, TableSchema
from cdc.typemap import TypeMapping

__all__ = ["decode_bytea_hex", "text_to_arrow", "unescape_copy_text", "wal2json_value"]

# PostgreSQL type OIDs whose wal2json value is not a JSON string
_INT_OIDS = frozenset({20, 21, 23, 26})  # int8, int2, int4, oid
_BOOL_OID = 16
_BYTEA_OID = 17

# kinds whose staged value is the text form itself
_IDENTITY_KINDS = frozenset(
    {
        "string",
        "text",
        "json",
        "numeric",
        "uuid",
        "date",
        "time",
        "timetz",
        "timestamp",
        "timestamptz",
        "interval",
    }
)
_CAST_KINDS = frozenset({"int", "float4", "float8", "decimal"})
_INTEGER_TEXT = re.compile(r"^[+-]?\d+$")
_BOOL_TEXTS = pa.array(["t", "f"])


def _hex_pair_table() -> pa.Array:
    """uint16 -> byte for two hex digits read as one little-endian uint16; 0xFFFF marks non-hex."""
    nibble = {c: i for i, c in enumerate(b"0123456789abcdef")} | {c: i for i, c in enumerate(b"ABCDEF", 10)}
    table = [0xFFFF] * 65536
    for hi, hi_value in nibble.items():
        for lo, lo_value in nibble.items():
            table[hi | lo << 8] = hi_value << 4 | lo_value
    return pa.array(table, pa.uint16())


_HEX_PAIRS = _hex_pair_table()


def wal2json_value(text: str | None, column: Column, mapping: TypeMapping) -> Any:
    """The JSON value wal2json sends for a column whose text form is ``text``."""
    if text is None:
        return None
    if mapping.kind == "int" or column.type_oid in _INT_OIDS:
        return int(text) if _INTEGER_TEXT.match(text) else text
    if mapping.kind == "bool" or column.type_oid == _BOOL_OID:
        return {"t": True, "f": False}.get(text, text)
    if mapping.kind == "bytes" or column.type_oid == _BYTEA_OID:
        return text[2:] if text.startswith("\\x") else text
    return text


# COPY's text format escapes these characters with a backslash (and the backslash itself)
_ESCAPES = (("\\n", "\n"), ("\\r", "\r"), ("\\t", "\t"), ("\\b", "\b"), ("\\f", "\f"), ("\\v", "\v"))
# stands for an escaped backslash while the other escapes are undone: PostgreSQL text never holds NUL
_BACKSLASH = "\x00"


def unescape_copy_text(table: TableSchema, column: Column, texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A column as ``COPY ... TO STDOUT`` (text format) wrote it -> the values' text forms.

    ``\\\\`` is a backslash, ``\\n`` ``\\r`` ``\\t`` ``\\b`` ``\\f`` ``\\v`` the control characters; nothing
    else follows a backslash in COPY's output. Vectorised: the escaped backslashes become NUL
    (which no PostgreSQL text holds) while the others are replaced, then backslashes again.
    """
    texts = _one_array(texts)
    if not pc.any(pc.match_substring(texts, "\\")).as_py():
        return texts
    out = pc.replace_substring(texts, "\\\\", _BACKSLASH)
    for escaped, plain in _ESCAPES:
        out = pc.replace_substring(out, escaped, plain)
    if pc.any(pc.match_substring(out, "\\")).as_py():
        bad = next(t for t in out.to_pylist() if t is not None and "\\" in t)
        raise DecodeError(
            f"table {table.qualified} column {column.name!r}: COPY sent an escape PostgreSQL's text "
            f"format does not use in {bad[:80]!r}; report it with the server version"
        )
    return pc.replace_substring(out, _BACKSLASH, "\\")


def _one_array(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(texts, pa.ChunkedArray):
        return texts.chunk(0) if texts.num_chunks == 1 else texts.combine_chunks()
    return texts


def text_to_arrow(
    table: TableSchema, column: Column, mapping: TypeMapping, texts: pa.Array | pa.ChunkedArray
) -> pa.Array:
    """One column's text forms (an Arrow string array, nulls for NULL) as the Arrow type of ``mapping``."""
    texts = _one_array(texts)
    if texts.type != pa.string():
        texts = texts.cast(pa.string())
    fast = _fast(mapping, texts)
    if fast is not None:
        return fast
    if mapping.kind == "array" and mapping.arrow == pa.string():
        return _array(table, column, mapping, texts)
    values = [wal2json_value(t, column, mapping) for t in texts.to_pylist()]
    return convert_column(table, column, mapping, values)


# --- arrays ---------------------------------------------------------------------------------------

_NUMBER = r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?"  # cdc.convert's JSON number
# an unquoted element of a kind staged as a JSON string: PostgreSQL quotes an element that is empty
# or holds a blank, quote, backslash, brace or the delimiter; control characters would need escaping
# and parse_pg_array strips what Python counts as white space around an element
_BARE = (
    r'[^\s",\\{}\x00-\x1f\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}'
    r"\x{205f}\x{3000}]+"
)
_ELEMENT = {"int": r"-?\d+", "float4": _NUMBER, "float8": _NUMBER, "bool": "[tf]"}
# elements whose JSON is not their text or their quoted text (see cdc.convert._element_json)
_NO_FAST_ARRAY = frozenset({"json", "money"})


def _array_pattern(kind: str) -> str:
    element = _ELEMENT.get(kind, _BARE)
    item = f"(?:{element}|NULL)"
    return f"^\\{{(?:{item}(?:,{item})*)?\\}}$"


def _array(table: TableSchema, column: Column, mapping: TypeMapping, texts: pa.Array) -> pa.Array:
    """Arrays as JSON text: the simple rows vectorised, the others through ``convert_column``."""
    element = mapping.element
    simple: pa.Array | None = None
    if element is not None and mapping.delimiter == "," and element.kind not in _NO_FAST_ARRAY:
        simple = pc.fill_null(pc.match_substring_regex(texts, _array_pattern(element.kind)), True)
    if simple is None or not pc.any(simple).as_py():
        values = [wal2json_value(t, column, mapping) for t in texts.to_pylist()]
        return convert_column(table, column, mapping, values)
    assert element is not None
    fast = _array_json(element.kind, texts)
    if pc.all(simple).as_py():
        return fast
    others = pc.invert(simple)
    rest = texts.filter(others)
    converted = convert_column(
        table, column, mapping, [wal2json_value(t, column, mapping) for t in rest.to_pylist()]
    )
    return pc.replace_with_mask(fast, others, converted)


def _array_json(kind: str, texts: pa.Array) -> pa.Array:
    """JSON text of simple array texts (rows that are not simple come out as garbage)."""
    if kind in _ELEMENT:
        out = pc.replace_substring(pc.replace_substring(texts, "{", "["), "}", "]")
        if kind == "bool":
            out = pc.replace_substring(pc.replace_substring(out, "t", "true"), "f", "false")
        return pc.replace_substring(out, "NULL", "null")
    inner = pc.utf8_slice_codeunits(texts, 1, -1)
    out = pc.binary_join_element_wise('["', pc.replace_substring(inner, ",", '","'), '"]', "")
    # an unquoted NULL (any case, as parse_pg_array reads it) is a null element; one search of all
    # the texts at once (a match across two of them only costs the replacement) finds if any is
    if pc.match_substring(_all_in_one(texts), "null", ignore_case=True)[0].as_py():
        out = pc.replace_substring_regex(out, '"(?i:null)"', "null")
    return pc.if_else(pc.equal(texts, "{}"), pa.scalar("[]", pa.string()), out)


def _all_in_one(texts: pa.Array) -> pa.Array:
    """The bytes of all the strings of ``texts`` as one string (no copy)."""
    _, offsets_buf, data_buf = texts.buffers()
    if not len(texts) or offsets_buf is None or data_buf is None:
        return pa.array([""], pa.string())
    offsets = pa.Array.from_buffers(pa.int32(), len(texts) + 1, [None, offsets_buf], offset=texts.offset)
    bounds = pa.array([offsets[0].as_py(), offsets[len(texts)].as_py()], pa.int32())
    return pa.Array.from_buffers(pa.string(), 1, [None, bounds.buffers()[1], data_buf])


def _fast(mapping: TypeMapping, texts: pa.Array) -> pa.Array | None:
    """The vectorised conversion, or None where ``convert_column`` must decide."""
    kind, arrow = mapping.kind, mapping.arrow
    try:
        if kind in _IDENTITY_KINDS and arrow == pa.string():
            return texts
        if kind == "bool" and arrow == pa.bool_():
            valid = texts.drop_null()
            if len(valid) and not pc.all(pc.is_in(valid, value_set=_BOOL_TEXTS)).as_py():
                return None
            return pc.equal(texts, "t")
        if kind == "bytes" and arrow == pa.binary():
            return decode_bytea_hex(texts)
        if kind in _CAST_KINDS and _cast_target_ok(kind, arrow):
            return texts.cast(arrow)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OverflowError, ValueError):
        return None
    return None


def _cast_target_ok(kind: str, arrow: pa.DataType) -> bool:
    if kind == "int":
        return bool(pa.types.is_integer(arrow))
    if kind == "decimal":
        return bool(pa.types.is_decimal(arrow))
    return bool(pa.types.is_floating(arrow))


def decode_bytea_hex(texts: pa.Array) -> pa.Array | None:
    """Hex digits (``encode(bytea, 'hex')``, no ``\\x``) -> binary, vectorised; None if not all hex.

    The string array's data buffer is read as little-endian uint16 pairs of digits and mapped
    through a 65536-entry table, so no Python object is made per value.
    """
    n = len(texts)
    if texts.offset:
        texts = pa.concat_arrays([texts])  # a fresh array starting at offset 0
    validity, offsets_buf, data_buf = texts.buffers()
    offsets = pa.Array.from_buffers(pa.int32(), n + 1, [None, offsets_buf])
    lengths = pc.subtract(offsets[1:], offsets[:-1])
    if n and pc.any(pc.not_equal(pc.bit_wise_and(lengths, 1), 0)).as_py():
        return None
    start, end = offsets[0].as_py(), offsets[n].as_py()
    if start % 2:
        return None
    pairs = pa.Array.from_buffers(pa.uint16(), (end - start) // 2, [None, data_buf], offset=start // 2)
    decoded = pc.take(_HEX_PAIRS, pairs)
    if len(decoded) and pc.max(decoded).as_py() > 0xFF:
        return None
    raw = decoded.cast(pa.uint8())
    new_offsets = pc.divide(pc.subtract(offsets, start), 2).cast(pa.int32())
    return pa.Array.from_buffers(
        pa.binary(), n, [validity, new_offsets.buffers()[1], raw.buffers()[1]], texts.null_count
    )
