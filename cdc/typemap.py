"""PostgreSQL type -> Arrow type -> Snowflake type, in one table.

Every replicated column gets a ``TypeMapping`` from its ``format_type()`` name (domains arrive
resolved to their base type, see ``cdc.source.catalog``). The rule: a column keeps a typed
Snowflake column only where that type holds *every* value PostgreSQL's type can hold; otherwise it
travels as PostgreSQL's own text form (exact, documented in README "Data in Snowflake"):

* integers, ``numeric(p,s)`` with p <= 38, ``real``/``double precision`` (NaN and +/-Infinity
  included), ``money``, ``boolean``, ``bytea`` and the character types are typed;
* unconstrained ``numeric`` and ``numeric(p,s)`` beyond NUMBER(38) travel as their exact text
  (scale, NaN and +/-Infinity kept);
* date/time types travel as PostgreSQL's ISO text in UTC: Snowflake's DATE/TIME/TIMESTAMP hold
  neither ``infinity`` nor BC dates, years past 9999 or ``24:00:00``;
* json/jsonb and arrays become VARIANT (arrays as JSON arrays built from PostgreSQL's array text);
* enums, inet/cidr/macaddr, bit strings, xml and uuid are VARCHAR text.

Types without a mapping travel as their PostgreSQL text form too (``kind == "text"``, Arrow
string, Snowflake VARCHAR, ``exact=False``: no typed target exists) and are reported once per
column by the caller: never a crash, never a silent change of value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from cdc.model import Column

Kind = Literal[
    "int",
    "decimal",  # numeric(p,s), p <= 38: NUMBER(p,s)
    "numeric",  # numeric without a NUMBER(p,s) equivalent: its exact text
    "float4",
    "float8",
    "money",
    "bool",
    "string",  # character types and other types whose value is their text (inet, bit, xml, ...)
    "uuid",
    "date",
    "time",
    "timetz",
    "timestamp",
    "timestamptz",
    "interval",
    "json",
    "bytes",
    "array",
    "text",  # no mapping: the PostgreSQL text form, reported once per column
]

# kinds whose values wal2json writes as bare JSON numbers, and so NaN/Infinity as null
NUMBER_KINDS: frozenset[str] = frozenset({"float4", "float8", "decimal", "numeric"})

MAX_DECIMAL_PRECISION = 38
ENUM_PREFIX = "enum:"  # how the catalog names an enum type: "enum:" + format_type()


@dataclass(frozen=True)
class TypeMapping:
    kind: Kind
    arrow: pa.DataType
    snowflake: str  # column type in the target table
    load_snowflake: str  # column type in the transient load table (VARIANT arrives as text)
    exact: bool = True  # False: travels as text because no mapping exists
    load_expr: str = "{}"  # how the MERGE turns a load-table value into the target's ({} = the value)
    element: TypeMapping | None = None  # arrays: the mapping of one element
    delimiter: str = ","  # arrays: PostgreSQL's element delimiter (";" for box)

    @property
    def scale(self) -> int:
        """Digits after the decimal point of a NUMBER mapping (0 for anything else)."""
        return self.arrow.scale if pa.types.is_decimal(self.arrow) else 0


_NUMERIC = re.compile(r"^numeric\((\d+),(-?\d+)\)$")
_VARCHAR = re.compile(r"^character varying\((\d+)\)$")
_CHAR = re.compile(r"^character\((\d+)\)$")
_BIT = re.compile(r"^bit(?: varying)?\((\d+)\)$")
_TIME = re.compile(r"^time(?:\(\d\))? without time zone$")
_TIMETZ = re.compile(r"^time(?:\(\d\))? with time zone$")
_TS = re.compile(r"^timestamp(?:\(\d\))? without time zone$")
_TSTZ = re.compile(r"^timestamp(?:\(\d\))? with time zone$")
_INTERVAL = re.compile(r"^interval(?:\(\d\)| [a-z ]+(?:\(\d\))?)?$")


def _typed(kind: Kind, arrow: pa.DataType, snowflake: str) -> TypeMapping:
    return TypeMapping(kind, arrow, snowflake, snowflake)


def _string(snowflake: str = "VARCHAR", kind: Kind = "string") -> TypeMapping:
    return TypeMapping(kind, pa.string(), snowflake, snowflake)


def _variant(kind: Kind, load_expr: str = "PARSE_JSON({})") -> TypeMapping:
    return TypeMapping(kind, pa.string(), "VARIANT", "VARCHAR", load_expr=load_expr)


_SIMPLE: dict[str, TypeMapping] = {
    "smallint": _typed("int", pa.int16(), "NUMBER(5,0)"),
    "integer": _typed("int", pa.int32(), "NUMBER(10,0)"),
    "bigint": _typed("int", pa.int64(), "NUMBER(19,0)"),
    "oid": _typed("int", pa.int64(), "NUMBER(10,0)"),
    "numeric": _string(kind="numeric"),
    # real travels as the double nearest to its shortest text: Snowflake shows what PostgreSQL
    # shows, and rounding it to float4 gives back the identical value
    "real": _typed("float4", pa.float64(), "FLOAT"),
    "double precision": _typed("float8", pa.float64(), "FLOAT"),
    # money: PostgreSQL's int64 of cents, as printed under lc_monetary=C ("-$1,234.56")
    "money": _typed("money", pa.decimal128(19, 2), "NUMBER(19,2)"),
    "boolean": _typed("bool", pa.bool_(), "BOOLEAN"),
    "text": _string(),
    "character varying": _string(),
    "bpchar": _string(),
    "name": _string("VARCHAR(63)"),
    '"char"': _string("VARCHAR(1)"),
    "bit varying": _string(),
    "inet": _string("VARCHAR(43)"),
    "cidr": _string("VARCHAR(43)"),
    "macaddr": _string("VARCHAR(17)"),
    "macaddr8": _string("VARCHAR(23)"),
    "xml": _string(),
    "uuid": _string("VARCHAR(36)", kind="uuid"),
    "date": _string(kind="date"),
    "json": _variant("json", "PARSE_JSON({}, 'd')"),  # json keeps duplicate keys: the last one wins
    "jsonb": _variant("json"),
    "bytea": _typed("bytes", pa.binary(), "BINARY"),
}

TEXT_FALLBACK = TypeMapping("text", pa.string(), "VARCHAR", "VARCHAR", exact=False)


def map_type(type_name: str) -> TypeMapping:
    """Map a ``format_type()`` name to its Arrow and Snowflake types."""
    name = type_name.strip()
    if name.endswith("[]"):
        # format_type prints one "[]" whatever the number of dimensions
        element = map_type(name[:-2])
        return TypeMapping(
            "array",
            pa.string(),
            "VARIANT",
            "VARCHAR",
            load_expr="PARSE_JSON({})",
            element=element,
            delimiter=";" if name[:-2] == "box" else ",",
        )
    if name in _SIMPLE:
        return _SIMPLE[name]
    if name.startswith(ENUM_PREFIX):
        return _string()
    if m := _NUMERIC.match(name):
        precision, scale = int(m.group(1)), int(m.group(2))
        if precision <= MAX_DECIMAL_PRECISION and 0 <= scale <= precision:
            return _typed("decimal", pa.decimal128(precision, scale), f"NUMBER({precision},{scale})")
        return _string(kind="numeric")  # beyond NUMBER(38), or a scale NUMBER cannot declare
    if (m := _VARCHAR.match(name)) or (m := _CHAR.match(name)) or (m := _BIT.match(name)):
        return _string(f"VARCHAR({int(m.group(1))})")  # char(n) keeps its blank padding
    if _TIME.match(name):
        return _string(kind="time")
    if _TIMETZ.match(name):
        return _string(kind="timetz")
    if _TS.match(name):
        return _string(kind="timestamp")
    if _TSTZ.match(name):
        return _string(kind="timestamptz")
    if _INTERVAL.match(name):
        return _string(kind="interval")
    return TEXT_FALLBACK


def column_mapping(column: Column) -> TypeMapping:
    return map_type(column.type_name)
