"""Value conversion: real wal2json output of every type -> staged Arrow values, value by value;
the NaN/Infinity fill; PostgreSQL array text -> JSON; and the canonical text that compares them."""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from cdc.batch import StagedTable, WindowWriter
from cdc.compare import canonical_text, compare_rows, normalize
from cdc.convert import convert_column, parse_pg_array, pg_array_json
from cdc.errors import DecodeError
from cdc.model import Begin, Change, Column, Lsn, TableSchema
from cdc.nan_fill import fill_from_source
from cdc.source.wal2json import parse_message
from cdc.typemap import column_mapping, map_type

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "wal2json"


def load_table() -> TableSchema:
    [t] = json.loads((FIXTURES / "types_schema.json").read_text())
    columns = tuple(
        Column(c["name"], c["attnum"], c["type_name"], c["type_oid"], c["nullable"], c["toastable"])
        for c in t["columns"]
    )
    return TableSchema(t["schema"], t["table"], columns, tuple(t["key"]))


TYPES = load_table()


class FakeLookup:
    """Answers lookups from a dict of current rows; records what it was asked."""

    def __init__(self, rows: dict[tuple[Any, ...], dict[str, str | None]]) -> None:
        self.rows = rows
        self.calls: list[tuple[str, list[str], list[tuple[Any, ...]]]] = []

    def __call__(
        self, table: TableSchema, columns: Any, keys: Any
    ) -> dict[tuple[Any, ...], dict[str, str | None]]:
        self.calls.append((table.qualified, list(columns), list(keys)))
        return {k: {c: self.rows[k].get(c) for c in columns} for k in keys if k in self.rows}


def stage(tmp_path: Path, resolver: Any = None) -> list[dict[str, Any]]:
    """The captured ``types`` scenario through the window writer; rows read back by column name."""
    writer = WindowWriter(tmp_path, lambda s, t: TYPES, resolver=resolver)
    begin: Begin | None = None
    for line in (FIXTURES / "types.jsonl").read_text().splitlines():
        message = parse_message(line)
        if isinstance(message, Begin):
            begin = message
        elif isinstance(message, Change):
            assert begin is not None
            writer.add(message, begin.commit_lsn, begin.commit_ts)
    [staged] = writer.close()
    return read(tmp_path, staged)


def read(spool: Path, staged: StagedTable) -> list[dict[str, Any]]:
    names = {c.stage_name: c.name for c in staged.table.columns}
    rows = []
    for f in staged.files:
        for row in pq.read_table(spool / staged.stage_dir / f.name).to_pylist():
            rows.append({names.get(k, k): v for k, v in row.items()})
    return rows


def test_every_type_is_staged_exactly(tmp_path: Path) -> None:
    i1, i2, i3, i4, u1, u3, d2 = stage(tmp_path)
    assert [r["_CDC_OP"] for r in (i1, i2, i3, i4, u1, u3, d2)] == ["I", "I", "I", "I", "U", "U", "D"]
    expected_1 = {
        "id": 1,
        "c_int2": 1,
        "c_int4": 2,
        "c_int8": 3,
        "c_num_10_2": Decimal("12345678.91"),
        "c_num_38": Decimal("1234567890123456789012345678.0123456789"),
        "c_num_40": "12345678901234567890123456789012345.12345",
        "c_num": "1.50",  # scale kept
        "c_real": 0.1,  # the double nearest to real's shortest text
        "c_double": 3.141592653589793,
        "c_money": Decimal("-1234.56"),
        "c_text": 'h\u00e9llo "quoted"\nline \\ backslash',
        "c_varchar": "varchar",
        "c_char": "ab   ",
        "c_bool": True,
        "c_date": "2024-02-29",
        "c_time": "13:14:15.123456",
        "c_time3": "13:14:15.123",
        "c_timetz": "13:14:15+05:30",
        "c_ts": "2024-02-29 13:14:15.123456",
        "c_ts3": "2024-02-29 13:14:15.123",
        "c_tstz": "2024-02-29 18:14:15.123456+00",  # written in America/New_York, read in UTC
        "c_tstz3": "2024-02-29 11:14:15.5+00",
        "c_interval": "P1Y2M-3DT4H5M6.789S",
        "c_json": '{"b": [1, 2.50, null], "a": "\\u00fc", "a": 2}',
        "c_jsonb": '{"b": [1, 2.50, null], "z": {"n": {}}}',
        "c_uuid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "c_bytea": b"\xde\xad\xbe\xef\x00",
        "c_inet": "192.168.0.1/24",
        "c_cidr": "10.0.0.0/8",
        "c_macaddr": "08:00:2b:01:02:03",
        "c_macaddr8": "08:00:2b:01:02:03:04:05",
        "c_bit": "1010",
        "c_varbit": "101",
        "c_xml": "<a>x &amp; y</a>",
        "c_enum": "happy",
        "c_amount": Decimal("12.50"),  # domains arrive as JSON strings
        "c_count": 9223372036854775807,
        "c_flag": True,
        "c_int_arr": "[1,null,3]",
        "c_int_arr2": "[[1,2],[3,null]]",
        "c_text_arr": '["a\\"b","NULL",null,"","\\\\","x y","ü"]',
        "c_num_arr": '["1.50","NaN","Infinity","-Infinity","0.0000001"]',
        "c_float_arr": '[1.5,"NaN","Infinity","-Infinity",-0,1e+300]',
        "c_real_arr": "[0.1,3.4e+38]",
        "c_bool_arr": "[true,false,null]",
        "c_jsonb_arr": '[{"a": 1},[1, "x"],null]',
        "c_date_arr": '["2024-02-29","infinity","0044-03-15 BC"]',
        "c_tstz_arr": '["2024-07-01 16:00:00+00"]',
        "c_enum_arr": '["sad","happy"]',
        "c_bytea_arr": '["\\\\x00ff"]',
        "c_money_arr": '["1.00","-2.50"]',
        "c_box_arr": '["(3,4),(1,2)","(7,8),(5,6)"]',
        "c_gen": "24691357.82",
        "c_real_nn": None,  # NaN: wal2json sent null (no resolver here)
        "c_num_nn": None,
    }
    assert {k: v for k, v in i1.items() if k in expected_1} == expected_1
    assert math.isnan(i1["c_ratio"])  # a domain over double precision: "NaN" arrives as text
    assert all(v is None for k, v in i2.items() if k not in ("id", "c_real_nn", "c_num_nn") and k[0] != "_")
    assert (i2["c_real_nn"], i2["c_num_nn"]) == (0.0, "0")
    assert (i3["c_int2"], i3["c_int4"], i3["c_int8"]) == (-32768, -2147483648, -9223372036854775808)
    assert (i3["c_real"], i3["c_double"], i3["c_num"]) == (None, None, None)  # NaN/-Infinity: null
    assert i3["c_money"] == Decimal("-92233720368547758.08") and i3["c_ratio"] == math.inf
    assert (i3["c_text"], i3["c_varchar"], i3["c_char"], i3["c_bytea"]) == ("", "", "     ", b"")
    assert (i3["c_date"], i3["c_ts"], i3["c_tstz"]) == ("-infinity", "infinity", "-infinity")
    assert (i3["c_time"], i3["c_timetz"], i3["c_interval"]) == ("24:00:00", "00:00:00-15:59", "PT0S")
    assert (i3["c_json"], i3["c_jsonb"], i3["c_int_arr"], i3["c_text_arr"]) == ("null", "[]", "[]", "[]")
    assert i3["c_int_arr2"] == '{"lower_bounds":[0,-1],"values":[[1,2],[3,4]]}'
    assert i4["c_num_40"] == "-99999999999999999999999999999999999.99999"
    assert i4["c_num"] == "123456789012345678901234567890123456789012345678901234567890.000000000000000000001"
    assert (i4["c_real"], i4["c_double"]) == (1.1754944e-38, 5e-324)
    assert i4["c_money"] == Decimal("92233720368547758.07")
    assert (i4["c_date"], i4["c_ts"], i4["c_tstz"]) == (
        "5874897-12-31",
        "0044-03-15 12:00:00.5 BC",
        "10000-01-01 00:00:00+00",
    )
    assert i4["c_interval"] == "P-1M3DT-0.000001S"
    assert i4["c_int_arr"] == '{"lower_bounds":[0],"values":[1,2,3]}'
    assert (u1["c_double"], u1["c_num"], u1["c_date"], u1["c_int_arr"]) == (None, "0.000", "infinity", "[]")
    assert (u3["c_real"], d2["id"], d2["c_real_nn"]) == (2.5, 2, None)


def test_nulls_of_number_columns_in_inserts_and_updates_are_read_at_the_source(tmp_path: Path) -> None:
    lookup = FakeLookup(
        {
            (1,): {"c_real_nn": "NaN", "c_num_nn": "-Infinity", "c_double": "NaN", "c_real": "0.1"},
            (3,): {"c_real": "2.5", "c_double": "-Infinity", "c_num": "-Infinity", "c_real_nn": "NaN"},
            # row 2 is gone at the source (deleted later): its nulls stay null
        }
    )
    i1, i2, i3, i4, u1, u3, d2 = stage(tmp_path, lookup)
    [(table, columns, keys)] = lookup.calls  # one batched lookup for the whole part
    assert table == "public.cdc_all_types" and keys == [(1,), (2,), (3,), (4,)]
    assert set(columns) >= {"c_real", "c_double", "c_num", "c_num_38", "c_real_nn", "c_num_nn", "c_gen"}
    assert not {"c_int4", "c_money", "c_text", "c_int_arr"} & set(columns)  # not number kinds
    assert (i1["c_real_nn"], i1["c_num_nn"]) == (pytest.approx(math.nan, nan_ok=True), "-Infinity")
    assert math.isnan(i1["c_real_nn"]) and math.isnan(u1["c_double"])
    assert i1["c_double"] == 3.141592653589793  # sent as a number: not replaced
    assert (i3["c_real"], i3["c_double"], i3["c_num"]) == (2.5, -math.inf, "-Infinity")  # current value
    assert i2["c_double"] is None and d2["c_double"] is None
    assert i4["c_num_38"] is None  # the row's current value is NULL (not in the fake's answer)


def test_a_table_without_number_columns_never_looks_up(tmp_path: Path) -> None:
    table = TableSchema("s", "t", (Column("id", 1, "text", 25), Column("v", 2, "date", 1082)), ("id",))
    lookup = FakeLookup({})
    writer = WindowWriter(tmp_path, lambda s, t: table, resolver=lookup)
    writer.add(Change("I", "s", "t", Lsn(1), {"id": "a", "v": None}), Lsn(2), "2026-01-01 00:00:00+00")
    writer.close()
    assert lookup.calls == []


def mappings(table: TableSchema) -> list[Any]:
    return [column_mapping(c) for c in table.columns]


SMALL = TableSchema(
    "s",
    "small",
    (
        Column("id", 1, "bigint", 20, nullable=False),
        Column("f", 2, "double precision", 701),
        Column("n", 3, "numeric", 1700, toastable=True),
        Column("t", 4, "text", 25),
    ),
    ("id",),
)


def test_fill_skips_deletes_and_columns_an_update_left_unchanged() -> None:
    values: list[list[Any]] = [[1, 2, 3], [None, None, None], [None, None, "5"], [None, None, None]]
    lookup = FakeLookup({(1,): {"f": "NaN", "n": "1"}, (2,): {"f": "Infinity", "n": "NaN"}})
    looked = fill_from_source(SMALL, mappings(SMALL), values, ["U", "D", "I"], [",3,", None, None], lookup)
    assert looked == 2
    assert lookup.calls == [("s.small", ["f"], [(1,), (3,)])]
    assert values[1][0] == "NaN" and values[2][0] is None  # "n" was left out by the update (TOAST)
    assert values[1][1] is None and values[2][1] is None  # the delete is not looked up
    assert values[1][2] is None and values[2][2] == "5"  # row 3 is gone at the source


def test_a_number_key_sent_as_null_is_refused() -> None:
    table = TableSchema(
        "s", "k", (Column("k", 1, "double precision", 701), Column("v", 2, "real", 700)), ("k",)
    )
    with pytest.raises(DecodeError, match="key column"):
        fill_from_source(table, mappings(table), [[None], [None]], ["I"], [None], FakeLookup({}))
    # a delete of a row copied with such a key (a snapshot reads it as text): its delete would
    # match no target row
    with pytest.raises(DecodeError, match=r"key column\(s\) \['k'\] of a row arrived as null"):
        fill_from_source(
            table, mappings(table), [[1.5, None], [None, None]], ["D", "D"], [None, None], FakeLookup({})
        )
    assert fill_from_source(table, mappings(table), [[1.5], [None]], ["D"], [None], FakeLookup({})) == 0


def convert(type_name: str, values: list[Any]) -> list[Any]:
    col = Column("c", 2, type_name, 0)
    table = TableSchema("s", "t", (Column("id", 1, "integer", 23), col), ("id",))
    return convert_column(table, col, map_type(type_name), values).to_pylist()


@pytest.mark.parametrize(
    ("type_name", "values", "expected"),
    [
        ("bigint", ["9223372036854775807", -1], [9223372036854775807, -1]),  # a domain sends text
        ("boolean", ["t", "f", True], [True, False, True]),
        ("numeric(5,2)", ["12.50", 7, "-0.01"], [Decimal("12.50"), Decimal("7.00"), Decimal("-0.01")]),
        (
            "numeric",
            ["NaN", "Infinity", "-Infinity", 10, "0.000"],
            ["NaN", "Infinity", "-Infinity", "10", "0.000"],
        ),
        ("double precision", ["NaN", "1e+300", 5, "-0"], [math.nan, 1e300, 5.0, -0.0]),
        ("real", ["3.4e+38", "1.1754944e-38"], [3.4e38, 1.1754944e-38]),
        (
            "money",
            ["$0.00", "-$1,234.56", "$12.30"],
            [Decimal("0.00"), Decimal("-1234.56"), Decimal("12.30")],
        ),
        ("date", ["infinity", "-infinity", "0044-03-15 BC"], ["infinity", "-infinity", "0044-03-15 BC"]),
        ("uuid", ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"], ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]),
        ("bytea", ["dead00", "\\xdead00", ""], [b"\xde\xad\x00", b"\xde\xad\x00", b""]),  # wal2json, SQL text
    ],
)
def test_values_convert_exactly(type_name: str, values: list[Any], expected: list[Any]) -> None:
    result = convert(type_name, values)
    assert [("nan" if isinstance(v, float) and math.isnan(v) else v) for v in result] == [
        ("nan" if isinstance(v, float) and math.isnan(v) else v) for v in expected
    ]
    assert [str(v) for v in result if isinstance(v, float)] == [
        str(v) for v in expected if isinstance(v, float)
    ]


@pytest.mark.parametrize(
    ("type_name", "value", "fragments"),
    [
        ("numeric(10,2)", "NaN", ["'c'", "numeric(10,2)", "NUMBER(10,2)", "has no NaN", "re-snapshot"]),
        ("numeric(10,2)", "Infinity", ["has no Infinity"]),
        ("timestamp with time zone", "2024-02-29 13:14:15-05", ["TimeZone=UTC"]),
        ("interval", "1 day 02:03:04", ["IntervalStyle=iso_8601"]),
        ("date", "02/29/2024", ["DateStyle=ISO"]),
        ("money", "1.234,56 €", ["lc_monetary=C"]),
        ("uuid", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", ["uuid"]),
        ("numeric", "1e5", ["numeric text"]),
        ("double precision", True, ["is not a number"]),
        ("integer[]", "{1,x}", ["array text", "'x' is not a int"]),
        ("integer[]", "{1,2", ["array text"]),
        ("jsonb[]", '{"{a"}', ["array text"]),
    ],
)
def test_a_value_in_an_unexpected_form_is_a_decode_error(
    type_name: str, value: Any, fragments: list[str]
) -> None:
    with pytest.raises(DecodeError) as info:
        convert(type_name, [value])
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("type_name", "text", "expected"),
    [
        ("integer[]", "{1,NULL,3}", [1, None, 3]),
        ("integer[]", "{{1,2},{3,NULL}}", [[1, 2], [3, None]]),
        ("integer[]", "{}", []),
        ("integer[]", "[0:2]={1,2,3}", {"lower_bounds": [0], "values": [1, 2, 3]}),
        ("integer[]", "[1:1][3:4]={{1,2}}", {"lower_bounds": [1, 3], "values": [[1, 2]]}),
        ("integer[]", "[1:2]={1,2}", [1, 2]),  # default bounds written out
        ("bigint[]", "{9223372036854775807}", [9223372036854775807]),
        ("text[]", '{"a\\"b","NULL",NULL,"","\\\\","x y",ü}', ['a"b', "NULL", None, "", "\\", "x y", "ü"]),
        ("text[]", '{"{}","a,b","}"}', ["{}", "a,b", "}"]),
        ("character(3)[]", '{"a  ",bcd}', ["a  ", "bcd"]),
        ("numeric[]", "{1.50,NaN,-Infinity}", ["1.50", "NaN", "-Infinity"]),
        ("numeric(5,2)[]", "{1.50}", ["1.50"]),
        ("double precision[]", "{1.5,NaN,Infinity,-0,1e+300}", [1.5, "NaN", "Infinity", -0.0, 1e300]),
        ("boolean[]", "{t,f,NULL}", [True, False, None]),
        ("jsonb[]", '{"{\\"a\\": 1.10}","[1, \\"x\\"]",null,"null"}', [{"a": 1.1}, [1, "x"], None, None]),
        ("date[]", '{2024-02-29,infinity,"0044-03-15 BC"}', ["2024-02-29", "infinity", "0044-03-15 BC"]),
        ("bytea[]", '{"\\\\x00ff"}', ["\\x00ff"]),
        ("money[]", "{$1.00,-$2.50}", ["1.00", "-2.50"]),
        ("box[]", "{(3,4),(1,2);(7,8),(5,6)}", ["(3,4),(1,2)", "(7,8),(5,6)"]),
        ("mood[]", "{sad,happy}", ["sad", "happy"]),
    ],
)
def test_array_text_becomes_json_keeping_element_types(type_name: str, text: str, expected: Any) -> None:
    mapping = map_type(type_name)
    assert mapping.element is not None
    rendered = pg_array_json(text, mapping.element, mapping.delimiter)
    assert json.loads(rendered) == expected


def test_array_numbers_keep_their_exact_text() -> None:
    element = map_type("numeric")
    assert pg_array_json("{1.50,0.0000001}", element) == '["1.50","0.0000001"]'
    assert pg_array_json("{1e+300,-0}", map_type("double precision")) == "[1e+300,-0]"
    assert pg_array_json('{"{\\"a\\": 1.10}"}', map_type("jsonb")) == '[{"a": 1.10}]'


@pytest.mark.parametrize("text", ["1,2", "{1,2", "{1,,2}", '{"a}', "[0:1={1}", "[x]={1}", "{1}x", "{1,2}}"])
def test_malformed_array_text_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_pg_array(text)


# --- canonical text: what both sides of a comparison are reduced to ---------------------------


def col(type_name: str) -> Column:
    return Column("c", 1, type_name, 0)


@pytest.mark.parametrize(
    ("type_name", "same"),
    [
        ("integer", [5, "5", Decimal("5")]),
        ("numeric(10,2)", [Decimal("12.5"), Decimal("12.50"), "12.50", 12.5]),
        ("numeric", ["1.50", Decimal("1.50")]),
        ("numeric", ["0.0000001", Decimal("1E-7")]),
        ("numeric", ["NaN", Decimal("NaN")]),
        ("numeric", ["-Infinity", Decimal("-Infinity")]),
        ("double precision", [math.nan, "NaN", Decimal("NaN")]),
        ("double precision", [math.inf, "Infinity"]),
        ("double precision", [0.1, "0.1", "1e-1"]),
        ("real", [0.1, "0.1", 0.10000000149011612]),  # shortest text and widened float4
        ("money", ["-$1,234.56", Decimal("-1234.56"), "-1234.56"]),
        ("boolean", [True, "t", "true"]),
        ("bytea", [b"\x00\xff", memoryview(b"\x00\xff"), bytearray(b"\x00\xff"), "\\x00ff"]),
        ("uuid", ["A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]),
        ("date", [dt.date(2024, 2, 29), "2024-02-29"]),
        ("time without time zone", [dt.time(13, 14, 15, 123000), "13:14:15.123"]),
        (
            "time with time zone",
            [dt.time(12, 0, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))), "12:00:00+05:30"],
        ),
        ("timestamp without time zone", [dt.datetime(2024, 2, 29, 13, 14, 15), "2024-02-29 13:14:15"]),
        (
            "timestamp with time zone",
            [
                dt.datetime(2024, 2, 29, 13, 14, 15, 500000, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
                "2024-02-29 18:14:15.5+00",
                "2024-02-29 13:14:15.5-05",
                "2024-02-29 19:44:15.5+01:30",
            ],
        ),
        ("interval", [dt.timedelta(days=1, seconds=7384), "P1DT2H3M4S"]),
        ("jsonb", ['{"b": [1, 2.50], "a": null}', {"a": None, "b": [1, 2.5]}, '{"a":null,"b":[1,2.5]}']),
        ("json", ['{"a": 1, "a": 2}', {"a": 2}]),
        ("integer[]", ["{1,NULL}", "[1,null]", [1, None], "[\n  1,\n  null\n]"]),
        ("integer[]", ["{}", "[]", []]),
        ("numeric[]", ["{1.50,NaN}", '["1.50","NaN"]', [Decimal("1.50"), Decimal("NaN")]]),
        ("double precision[]", ["{1.5,NaN}", '[1.500000000000000e+00,"NaN"]', [1.5, math.nan]]),
        (
            "double precision[]",
            [
                "{2.5437690534740032e+16,-Infinity}",
                '[25437690534740030.0,"-Infinity"]',
                [2.5437690534740032e16, -math.inf],
            ],
        ),
        ("date[]", ["{2024-02-29}", '["2024-02-29"]', [dt.date(2024, 2, 29)]]),
        ("integer[]", ["[0:1]={1,2}", '{"lower_bounds":[0],"values":[1,2]}']),
        ("double precision[]", ["[0:1]={2.5e+155,NULL}", '{"lower_bounds":[0],"values":[2.5e155,null]}']),
        ("character(5)", ["ab   "]),
    ],
)
def test_canonical_text_agrees_across_representations(type_name: str, same: list[Any]) -> None:
    texts = {canonical_text(col(type_name), v) for v in same}
    assert len(texts) == 1, texts


@pytest.mark.parametrize(
    ("type_name", "a", "b"),
    [
        ("numeric", "1.5", "1.50"),  # numeric keeps its scale
        ("numeric", "NaN", "Infinity"),
        ("numeric(10,2)", Decimal("NaN"), None),
        ("double precision", math.nan, math.inf),
        ("double precision", 0.1, 0.1 + 2**-56),
        ("real", 0.1, 0.10000000894069672),  # the next float4
        ("character(5)", "ab   ", "ab"),
        ("date", "infinity", dt.date.max),  # psycopg2 reads infinity as date.max: read it as text
        ("timestamp with time zone", "2024-02-29 13:14:15+00", "2024-02-29 13:14:15-05"),
        ("interval", "P1M", "P30D"),
        ("jsonb", '{"a": 1}', '{"a": "1"}'),
        ("json", "null", None),
        ("numeric[]", '["1.5"]', '["1.50"]'),
        ("double precision[]", "{0.1}", "[0.10000000000000002]"),
        ("integer[]", "[0:1]={1,2}", "{1,2}"),
        ("text[]", '{"NULL"}', "{NULL}"),
        ("bytea", b"\x00", b""),
        ("money", "1.234,56 €", Decimal("1234.56")),  # another lc_monetary: unreadable, not a crash
        ("integer", "x", "0"),
    ],
)
def test_canonical_text_tells_different_values_apart(type_name: str, a: Any, b: Any) -> None:
    assert canonical_text(col(type_name), a) != canonical_text(col(type_name), b)


def test_compare_rows_is_type_aware_with_columns_and_blind_without() -> None:
    table = TableSchema(
        "s", "t", (Column("id", 1, "integer", 23), Column("f", 2, "double precision", 701)), ("id",)
    )
    source = [{"id": "1", "f": "NaN"}, {"id": "2", "f": "0.1"}]
    target = [{"id": 1, "f": math.nan}, {"id": 2, "f": 0.1}]
    assert compare_rows("s.t", ("id",), source, target, columns=table.columns).equal
    assert not compare_rows(
        "s.t", ("id",), source, [target[0], {"id": 2, "f": 0.2}], columns=table.columns
    ).equal
    # type-blind: NaN equals itself, and a timestamp equals its text in the target
    assert normalize(math.nan) == normalize(math.nan)
    stamp = dt.datetime(2024, 2, 29, 13, 14, 15, 120000, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert normalize(stamp) == "2024-02-29 18:14:15.12+00" and normalize(dt.date(2024, 1, 2)) == "2024-01-02"
