"""PostgreSQL type -> Arrow type -> Snowflake type, in one table.

Every replicated column gets a ``TypeMapping``. Types without an exact mapping travel as their
PostgreSQL text form (``kind == "text"``, Arrow string, Snowflake VARCHAR) and are reported once
per column by the caller: never a crash, never a silent change of value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from cdc.model import Column

Kind = Literal[
    "int",
    "decimal",
    "float",
    "bool",
    "string",
    "date",
    "timestamp",
    "timestamptz",
    "json",
    "uuid",
    "bytes",
    "text",
]

MAX_DECIMAL_PRECISION = 38


@dataclass(frozen=True)
class TypeMapping:
    kind: Kind
    arrow: pa.DataType
    snowflake: str  # column type in the target table
    load_snowflake: str  # column type in the transient load table (VARIANT arrives as text)
    exact: bool = True  # False: travels as text because no exact mapping exists (yet)
    load_expr: str = "{}"  # how the MERGE turns a load-table value into the target's ({} = the value)


_NUMERIC = re.compile(r"^numeric\((\d+),(\d+)\)$")
_VARCHAR = re.compile(r"^character varying\((\d+)\)$")
_CHAR = re.compile(r"^character\((\d+)\)$")
_TS = re.compile(r"^timestamp(?:\((\d)\))? without time zone$")
_TSTZ = re.compile(r"^timestamp(?:\((\d)\))? with time zone$")

_SIMPLE: dict[str, TypeMapping] = {
    "smallint": TypeMapping("int", pa.int16(), "NUMBER(5,0)", "NUMBER(5,0)"),
    "integer": TypeMapping("int", pa.int32(), "NUMBER(10,0)", "NUMBER(10,0)"),
    "bigint": TypeMapping("int", pa.int64(), "NUMBER(19,0)", "NUMBER(19,0)"),
    "real": TypeMapping("float", pa.float32(), "FLOAT", "FLOAT"),
    "double precision": TypeMapping("float", pa.float64(), "FLOAT", "FLOAT"),
    "boolean": TypeMapping("bool", pa.bool_(), "BOOLEAN", "BOOLEAN"),
    "text": TypeMapping("string", pa.string(), "VARCHAR", "VARCHAR"),
    "character varying": TypeMapping("string", pa.string(), "VARCHAR", "VARCHAR"),
    "date": TypeMapping("date", pa.date32(), "DATE", "DATE"),
    "json": TypeMapping("json", pa.string(), "VARIANT", "VARCHAR", load_expr="PARSE_JSON({})"),
    "jsonb": TypeMapping("json", pa.string(), "VARIANT", "VARCHAR", load_expr="PARSE_JSON({})"),
    "uuid": TypeMapping("uuid", pa.string(), "VARCHAR(36)", "VARCHAR(36)"),
    "bytea": TypeMapping("bytes", pa.binary(), "BINARY", "BINARY"),
}

TEXT_FALLBACK = TypeMapping("text", pa.string(), "VARCHAR", "VARCHAR", exact=False)


def map_type(type_name: str) -> TypeMapping:
    """Map a ``format_type()`` name to its Arrow and Snowflake types."""
    name = type_name.strip()
    if name in _SIMPLE:
        return _SIMPLE[name]
    if m := _NUMERIC.match(name):
        precision, scale = int(m.group(1)), int(m.group(2))
        if precision <= MAX_DECIMAL_PRECISION:
            sf = f"NUMBER({precision},{scale})"
            return TypeMapping("decimal", pa.decimal128(precision, scale), sf, sf)
        return TEXT_FALLBACK
    if m := _VARCHAR.match(name):
        sf = f"VARCHAR({int(m.group(1))})"
        return TypeMapping("string", pa.string(), sf, sf)
    if m := _CHAR.match(name):
        sf = f"VARCHAR({int(m.group(1))})"
        return TypeMapping("string", pa.string(), sf, sf)
    if _TS.match(name):
        return TypeMapping("timestamp", pa.timestamp("us"), "TIMESTAMP_NTZ(6)", "TIMESTAMP_NTZ(6)")
    if _TSTZ.match(name):
        return TypeMapping("timestamptz", pa.timestamp("us", tz="UTC"), "TIMESTAMP_TZ(6)", "TIMESTAMP_TZ(6)")
    return TEXT_FALLBACK


def column_mapping(column: Column) -> TypeMapping:
    return map_type(column.type_name)
