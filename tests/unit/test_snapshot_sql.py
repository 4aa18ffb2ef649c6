"""Snapshot load and swap SQL, compared as text: side-table names (odd identifiers included), the
INSERT from the load table, both swap strategies, and the leftover query's literals."""

from __future__ import annotations

import pytest

from cdc.model import Column, TableSchema
from cdc.snowflake import snapshot_sql as ssql
from cdc.snowflake import sql

ITEMS = TableSchema(
    "public",
    "items",
    (
        Column("id", 1, "integer", 23, nullable=False),
        Column("doc", 2, "jsonb", 3802, toastable=True),
        Column("amt", 4, "numeric(12,2)", 1700),
    ),
    ("id",),
)

INJECT = "x'); DROP TABLE t; --"
ODD = TableSchema(
    "My Schema",
    'Odd "T" tbl',
    (
        Column("Mixed Case", 1, "integer", 23, nullable=False),
        Column("select", 2, "text", 25, toastable=True),
        Column(INJECT, 3, "json", 114),
    ),
    ("Mixed Case",),
)
DB = "CDC_DEMO"
LOAD = '"CDC_DEMO"."CDC_LOAD"."L_0123456789ABCDEF"'


def test_side_table_keeps_the_targets_exact_spelling_plus_the_suffix() -> None:
    assert ssql.side_table_fq(DB, ITEMS, ssql.NEW_TAG, "AB12") == '"CDC_DEMO"."PUBLIC"."ITEMS__CDC_NEW_AB12"'
    assert ssql.side_table_fq(DB, ITEMS, ssql.OLD_TAG, "AB12") == '"CDC_DEMO"."PUBLIC"."ITEMS__CDC_OLD_AB12"'
    assert (
        ssql.side_table_fq(DB, ODD, ssql.NEW_TAG, "Z9")
        == '"CDC_DEMO"."My Schema"."Odd ""T"" tbl__CDC_NEW_Z9"'
    )
    # a plain lower-case target name is upper-cased before the suffix, never kept lower-case
    assert ssql.side_table(ITEMS, ssql.NEW_TAG, "X").name == "ITEMS__CDC_NEW_X"


@pytest.mark.parametrize("token", ["", "ab", "A-B", "A" * 33, 'A"B'])
def test_side_table_refuses_a_token_that_could_change_the_name(token: str) -> None:
    with pytest.raises(ValueError):
        ssql.side_table(ITEMS, ssql.NEW_TAG, token)


def test_side_table_refuses_an_unknown_tag() -> None:
    with pytest.raises(ValueError):
        ssql.side_table(ITEMS, "__X_", "A")


def test_new_table_has_exactly_the_targets_ddl() -> None:
    for soft in (False, True):
        target = sql.create_target_table_sql(DB, ODD, soft)
        new = ssql.create_side_table_sql(DB, ODD, "K1", soft)
        assert new == target.replace('"Odd ""T"" tbl"', '"Odd ""T"" tbl__CDC_NEW_K1"', 1)
        assert new.startswith(
            'CREATE TABLE IF NOT EXISTS "CDC_DEMO"."My Schema"."Odd ""T"" tbl__CDC_NEW_K1" ('
        )


def test_insert_copies_every_column_through_its_load_expression() -> None:
    new = ssql.side_table_fq(DB, ITEMS, ssql.NEW_TAG, "K1")
    assert ssql.insert_snapshot_sql(new, LOAD, ITEMS) == (
        'INSERT INTO "CDC_DEMO"."PUBLIC"."ITEMS__CDC_NEW_K1" (\n'
        '  "ID",\n  "DOC",\n  "AMT",\n  "_CDC_LSN",\n  "_CDC_SEQ",\n  "_CDC_OP",\n  "_CDC_COMMIT_TS",\n'
        '  "_CDC_SYNCED_AT"\n'
        ")\n"
        "SELECT\n"
        '  l."C1",\n  PARSE_JSON(l."C2"),\n  l."C4",\n  l."_CDC_LSN",\n  l."_CDC_SEQ",\n  l."_CDC_OP",\n'
        '  l."_CDC_COMMIT_TS",\n  CURRENT_TIMESTAMP()\n'
        f"FROM {LOAD} l"
    )


def test_insert_quotes_odd_columns_and_marks_rows_live_with_soft_delete() -> None:
    text = ssql.insert_snapshot_sql('"N"', LOAD, ODD, soft_delete=True)
    assert '  "Mixed Case",\n  "SELECT",\n  "x\'); DROP TABLE t; --",\n' in text
    assert "PARSE_JSON(l.\"C3\", 'd')" in text  # json keeps duplicate keys like the MERGE does
    assert text.count('"_CDC_DELETED"') == 1
    assert text.rstrip().endswith("  CURRENT_TIMESTAMP(),\n  FALSE\nFROM " + LOAD + " l")


def test_swap_strategy_swap_is_one_atomic_statement() -> None:
    assert ssql.swap_statements("swap", '"T"', '"N"', '"O"') == ['ALTER TABLE "T" SWAP WITH "N"']
    assert ssql.retired_table("swap", '"N"', '"O"') == '"N"'


def test_swap_strategy_rename_renames_both_in_one_transaction() -> None:
    assert ssql.swap_statements("rename", '"T"', '"N"', '"O"') == [
        "BEGIN",
        'ALTER TABLE "T" RENAME TO "O"',
        'ALTER TABLE "N" RENAME TO "T"',
        "COMMIT",
    ]
    assert ssql.retired_table("rename", '"N"', '"O"') == '"O"'


def test_unknown_swap_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="swap strategy"):
        ssql.swap_statements("clone", '"T"', '"N"', '"O"')


def test_leftover_query_escapes_names_as_literals() -> None:
    table = TableSchema("it's", "a\\b'c", ODD.columns, ODD.key)
    assert ssql.leftover_tables_sql(DB, table) == (
        'SELECT table_name FROM "CDC_DEMO".INFORMATION_SCHEMA.TABLES '
        "WHERE table_schema = 'it''s' "
        "AND (STARTSWITH(table_name, 'a\\\\b''c__CDC_NEW_') "
        "OR STARTSWITH(table_name, 'a\\\\b''c__CDC_OLD_')) ORDER BY table_name"
    )
    plain = ssql.leftover_tables_sql(DB, ITEMS)
    assert "table_schema = 'PUBLIC'" in plain and "'ITEMS__CDC_NEW_'" in plain


def test_side_table_ref_accepts_only_this_tables_side_tables() -> None:
    assert (
        ssql.side_table_ref(DB, ODD, 'Odd "T" tbl__CDC_OLD_K')
        == '"CDC_DEMO"."My Schema"."Odd ""T"" tbl__CDC_OLD_K"'
    )
    with pytest.raises(ValueError):
        ssql.side_table_ref(DB, ODD, "OTHER__CDC_NEW_K")


def test_count_rows() -> None:
    assert ssql.count_rows_sql('"A"."B"') == 'SELECT COUNT(*) FROM "A"."B"'
