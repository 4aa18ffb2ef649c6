"""The vectorised conversion of a whole column gives exactly what the per-value path gives, or
leaves the column to it; and the one-step JSON of simple arrays equals the array parser's."""

from __future__ import annotations

import json
import math
import random
import struct
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from cdc.convert import _each_value, _simple_array_pattern, _whole_column, convert_column, joined_texts
from cdc.errors import DecodeError
from cdc.model import Column, TableSchema
from cdc.pgarray import _simple_text_array, parse_pg_array, pg_array_json
from cdc.typemap import map_type


def column(type_name: str) -> tuple[TableSchema, Column]:
    col = Column("c", 2, type_name, 0)
    return TableSchema("s", "t", (Column("id", 1, "integer", 23), col), ("id",)), col


def same(a: pa.Array, b: pa.Array) -> bool:
    """Equal type and values, NaN equal to NaN and -0.0 told apart from 0.0."""

    def norm(v: Any) -> Any:
        if isinstance(v, float):
            return "nan" if math.isnan(v) else repr(v)
        return v

    return a.type == b.type and [norm(v) for v in a.to_pylist()] == [norm(v) for v in b.to_pylist()]


CASES: list[tuple[str, list[Any]]] = [
    ("smallint", [1, None, -32768, 32767]),
    ("integer", [None, None]),
    ("bigint", [9223372036854775807, -9223372036854775808, 0]),
    ("boolean", [True, False, None]),
    ("numeric(12,2)", ["12.50", 7, None, "-0.01", "9999999999.99"]),
    ("numeric(10,0)", [5, -3, None, "12"]),
    ("numeric", ["NaN", "Infinity", "-Infinity", 10, "0.000", "1.5", None]),
    ("double precision", ["NaN", "1e+300", 5, "-0", "0.1", None, "-Infinity", "2.2250738585072014e-308"]),
    ("real", ["3.4e+38", "1.1754944e-38", 0, "-1.5"]),
    ("text", ["a", "", 'h\u00e9llo "q"\n', None]),
    ("character(3)", ["a  ", "abc"]),
    ("jsonb", ['{"a": [1, 2.50]}', "null", None]),
    ("uuid", ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", None]),
    ("date", ["2024-02-29", "infinity", "-infinity", "0044-03-15 BC", "12345-01-01"]),
    ("time without time zone", ["13:14:15", "24:00:00", "00:00:00.000001"]),
    ("time with time zone", ["13:14:15+02", "13:14:15.5-03:30", "01:02:03+05:30:15"]),
    ("timestamp without time zone", ["2024-02-29 13:14:15.123456", "infinity", "0044-03-15 13:14:15 BC"]),
    ("timestamp with time zone", ["2024-02-29 11:14:15.123456+00", "-infinity", None]),
    ("text[]", ["{a,b,NULL}", '{"a b","x\\"y"}', "{}", None, "{a,b,NULL}"]),
    ("integer[]", ["{1,2,NULL}", "{{1,2},{3,4}}", "[0:1]={5,6}"]),
    # JSON integers in number columns: a whole column of them, mixed with texts, beyond int64
    ("numeric(19,0)", [9223372036854775807, -9223372036854775808, 0, None]),
    ("double precision", [1, -2, None, 0]),
    ("double precision", [1, "2.5", None]),
    ("numeric", [1 << 70, "1.5", -(1 << 64)]),
    ("numeric(38,0)", [1 << 70, None]),
    ("double precision", ["1e400", "-1e400", "1e-400", "Infinity", "NaN", ".5", "5.", "-.5E+3"]),
    ("text", ["line\nbreak", "x", ""]),  # a line break: not one join
    ("text", ["\u00e9", "\u4e2d\U0001f600", "\r", " "]),
    ("uuid", ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12"]),
    ("text[]", ["{a,\u00a0b}", "{ a , b }", "{x\u2028}", "{nULl,NULLx,\u00e9}"]),
    ("text[]", ["{a,b,c}", "{a,b,c}", None, "{a,b,c}", "{}", "{}"]),  # repeated texts
    ("box[]", ["{(3,4),(1,2);(7,8),(5,6)}", "{(1,1),(0,0)}", None]),
    ("boolean[]", ["{t,f,NULL}", "{t}"]),
    ("jsonb[]", ['{"{\\"a\\": 1}",NULL}']),
]


@pytest.mark.parametrize(("type_name", "values"), CASES, ids=[c[0] for c in CASES])
def test_whole_column_equals_the_per_value_path(type_name: str, values: list[Any]) -> None:
    table, col = column(type_name)
    mapping = map_type(type_name)
    whole = _whole_column(mapping, values)
    assert whole is not None, "this column should take the vectorised step"
    assert same(whole, _each_value(table, col, mapping, values))


REFUSED: list[tuple[str, list[Any]]] = [
    ("bigint", ["9223372036854775807", -1]),  # a domain sends text
    ("integer", [1, True]),
    ("integer", [1.0]),
    ("integer", [1 << 70]),
    ("boolean", ["t", "f", True]),
    ("double precision", [True]),
    ("double precision", ["1_0"]),
    ("double precision", [" 1"]),
    ("numeric(10,2)", ["NaN"]),
    ("numeric", ["1e5"]),
    ("text", [1]),
    ("uuid", ["A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"]),
    ("timestamp with time zone", ["2024-02-29 13:14:15-05"]),
    ("date", ["\u0663\u0663\u0663\u0663-01-01"]),  # digits RE2 does not take as \d
    ("interval", ["P1D"]),  # always per value
    ("bytea", ["dead00"]),
    ("money", ["$1.00"]),
    ("integer[]", ["{1,x}"]),
    ("text[]", ["{a,,b}"]),
    ("text[]", ["{a}", "{ \t}"]),  # an element of ASCII blanks only, which PostgreSQL trims to nothing
    ("text[]", ["{a", "{a}"]),
    ("text[]", [["a"]]),
    ("text", ["\ud800"]),  # a lone surrogate: not UTF-8
    ("numeric(10,2)", [True]),
    ("numeric", ["1.5", False]),
    ("double precision", [1, True]),
    ("double precision", [1.5]),
    ("double precision", ["+1"]),
    ("double precision", ["inf"]),
    ("double precision", ["infinity"]),
    ("real", ["-nan"]),
    ("double precision", ["1.5", "-NaN"]),
    ("double precision", ["nan(1)"]),
    ("double precision", ["+Infinity"]),
    ("double precision", ["1e"]),
    ("double precision", ["\u0663"]),  # a digit RE2 and Arrow do not take
    ("numeric(10,2)", [1 << 70]),
]


@pytest.mark.parametrize(("type_name", "values"), REFUSED, ids=[f"{t}:{v!r}" for t, v in REFUSED])
def test_whole_column_leaves_other_forms_to_the_per_value_path(type_name: str, values: list[Any]) -> None:
    table, col = column(type_name)
    mapping = map_type(type_name)
    assert _whole_column(mapping, values) is None
    try:
        expected: pa.Array | None = _each_value(table, col, mapping, values)
    except DecodeError:
        expected = None
    if expected is None:
        with pytest.raises(DecodeError):
            convert_column(table, col, mapping, values)
    else:
        assert same(convert_column(table, col, mapping, values), expected)


def test_floats_cast_by_arrow_equal_pythons_float_on_random_doubles() -> None:
    rng = random.Random(5)
    texts = []
    while len(texts) < 3000:
        x = struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0]
        if math.isfinite(x):
            texts += [repr(x), f"{x:.17g}", f"{x:.3e}"]
    table, col = column("double precision")
    whole = _whole_column(map_type("double precision"), texts)
    assert whole is not None
    assert [repr(v) for v in whole.to_pylist()] == [repr(float(t)) for t in texts]
    assert same(whole, _each_value(table, col, map_type("double precision"), texts))


@pytest.mark.parametrize(
    ("type_name", "text", "expected"),
    [
        ("text[]", "{a,b,NULL}", '["a","b",null]'),
        ("text[]", "{}", "[]"),
        ("text[]", "{ a , b }", '["a","b"]'),
        ("text[]", "{null,Null}", "[null,null]"),
        ("text[]", "{\u00fc,x}", '["\u00fc","x"]'),
        ("date[]", "{2024-02-29,infinity}", '["2024-02-29","infinity"]'),
        ("numeric[]", "{1.50,NaN}", '["1.50","NaN"]'),
        ("box[]", "{(3,4),(1,2);(7,8),(5,6)}", '["(3,4),(1,2)","(7,8),(5,6)"]'),
    ],
)
def test_simple_arrays_are_built_in_one_step(type_name: str, text: str, expected: str) -> None:
    mapping = map_type(type_name)
    assert mapping.element is not None
    assert _simple_text_array(text, mapping.element, mapping.delimiter) == expected
    assert pg_array_json(text, mapping.element, mapping.delimiter) == expected


@pytest.mark.parametrize(
    "text", ['{"a b",c}', "{a\\,b}", "{{a},{b}}", "[0:1]={a,b}", "{a,,b}", "{a\x01b}", "{a\tb}", "{1,2}x"]
)
def test_other_arrays_go_through_the_parser(text: str) -> None:
    element = map_type("text")
    assert _simple_text_array(text, element, ",") is None


def test_simple_path_agrees_with_the_parser_on_random_arrays() -> None:
    rng = random.Random(11)
    alphabet = ["a", "B", "z", "0", "-", ".", ":", "\u00e9", "\u4e2d", "NULL", "null", " "]
    element = map_type("text")
    checked = 0
    for _ in range(3000):
        items = [
            "".join(rng.choices(alphabet, k=rng.randint(1, 4))).strip() or "x"
            for _ in range(rng.randint(0, 5))
        ]
        text = "{" + ",".join(items) + "}"
        simple = _simple_text_array(text, element, ",")
        if simple is None:
            continue
        lower, values = parse_pg_array(text)
        assert lower is None
        assert json.loads(simple) == values
        assert simple == json.dumps(values, ensure_ascii=False, separators=(",", ":"))
        checked += 1
    assert checked > 2000


@pytest.mark.parametrize(
    "type_name", ["integer", "numeric(10,2)", "double precision", "interval", "money", "bytea", "uuid[]"]
)
def test_a_column_of_nulls_is_nulls_of_its_type(type_name: str) -> None:
    table, col = column(type_name)
    mapping = map_type(type_name)
    result = convert_column(table, col, mapping, [None] * 3)
    assert result.type == mapping.arrow
    assert result.to_pylist() == [None, None, None]
    assert result.equals(_each_value(table, col, mapping, [None] * 3))


def test_float_texts_take_the_cast_only_where_the_per_value_check_accepts() -> None:
    """Random texts of number-like characters: the cast path never accepts a text the per-value
    check refuses, and gives the same double for every text it accepts."""
    rng = random.Random(7)
    pieces = ["0", "1", "9", "25", "7", ".", "e", "E", "+", "-", "n", "a", "N", "i", "I", "f", "inity", "nan"]
    pieces += ["inf", "Infinity", "NaN", "x", " ", "_", "(", ")", "\u0663", "400"]
    table, col = column("double precision")
    mapping = map_type("double precision")
    accepted = 0
    for _ in range(3000):
        text = "".join(rng.choices(pieces, k=rng.randint(1, 5)))
        whole = _whole_column(mapping, [text])
        try:
            expected: pa.Array | None = _each_value(table, col, mapping, [text])
        except DecodeError:
            expected = None
        if whole is not None:
            assert expected is not None, text
            assert same(whole, expected), text
            accepted += 1
    assert accepted > 200


def test_joined_texts_are_the_texts_or_none() -> None:
    texts = ["a", "", "\u00e9\u4e2d", "\r\t", "x" * 1000]
    joined = joined_texts(texts)
    assert joined is not None
    assert joined.type == pa.string()
    assert joined.to_pylist() == texts
    assert joined_texts(["a", None]) is None
    assert joined_texts(["a", 1]) is None
    assert joined_texts(["a\nb"]) is None
    assert joined_texts(["\ud800"]) is None
    assert joined_texts([]) is None


def test_vectorised_arrays_equal_the_parser_on_random_arrays() -> None:
    rng = random.Random(13)
    alphabet = ["a", "B", " ", ",", '"', "\\", "{", "}", "NULL", "null", "nUlL", "x y", ""]
    alphabet += ["\u00e9", "\u00a0", "\t", "\u2003", "\x85", "\x1c", "\u4e2d", "\x7f"]
    for type_name in ("text[]", "uuid[]", "numeric[]", "integer[]", "boolean[]", "box[]"):
        mapping = map_type(type_name)
        assert mapping.element is not None
        texts: list[str | None] = []
        for _ in range(1500):
            items = ["".join(rng.choices(alphabet, k=rng.randint(0, 3))) for _ in range(rng.randint(0, 4))]
            texts.append(rng.choice(["{" + mapping.delimiter.join(items) + "}", "{}", None]))
        expected: list[str | None] = []
        kept: list[str | None] = []
        for text in texts:
            try:
                rendered = None if text is None else pg_array_json(text, mapping.element, mapping.delimiter)
            except ValueError:
                continue
            kept.append(text)
            expected.append(rendered)
        whole = _whole_column(mapping, kept)
        assert whole is not None
        assert whole.to_pylist() == expected


def test_simple_arrays_leave_every_space_but_the_blank_to_the_parser() -> None:
    """Whatever ``str.strip()`` strips besides " " makes an array not simple, so the parser trims
    it; and only an element spelt n-u-l-l in ASCII letters upper-cases to NULL."""
    pattern = _simple_array_pattern(",")
    every = [chr(c) for c in range(0x110000)]
    spaces = [c for c in every if c.isspace() and c != " "]
    assert len(spaces) == 28
    matched = pc.match_substring_regex(pa.array([f"{{a,{s}b}}" for s in spaces]), pattern)
    assert not pc.any(matched).as_py()
    simple = ["{a}", "{ a , b }", "{NULL,null,\u00e9}", "{}", "{a b,c\x7f}"]
    assert pc.all(pc.match_substring_regex(pa.array(simple), pattern)).as_py()
    not_simple = ["{ }", "{a,}", "{,a}", "{a,,b}", '{"a"}', "{{a}}", "{a\\,b}", "[0:0]={a}", "{a"]
    assert not pc.any(pc.match_substring_regex(pa.array(not_simple), pattern)).as_py()
    assert [c for c in every[0x80:] if not c.upper().strip("NUL")] == []
