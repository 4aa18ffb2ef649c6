"""Text forms -> Arrow: the vectorised paths give exactly what ``cdc.convert.convert_column`` gives
for the JSON values wal2json sends for the same values, and fall back to it where they cannot."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from cdc.convert import convert_column
from cdc.errors import DecodeError
from cdc.model import Column, TableSchema
from cdc.snapshot.text import decode_bytea_hex, text_to_arrow, unescape_copy_text, wal2json_value
from cdc.typemap import column_mapping

# (type, PostgreSQL text forms as COPY writes them in the session, the value wal2json sends)
CASES: list[tuple[str, list[str | None], list[Any]]] = [
    ("smallint", ["-32768", "32767", "0", None], [-32768, 32767, 0, None]),
    ("integer", ["-2147483648", "2147483647"], [-2147483648, 2147483647]),
    ("bigint", ["-9223372036854775808", "9223372036854775807"], [-9223372036854775808, 9223372036854775807]),
    (
        "double precision",
        ["0.1", "3.141592653589793", "-0", "1e+300", "4.9e-324", "NaN", "Infinity", "-Infinity", None],
        # wal2json writes -0 as the JSON integer -0, which json.loads reads as 0: the stream loses the
        # sign (reported); the copy keeps it, as the text "-0" would convert
        ["0.1", "3.141592653589793", "-0", "1e+300", "4.9e-324", "NaN", "Infinity", "-Infinity", None],
    ),
    (
        "real",
        ["0.1", "3.4028235e+38", "1.1754944e-38", "-1.5"],
        ["0.1", "3.4028235e+38", "1.1754944e-38", "-1.5"],
    ),
    (
        "numeric(38,10)",
        [
            "1234567890123456789012345678.0123456789",
            "-9999999999999999999999999999.9999999999",
            "0.0000000000",
        ],
        [
            "1234567890123456789012345678.0123456789",
            "-9999999999999999999999999999.9999999999",
            "0.0000000000",
        ],
    ),
    ("numeric(10,2)", ["12345678.91", "-0.01", None], ["12345678.91", "-0.01", None]),
    (
        "numeric",
        ["1.50", "123456789012345678901234567890123456789012.000000000001", "NaN", "-Infinity", "0"],
        ["1.50", "123456789012345678901234567890123456789012.000000000001", "NaN", "-Infinity", 0],
    ),
    ("boolean", ["t", "f", None], [True, False, None]),
    (
        "bytea",
        ["", "00ff", "deadbeef00", None, "".join(f"{i:02x}" for i in range(256))],
        ["", "00ff", "deadbeef00", None, "".join(f"{i:02x}" for i in range(256))],
    ),
    (
        "text",
        ["", 'a"b,c\nd\r\ne', "héllo 🎉", "\\.", "NULL", None],
        ["", 'a"b,c\nd\r\ne', "héllo 🎉", "\\.", "NULL", None],
    ),
    ("character(5)", ["ab   "], ["ab   "]),
    ("uuid", ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"], ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]),
    ("jsonb", ['{"k": "v\\n", "n": 1.50}', '""', "null"], ['{"k": "v\\n", "n": 1.50}', '""', "null"]),
    (
        "date",
        ["2024-02-29", "infinity", "0044-03-15 BC", "5874897-12-31"],
        ["2024-02-29", "infinity", "0044-03-15 BC", "5874897-12-31"],
    ),
    (
        "timestamp with time zone",
        ["2024-02-29 11:14:15.123456+00", "-infinity", "0044-03-15 12:00:00.5+00 BC"],
        ["2024-02-29 11:14:15.123456+00", "-infinity", "0044-03-15 12:00:00.5+00 BC"],
    ),
    ("interval", ["P1Y2M-3DT4H5M6.789S", "PT0S"], ["P1Y2M-3DT4H5M6.789S", "PT0S"]),
    ("integer[]", ["{1,NULL,3}", "{}", "[0:2]={1,2,3}"], ["{1,NULL,3}", "{}", "[0:2]={1,2,3}"]),
    ("text[]", ['{"a b",NULL,"\\"q"}'], ['{"a b",NULL,"\\"q"}']),
    ("money", ["-$1,234.56", "$0.00"], ["-$1,234.56", "$0.00"]),
    ("inet", ["192.168.0.1/24"], ["192.168.0.1/24"]),
]

OIDS = {"smallint": 21, "integer": 23, "bigint": 20, "boolean": 16, "bytea": 17, "real": 700}


def _table(type_name: str) -> tuple[TableSchema, Column]:
    column = Column("c", 2, type_name, OIDS.get(type_name, 0))
    return TableSchema(
        "public", "t", (Column("id", 1, "integer", 23, nullable=False), column), ("id",)
    ), column


@pytest.mark.parametrize(("type_name", "texts", "wal2json"), CASES, ids=[c[0] for c in CASES])
def test_text_forms_convert_exactly_like_the_stream_values(
    type_name: str, texts: list[str | None], wal2json: list[Any]
) -> None:
    table, column = _table(type_name)
    mapping = column_mapping(column)
    from_copy = text_to_arrow(table, column, mapping, pa.array(texts, pa.string()))
    from_stream = convert_column(table, column, mapping, wal2json)
    assert from_copy.type == mapping.arrow
    assert from_copy.equals(from_stream) or _same_floats(from_copy, from_stream)


def _same_floats(a: pa.Array, b: pa.Array) -> bool:
    """Arrays equal value by value, NaN equal to NaN (Array.equals says NaN != NaN)."""
    if not pa.types.is_floating(a.type):
        return False
    return [repr(x) for x in a.to_pylist()] == [repr(x) for x in b.to_pylist()]


def test_exact_values_of_the_tricky_cases() -> None:
    table, column = _table("numeric(38,10)")
    got = text_to_arrow(
        table, column, column_mapping(column), pa.array(["-9999999999999999999999999999.9999999999"])
    )
    assert got.to_pylist() == [Decimal("-9999999999999999999999999999.9999999999")]
    table, column = _table("bytea")
    got = text_to_arrow(table, column, column_mapping(column), pa.array(["", None, "00FFab"]))
    assert got.to_pylist() == [b"", None, b"\x00\xff\xab"]
    table, column = _table("text")
    got = text_to_arrow(table, column, column_mapping(column), pa.array(["", None]))
    assert got.to_pylist() == ["", None]  # the empty string is not NULL
    table, column = _table("double precision")
    got = text_to_arrow(table, column, column_mapping(column), pa.array(["-0", "4.9e-324"]))
    assert [repr(v) for v in got.to_pylist()] == ["-0.0", "5e-324"]


def test_a_value_the_column_cannot_hold_raises_convert_columns_error() -> None:
    table, column = _table("numeric(10,2)")
    with pytest.raises(DecodeError, match=r"column 'c' \(numeric\(10,2\)\): value 'NaN'"):
        text_to_arrow(table, column, column_mapping(column), pa.array(["1.00", "NaN"]))
    table, column = _table("smallint")
    with pytest.raises(DecodeError, match="column 'c'"):
        text_to_arrow(table, column, column_mapping(column), pa.array(["40000"]))


def test_bool_text_other_than_t_or_f_goes_to_convert_column() -> None:
    table, column = _table("boolean")
    with pytest.raises(DecodeError, match="'true'"):
        text_to_arrow(table, column, column_mapping(column), pa.array(["t", "true"]))


@pytest.mark.parametrize("bad", ["abc", "0g", "\\x00", "é1"])
def test_hex_decoding_refuses_what_is_not_hex_digits(bad: str) -> None:
    assert decode_bytea_hex(pa.array([bad])) is None


def test_hex_decoding_of_a_sliced_array_and_of_nulls() -> None:
    arr = pa.array(["00ff", None, "", "DEADbeef", None])
    assert decode_bytea_hex(arr).to_pylist() == [b"\x00\xff", None, b"", b"\xde\xad\xbe\xef", None]
    assert decode_bytea_hex(arr.slice(1)).to_pylist() == [None, b"", b"\xde\xad\xbe\xef", None]
    assert decode_bytea_hex(pa.array([None, None], pa.string())).to_pylist() == [None, None]
    assert decode_bytea_hex(pa.array([], pa.string())).to_pylist() == []


def test_wal2json_value_gives_the_json_types_wal2json_sends() -> None:
    int_col = Column("i", 1, "bigint", 20)
    assert wal2json_value("-5", int_col, column_mapping(int_col)) == -5
    bool_col = Column("b", 1, "boolean", 16)
    assert wal2json_value("t", bool_col, column_mapping(bool_col)) is True
    bytea_col = Column("x", 1, "bytea", 17)
    assert wal2json_value("\\x00ff", bytea_col, column_mapping(bytea_col)) == "00ff"
    assert wal2json_value("00ff", bytea_col, column_mapping(bytea_col)) == "00ff"
    text_col = Column("t", 1, "text", 25)
    assert wal2json_value("5", text_col, column_mapping(text_col)) == "5"
    assert wal2json_value(None, text_col, column_mapping(text_col)) is None


ARRAY_CASES: list[tuple[str, list[str | None]]] = [
    # rows the vectorised path takes, mixed with rows convert_column must take (quoted elements,
    # several dimensions, lower bounds other than 1, NaN, escapes)
    (
        "text[]",
        [
            "{alpha,bravo}",
            "{}",
            None,
            "{NULL,x,NULL}",
            "{null,Null}",
            "{héllo,🎉}",
            '{"a b",NULL}',
            "[0:1]={a,b}",
            "{{a,b},{c,d}}",
            "{NULLx,xNULL}",
            '{"\\\\q"}',
            "{a\u00a0,b}",
        ],
    ),
    ("integer[]", ["{1,NULL,-3}", "{}", None, "[0:1]={7,8}", "{{1,2},{3,4}}"]),
    ("boolean[]", ["{t,f,NULL}", "{}", None, "{{t},{f}}"]),
    ("double precision[]", ["{1.5,NaN,-Infinity,1e+300}", "{0.1,-0,NULL}", "{}", "{4.9e-324}"]),
    ("numeric[]", ["{1.50,NaN}", "{1,2}", "{-0.000}"]),
    ("uuid[]", ["{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}"]),
    ("date[]", ["{2024-01-01,infinity}", '{"2024-01-01 BC"}']),
    ("jsonb[]", ['{"{\\"a\\": 1}",NULL}']),
]


@pytest.mark.parametrize(("type_name", "texts"), ARRAY_CASES, ids=[c[0] for c in ARRAY_CASES])
def test_arrays_convert_exactly_like_the_stream_values(type_name: str, texts: list[str | None]) -> None:
    table, column = _table(type_name)
    mapping = column_mapping(column)
    from_copy = text_to_arrow(table, column, mapping, pa.array(texts, pa.string()))
    assert from_copy.equals(convert_column(table, column, mapping, texts))


def test_array_json_of_simple_rows() -> None:
    table, column = _table("text[]")
    got = text_to_arrow(table, column, column_mapping(column), pa.array(["{a,NULL,null}", "{}", None]))
    assert got.to_pylist() == ['["a",null,null]', "[]", None]
    table, column = _table("integer[]")
    got = text_to_arrow(table, column, column_mapping(column), pa.array(["{1,NULL,-3}"]))
    assert got.to_pylist() == ["[1,null,-3]"]
    table, column = _table("boolean[]")
    assert text_to_arrow(table, column, column_mapping(column), pa.array(["{t,f}"])).to_pylist() == [
        "[true,false]"
    ]


def test_null_elements_of_any_case_are_found_in_any_slice_of_the_texts() -> None:
    table, column = _table("text[]")
    mapping = column_mapping(column)
    texts = pa.array(["{x}", "{a,nUlL}", "{nu}", "{ll}", None, "{b}"], pa.string())
    for piece in (texts, texts.slice(1), texts.slice(2, 2), texts.slice(4), texts.slice(4, 1)):
        expected = convert_column(table, column, mapping, piece.to_pylist())
        assert text_to_arrow(table, column, mapping, piece).equals(expected)
    assert text_to_arrow(table, column, mapping, texts.slice(1, 1)).to_pylist() == ['["a",null]']
    # "nu" and "ll" end to end spell null, but in two texts: neither holds a null element
    assert text_to_arrow(table, column, mapping, texts.slice(2, 2)).to_pylist() == ['["nu"]', '["ll"]']


def test_copy_text_escapes_are_undone_exactly() -> None:
    table, column = _table("text")
    texts = pa.array(["a\\\\n", "tab\\there \\\\N", None, "x\\b\\f\\v\\r\\n", "plain", "\\\\\\\\"])
    assert unescape_copy_text(table, column, texts).to_pylist() == [
        "a\\n", "tab\there \\N", None, "x\b\f\v\r\n", "plain", "\\\\",
    ]  # fmt: skip
    with pytest.raises(DecodeError, match="an escape PostgreSQL's text format does not use"):
        unescape_copy_text(table, column, pa.array(["\\123"]))
