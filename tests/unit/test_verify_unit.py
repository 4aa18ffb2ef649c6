"""``cdc verify`` without servers: the merge-join on in-memory streams (source rows as PostgreSQL's
text output, target rows as the Snowflake connector returns them), the target SQL as text, the
--tables syntax and the report's JSON shape."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from cdc.errors import ConfigError
from cdc.model import Column, TableSchema
from cdc.source.catalog import Catalog
from cdc.typemap import map_type
from cdc.verify import parse_tables
from cdc.verify.command import describe_table
from cdc.verify.merge import Comparison, Layout, OrderError, VerifyError, merge_compare, order_class
from cdc.verify.read import TargetShape, spelled, target_scan_sql
from cdc.verify.run import TableReport, VerifyReport, select_tables

ITEMS = TableSchema(
    "public",
    "items",
    (
        Column("id", 1, "integer", 23, nullable=False),
        Column("name", 2, "text", 25),
        Column("price", 3, "numeric(10,2)", 1700),
        Column("weight", 4, "double precision", 701),
    ),
    ("id",),
)

LINES = TableSchema(
    "shop",
    "order_lines",
    (
        Column("order_id", 1, "bigint", 20, nullable=False),
        Column("line", 2, "smallint", 21, nullable=False),
        Column("sku", 3, "text", 25),
    ),
    ("order_id", "line"),
)

BY_NAME = TableSchema(
    "Sch ema",
    'Odd "T"',
    (Column("Name", 1, "character varying(20)", 1043, nullable=False), Column("v", 2, "integer", 23)),
    ("Name",),
)


def compare(
    table: TableSchema, source: list[tuple[Any, ...]], target: list[tuple[Any, ...]], limit: int = 20
) -> Comparison:
    return merge_compare(Layout.of(table), iter(source), iter(target), limit=limit)


def item(i: int, name: str | None = "n", price: str | None = "1.50", weight: str | None = "2.5") -> tuple:
    """A source row: PostgreSQL's text output of each value."""
    return (str(i), name, price, weight)


def target_item(
    i: int, name: str | None = "n", price: str | None = "1.50", weight: float | None = 2.5
) -> tuple:
    """A target row: Snowflake values (NUMBER(10,0) -> int, NUMBER(10,2) -> Decimal, FLOAT -> float)."""
    return (i, name, None if price is None else Decimal(price), weight)


def test_equal_tables_compare_equal_on_canonical_values_across_types() -> None:
    source = [item(i) for i in range(1, 6)]
    target = [target_item(i) for i in range(1, 6)]
    result = compare(ITEMS, source, target)
    assert result.equal and not result.truncated
    assert (result.source_rows, result.target_rows) == (5, 5)
    assert (result.missing, result.extra, result.different) == ([], [], [])


def test_empty_tables_are_equal() -> None:
    result = compare(ITEMS, [], [])
    assert result.equal
    assert (result.source_rows, result.target_rows) == (0, 0)


def test_missing_extra_and_different_rows_are_named_with_their_columns() -> None:
    source = [item(1), item(2), item(3, name="new"), item(4, price="9.99", weight="1"), item(6)]
    target = [target_item(1), target_item(3, name="old"), target_item(4), target_item(5), target_item(6)]
    result = compare(ITEMS, source, target)
    assert not result.equal
    assert result.missing == [[2]]
    assert result.extra == [[5]]
    assert result.different == [([3], ["name"]), ([4], ["price", "weight"])]
    assert (result.missing_count, result.extra_count, result.different_count) == (1, 1, 2)
    assert (result.source_rows, result.target_rows) == (5, 5)


def test_rows_beyond_the_other_side_s_end_are_missing_or_extra() -> None:
    result = compare(ITEMS, [item(1), item(2), item(3)], [target_item(1)])
    assert result.missing == [[2], [3]] and result.extra == []
    result = compare(ITEMS, [], [target_item(7), target_item(8)])
    assert result.extra == [[7], [8]] and result.missing == []


def test_composite_keys_merge_on_every_key_column_in_numeric_order() -> None:
    source = [("1", "2", "a"), ("1", "10", "b"), ("2", "1", "c"), ("10", "1", "d")]
    target = [(1, 2, "a"), (1, 10, "B"), (2, 1, "c"), (2, 5, "x"), (10, 1, "d")]
    result = compare(LINES, source, target)
    assert result.missing == []
    assert result.extra == [[2, 5]]
    assert result.different == [([1, 10], ["sku"])]


def test_text_keys_merge_in_byte_order_with_mixed_case_and_non_ascii() -> None:
    names = ["b", "B", "ä", "a", "Z", "😀", "\uffff", "a b", "ab", "Ab", "é", "e\u0301"]
    ordered = sorted(names, key=lambda s: s.encode())  # what COLLATE "C" returns
    assert ordered == sorted(names)  # code point order is UTF-8 byte order
    source = [(n, "1") for n in ordered]
    target = [(n, 1) for n in ordered if n != "ä"] + [("😀😀", 2)]
    target.sort(key=lambda r: r[0].encode())
    result = compare(BY_NAME, source, target)
    assert result.missing == [["ä"]]
    assert result.extra == [["😀😀"]]
    assert result.different == []
    assert result.source_rows == len(names)


def test_case_and_accents_are_different_keys() -> None:
    source = [("A", "1"), ("e\u0301", "1")]
    target = [("a", 1), ("é", 1)]
    target.sort(key=lambda r: r[0].encode())
    result = compare(BY_NAME, source, target)
    assert sorted(result.missing) == [["A"], ["e\u0301"]]
    assert sorted(result.extra) == [["a"], ["é"]]


def test_listed_mismatches_stop_at_the_limit_but_all_are_counted() -> None:
    source = [item(i, name="s") for i in range(0, 100, 2)]  # 50 rows, even keys
    target = [target_item(i, name="t" if i < 50 else "s") for i in range(0, 100, 3)]
    result = compare(ITEMS, source, target, limit=5)
    listed = len(result.missing) + len(result.extra) + len(result.different)
    assert listed == 5
    assert result.truncated
    assert result.missing_count == 50 - 17  # even keys not multiples of 3
    assert result.extra_count == 34 - 17  # multiples of 3 that are odd
    assert result.different_count == 9  # multiples of 6 below 50
    assert result.mismatches == 33 + 17 + 9
    # the listed keys are the first mismatches in key order, whatever their kind
    assert result.different[0] == ([0], ["name"])
    assert result.missing[0] == [2]
    assert result.extra[0] == [3]


def test_a_limit_of_zero_lists_nothing_and_still_counts() -> None:
    result = compare(ITEMS, [item(1)], [target_item(2)], limit=0)
    assert (result.missing, result.extra, result.different) == ([], [], [])
    assert (result.missing_count, result.extra_count, result.truncated) == (1, 1, True)


def test_exactly_the_limit_is_not_truncated() -> None:
    result = compare(ITEMS, [item(1), item(2)], [], limit=2)
    assert result.missing == [[1], [2]] and not result.truncated


def test_nan_equals_nan_and_infinities_compare_exactly() -> None:
    source = [
        item(1, weight="NaN"),
        item(2, weight="Infinity"),
        item(3, weight="-Infinity"),
        item(4, weight="NaN"),
    ]
    target = [
        target_item(1, weight=float("nan")),
        target_item(2, weight=float("inf")),
        target_item(3, weight=float("-inf")),
        target_item(4, weight=1.0),
    ]
    result = compare(ITEMS, source, target)
    assert result.different == [([4], ["weight"])]


def test_null_and_empty_string_differ() -> None:
    source = [item(1, name=None), item(2, name=""), item(3, name=None), item(4, name="")]
    target = [
        target_item(1, name=""),
        target_item(2, name=None),
        target_item(3, name=None),
        target_item(4, name=""),
    ]
    result = compare(ITEMS, source, target)
    assert result.different == [([1], ["name"]), ([2], ["name"])]


def test_numbers_compare_by_value_at_the_column_scale() -> None:
    source = [item(1, price="1.50"), item(2, price="2.00"), item(3, price="3.10")]
    target = [target_item(1, price="1.5"), target_item(2, price="2"), target_item(3, price="3.01")]
    assert compare(ITEMS, source, target).different == [([3], ["price"])]


def test_float_keys_put_nan_last_as_both_databases_do() -> None:
    table = TableSchema("s", "f", (Column("k", 1, "double precision", 701, nullable=False),), ("k",))
    source = [("-Infinity",), ("-1.5",), ("0",), ("2",), ("Infinity",), ("NaN",)]
    target = [(float("-inf"),), (-1.5,), (0.0,), (2.0,), (float("inf"),), (float("nan"),)]
    assert compare(table, source, target).equal


def test_a_float_key_of_zero_matches_minus_zero_but_the_value_differs() -> None:
    table = TableSchema("s", "f", (Column("k", 1, "double precision", 701, nullable=False),), ("k",))
    result = compare(table, [("-0",), ("1",)], [(0.0,), (1.0,)])
    assert result.missing == result.extra == []
    assert result.different == [(["-0.0"], ["k"])]


def test_a_key_the_target_holds_twice_is_an_extra_row() -> None:
    result = compare(ITEMS, [item(1), item(2)], [target_item(1), target_item(1), target_item(2)])
    assert result.extra == [[1]]
    assert result.missing == [] and result.different == []
    assert result.target_rows == 3


@pytest.mark.parametrize("side", ["source", "target"])
def test_a_stream_out_of_key_order_is_an_error_not_a_report(side: str) -> None:
    ordered_src, ordered_tgt = [item(1), item(2), item(3)], [target_item(1), target_item(2), target_item(3)]
    if side == "source":
        ordered_src = [item(1), item(3), item(2)]
    else:
        ordered_tgt = [target_item(2), target_item(1), target_item(3)]
    with pytest.raises(OrderError, match=f"{side} rows are not in the key order"):
        compare(ITEMS, ordered_src, ordered_tgt)


def test_a_key_the_source_holds_twice_is_an_error() -> None:
    with pytest.raises(OrderError, match="returned key \\[1\\] twice"):
        compare(ITEMS, [item(1), item(1)], [target_item(1)])


def test_text_keys_in_a_locale_order_are_caught() -> None:
    # en_US sorts "a" before "B"; byte order puts "B" first
    source = [("a", "1"), ("B", "1")]
    with pytest.raises(OrderError, match="source rows"):
        compare(BY_NAME, source, [])


def test_a_key_that_cannot_be_ordered_alike_on_both_sides_refuses_the_table() -> None:
    table = TableSchema("s", "j", (Column("doc", 1, "jsonb", 3802, nullable=False),), ("doc",))
    with pytest.raises(VerifyError, match="cannot be ordered the same way"):
        Layout.of(table)


@pytest.mark.parametrize(
    ("type_name", "klass"),
    [
        ("integer", "number"),
        ("numeric(12,2)", "number"),
        ("money", "number"),
        ("double precision", "float"),
        ("real", "float"),
        ("boolean", "bool"),
        ("bytea", "binary"),
        ("text", "text"),
        ("character(3)", "text"),
        ("uuid", "text"),
        ("numeric", "text"),
        ("date", "text"),
        ("timestamp with time zone", "text"),
        ("jsonb", None),
        ("integer[]", None),
    ],
)
def test_key_order_class_follows_the_target_type(type_name: str, klass: str | None) -> None:
    assert order_class(map_type(type_name)) == klass


def test_bytea_and_boolean_keys_merge_in_byte_and_false_true_order() -> None:
    table = TableSchema(
        "s",
        "b",
        (Column("flag", 1, "boolean", 16, nullable=False), Column("raw", 2, "bytea", 17, nullable=False)),
        ("flag", "raw"),
    )
    source = [("f", "\\x01"), ("f", "\\x0100"), ("f", "\\xff"), ("t", "\\x")]
    target = [(False, b"\x01"), (False, b"\x01\x00"), (False, b"\xff"), (True, b"")]
    assert compare(table, source, target).equal


def test_layout_of_some_columns_always_keeps_the_key() -> None:
    layout = Layout.of(ITEMS, [ITEMS.columns[0], ITEMS.columns[2]])
    assert [c.name for c in layout.columns] == ["id", "price"]
    with pytest.raises(VerifyError, match="key column"):
        Layout.of(ITEMS, [ITEMS.columns[1]])


# --- the target's SQL ---------------------------------------------------------------------------


def _shape(*names: str, collations: dict[str, str] | None = None) -> TargetShape:
    return TargetShape({n: (collations or {}).get(n) for n in names})


def test_target_scan_reads_the_columns_in_key_order() -> None:
    layout = Layout.of(LINES)
    text, flagged = target_scan_sql("DB", layout, ['"ORDER_ID"', '"LINE"', '"SKU"'], _shape("ORDER_ID"))
    assert (
        text == 'SELECT "ORDER_ID", "LINE", "SKU" FROM "DB"."SHOP"."ORDER_LINES" ORDER BY "ORDER_ID", "LINE"'
    )
    assert flagged == []


def test_target_scan_leaves_out_soft_deleted_rows() -> None:
    layout = Layout.of(ITEMS)
    quoted = ['"ID"', '"NAME"', '"PRICE"', '"WEIGHT"']
    text, _ = target_scan_sql("DB", layout, quoted, _shape("ID", "_CDC_DELETED"))
    assert text == (
        'SELECT "ID", "NAME", "PRICE", "WEIGHT" FROM "DB"."PUBLIC"."ITEMS" '
        'WHERE NOT COALESCE("_CDC_DELETED", FALSE) ORDER BY "ID"'
    )


def test_target_scan_orders_a_collated_text_key_by_plain_utf8() -> None:
    layout = Layout.of(BY_NAME)
    quoted = ['"Name"', '"V"']
    text, _ = target_scan_sql("DB", layout, quoted, _shape("Name", collations={"Name": "en-ci"}))
    assert text == 'SELECT "Name", "V" FROM "DB"."Sch ema"."Odd ""T""" ORDER BY COLLATE("Name", \'utf8\')'
    text, _ = target_scan_sql("DB", layout, quoted, _shape("Name", collations={"Name": "utf8"}))
    assert text.endswith('ORDER BY "Name"')


def test_target_scan_quotes_hostile_names() -> None:
    hostile = 'x"); DROP TABLE t; --'
    table = TableSchema(hostile, hostile, (Column(hostile, 1, "integer", 23, nullable=False),), (hostile,))
    text, _ = target_scan_sql("DB", Layout.of(table), ['"x""); DROP TABLE t; --"'], _shape(hostile))
    assert text == (
        'SELECT "x""); DROP TABLE t; --" FROM "DB"."x""); DROP TABLE t; --"."x""); DROP TABLE t; --" '
        'ORDER BY "x""); DROP TABLE t; --"'
    )
    assert spelled(hostile) == hostile and spelled("orders") == "ORDERS"


def test_target_shape_reads_names_as_spelled() -> None:
    shape = _shape("ID", 'q"uote', "_CDC_DELETED")
    assert shape.has('"ID"') and shape.has('"q""uote"') and not shape.has('"id"')
    assert shape.soft_delete


# --- --tables -----------------------------------------------------------------------------------


def test_tables_are_schema_dot_table_separated_by_commas() -> None:
    assert parse_tables("public.orders, shop.Items") == [("public", "orders"), ("shop", "Items")]
    assert parse_tables("s.t.with.dots") == [("s", "t.with.dots")]


def test_quoted_table_names_hold_dots_commas_quotes_and_spaces() -> None:
    assert parse_tables('"my.schema"."odd ""t"", x", "Sch ema".plain') == [
        ("my.schema", 'odd "t", x'),
        ("Sch ema", "plain"),
    ]


@pytest.mark.parametrize("text", ["", "orders", "public.", ".orders", '"open.orders', '"a"x.b', "a.b,,"])
def test_malformed_tables_are_a_configuration_error(text: str) -> None:
    with pytest.raises(ConfigError, match="--tables"):
        parse_tables(text)


# --- the report ---------------------------------------------------------------------------------


def test_report_json_has_every_field_per_table() -> None:
    comparison = compare(ITEMS, [item(1), item(2)], [target_item(2, name="x"), target_item(3)], limit=1)
    ok = TableReport("public.items", 2, 2, comparison)
    missing = TableReport("public.gone", 5, None, None, error="target table does not exist")
    report = VerifyReport("pipe", [ok, missing])
    data = json.loads(json.dumps(report.as_dict()))
    assert data["pipeline"] == "pipe" and data["equal"] is False
    first = data["tables"][0]
    assert first == {
        "table": "public.items",
        "source_rows": 2,
        "target_rows": 2,
        "equal": False,
        "missing_in_target": [[1]],
        "extra_in_target": [],
        "different": [],
        "missing_count": 1,
        "extra_count": 1,
        "different_count": 1,
        "truncated": True,
        "error": None,
    }
    second = data["tables"][1]
    assert second["equal"] is False and second["error"] == "target table does not exist"
    assert second["target_rows"] is None and second["missing_in_target"] == []
    assert data["checkpoint_lsn"] is None and data["lag_bytes"] is None


def test_human_output_names_the_table_and_each_listed_mismatch() -> None:
    comparison = compare(
        ITEMS, [item(1), item(2, name="a")], [target_item(2, name="b"), target_item(3)], limit=2
    )
    text = describe_table(TableReport("public.items", 2, 2, comparison))
    assert text.splitlines() == [
        "  public.items: DIFFERENT (source 2 rows, target 2 rows): 1 missing in target, 1 extra in target, "
        "1 different",
        "      missing in target: [1]",
        "      different:         [2] columns name",
        "      ... 1 more not listed (--max-mismatches)",
    ]
    equal = compare(ITEMS, [item(1)], [target_item(1)])
    assert (
        describe_table(TableReport("public.items", 1, 1, equal))
        == "  public.items: equal (source 1 row, target 1 row)"
    )


def test_tables_to_verify_must_be_replicated_and_keep_their_order() -> None:
    catalog = Catalog(
        {("public", "items"): ITEMS, ("shop", "order_lines"): LINES},
        {("public", "nokey"): "table public.nokey has no primary key"},
    )
    assert select_tables(catalog, None) == [ITEMS, LINES]
    twice = [("shop", "order_lines"), ("public", "items"), ("shop", "order_lines")]
    assert select_tables(catalog, twice) == [LINES, ITEMS]
    with pytest.raises(ConfigError) as raised:
        select_tables(catalog, [("public", "nokey"), ("Public", "items")])
    assert raised.value.problems == [
        "--tables: table public.nokey has no primary key",
        "--tables: table Public.items is not replicated by this pipeline (not in its source_tables, or it "
        "does not exist); names are exact and case-sensitive",
    ]
