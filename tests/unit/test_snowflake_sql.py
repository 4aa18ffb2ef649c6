"""The Snowflake SQL builders, compared as text (naming, DDL, COPY, MERGE, injection attempts), and
the mapping of connector errors to pipeline errors."""

from __future__ import annotations

import re

import pytest

from cdc.errors import AuthError, MergeError, SchemaError, SinkUnavailable
from cdc.model import Column, TableSchema
from cdc.snowflake import map_error, sql

sf_errors = pytest.importorskip("snowflake.connector.errors")

ORDERS = TableSchema(
    "public",
    "orders",
    (
        Column("tenant", 1, "integer", 23, nullable=False),
        Column("id", 2, "bigint", 20, nullable=False),
        Column("note", 3, "text", 25, toastable=True),
        Column("doc", 4, "jsonb", 3802, toastable=True),
        Column("amt", 5, "numeric(12,2)", 1700),
    ),
    ("tenant", "id"),
)

ITEMS = TableSchema(
    "public",
    "items",
    (
        Column("id", 1, "integer", 23, nullable=False),
        Column("name", 2, "character varying(40)", 1043),
        Column("attrs", 3, "json", 114),
    ),
    ("id",),
)

INJECT = 'x"); DROP TABLE t; --'
ODD = TableSchema(
    "My Schema",
    'Odd "T" tbl',
    (
        Column("Mixed Case", 1, "integer", 23, nullable=False),
        Column("select", 2, "text", 25, toastable=True),
        Column("naïve", 3, "timestamp with time zone", 1184),
        Column(INJECT, 4, "integer", 23),
    ),
    ("Mixed Case",),
)

LOAD = '"CDC_DEMO"."CDC_LOAD"."L_0123456789ABCDEF"'


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("orders", '"ORDERS"'),
        ("_cdc_lsn", '"_CDC_LSN"'),
        ("a$1", '"A$1"'),
        ("Mixed Case", '"Mixed Case"'),
        ("ORDERS", '"ORDERS"'),
        ("Orders", '"Orders"'),
        ('a"b', '"a""b"'),
        ("select", '"SELECT"'),
        ("a;b", '"a;b"'),
        ("naïve", '"naïve"'),
        ("1abc", '"1abc"'),
        ("abc\n", '"abc\n"'),
        (INJECT, '"x""); DROP TABLE t; --"'),
    ],
)
def test_ident_follows_the_target_naming_rule_and_always_quotes(name: str, quoted: str) -> None:
    assert sql.ident(name) == quoted


def test_ident_refuses_an_empty_name() -> None:
    with pytest.raises(ValueError):
        sql.ident("")


def test_names_are_qualified_part_by_part() -> None:
    assert sql.target_table("cdc_demo", ORDERS) == '"CDC_DEMO"."PUBLIC"."ORDERS"'
    assert sql.target_table("CDC_DEMO", ODD) == '"CDC_DEMO"."My Schema"."Odd ""T"" tbl"'
    assert sql.stage_ref("CDC_DEMO.CDC_LOAD.CDC_STAGE") == '"CDC_DEMO"."CDC_LOAD"."CDC_STAGE"'
    assert sql.stage_ref("cdc_demo.cdc_load.stage") == '"CDC_DEMO"."CDC_LOAD"."STAGE"'
    with pytest.raises(ValueError):
        sql.stage_ref("a..b")
    assert (
        sql.create_schema_sql("CDC_DEMO", "My Schema") == 'CREATE SCHEMA IF NOT EXISTS "CDC_DEMO"."My Schema"'
    )
    assert sql.drop_table_sql(LOAD) == f"DROP TABLE IF EXISTS {LOAD}"


def test_create_target_table_maps_types_keys_and_metadata() -> None:
    assert sql.create_target_table_sql("CDC_DEMO", ORDERS) == (
        'CREATE TABLE IF NOT EXISTS "CDC_DEMO"."PUBLIC"."ORDERS" (\n'
        '  "TENANT" NUMBER(10,0) NOT NULL,\n'
        '  "ID" NUMBER(19,0) NOT NULL,\n'
        '  "NOTE" VARCHAR,\n'
        '  "DOC" VARIANT,\n'
        '  "AMT" NUMBER(12,2),\n'
        '  "_CDC_LSN" NUMBER(20,0),\n'
        '  "_CDC_SEQ" NUMBER(19,0),\n'
        '  "_CDC_OP" VARCHAR(1),\n'
        '  "_CDC_COMMIT_TS" TIMESTAMP_TZ(6),\n'
        '  "_CDC_SYNCED_AT" TIMESTAMP_TZ(6)\n'
        ")"
    )


def test_create_target_table_keeps_odd_names_quoted() -> None:
    assert sql.create_target_table_sql("CDC_DEMO", ODD) == (
        'CREATE TABLE IF NOT EXISTS "CDC_DEMO"."My Schema"."Odd ""T"" tbl" (\n'
        '  "Mixed Case" NUMBER(10,0) NOT NULL,\n'
        '  "SELECT" VARCHAR,\n'
        '  "naïve" VARCHAR,\n'
        '  "x""); DROP TABLE t; --" NUMBER(10,0),\n'
        '  "_CDC_LSN" NUMBER(20,0),\n'
        '  "_CDC_SEQ" NUMBER(19,0),\n'
        '  "_CDC_OP" VARCHAR(1),\n'
        '  "_CDC_COMMIT_TS" TIMESTAMP_TZ(6),\n'
        '  "_CDC_SYNCED_AT" TIMESTAMP_TZ(6)\n'
        ")"
    )


@pytest.mark.parametrize(
    "columns",
    [
        (Column("id", 1, "integer", 23), Column("ID", 2, "integer", 23)),  # id -> ID, "ID" -> ID
        (Column("id", 1, "integer", 23), Column("_cdc_lsn", 2, "bigint", 20)),  # metadata name
    ],
)
def test_columns_that_collide_in_snowflake_are_refused(columns: tuple[Column, ...]) -> None:
    table = TableSchema("public", "t", columns, ("id",))
    with pytest.raises(SchemaError, match="already taken"):
        sql.create_target_table_sql("CDC_DEMO", table)


def test_a_table_without_key_is_refused() -> None:
    table = TableSchema("public", "t", (Column("v", 1, "integer", 23),), ())
    with pytest.raises(SchemaError, match="no key"):
        sql.merge_sql('"T"', LOAD, table, max_lsn=1)


def test_load_table_name_is_plain_and_unique_per_window_and_table() -> None:
    name = sql.load_table_name("demo", "w1", ORDERS)
    assert re.fullmatch(r"L_[0-9A-F]{16}", name)
    assert name == sql.load_table_name("demo", "w1", ORDERS)
    others = {
        sql.load_table_name("demo", "w2", ORDERS),
        sql.load_table_name("other", "w1", ORDERS),
        sql.load_table_name("demo", "w1", ODD),
    }
    assert name not in others and len(others) == 3


def test_create_load_table_uses_stage_names_and_load_types() -> None:
    assert sql.create_load_table_sql("CDC_DEMO", "CDC_LOAD", "L_0123456789ABCDEF", ORDERS) == (
        f"CREATE OR REPLACE TRANSIENT TABLE {LOAD} (\n"
        '  "C1" NUMBER(10,0),\n'
        '  "C2" NUMBER(19,0),\n'
        '  "C3" VARCHAR,\n'
        '  "C4" VARCHAR,\n'
        '  "C5" NUMBER(12,2),\n'
        '  "_CDC_LSN" NUMBER(20,0),\n'
        '  "_CDC_SEQ" NUMBER(19,0),\n'
        '  "_CDC_OP" VARCHAR(1),\n'
        '  "_CDC_COMMIT_TS" TIMESTAMP_TZ(6),\n'
        '  "_CDC_UNCHANGED" VARCHAR,\n'
        '  "_CDC_MOVED" BOOLEAN,\n'
        '  "_CDC_CHAIN" NUMBER(19,0),\n'
        '  "O1" NUMBER(10,0),\n'
        '  "O2" NUMBER(19,0)\n'
        ")"
    )


def test_copy_loads_every_part_under_the_table_directory() -> None:
    stage = sql.stage_ref("CDC_DEMO.CDC_LOAD.CDC_STAGE")
    rel = "demo/windows/0000000001530000-0000000001540000/public.orders"
    expected = (
        f'COPY INTO {LOAD} FROM @"CDC_DEMO"."CDC_LOAD"."CDC_STAGE"/{rel}/ '
        "FILE_FORMAT = (TYPE = PARQUET) MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE FORCE = TRUE"
    )
    assert sql.copy_sql(LOAD, stage, rel) == expected
    assert sql.copy_sql(LOAD, stage, rel + "/") == expected
    assert "/My_Schema.Odd_T_tbl." in sql.copy_sql(LOAD, stage, f"demo/windows/a-b/{ODD.stage_dir}")


@pytest.mark.parametrize(
    "rel_path",
    [
        "",
        "/",
        "../other",
        "demo/../../x",
        "demo/./x",
        "demo//x",
        "demo/my dir",
        "demo/x' FILE_FORMAT=(TYPE=CSV)",
        "demo/x;DROP TABLE t",
        'demo/"x"',
        "demo/x\n",
        "démo/x",
    ],
)
def test_copy_refuses_unsafe_stage_paths(rel_path: str) -> None:
    with pytest.raises(ValueError, match="stage path"):
        sql.copy_sql(LOAD, '"S"', rel_path)


def test_merge_of_a_plain_table() -> None:
    assert sql.merge_sql('"CDC_DEMO"."PUBLIC"."ITEMS"', LOAD, ITEMS, max_lsn=22283264) == (
        'MERGE INTO "CDC_DEMO"."PUBLIC"."ITEMS" t USING (\n'
        "  SELECT\n"
        '    l."C1" AS "ID",\n'
        '    l."C2" AS "NAME",\n'
        '    PARSE_JSON(l."C3", \'d\') AS "ATTRS",\n'
        '    l."_CDC_LSN" AS "_CDC_LSN",\n'
        '    l."_CDC_SEQ" AS "_CDC_SEQ",\n'
        '    l."_CDC_OP" AS "_CDC_OP",\n'
        '    l."_CDC_COMMIT_TS" AS "_CDC_COMMIT_TS"\n'
        "  FROM (\n"
        "    SELECT\n"
        "      x.*\n"
        f"    FROM {LOAD} x\n"
        '    WHERE x."_CDC_LSN" <= 22283264\n'
        '    QUALIFY ROW_NUMBER() OVER (PARTITION BY x."C1" '
        'ORDER BY x."_CDC_LSN" DESC, x."_CDC_SEQ" DESC) = 1\n'
        "  ) l\n"
        ') s ON t."ID" = s."ID"\n'
        'WHEN MATCHED AND s."_CDC_LSN" > t."_CDC_LSN" AND s."_CDC_OP" = \'D\' THEN DELETE\n'
        'WHEN MATCHED AND s."_CDC_LSN" > t."_CDC_LSN" THEN UPDATE SET\n'
        '  "NAME" = s."NAME",\n'
        '  "ATTRS" = s."ATTRS",\n'
        '  "_CDC_LSN" = s."_CDC_LSN",\n'
        '  "_CDC_SEQ" = s."_CDC_SEQ",\n'
        '  "_CDC_OP" = s."_CDC_OP",\n'
        '  "_CDC_COMMIT_TS" = s."_CDC_COMMIT_TS",\n'
        '  "_CDC_SYNCED_AT" = CURRENT_TIMESTAMP()\n'
        'WHEN NOT MATCHED AND s."_CDC_OP" <> \'D\' THEN INSERT ("ID", "NAME", "ATTRS", "_CDC_LSN", '
        '"_CDC_SEQ", "_CDC_OP", "_CDC_COMMIT_TS", "_CDC_SYNCED_AT")\n'
        '  VALUES (s."ID", s."NAME", s."ATTRS", s."_CDC_LSN", s."_CDC_SEQ", s."_CDC_OP", '
        's."_CDC_COMMIT_TS", CURRENT_TIMESTAMP())'
    )


MERGE_ORDERS_WITH_TRUNCATE = """\
MERGE INTO "CDC_DEMO"."PUBLIC"."ORDERS" t USING (
  WITH w AS (
    SELECT
      x.*,
      ROW_NUMBER() OVER (PARTITION BY x."C1", x."C2" ORDER BY x."_CDC_LSN" DESC, x."_CDC_SEQ" DESC) \
AS "_RN",
      MAX(x."_CDC_SEQ") OVER (PARTITION BY x."C1", x."C2", x."_CDC_LSN") AS "_LK",
      MAX(CASE WHEN x."_CDC_OP" = 'I' OR x."_CDC_MOVED" THEN x."_CDC_SEQ" END) OVER (PARTITION BY \
x."C1", x."C2" ORDER BY x."_CDC_SEQ" ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS "_LS",
      MAX(CASE WHEN x."_CDC_OP" <> 'D' AND NOT CONTAINS(COALESCE(x."_CDC_UNCHANGED", ''), ',3,') \
THEN x."_CDC_SEQ" END) OVER (PARTITION BY x."C1", x."C2" ORDER BY x."_CDC_SEQ" ROWS BETWEEN \
UNBOUNDED PRECEDING AND CURRENT ROW) AS "_KS3",
      MAX(CASE WHEN x."_CDC_OP" <> 'D' AND NOT CONTAINS(COALESCE(x."_CDC_UNCHANGED", ''), ',3,') \
THEN x."_CDC_SEQ" END) OVER (PARTITION BY x."_CDC_CHAIN" ORDER BY x."_CDC_SEQ" ROWS BETWEEN \
UNBOUNDED PRECEDING AND CURRENT ROW) AS "_CS3",
      MAX(CASE WHEN x."_CDC_OP" <> 'D' AND NOT CONTAINS(COALESCE(x."_CDC_UNCHANGED", ''), ',4,') \
THEN x."_CDC_SEQ" END) OVER (PARTITION BY x."C1", x."C2" ORDER BY x."_CDC_SEQ" ROWS BETWEEN \
UNBOUNDED PRECEDING AND CURRENT ROW) AS "_KS4",
      MAX(CASE WHEN x."_CDC_OP" <> 'D' AND NOT CONTAINS(COALESCE(x."_CDC_UNCHANGED", ''), ',4,') \
THEN x."_CDC_SEQ" END) OVER (PARTITION BY x."_CDC_CHAIN" ORDER BY x."_CDC_SEQ" ROWS BETWEEN \
UNBOUNDED PRECEDING AND CURRENT ROW) AS "_CS4"
    FROM "CDC_DEMO"."CDC_LOAD"."L_0123456789ABCDEF" x
    WHERE x."_CDC_LSN" <= 22283264 AND x."_CDC_SEQ" > 7
  ),
  tc AS (
    SELECT c."_CDC_CHAIN" AS "_CDC_CH", kept."NOTE", kept."DOC"
    FROM w c JOIN "CDC_DEMO"."PUBLIC"."ORDERS" kept
      ON kept."TENANT" = c."C1" AND kept."ID" = c."C2" AND kept."_CDC_LSN" = c."_CDC_LSN"
    WHERE c."_CDC_CHAIN" IS NOT NULL AND c."_CDC_SEQ" = c."_LK"
    QUALIFY ROW_NUMBER() OVER (PARTITION BY c."_CDC_CHAIN" ORDER BY c."_CDC_SEQ" DESC) = 1
  )
  SELECT
    l."C1" AS "TENANT",
    l."C2" AS "ID",
    CASE WHEN v3."_CDC_SEQ" IS NOT NULL THEN v3."C3" WHEN l."O1" IS NOT NULL AND tc."_CDC_CH" IS NOT \
NULL THEN tc."NOTE" WHEN l."O1" IS NOT NULL THEN org."NOTE" ELSE cur."NOTE" END AS "NOTE",
    CASE WHEN v4."_CDC_SEQ" IS NOT NULL THEN PARSE_JSON(v4."C4") WHEN l."O1" IS NOT NULL AND \
tc."_CDC_CH" IS NOT NULL THEN tc."DOC" WHEN l."O1" IS NOT NULL THEN org."DOC" ELSE cur."DOC" END AS "DOC",
    l."C5" AS "AMT",
    l."_CDC_LSN" AS "_CDC_LSN",
    l."_CDC_SEQ" AS "_CDC_SEQ",
    l."_CDC_OP" AS "_CDC_OP",
    l."_CDC_COMMIT_TS" AS "_CDC_COMMIT_TS"
  FROM w l
  LEFT JOIN w d ON d."_CDC_SEQ" = l."_CDC_CHAIN" - 1
  LEFT JOIN tc ON tc."_CDC_CH" = l."_CDC_CHAIN"
  LEFT JOIN "CDC_DEMO"."CDC_LOAD"."L_0123456789ABCDEF" v3 ON v3."_CDC_SEQ" = CASE WHEN l."_KS3" >= \
COALESCE(l."_LS", -1) THEN l."_KS3" WHEN l."O1" IS NOT NULL THEN COALESCE(l."_CS3", CASE WHEN \
d."_KS3" >= COALESCE(d."_LS", -1) THEN d."_KS3" END) END
  LEFT JOIN "CDC_DEMO"."CDC_LOAD"."L_0123456789ABCDEF" v4 ON v4."_CDC_SEQ" = CASE WHEN l."_KS4" >= \
COALESCE(l."_LS", -1) THEN l."_KS4" WHEN l."O1" IS NOT NULL THEN COALESCE(l."_CS4", CASE WHEN \
d."_KS4" >= COALESCE(d."_LS", -1) THEN d."_KS4" END) END
  LEFT JOIN "CDC_DEMO"."PUBLIC"."ORDERS" cur ON cur."TENANT" = l."C1" AND cur."ID" = l."C2" AND \
cur."_CDC_LSN" >= 22216704
  LEFT JOIN "CDC_DEMO"."PUBLIC"."ORDERS" org ON org."TENANT" = l."O1" AND org."ID" = l."O2" AND \
org."_CDC_LSN" >= 22216704
  WHERE l."_RN" = 1
  UNION ALL
  SELECT
    cur."TENANT" AS "TENANT",
    cur."ID" AS "ID",
    NULL AS "NOTE",
    NULL AS "DOC",
    NULL AS "AMT",
    22216704 AS "_CDC_LSN",
    7 AS "_CDC_SEQ",
    'D' AS "_CDC_OP",
    NULL AS "_CDC_COMMIT_TS"
  FROM "CDC_DEMO"."PUBLIC"."ORDERS" cur
  WHERE cur."_CDC_LSN" < 22216704
    AND NOT EXISTS (SELECT 1 FROM "CDC_DEMO"."CDC_LOAD"."L_0123456789ABCDEF" x WHERE x."_CDC_LSN" \
<= 22283264 AND x."_CDC_SEQ" > 7 AND x."C1" = cur."TENANT" AND x."C2" = cur."ID")
) s ON t."TENANT" = s."TENANT" AND t."ID" = s."ID"
WHEN MATCHED AND s."_CDC_LSN" > t."_CDC_LSN" AND s."_CDC_OP" = 'D' THEN DELETE
WHEN MATCHED AND s."_CDC_LSN" > t."_CDC_LSN" THEN UPDATE SET
  "NOTE" = s."NOTE",
  "DOC" = s."DOC",
  "AMT" = s."AMT",
  "_CDC_LSN" = s."_CDC_LSN",
  "_CDC_SEQ" = s."_CDC_SEQ",
  "_CDC_OP" = s."_CDC_OP",
  "_CDC_COMMIT_TS" = s."_CDC_COMMIT_TS",
  "_CDC_SYNCED_AT" = CURRENT_TIMESTAMP()
WHEN NOT MATCHED AND s."_CDC_OP" <> 'D' THEN INSERT ("TENANT", "ID", "NOTE", "DOC", "AMT", \
"_CDC_LSN", "_CDC_SEQ", "_CDC_OP", "_CDC_COMMIT_TS", "_CDC_SYNCED_AT")
  VALUES (s."TENANT", s."ID", s."NOTE", s."DOC", s."AMT", s."_CDC_LSN", s."_CDC_SEQ", s."_CDC_OP", \
s."_CDC_COMMIT_TS", CURRENT_TIMESTAMP())"""


def test_merge_with_composite_key_toast_json_and_truncate() -> None:
    merge = sql.merge_sql(
        '"CDC_DEMO"."PUBLIC"."ORDERS"', LOAD, ORDERS, max_lsn=22283264, truncate=(22216704, 7)
    )
    assert merge == MERGE_ORDERS_WITH_TRUNCATE


def test_merge_without_truncate_has_no_truncate_parts() -> None:
    merge = sql.merge_sql('"CDC_DEMO"."PUBLIC"."ORDERS"', LOAD, ORDERS, max_lsn=0x1540000)
    assert "UNION ALL" not in merge and '"_CDC_SEQ" >' not in merge
    assert 'cur."ID" = l."C2"\n' in merge  # the target join has no truncate bound


def test_a_merge_with_a_floor_leaves_out_older_changes_and_an_older_truncate() -> None:
    target = '"CDC_DEMO"."PUBLIC"."ORDERS"'
    plain = sql.merge_sql(target, LOAD, ORDERS, max_lsn=22283264, truncate=(22216704, 7))
    floored = sql.merge_sql(target, LOAD, ORDERS, max_lsn=22283264, truncate=(22216704, 7), min_lsn=22216705)
    # the truncate came before the floor: the merge is the one without it, plus the floor
    unfloored = sql.merge_sql(target, LOAD, ORDERS, max_lsn=22283264)
    assert floored == unfloored.replace(
        'x."_CDC_LSN" <= 22283264', 'x."_CDC_LSN" <= 22283264 AND x."_CDC_LSN" >= 22216705'
    )
    assert floored != unfloored and floored != plain
    kept = sql.merge_sql(target, LOAD, ORDERS, max_lsn=22283264, truncate=(22216704, 7), min_lsn=22216704)
    assert kept == plain.replace(
        'x."_CDC_LSN" <= 22283264', 'x."_CDC_LSN" <= 22283264 AND x."_CDC_LSN" >= 22216704'
    )


def test_merge_sends_a_non_toastable_column_as_is() -> None:
    merge = sql.merge_sql('"T"', LOAD, ORDERS, max_lsn=1)
    assert '    l."C5" AS "AMT",\n' in merge
    assert ",5," not in merge


def _outside_quotes(text: str) -> str:
    """The statement with every quoted identifier and string literal blanked out."""
    text = re.sub(r'"(?:[^"]|"")*"', '""', text)
    return re.sub(r"'(?:[^']|'')*'", "''", text)


def test_odd_identifiers_cannot_inject_sql() -> None:
    target = sql.target_table("CDC_DEMO", ODD)
    statements = [
        sql.create_target_table_sql("CDC_DEMO", ODD),
        sql.create_load_table_sql("CDC_DEMO", "CDC_LOAD", "L_0123456789ABCDEF", ODD),
        sql.merge_sql(target, LOAD, ODD, max_lsn=10, truncate=(5, 1)),
        sql.select_table_sql("CDC_DEMO", ODD),
    ]
    for statement in statements:
        bare = _outside_quotes(statement)
        assert "DROP" not in bare and ";" not in bare and "--" not in bare, statement
    merge = statements[2]
    assert '"x""); DROP TABLE t; --" = s."x""); DROP TABLE t; --"' in merge
    assert (
        'CASE WHEN v2."_CDC_SEQ" IS NOT NULL THEN v2."C2" WHEN l."O1" IS NOT NULL AND tc."_CDC_CH" IS NOT '
        'NULL THEN tc."SELECT" WHEN l."O1" IS NOT NULL THEN org."SELECT" ELSE cur."SELECT" END AS "SELECT"'
    ) in merge
    assert 'ON cur."Mixed Case" = l."C1" AND cur."_CDC_LSN" >= 5' in merge


@pytest.mark.parametrize("bad", [-1, 1 << 64, True, 1.5, "1; DROP TABLE t"])
def test_lsn_and_seq_must_be_whole_numbers(bad: object) -> None:
    with pytest.raises(ValueError):
        sql.merge_sql('"T"', LOAD, ITEMS, max_lsn=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        sql.merge_sql('"T"', LOAD, ITEMS, max_lsn=1, truncate=(1, bad))  # type: ignore[arg-type]


def test_select_reads_every_column_and_flags_null_timestamps() -> None:
    assert sql.select_table_sql("CDC_DEMO", ODD) == (
        'SELECT "Mixed Case", "SELECT", "naïve", "x""); DROP TABLE t; --", '
        '"_CDC_LSN", "_CDC_SEQ", "_CDC_OP", "_CDC_COMMIT_TS", "_CDC_SYNCED_AT", '
        '"_CDC_COMMIT_TS" IS NULL, "_CDC_SYNCED_AT" IS NULL '
        'FROM "CDC_DEMO"."My Schema"."Odd ""T"" tbl" ORDER BY "Mixed Case"'
    )
    assert [key for key, _, _ in sql.fetch_columns(ODD)][:4] == ["Mixed Case", "select", "naïve", INJECT]


@pytest.mark.parametrize(
    ("exc", "expected_type"),
    [
        (
            sf_errors.ProgrammingError(msg="SQL compilation error: invalid identifier 'X'", errno=904),
            MergeError,
        ),
        (
            sf_errors.DatabaseError(msg="Incorrect username or password was specified.", errno=390100),
            AuthError,
        ),
        (sf_errors.DatabaseError(msg="JWT token is invalid.", errno=390144), AuthError),
        (sf_errors.ForbiddenError(msg="403", errno=250001), AuthError),
        (sf_errors.DatabaseError(msg="MFA failed", errno=250001), AuthError),
        (
            sf_errors.OperationalError(msg="Could not connect to Snowflake backend", errno=250001),
            SinkUnavailable,
        ),
        (sf_errors.OperationalError(msg="Connection is closed", errno=250002), SinkUnavailable),
        (sf_errors.ServiceUnavailableError(msg="503"), SinkUnavailable),
        (sf_errors.GatewayTimeoutError(msg="504"), SinkUnavailable),
        (ConnectionResetError("reset by peer"), SinkUnavailable),
    ],
)
def test_connector_errors_map_to_pipeline_errors(exc: Exception, expected_type: type[Exception]) -> None:
    error = map_error(exc, action="merge for table public.orders", hint="fix it", secret="hunter2")
    assert type(error) is expected_type
    assert "merge for table public.orders" in str(error)


def test_error_messages_never_carry_the_password() -> None:
    exc = sf_errors.ProgrammingError(msg="bad statement near 'hunter2'", errno=1003)
    error = map_error(exc, action="copy for table public.orders", hint="check the parts", secret="hunter2")
    assert "hunter2" not in str(error) and "***" in str(error)
    assert "copy for table public.orders" in str(error) and "check the parts" in str(error)


def test_omitted_attnums_read_the_unchanged_lists() -> None:
    assert sql.omitted_attnums([(",3,",), (",3,4,",), (None,)]) == frozenset({3, 4})
    assert sql.omitted_attnums([]) == frozenset()
    assert (
        sql.omitted_sql('"L"')
        == 'SELECT DISTINCT "_CDC_UNCHANGED" FROM "L" WHERE "_CDC_UNCHANGED" IS NOT NULL'
    )


def test_merge_fills_only_the_columns_some_update_left_out() -> None:
    only_doc = sql.merge_sql('"T"', LOAD, ORDERS, max_lsn=1, omitted=frozenset({4}))
    assert '"_KS4"' in only_doc and '"_KS3"' not in only_doc
    assert '    l."C3" AS "NOTE",\n' in only_doc  # sent by every update: the latest change's value
    # no update left anything out: the latest change per key, no join back to the target
    none = sql.merge_sql('"T"', LOAD, ORDERS, max_lsn=1, omitted=frozenset())
    assert "LEFT JOIN" not in none and "QUALIFY ROW_NUMBER()" in none
    assert sql.merge_sql('"T"', LOAD, ORDERS, max_lsn=1, omitted=frozenset({3, 4})) == sql.merge_sql(
        '"T"', LOAD, ORDERS, max_lsn=1
    )
