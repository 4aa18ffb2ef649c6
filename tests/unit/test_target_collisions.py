"""Source tables whose Snowflake names are the same are found (and refused together by the catalog);
the naming rule used for it is the one the SQL builders quote."""

from __future__ import annotations

import pytest

from cdc.model import TableSchema
from cdc.snowflake import sql
from cdc.source.catalog import COLLISION_FIX, target_collisions, target_spelling

NAMES = [
    "orders",
    "ORDERS",
    "Orders",
    "_cdc_lsn",
    "order_items$2",
    "2fast",
    "my table",
    'odd "q" name',
    "naïve",
    "select",
    "x.y",
    "a-b",
    "ÉTÉ",
]


@pytest.mark.parametrize("name", NAMES)
def test_target_spelling_is_what_the_sql_builders_quote(name: str) -> None:
    assert sql.ident(name) == '"' + target_spelling(name).replace('"', '""') + '"'
    table = TableSchema(name, name, (), ())
    assert sql.target_table("DB", table) == f'"DB".{sql.ident(name)}.{sql.ident(name)}'


def test_a_lower_case_table_and_its_upper_case_twin_collide() -> None:
    notes = target_collisions([("public", "orders"), ("public", "ORDERS"), ("public", "items")])
    assert sorted(notes) == [("public", "ORDERS"), ("public", "orders")]
    assert notes[("public", "orders")] == (
        'table public.orders cannot be replicated: the source tables "public"."ORDERS", '
        '"public"."orders" all land in Snowflake as "PUBLIC"."ORDERS", which would merge their rows '
        f"into one table, so none of them is replicated; {COLLISION_FIX}"
    )
    assert notes[("public", "ORDERS")].startswith("table public.ORDERS cannot be replicated: ")


def test_schemas_that_land_in_one_snowflake_schema_collide() -> None:
    notes = target_collisions([("public", "orders"), ("PUBLIC", "orders"), ("PUBLIC", "ORDERS")])
    assert sorted(notes) == [("PUBLIC", "ORDERS"), ("PUBLIC", "orders"), ("public", "orders")]
    listed = '"PUBLIC"."ORDERS", "PUBLIC"."orders", "public"."orders"'
    assert all(f"the source tables {listed} all land" in note for note in notes.values())


@pytest.mark.parametrize(
    "names",
    [
        [("public", "orders"), ("public", "Orders")],  # mixed case keeps its spelling
        [("public", "Orders"), ("public", "ORDERS_")],
        [("public", "orders"), ("sales", "orders")],
        [("public", "my table"), ("public", "MY TABLE")],  # quoted names are kept exactly
        [("public", "orders")],
        [],
    ],
)
def test_names_that_stay_apart_in_snowflake_do_not_collide(names: list[tuple[str, str]]) -> None:
    assert target_collisions(names) == {}


def test_only_the_colliding_group_is_named() -> None:
    notes = target_collisions(
        [("a", "t"), ("A", "t"), ("b", "u"), ("b", "U"), ("c", "v")],
    )
    assert sorted(notes) == [("A", "t"), ("a", "t"), ("b", "U"), ("b", "u")]
    assert '"A"."t", "a"."t" all land in Snowflake as "A"."T"' in notes[("a", "t")]
    assert '"b"."U", "b"."u" all land in Snowflake as "B"."U"' in notes[("b", "U")]
    assert '"a"' not in notes[("b", "u")]
