"""Every kind of change ends with the target equal to the source: TOAST, key changes, truncate, keys."""

from __future__ import annotations

import json
from typing import Any

import pytest
from helpers import Pipeline

from cdc.demo import compare_table, replicate_until_caught_up

BIG = "(SELECT string_agg(md5(random()::text || i), '') FROM generate_series(1, 150) i)"  # ~4.8 kB


@pytest.fixture
def p(stack: Any):
    pipeline = Pipeline(stack)
    with pipeline.conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {pipeline.schema}")
    pipeline.conn.commit()
    yield pipeline
    pipeline.close()


def sql(p: Pipeline, *statements: str) -> None:
    """Run statements in one transaction."""
    with p.conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement.replace("{s}", p.schema))
    p.conn.commit()


def source(p: Pipeline, query: str) -> list[tuple[Any, ...]]:
    with p.conn.cursor() as cur:
        cur.execute(query.replace("{s}", p.schema))
        return cur.fetchall()


def target(p: Pipeline, table: str) -> list[dict[str, Any]]:
    return p.engine.sink.fetch_table(p.engine.source.catalog().tables[(p.schema, table)])  # type: ignore[attr-defined]


def assert_equal(p: Pipeline, *tables: str) -> None:
    catalog = p.engine.source.catalog()
    for name in tables:
        diff = compare_table(p.conn, p.engine, catalog.tables[(p.schema, name)])
        assert diff.equal, (name, diff.missing[:5], diff.extra[:5], diff.different[:5])
        assert diff.source_rows == diff.target_rows


def sync(p: Pipeline) -> list[dict[str, Any]]:
    return replicate_until_caught_up(p.engine)


def toast_table(p: Pipeline, name: str = "docs") -> None:
    sql(
        p,
        f"CREATE TABLE {{s}}.{name} (id int PRIMARY KEY, a text, b text, n int)",
        f"ALTER TABLE {{s}}.{name} ALTER COLUMN a SET STORAGE EXTERNAL",
        f"ALTER TABLE {{s}}.{name} ALTER COLUMN b SET STORAGE EXTERNAL",
    )
    p.engine.run_window()  # creates the slot


def test_update_without_toast_column_keeps_target_value_across_windows(p: Pipeline) -> None:
    toast_table(p)
    sql(p, f"INSERT INTO {{s}}.docs VALUES (1, {BIG}, {BIG}, 0), (2, {BIG}, 'short', 0)")
    sync(p)
    sql(p, "UPDATE {s}.docs SET n = n + 1")
    results = sync(p)
    assert any(r["tables"].get(f"{p.schema}.docs", {}).get("U") == 2 for r in results)
    rows = {r["id"]: r for r in target(p, "docs")}
    [(a1, b1), (a2,)] = [
        source(p, "SELECT a, b FROM {s}.docs WHERE id = 1")[0],
        source(p, "SELECT a FROM {s}.docs WHERE id = 2")[0],
    ]
    assert len(a1) == 4800 and rows[1]["a"] == a1 and rows[1]["b"] == b1 and rows[1]["n"] == 1
    assert rows[2]["a"] == a2 and rows[2]["b"] == "short"
    assert_equal(p, "docs")


def test_several_updates_in_one_window_with_different_column_sets(p: Pipeline) -> None:
    toast_table(p)
    sql(p, f"INSERT INTO {{s}}.docs VALUES (1, {BIG}, {BIG}, 0)")
    sync(p)
    sql(p, f"UPDATE {{s}}.docs SET a = {BIG}")  # b unchanged
    sql(p, "UPDATE {s}.docs SET n = 5")  # a and b unchanged
    sql(p, f"UPDATE {{s}}.docs SET b = {BIG}")  # a unchanged
    sql(p, "UPDATE {s}.docs SET n = 6")
    [result] = [r for r in sync(p) if r["status"] == "applied"]
    assert result["tables"][f"{p.schema}.docs"]["U"] == 4
    assert_equal(p, "docs")


def test_insert_and_updates_of_toast_columns_in_the_same_window(p: Pipeline) -> None:
    toast_table(p)
    sql(p, f"INSERT INTO {{s}}.docs VALUES (1, {BIG}, {BIG}, 0)")
    sql(p, "UPDATE {s}.docs SET n = 1")
    sql(p, f"UPDATE {{s}}.docs SET a = {BIG}")
    sql(p, "UPDATE {s}.docs SET n = 2")
    sync(p)
    assert_equal(p, "docs")


def test_column_explicitly_set_to_null_becomes_null(p: Pipeline) -> None:
    toast_table(p)
    sql(p, f"INSERT INTO {{s}}.docs VALUES (1, {BIG}, {BIG}, 0)")
    sync(p)
    sql(p, "UPDATE {s}.docs SET a = NULL, n = NULL")
    sync(p)
    [row] = target(p, "docs")
    assert row["a"] is None and row["n"] is None and row["b"] is not None and len(row["b"]) == 4800
    assert_equal(p, "docs")


def test_key_change_removes_old_key_and_writes_new_one(p: Pipeline) -> None:
    toast_table(p)
    sql(p, f"INSERT INTO {{s}}.docs VALUES (1, {BIG}, 'b1', 1), (2, {BIG}, 'b2', 2)")
    sync(p)
    sql(p, "UPDATE {s}.docs SET id = 10 WHERE id = 1")  # a (TOASTed) unchanged
    sync(p)
    assert sorted(r["id"] for r in target(p, "docs")) == [2, 10]
    assert_equal(p, "docs")


def test_key_changes_twice_in_one_window_and_old_key_reused(p: Pipeline) -> None:
    toast_table(p)
    sql(p, f"INSERT INTO {{s}}.docs VALUES (1, {BIG}, 'b1', 1)")
    sync(p)
    sql(p, "UPDATE {s}.docs SET id = 2 WHERE id = 1")
    sql(p, "UPDATE {s}.docs SET n = 20 WHERE id = 2")
    sql(p, "UPDATE {s}.docs SET id = 3 WHERE id = 2")
    sql(p, "INSERT INTO {s}.docs VALUES (1, 'new one', 'nb', 100)")  # the old key comes back
    sql(p, "UPDATE {s}.docs SET n = 101 WHERE id = 1")
    sql(p, f"UPDATE {{s}}.docs SET a = {BIG}, id = 4 WHERE id = 3")
    sql(p, "UPDATE {s}.docs SET id = 5 WHERE id = 4")
    [result] = [r for r in sync(p) if r["status"] == "applied"]
    assert result["changes"] == 7
    assert sorted(r["id"] for r in target(p, "docs")) == [1, 5]
    assert_equal(p, "docs")


def test_insert_then_key_change_in_the_same_window_keeps_toast_value(p: Pipeline) -> None:
    toast_table(p)
    sql(p, f"INSERT INTO {{s}}.docs VALUES (1, {BIG}, {BIG}, 1)", "UPDATE {s}.docs SET id = 7 WHERE id = 1")
    sql(p, "UPDATE {s}.docs SET id = 8 WHERE id = 7")
    sync(p)
    [row] = target(p, "docs")
    assert row["id"] == 8 and len(row["a"]) == 4800
    assert_equal(p, "docs")


def test_composite_key_change(p: Pipeline) -> None:
    sql(p, "CREATE TABLE {s}.pairs (region text, num int, v text, PRIMARY KEY (region, num))")
    p.engine.run_window()
    sql(p, "INSERT INTO {s}.pairs VALUES ('eu', 1, 'a'), ('us', 1, 'b')")
    sql(p, "UPDATE {s}.pairs SET region = 'us', num = 2 WHERE region = 'eu'")
    sync(p)
    assert sorted((r["region"], r["num"]) for r in target(p, "pairs")) == [("us", 1), ("us", 2)]
    assert_equal(p, "pairs")


def test_truncate_empties_target_and_later_changes_survive(p: Pipeline) -> None:
    sql(p, "CREATE TABLE {s}.t (id int PRIMARY KEY, v text)", "CREATE TABLE {s}.other (id int PRIMARY KEY)")
    p.engine.run_window()
    sql(
        p,
        "INSERT INTO {s}.t SELECT g, 'old' FROM generate_series(1, 20) g",
        "INSERT INTO {s}.other VALUES (1)",
    )
    sync(p)
    # same window: changes before the truncate vanish, changes after it (even in its own
    # transaction) survive
    sql(p, "UPDATE {s}.t SET v = 'before' WHERE id = 1")
    sql(p, "TRUNCATE {s}.t", "INSERT INTO {s}.t VALUES (3, 'same txn')")
    sql(p, "INSERT INTO {s}.t VALUES (4, 'after')")
    sync(p)
    assert sorted((r["id"], r["v"]) for r in target(p, "t")) == [(3, "same txn"), (4, "after")]
    assert [r["id"] for r in target(p, "other")] == [1]
    sql(p, "TRUNCATE {s}.t")
    sync(p)
    assert target(p, "t") == []
    sql(p, "INSERT INTO {s}.t VALUES (5, 'later window')")
    sync(p)
    assert_equal(p, "t", "other")


def test_truncate_and_toast_fill_in_one_window(p: Pipeline) -> None:
    toast_table(p)
    sql(p, f"INSERT INTO {{s}}.docs VALUES (1, {BIG}, 'x', 1)")
    sync(p)
    sql(p, "TRUNCATE {s}.docs")
    sql(p, f"INSERT INTO {{s}}.docs VALUES (1, {BIG}, 'y', 2)", "UPDATE {s}.docs SET n = 3")
    sync(p)
    assert_equal(p, "docs")


def test_replica_identity_index_is_the_key(p: Pipeline) -> None:
    sql(
        p,
        "CREATE TABLE {s}.ri (code text NOT NULL, v int)",
        "CREATE UNIQUE INDEX ri_code ON {s}.ri (code)",
        "ALTER TABLE {s}.ri REPLICA IDENTITY USING INDEX ri_code",
    )
    p.engine.run_window()
    sql(p, "INSERT INTO {s}.ri VALUES ('a', 1), ('b', 2)")
    sql(p, "UPDATE {s}.ri SET v = 3 WHERE code = 'a'", "DELETE FROM {s}.ri WHERE code = 'b'")
    sync(p)
    assert p.engine.source.catalog().tables[(p.schema, "ri")].key == ("code",)
    assert [(r["code"], r["v"]) for r in target(p, "ri")] == [("a", 3)]


def test_table_without_key_is_refused_by_name_while_others_replicate(p: Pipeline) -> None:
    sql(p, "CREATE TABLE {s}.nokey (v int)", "CREATE TABLE {s}.fine (id int PRIMARY KEY)")
    p.engine.run_window()
    sql(p, "INSERT INTO {s}.nokey VALUES (1)", "INSERT INTO {s}.fine VALUES (1)")
    results = sync(p)
    notes = " ".join(n for r in results for n in r["notes"])
    assert f"{p.schema}.nokey has no primary key" in notes and "REPLICA IDENTITY USING INDEX" in notes
    assert [r["id"] for r in target(p, "fine")] == [1]


def test_array_elements_keep_the_spaces_postgresql_keeps(p: Pipeline) -> None:
    # array_out quotes an element for ASCII blanks only: these travel unquoted, spaces and all
    elements = ["\u00a0abc\u00a0", "abc\u2003", "\u3000", "a\x1c", "\u0085b"]
    sql(p, "CREATE TABLE {s}.arr (id int PRIMARY KEY, tags text[])")
    with p.conn.cursor() as cur:
        cur.execute(f"INSERT INTO {p.schema}.arr VALUES (1, %s)", (elements,))
    p.conn.commit()
    p.engine.run_window()  # the snapshot copies row 1
    with p.conn.cursor() as cur:
        cur.execute(f"INSERT INTO {p.schema}.arr VALUES (2, %s), (3, %s)", (elements, elements[2:3]))
    p.conn.commit()
    sync(p)
    rows = {r["id"]: r["tags"] for r in target(p, "arr")}
    assert {k: json.loads(v) for k, v in rows.items()} == {1: elements, 2: elements, 3: ["\u3000"]}
    assert_equal(p, "arr")


def test_a_numeric_of_thousands_of_digits_replicates(p: Pipeline) -> None:
    sql(
        p,
        "CREATE TABLE {s}.big (id int PRIMARY KEY, n numeric)",
        "INSERT INTO {s}.big VALUES (1, repeat('7', 5000)::numeric)",
    )
    p.engine.run_window()
    sql(p, "INSERT INTO {s}.big VALUES (2, ('-' || repeat('9', 4301))::numeric), (3, 12)")
    sync(p)
    rows = {r["id"]: str(r["n"]) for r in target(p, "big")}
    assert rows == {1: "7" * 5000, 2: "-" + "9" * 4301, 3: "12"}
    assert_equal(p, "big")
