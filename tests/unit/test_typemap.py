"""The type map: every format_type() name maps to the documented Arrow and Snowflake types."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from cdc.model import Column
from cdc.typemap import NUMBER_KINDS, TEXT_FALLBACK, TypeMapping, column_mapping, map_type

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "wal2json"

VARIANT = ("VARIANT", "VARCHAR", "PARSE_JSON({})")


def plain(snowflake: str) -> tuple[str, str, str]:
    return (snowflake, snowflake, "{}")


# format_type() name -> (kind, Arrow type, (target type, load-table type, load expression))
DOCUMENTED: list[tuple[str, str, pa.DataType, tuple[str, str, str]]] = [
    ("smallint", "int", pa.int16(), plain("NUMBER(5,0)")),
    ("integer", "int", pa.int32(), plain("NUMBER(10,0)")),
    ("bigint", "int", pa.int64(), plain("NUMBER(19,0)")),
    ("oid", "int", pa.int64(), plain("NUMBER(10,0)")),
    ("numeric(10,2)", "decimal", pa.decimal128(10, 2), plain("NUMBER(10,2)")),
    ("numeric(38,10)", "decimal", pa.decimal128(38, 10), plain("NUMBER(38,10)")),
    ("numeric(38,0)", "decimal", pa.decimal128(38, 0), plain("NUMBER(38,0)")),
    ("numeric(1,1)", "decimal", pa.decimal128(1, 1), plain("NUMBER(1,1)")),
    ("numeric(39,2)", "numeric", pa.string(), plain("VARCHAR")),
    ("numeric(40,5)", "numeric", pa.string(), plain("VARCHAR")),
    ("numeric(1000,0)", "numeric", pa.string(), plain("VARCHAR")),
    ("numeric(3,-2)", "numeric", pa.string(), plain("VARCHAR")),  # negative scale (PostgreSQL 15)
    ("numeric(3,5)", "numeric", pa.string(), plain("VARCHAR")),  # scale above precision
    ("numeric", "numeric", pa.string(), plain("VARCHAR")),
    ("real", "float4", pa.float64(), plain("FLOAT")),
    ("double precision", "float8", pa.float64(), plain("FLOAT")),
    ("money", "money", pa.decimal128(19, 2), plain("NUMBER(19,2)")),
    ("boolean", "bool", pa.bool_(), plain("BOOLEAN")),
    ("text", "string", pa.string(), plain("VARCHAR")),
    ("character varying", "string", pa.string(), plain("VARCHAR")),
    ("character varying(20)", "string", pa.string(), plain("VARCHAR(20)")),
    ("character(5)", "string", pa.string(), plain("VARCHAR(5)")),
    ("character(1)", "string", pa.string(), plain("VARCHAR(1)")),
    ("bpchar", "string", pa.string(), plain("VARCHAR")),
    ("name", "string", pa.string(), plain("VARCHAR(63)")),
    ('"char"', "string", pa.string(), plain("VARCHAR(1)")),
    ("date", "date", pa.string(), plain("VARCHAR")),
    ("time without time zone", "time", pa.string(), plain("VARCHAR")),
    ("time(3) without time zone", "time", pa.string(), plain("VARCHAR")),
    ("time with time zone", "timetz", pa.string(), plain("VARCHAR")),
    ("time(0) with time zone", "timetz", pa.string(), plain("VARCHAR")),
    ("timestamp without time zone", "timestamp", pa.string(), plain("VARCHAR")),
    ("timestamp(3) without time zone", "timestamp", pa.string(), plain("VARCHAR")),
    ("timestamp with time zone", "timestamptz", pa.string(), plain("VARCHAR")),
    ("timestamp(3) with time zone", "timestamptz", pa.string(), plain("VARCHAR")),
    ("interval", "interval", pa.string(), plain("VARCHAR")),
    ("interval(0)", "interval", pa.string(), plain("VARCHAR")),
    ("interval year to month", "interval", pa.string(), plain("VARCHAR")),
    ("interval day to second(3)", "interval", pa.string(), plain("VARCHAR")),
    ("json", "json", pa.string(), ("VARIANT", "VARCHAR", "PARSE_JSON({}, 'd')")),
    ("jsonb", "json", pa.string(), VARIANT),
    ("uuid", "uuid", pa.string(), plain("VARCHAR(36)")),
    ("bytea", "bytes", pa.binary(), plain("BINARY")),
    ("inet", "string", pa.string(), plain("VARCHAR(43)")),
    ("cidr", "string", pa.string(), plain("VARCHAR(43)")),
    ("macaddr", "string", pa.string(), plain("VARCHAR(17)")),
    ("macaddr8", "string", pa.string(), plain("VARCHAR(23)")),
    ("bit(4)", "string", pa.string(), plain("VARCHAR(4)")),
    ("bit(1)", "string", pa.string(), plain("VARCHAR(1)")),
    ("bit varying(8)", "string", pa.string(), plain("VARCHAR(8)")),
    ("bit varying", "string", pa.string(), plain("VARCHAR")),
    ("xml", "string", pa.string(), plain("VARCHAR")),
    ("enum:mood", "string", pa.string(), plain("VARCHAR")),
    ('enum:"Odd Mood"', "string", pa.string(), plain("VARCHAR")),
    ("enum:sales.status", "string", pa.string(), plain("VARCHAR")),
    ("integer[]", "array", pa.string(), VARIANT),
    ("numeric(40,5)[]", "array", pa.string(), VARIANT),
    ("timestamp(3) with time zone[]", "array", pa.string(), VARIANT),
    ("character(5)[]", "array", pa.string(), VARIANT),
    ("bit varying(8)[]", "array", pa.string(), VARIANT),
    ("mood[]", "array", pa.string(), VARIANT),
    ("box[]", "array", pa.string(), VARIANT),
]


@pytest.mark.parametrize(("type_name", "kind", "arrow", "snowflake"), DOCUMENTED)
def test_type_maps_as_documented(
    type_name: str, kind: str, arrow: pa.DataType, snowflake: tuple[str, str, str]
) -> None:
    mapping = map_type(type_name)
    assert (mapping.kind, mapping.arrow, mapping.exact) == (kind, arrow, True)
    assert (mapping.snowflake, mapping.load_snowflake, mapping.load_expr) == snowflake
    assert mapping.load_expr.count("{}") == 1


@pytest.mark.parametrize(
    ("type_name", "element_kind", "delimiter"),
    [
        ("integer[]", "int", ","),
        ("numeric(40,5)[]", "numeric", ","),
        ("numeric(10,2)[]", "decimal", ","),
        ("real[]", "float4", ","),
        ("timestamp(3) with time zone[]", "timestamptz", ","),
        ("jsonb[]", "json", ","),
        ("money[]", "money", ","),
        ("mood[]", "text", ","),  # an enum's element: its text
        ("box[]", "text", ";"),  # box is the one type whose arrays use ';'
    ],
)
def test_array_maps_its_element_type(type_name: str, element_kind: str, delimiter: str) -> None:
    mapping = map_type(type_name)
    assert mapping.element is not None
    assert (mapping.element.kind, mapping.delimiter) == (element_kind, delimiter)


@pytest.mark.parametrize("type_name", ["mood", '"Odd Mood"', "tsvector", "point", "int4range", "hstore"])
def test_types_without_a_mapping_travel_as_text_and_are_flagged(type_name: str) -> None:
    assert map_type(type_name) is TEXT_FALLBACK
    assert (TEXT_FALLBACK.kind, TEXT_FALLBACK.arrow, TEXT_FALLBACK.snowflake) == (
        "text",
        pa.string(),
        "VARCHAR",
    )
    assert not TEXT_FALLBACK.exact


def test_names_are_read_without_surrounding_blanks() -> None:
    assert map_type("  numeric(12,2) ") == map_type("numeric(12,2)")


def test_decimal_mappings_carry_their_scale() -> None:
    assert map_type("numeric(12,3)").scale == 3
    assert map_type("numeric").scale == 0 and map_type("real").scale == 0


def test_kinds_whose_special_values_wal2json_loses_are_the_number_kinds() -> None:
    lossy = {name for name, *_ in DOCUMENTED if map_type(name).kind in NUMBER_KINDS}
    assert lossy == {
        "numeric(10,2)",
        "numeric(38,10)",
        "numeric(38,0)",
        "numeric(1,1)",
        "numeric(39,2)",
        "numeric(40,5)",
        "numeric(1000,0)",
        "numeric(3,-2)",
        "numeric(3,5)",
        "numeric",
        "real",
        "double precision",
    }


def test_every_column_of_the_captured_table_has_a_typed_or_exact_mapping() -> None:
    """The catalog's names for the captured all-types table (domains resolved to their base)."""
    [table] = json.loads((FIXTURES / "types_schema.json").read_text())
    columns = {
        c["name"]: Column(c["name"], c["attnum"], c["type_name"], c["type_oid"]) for c in table["columns"]
    }
    mappings = {name: column_mapping(col) for name, col in columns.items()}
    # domains: cdc_amount over numeric(12,2), cdc_count over bigint, cdc_flag over boolean, ...
    assert (columns["c_amount"].type_name, mappings["c_amount"].snowflake) == (
        "numeric(12,2)",
        "NUMBER(12,2)",
    )
    assert (columns["c_count"].type_name, mappings["c_count"].kind) == ("bigint", "int")
    assert (columns["c_flag"].type_name, mappings["c_ratio"].kind) == ("boolean", "float8")
    assert mappings["c_gen"].kind == "numeric"  # a stored generated column maps like any other
    # the enum is the only column on the text fallback until the catalog marks enums "enum:<name>"
    fallback = sorted(name for name, m in mappings.items() if not m.exact)
    assert fallback in (["c_enum"], [])
    assert all(isinstance(m, TypeMapping) for m in mappings.values())
