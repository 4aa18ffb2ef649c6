"""Planning the evolution of a target table from the source schema (pure: no connection)."""

from __future__ import annotations

import pytest

from cdc.errors import SchemaError
from cdc.model import Column, TableSchema
from cdc.snowflake import evolve
from cdc.snowflake.evolve import TargetColumn

T = TableSchema(
    "public",
    "t",
    (
        Column("id", 1, "integer", 23, nullable=False),
        Column("n", 3, "bigint", 20),
        Column("s", 4, "character varying(50)", 1043),
        Column("amt", 5, "numeric(12,2)", 1700),
        Column("added", 6, "integer", 23, missing="7", has_default=True),
    ),
    ("id",),
)
EXISTING = [
    TargetColumn("ID", "NUMBER", None, 10, 0, (1, "id")),
    TargetColumn("OLD_NAME", "TEXT", 16777216, None, None, (2, "old_name")),
    TargetColumn("N", "NUMBER", None, 10, 0, (3, "n")),
    TargetColumn("S", "TEXT", 5, None, None, (4, "s")),
    TargetColumn("AMT", "NUMBER", None, 6, 2, (5, "amt")),
    TargetColumn("_CDC_LSN", "NUMBER", None, 20, 0, None),
]
FQ = '"DB"."PUBLIC"."T"'


def test_plan_adds_fills_widens_and_keeps_dropped_columns() -> None:
    plan = evolve.plan("DB", T, EXISTING, has_rows=True)
    assert plan.statements == [
        ("widen column", f'ALTER TABLE {FQ} ALTER COLUMN "N" SET DATA TYPE NUMBER(19,0)'),
        ("widen column", f'ALTER TABLE {FQ} ALTER COLUMN "S" SET DATA TYPE VARCHAR(50)'),
        ("widen column", f'ALTER TABLE {FQ} ALTER COLUMN "AMT" SET DATA TYPE NUMBER(12,2)'),
        ("add column", f'ALTER TABLE {FQ} ADD COLUMN "ADDED" NUMBER(10,0)'),
        ("fill column", f"UPDATE {FQ} SET \"ADDED\" = CAST('7' AS NUMBER(10,0))"),
    ]
    assert plan.aliases == {"old_name": None}
    assert any("'old_name' was dropped" in n for n in plan.notes)


def test_a_renamed_column_is_renamed_and_its_old_name_aliased() -> None:
    renamed = TableSchema("public", "t", (T.columns[0], Column("new_name", 2, "text", 25)), ("id",))
    plan = evolve.plan("DB", renamed, EXISTING[:2], has_rows=True)
    assert plan.statements == [("rename column", f'ALTER TABLE {FQ} RENAME COLUMN "OLD_NAME" TO "NEW_NAME"')]
    assert plan.aliases == {"old_name": "new_name"}


@pytest.mark.parametrize(
    ("column", "fragment"),
    [
        (Column("s", 4, "integer", 23), "column 's': its type changed to integer"),
        (Column("amt", 5, "numeric(12,4)", 1700), "column 'amt': its scale changed to 4"),
        (Column("v", 9, "timestamp with time zone", 1184, has_default=True), "a volatile default"),
    ],
)
def test_unsafe_changes_name_the_column_and_the_fix(column: Column, fragment: str) -> None:
    table = TableSchema("public", "t", (T.columns[0], column), ("id",))
    with pytest.raises(SchemaError) as info:
        evolve.plan("DB", table, EXISTING, has_rows=True)
    assert fragment in str(info.value) and "cdc snapshot --tables public.t" in str(info.value)


def test_narrower_source_types_leave_the_target_alone() -> None:
    narrower = TableSchema(
        "public",
        "t",
        (T.columns[0], Column("n", 3, "smallint", 21), Column("s", 4, "character varying(3)", 1043)),
        ("id",),
    )
    assert evolve.plan("DB", narrower, EXISTING, has_rows=True).statements == []


def test_registry_keeps_dropped_columns_and_hex_encodes_names() -> None:
    entries = evolve.registry_entries(T, EXISTING)
    assert (2, "old_name", "OLD_NAME") in entries and (6, "added", "ADDED") in entries
    [delete, insert] = evolve.registry_write_sql("DB", "CDC_LOAD", T, [(1, "i'd", 'A"B'), (2, "gone", "G")])
    key = FQ.encode().hex()
    assert delete == f"""DELETE FROM "DB"."CDC_LOAD"."_CDC_COLUMNS" WHERE TABLE_KEY = '{key}'"""
    pg_hex, target_hex, type_hex = b"i'd".hex(), b'A"B'.hex(), b"23 integer".hex()
    gone = f"('{key}', 2, '{b'gone'.hex()}', '{b'G'.hex()}', NULL)"  # attnum 2 is no column of T
    assert insert.endswith(f"VALUES ('{key}', 1, '{pg_hex}', '{target_hex}', '{type_hex}'), {gone}")
    rows = [(1, pg_hex, target_hex, type_hex), (2, b"old".hex(), b"OLD".hex(), None)]
    assert evolve.decode_registry(rows) == {'A"B': (1, "i'd"), "OLD": (2, "old")}
    assert evolve.decode_types(rows) == {1: "23 integer"}


@pytest.mark.parametrize(
    ("was", "now", "kept"),
    [
        ("23 integer", "20 bigint", True),
        ("1005 smallint[]", "1016 bigint[]", True),
        ("1043 character varying(5)", "25 text", True),
        ("1043 character varying(5)", "1043 character varying(10)", True),
        ("1043 character varying(5)", "1043 character varying", True),
        ("1700 numeric(10,2)", "1700 numeric(14,2)", True),
        ("1700 numeric(10,2)", "1700 numeric", True),
        ("16384 mood", "16384 feeling", True),  # a renamed enum: the same type
        ("16384 mood", '16384 "Other".mood', True),  # named otherwise for another search_path
        ("1043 character varying(10)", "1043 character varying(5)", False),  # trailing spaces go
        ("25 text", "1043 character varying(5)", False),
        ("1082 date", "1114 timestamp without time zone", False),
        ("1114 timestamp without time zone", "1184 timestamp with time zone", False),
        ("700 real", "701 double precision", False),
        ("25 text", "1042 character(4)", False),
        ("1042 character(4)", "1042 character(8)", False),
        ("1700 numeric", "1700 numeric(10,2)", False),
        ("23 integer", "1700 numeric(10,2)", False),
        ("integer", "23 integer", True),  # recorded by name alone
        ("date", "1114 timestamp without time zone", False),
    ],
)
def test_a_type_change_that_shows_old_values_otherwise_asks_for_a_re_snapshot(
    was: str, now: str, kept: bool
) -> None:
    assert evolve._keeps_values(was, now) is kept


def test_a_date_column_made_timestamp_stops_the_table_when_the_target_has_rows() -> None:
    was, now = "date", "timestamp without time zone"  # both staged as text: the target type stays
    table = TableSchema("public", "t", (T.columns[0], Column("s", 4, now, 1114)), ("id",))
    existing = [EXISTING[0], TargetColumn("S", "TEXT", 16777216, None, None, (4, "s"))]
    with pytest.raises(SchemaError) as info:
        evolve.plan("DB", table, existing, has_rows=True, recorded_types={4: f"1082 {was}"})
    assert f"column 's': its type changed from {was} to {now}" in str(info.value)
    assert "cdc snapshot --tables public.t" in str(info.value)
    assert (
        evolve.plan("DB", table, existing, has_rows=False, recorded_types={4: f"1082 {was}"}).statements == []
    )
    assert evolve.plan("DB", table, existing, has_rows=True, recorded_types={}).statements == []


@pytest.mark.parametrize(
    ("type_name", "oid", "missing", "expression"),
    [
        ("money", 790, "$1,234.50", "CAST('1234.50' AS NUMBER(19,2))"),
        ("integer[]", 1007, "{1,2}", "PARSE_JSON('[1,2]')"),
        ("text[]", 1009, '{"it\'s",NULL}', "PARSE_JSON('[\"it''s\",null]')"),
        ("jsonb", 3802, '{"a": 1}', "PARSE_JSON('{\"a\": 1}')"),
        ("bytea", 17, "\\x00ff", "TO_BINARY('00ff', 'HEX')"),
        ("boolean", 16, "t", "TRUE"),
        ("double precision", 701, "NaN", "CAST('NaN' AS FLOAT)"),
        ("double precision", 701, "-Infinity", "CAST('-inf' AS FLOAT)"),
        ("double precision", 701, "0.1", "CAST('0.1' AS FLOAT)"),
        ("numeric(10,2)", 1700, "12.50", "CAST('12.50' AS NUMBER(10,2))"),
        ("text", 25, "it's \\ here", "CAST('it''s \\\\ here' AS VARCHAR)"),
    ],
)
def test_fill_converts_the_missing_value_like_a_staged_one(
    type_name: str, oid: int, missing: str, expression: str
) -> None:
    col = Column("c", 2, type_name, oid, missing=missing, has_default=True)
    table = TableSchema("public", "t", (T.columns[0], col), ("id",))
    assert evolve.fill_sql(FQ, '"C"', table, col) == f'UPDATE {FQ} SET "C" = {expression}'


def test_a_missing_value_that_cannot_be_converted_stops_the_table_with_the_fix() -> None:
    col = Column("c", 2, "money", 790, missing="1.234,50 EUR", has_default=True)
    table = TableSchema("public", "t", (T.columns[0], col), ("id",))
    with pytest.raises(SchemaError) as info:
        evolve.fill_sql(FQ, '"C"', table, col)
    assert "column 'c'" in str(info.value) and "cdc snapshot --tables public.t" in str(info.value)


def test_a_dropped_column_moves_aside_for_a_new_column_of_its_name() -> None:
    existing = [*EXISTING[:1], TargetColumn("W", "NUMBER", None, 10, 0, (2, "w"))]
    table = TableSchema("public", "t", (T.columns[0], Column("w", 3, "text", 25)), ("id",))
    plan = evolve.plan("DB", table, existing, has_rows=True)
    assert plan.statements == [
        ("rename column", f'ALTER TABLE {FQ} RENAME COLUMN "W" TO "W_DROPPED_2"'),
        ("add column", f'ALTER TABLE {FQ} ADD COLUMN "W" VARCHAR'),
    ]
    assert plan.set_aside == {"W": "W_DROPPED_2"}
    assert evolve.registry_entries(table, existing, None, plan.set_aside) == [
        (1, "id", "ID"),
        (3, "w", "W"),
        (2, "w", "W_DROPPED_2"),
    ]


def test_columns_that_swap_names_rename_through_temporary_names() -> None:
    existing = [
        *EXISTING[:1],
        TargetColumn("A", "TEXT", 16777216, None, None, (2, "a")),
        TargetColumn("B", "TEXT", 16777216, None, None, (3, "b")),
    ]
    table = TableSchema(
        "public", "t", (T.columns[0], Column("b", 2, "text", 25), Column("a", 3, "text", 25)), ("id",)
    )
    plan = evolve.plan("DB", table, existing, has_rows=True)
    assert plan.statements == [
        ("rename column", f'ALTER TABLE {FQ} RENAME COLUMN "A" TO "_CDC_RENAME_0"'),
        ("rename column", f'ALTER TABLE {FQ} RENAME COLUMN "B" TO "_CDC_RENAME_1"'),
        ("rename column", f'ALTER TABLE {FQ} RENAME COLUMN "_CDC_RENAME_0" TO "B"'),
        ("rename column", f'ALTER TABLE {FQ} RENAME COLUMN "_CDC_RENAME_1" TO "A"'),
    ]
    assert plan.aliases == {"a": "b", "b": "a"}


def test_a_pending_fill_of_an_adopted_column_runs_again() -> None:
    added = T.columns[4]  # "added": missing value 7
    existing = [*EXISTING, TargetColumn("ADDED", "NUMBER", None, 10, 0, None)]  # added, not registered
    again = evolve.plan("DB", T, existing, has_rows=True, pending_fills=frozenset({added.attnum}))
    assert ("fill column", f"UPDATE {FQ} SET \"ADDED\" = CAST('7' AS NUMBER(10,0))") in again.statements
    assert again.fills == [added.attnum]
    settled = evolve.plan("DB", T, existing, has_rows=True)
    assert not any(what == "fill column" for what, _ in settled.statements) and settled.fills == []


def test_pending_fill_markers_are_apart_from_the_column_registry() -> None:
    marks = evolve.pending_fill_entries(T, [6])
    assert marks == [(-6, "added", "")]
    rows = [(a, pg.encode().hex(), tn.encode().hex()) for a, pg, tn in [(1, "id", "ID"), *marks]]
    assert evolve.decode_pending_fills(rows) == frozenset({6})
    assert evolve.decode_history(rows) == [(1, "id", "ID")]
    assert evolve.decode_registry(rows) == {"ID": (1, "id")}
