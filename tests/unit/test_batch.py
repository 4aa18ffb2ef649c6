"""WindowWriter: real wal2json fixtures -> Parquet parts, read back and checked value by value."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cdc.batch import StagedTable, WindowWriter
from cdc.errors import DecodeError, SchemaError, UnknownColumn
from cdc.model import Begin, Change, Column, Commit, Lsn, TableSchema
from cdc.source.wal2json import parse_message

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "wal2json"


def load_schemas() -> dict[tuple[str, str], TableSchema]:
    result = {}
    for t in json.loads((FIXTURES / "schemas.json").read_text()):
        columns = tuple(
            Column(c["name"], c["attnum"], c["type_name"], c["type_oid"], c["nullable"], c["toastable"])
            for c in t["columns"]
        )
        result[(t["schema"], t["table"])] = TableSchema(t["schema"], t["table"], columns, tuple(t["key"]))
    return result


SCHEMAS = load_schemas()


def schema_for(schema: str, table: str) -> TableSchema:
    return SCHEMAS[(schema, table)]


def feed(writer: WindowWriter, *scenarios: str) -> list[Begin]:
    """Replay fixture scenarios through the writer as the engine does; return the transactions."""
    begins: list[Begin] = []
    current: Begin | None = None
    for scenario in scenarios:
        for line in (FIXTURES / f"{scenario}.jsonl").read_text().splitlines():
            message = parse_message(line)
            if isinstance(message, Begin):
                current = message
                begins.append(message)
            elif isinstance(message, Commit):
                current = None
            elif isinstance(message, Change):
                assert current is not None
                writer.add(message, current.commit_lsn, current.commit_ts)
    return begins


def by_table(staged: list[StagedTable]) -> dict[str, StagedTable]:
    return {s.table.name: s for s in staged}


MOVE_COLUMNS = ("_CDC_MOVED", "_CDC_CHAIN")


def read_rows(spool: Path, staged: StagedTable, moves: bool = False) -> list[dict[str, Any]]:
    """All parts of a table, in part order, as dicts keyed by PostgreSQL column name.

    The key-move bookkeeping columns (``_CDC_MOVED``, ``_CDC_CHAIN``, ``O<attnum>``) are left out
    unless ``moves`` asks for them; origin columns are then named ``origin:<key column>``.
    """
    names = {c.stage_name: c.name for c in staged.table.columns}
    origins = {c.origin_name: f"origin:{c.name}" for c in staged.table.key_columns}
    rows: list[dict[str, Any]] = []
    for f in staged.files:
        for row in pq.read_table(spool / staged.stage_dir / f.name).to_pylist():
            out = {}
            for k, v in row.items():
                if k in origins or k in MOVE_COLUMNS:
                    if moves:
                        out[origins.get(k, k)] = v
                    continue
                out[names.get(k, k)] = v
            rows.append(out)
    return rows


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_types_are_staged_exactly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    writer = WindowWriter(tmp_path, schema_for)
    with caplog.at_level(logging.WARNING, logger="cdc.batch"):
        begins = feed(writer, "insert_types")
    [staged] = writer.close()
    assert staged.rows == 4 and staged.ops == {"I": 4, "U": 0, "D": 0, "T": 0}
    assert staged.columns_as_text == ("c_enum",)  # the fixture's catalog does not mark enums
    warned = [r.getMessage() for r in caplog.records if r.name == "cdc.batch"]
    assert len(warned) == 1 and all("public.cdc_types" in w for w in warned)
    assert "'c_enum' (type mood)" in warned[0]

    part = pq.read_table(tmp_path / "public.cdc_types" / "part-00000.parquet")
    field = part.schema.field("C3")  # attnum 2 was dropped: names follow attnums
    assert field.metadata == {b"pg_name": b"c_smallint", b"pg_type": b"smallint"}
    assert field.type == pa.int16()
    assert part.schema.field("C20").type == pa.decimal128(10, 2)
    assert part.schema.field("C15").type == pa.string()  # timestamptz: ISO text in UTC
    assert part.schema.names[-8:] == [
        "_CDC_LSN",
        "_CDC_SEQ",
        "_CDC_OP",
        "_CDC_COMMIT_TS",
        "_CDC_UNCHANGED",
        "_CDC_MOVED",
        "_CDC_CHAIN",
        "O1",
    ]
    assert part.schema.field("_CDC_COMMIT_TS").type == pa.timestamp("us", tz="UTC")

    r1, r2, r3, r4 = read_rows(tmp_path, staged)
    assert r1 == {
        "id": 1,
        "c_smallint": 32767,
        "c_integer": -2147483648,
        "c_bigint": 9223372036854775807,
        "c_real": 1.5,
        "c_double": 3.141592653589793,
        "c_bool": True,
        "c_text": 'h\u00e9llo "quoted"\nline \\ backslash',
        "c_varchar": "varchar",
        "c_char": "ab   ",
        "c_date": "2024-02-29",
        "c_ts": "2024-02-29 13:14:15.123456",
        "c_ts3": "2024-02-29 13:14:15.123",
        "c_tstz": "2024-02-29 11:14:15.123456+00",
        "c_json": '{"a": [1, 2.50, null], "b": "x"}',
        "c_jsonb": '{"a": [1, 2.50, null], "b": "x"}',
        "c_uuid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "c_bytea": b"\xde\xad\xbe\xef\x00",
        "c_num": Decimal("12345678.91"),
        "c_num_big": Decimal("1234567890123456789012345678.0123456789"),
        "c_num_free": "0.1",
        "c_interval": "P1DT2H3M4S",
        "c_int_arr": "[1,2,null]",
        "c_text_arr": '["a b","c"]',
        "c_inet": "192.168.0.1/24",
        "c_enum": "happy",
        "_CDC_LSN": begins[0].commit_lsn.value,
        "_CDC_SEQ": 0,
        "_CDC_OP": "I",
        "_CDC_COMMIT_TS": ts(begins[0].commit_ts),
        "_CDC_UNCHANGED": None,
    }
    assert {k: v for k, v in r2.items() if not k.startswith("_")} == {
        k: (2 if k == "id" else None) for k in r1 if not k.startswith("_")
    }
    assert r3["c_smallint"] == -32768 and r3["c_bigint"] == -9223372036854775808
    assert (r3["c_real"], r3["c_double"], r3["c_num_free"]) == (None, None, None)  # NaN/Infinity: null
    assert r3["c_bytea"] == b"" and r3["c_text"] == "" and r3["c_char"] == "     "
    assert r3["c_num"] == Decimal("-99999999.99") and r3["c_num_big"] == Decimal("-0.0000000001")
    assert r3["c_date"] == "0001-01-01" and r3["c_ts3"] == "1999-12-31 23:59:59.999"
    assert r3["c_tstz"] == "1970-01-01 00:00:00+00" and r3["c_interval"] == "P-1M"
    assert r4["c_real"] == 3.4e38 and r4["c_double"] == 1e300  # real: the double of its shortest text
    assert r4["c_ts"] == "2000-01-01 00:00:00.000001"
    assert r4["c_tstz"] == "2262-04-11 23:47:16.854775+00"
    assert r4["c_num"] == Decimal("0.05") and r4["c_num_free"] == "0.00000015"
    assert [r["_CDC_SEQ"] for r in (r1, r2, r3, r4)] == [0, 1, 2, 3]
    assert [r["_CDC_LSN"] for r in (r1, r2, r3, r4)] == [b.commit_lsn.value for b in begins]
    assert [r["_CDC_COMMIT_TS"] for r in (r1, r2, r3, r4)] == [ts(b.commit_ts) for b in begins]


@pytest.mark.parametrize(
    ("row_id", "column", "value"),
    [
        (10, "c_date", "'infinity'"),
        (11, "c_date", "'0044-03-15 BC'"),
        (12, "c_ts", "'-infinity'"),
        (13, "c_tstz", "'infinity'"),
    ],
)
def test_infinity_and_bc_dates_are_staged_as_their_text(
    tmp_path: Path, row_id: int, column: str, value: str
) -> None:
    writer = WindowWriter(tmp_path, schema_for)
    lines = (FIXTURES / "insert_unrepresentable.jsonl").read_text().splitlines()
    [change] = [
        m
        for m in map(parse_message, lines)
        if isinstance(m, Change) and m.values and m.values["id"] == row_id
    ]
    writer.add(change, Lsn(1), "2026-11-29 07:02:32.502865+00")
    [staged] = writer.close()
    [row] = read_rows(tmp_path, staged)
    assert row[column] == value.strip("'")


def test_update_without_toast_column_marks_it_unchanged(tmp_path: Path) -> None:
    writer = WindowWriter(tmp_path, schema_for)
    feed(writer, "update_toast")
    [staged] = writer.close()
    insert, untouched, rewritten = read_rows(tmp_path, staged)
    assert len(insert["big"]) == 3200 and insert["_CDC_UNCHANGED"] is None
    assert (untouched["_CDC_OP"], untouched["counter"], untouched["big"]) == ("U", 1, None)
    assert untouched["_CDC_UNCHANGED"] == ",3,"  # attnum of "big"
    assert rewritten["big"].endswith("x") and rewritten["_CDC_UNCHANGED"] is None


def test_primary_key_change_emits_delete_of_old_key_then_update(tmp_path: Path) -> None:
    writer = WindowWriter(tmp_path, schema_for)
    begins = feed(writer, "key_change")
    tables = by_table(writer.close())
    assert writer.rows == 5
    t1 = read_rows(tmp_path, tables["cdc_t1"])
    assert [(r["_CDC_OP"], r["id"], r["amt"], r["_CDC_SEQ"], r["_CDC_LSN"]) for r in t1] == [
        ("D", 1, None, 0, begins[0].commit_lsn.value),
        ("U", 2, Decimal("5.50"), 1, begins[0].commit_lsn.value),
    ]
    assert tables["cdc_t1"].ops == {"I": 0, "U": 1, "D": 0, "T": 0} and tables["cdc_t1"].rows == 2
    comp = read_rows(tmp_path, tables["cdc_composite"])
    assert [(r["_CDC_OP"], r["region"], r["num"], r["payload"], r["_CDC_SEQ"]) for r in comp] == [
        ("I", "eu", 1, "p", 2),
        ("D", "eu", 1, None, 3),
        ("U", "eu", 2, "p", 4),
    ]


def test_update_keeping_its_key_emits_one_row_even_with_full_identity(tmp_path: Path) -> None:
    writer = WindowWriter(tmp_path, schema_for)
    feed(writer, "update", "replica_full", "odd_names")
    tables = by_table(writer.close())
    assert [r["_CDC_OP"] for r in read_rows(tmp_path, tables["cdc_t1"])] == ["I", "U"]
    full = read_rows(tmp_path, tables["cdc_full"])
    assert [(r["_CDC_OP"], r["id"], r["v"]) for r in full] == [("I", 1, "a"), ("U", 1, "b"), ("D", 1, None)]


def test_delete_carries_key_from_identity_and_nulls_elsewhere(tmp_path: Path) -> None:
    writer = WindowWriter(tmp_path, schema_for)
    feed(writer, "delete")
    tables = by_table(writer.close())
    [row] = read_rows(tmp_path, tables["cdc_t1"])
    assert (row["_CDC_OP"], row["id"], row["amt"], row["note"]) == ("D", 2, None, None)
    [row] = read_rows(tmp_path, tables["cdc_composite"])
    assert (row["region"], row["num"], row["payload"]) == ("eu", 2, None)


def test_odd_names_land_in_a_safe_stage_dir_with_exact_names_in_metadata(tmp_path: Path) -> None:
    writer = WindowWriter(tmp_path, schema_for)
    feed(writer, "odd_names")
    [staged] = writer.close()
    assert staged.stage_dir == staged.table.stage_dir and '"' not in staged.stage_dir
    part = pq.read_table(tmp_path / staged.stage_dir / "part-00000.parquet")
    assert [part.schema.field(n).metadata[b"pg_name"] for n in ("C1", "C2", "C3")] == [
        b"Key Col",
        b"Value",
        b"select",
    ]
    assert part.schema.metadata[b"pg_table"] == b'Odd "T"'
    assert [(r["_CDC_OP"], r["Key Col"], r["Value"]) for r in read_rows(tmp_path, staged)] == [
        ("I", 1, "v1"),
        ("U", 1, "v2"),
        ("D", 1, None),
    ]


def test_truncate_records_last_truncate_and_consumes_a_seq(tmp_path: Path) -> None:
    writer = WindowWriter(tmp_path, schema_for)
    begins = feed(writer, "truncate", "multi_statement")
    tables = by_table(writer.close())
    t1, comp = tables["cdc_t1"], tables["cdc_composite"]
    assert t1.truncate == (begins[2].commit_lsn.value, 2)
    assert comp.truncate == (begins[2].commit_lsn.value, 3)
    assert t1.ops == {"I": 3, "U": 1, "D": 1, "T": 2} and comp.ops == {"I": 1, "U": 0, "D": 0, "T": 1}
    assert [r["_CDC_SEQ"] for r in read_rows(tmp_path, t1)] == [0, 4, 5, 6, 7]
    assert [r["_CDC_SEQ"] for r in read_rows(tmp_path, comp)] == [8]


def test_table_with_only_a_truncate_has_no_files(tmp_path: Path) -> None:
    writer = WindowWriter(tmp_path, schema_for)
    writer.add(Change(op="T", schema="public", table="cdc_t1", lsn=Lsn(5)), Lsn(9), "2026-01-01 00:00:00+00")
    [staged] = writer.close()
    assert (staged.files, staged.rows, staged.truncate) == ((), 0, (9, 0))
    assert not (tmp_path / "public.cdc_t1").exists()


@pytest.mark.parametrize(
    ("max_lsn", "staged_truncate", "counted"),
    [(None, (20, 2), 2), (20, (20, 2), 2), (19, (9, 0), 1), (8, None, 0)],
)
def test_a_truncate_past_the_last_commit_is_not_staged(
    tmp_path: Path, max_lsn: int | None, staged_truncate: tuple[int, int] | None, counted: int
) -> None:
    writer = WindowWriter(tmp_path, schema_for)
    truncate = Change(op="T", schema="public", table="cdc_t1", lsn=Lsn(5))
    writer.add(truncate, Lsn(9), "2026-01-01 00:00:00+00")
    insert = Change(op="I", schema="public", table="cdc_t1", lsn=Lsn(11), values={"id": 1, "note": "a"})
    writer.add(insert, Lsn(20), "2026-01-01 00:00:01+00")
    writer.add(truncate, Lsn(20), "2026-01-01 00:00:01+00")  # the window may end before this commit
    [staged] = writer.close(max_lsn)
    assert (
        staged.truncate == staged_truncate and staged.ops["T"] == counted
    )  # the next window counts the rest


def test_parts_split_at_part_max_rows_while_adding(tmp_path: Path) -> None:
    writer = WindowWriter(tmp_path, schema_for, part_max_rows=3)
    t1 = tmp_path / "public.cdc_t1"
    for i in range(7):
        writer.add(
            Change(
                op="I",
                schema="public",
                table="cdc_t1",
                lsn=Lsn(100 + i),
                values={"id": i, "amt": f"{i}.25", "note": f"n{i}"},
            ),
            Lsn(1000 + i),
            "2026-11-29 07:02:32.5+00",
        )
        if i == 2:
            assert (t1 / "part-00000.parquet").exists()  # flushed as soon as it was full
    flushed = sum((t1 / f"part-{n:05d}.parquet").stat().st_size for n in range(2))
    assert writer.bytes_written == flushed and not (t1 / "part-00002.parquet").exists()
    [staged] = writer.close()
    assert [(f.name, f.rows) for f in staged.files] == [
        ("part-00000.parquet", 3),
        ("part-00001.parquet", 3),
        ("part-00002.parquet", 1),
    ]
    for f in staged.files:
        data = (t1 / f.name).read_bytes()
        assert (f.bytes, f.sha256) == (len(data), hashlib.sha256(data).hexdigest())
        assert pq.read_metadata(t1 / f.name).row_group(0).column(0).compression == "ZSTD"
    assert writer.bytes_written == sum(f.bytes for f in staged.files) and writer.rows == 7
    rows = read_rows(tmp_path, staged)
    assert [(r["id"], r["amt"], r["_CDC_SEQ"], r["_CDC_LSN"]) for r in rows] == [
        (i, Decimal(f"{i}.25"), i, 1000 + i) for i in range(7)
    ]
    assert writer.close() == [staged]  # a second close changes nothing
    with pytest.raises(RuntimeError):
        writer.add(Change(op="T", schema="public", table="cdc_t1", lsn=Lsn(1)), Lsn(1), "x")


SMALL = TableSchema(
    "s",
    "small",
    (
        Column("id", 1, "smallint", 21),
        Column("price", 2, "numeric(5,2)", 1700),
        Column("blob", 3, "bytea", 17),
        Column("ok", 4, "boolean", 16),
        Column("f", 5, "real", 700),
        Column("doc", 6, "jsonb", 3802),
    ),
    ("id",),
)


def add_small(tmp_path: Path, change: Change) -> WindowWriter:
    writer = WindowWriter(tmp_path, lambda s, t: SMALL)
    writer.add(change, Lsn(10), "2026-11-29 07:02:32+00")
    return writer


def ins(**values: Any) -> Change:
    return Change(
        op="I",
        schema="s",
        table="small",
        lsn=Lsn(1),
        values={"id": 1, "price": None, "blob": None, "ok": None, "f": None, "doc": None} | values,
    )


def test_update_that_omits_an_unchanged_key_takes_it_from_identity(tmp_path: Path) -> None:
    change = Change(
        op="U", schema="s", table="small", lsn=Lsn(1), values={"price": "2.50"}, identity={"id": 7}
    )
    [staged] = add_small(tmp_path, change).close()
    [row] = read_rows(tmp_path, staged)
    assert (row["_CDC_OP"], row["id"], row["price"], row["_CDC_UNCHANGED"]) == (
        "U",
        7,
        Decimal("2.50"),
        ",3,4,5,6,",
    )


def test_json_numbers_for_float_and_text_columns_keep_their_text(tmp_path: Path) -> None:
    writer = add_small(tmp_path, ins(f=5, price=7, doc="[1, 2.50]"))
    [staged] = writer.close()
    [row] = read_rows(tmp_path, staged)
    assert (row["f"], row["price"], row["doc"]) == (5.0, Decimal("7.00"), "[1, 2.50]")


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (ins(price="12345.67"), ["s.small", "'price'", "numeric(5,2)", "'12345.67'", "does not fit"]),
        (ins(price="1.234"), ["numeric(5,2)", "'1.234'"]),
        (ins(id=40000), ["'id'", "smallint", "40000"]),
        (ins(id="x"), ["'id'", "is not an integer"]),
        (ins(ok=1), ["'ok'", "is not a boolean"]),
        (ins(blob="zz"), ["'blob'", "bytea", "'zz'", "hex"]),
        (ins(f=True), ["'f'", "is not a number"]),
    ],
)
def test_value_that_does_not_fit_is_a_decode_error_naming_table_column_and_type(
    tmp_path: Path, change: Change, fragments: list[str]
) -> None:
    writer = add_small(tmp_path, change)
    with pytest.raises(DecodeError) as info:
        writer.close()
    for fragment in fragments:
        assert fragment in str(info.value)
    assert info.value.__cause__ is not None


@pytest.mark.parametrize(
    ("change", "error", "fragments"),
    [
        (ins(extra=1), UnknownColumn, ["s.small", "'extra'"]),
        (
            Change(op="U", schema="s", table="small", lsn=Lsn(1), values={"id": 1}, identity={"idx": 1}),
            SchemaError,
            ["'idx'"],
        ),
        (
            Change(op="U", schema="s", table="small", lsn=Lsn(1), values={"id": 1}),
            DecodeError,
            ["has no identity"],
        ),
        (
            Change(op="U", schema="s", table="small", lsn=Lsn(1), values={"id": 1}, identity={"price": 1}),
            DecodeError,
            ["identity (old key)", "lacks key column(s) ['id']"],
        ),
        (
            Change(op="D", schema="s", table="small", lsn=Lsn(1), identity={"price": 1}),
            DecodeError,
            ["identity", "lacks key column(s) ['id']"],
        ),
        (Change(op="D", schema="s", table="small", lsn=Lsn(1)), DecodeError, ["delete", "has no identity"]),
    ],
)
def test_change_that_does_not_match_the_schema_is_refused_at_add(
    tmp_path: Path, change: Change, error: type[Exception], fragments: list[str]
) -> None:
    writer = WindowWriter(tmp_path, lambda s, t: SMALL)
    with pytest.raises(error) as info:
        writer.add(change, Lsn(10), "2026-11-29 07:02:32+00")
    for fragment in fragments:
        assert fragment in str(info.value)


def test_insert_older_than_added_columns_reads_their_missing_value(tmp_path: Path) -> None:
    added = TableSchema(
        "s",
        "added",
        (
            Column("id", 1, "integer", 23),
            Column("plain", 2, "text", 25),
            Column("n", 3, "integer", 23, missing="5", has_default=True),
            Column("flag", 4, "boolean", 16, missing="t", has_default=True),
        ),
        ("id",),
    )
    writer = WindowWriter(tmp_path, lambda s, t: added)
    writer.add(Change("I", "s", "added", Lsn(1), {"id": 1}), Lsn(10), "2026-11-29 07:02:32+00")
    [staged] = writer.close()
    [row] = read_rows(tmp_path, staged)
    assert (row["id"], row["plain"], row["n"], row["flag"]) == (1, None, 5, True)


def test_renamed_and_dropped_columns_follow_their_aliases(tmp_path: Path) -> None:
    writer = WindowWriter(tmp_path, lambda s, t: SMALL)
    writer.alias(SMALL, "old_price", "price")
    writer.alias(SMALL, "gone", None)
    writer.add(ins(old_price="1.50", gone="x"), Lsn(10), "2026-11-29 07:02:32+00")
    [staged] = writer.close()
    [row] = read_rows(tmp_path, staged)
    assert row["price"] == Decimal("1.50")


def test_table_without_primary_key_is_a_schema_error(tmp_path: Path) -> None:
    keyless = TableSchema("s", "nokey", (Column("a", 1, "integer", 23),), ())
    writer = WindowWriter(tmp_path, lambda s, t: keyless)
    with pytest.raises(SchemaError, match="s.nokey has no primary key"):
        writer.add(Change(op="I", schema="s", table="nokey", lsn=Lsn(1), values={"a": 1}), Lsn(2), "x")


MOVES = TableSchema(
    "public",
    "moves",
    (
        Column("id", 1, "integer", 23, nullable=False),
        Column("big", 2, "text", 25, toastable=True),
        Column("n", 3, "integer", 23),
    ),
    ("id",),
)


def test_key_changes_carry_the_key_the_row_had_before_its_first_move(tmp_path: Path) -> None:
    writer = WindowWriter(tmp_path, lambda s, t: MOVES)
    ts_text = "2026-11-29 07:02:32.502865+00"

    def change(op: str, values: dict[str, Any] | None, identity: dict[str, Any] | None) -> None:
        writer.add(Change(op, "public", "moves", Lsn(5), values, identity), Lsn(100), ts_text)  # type: ignore[arg-type]

    change("U", {"id": 2, "n": 1}, {"id": 1})  # 1 -> 2, big unchanged (TOAST)
    change("U", {"id": 2, "n": 2}, {"id": 2})  # same row, still moved
    change("U", {"id": 3, "n": 3}, {"id": 2})  # 2 -> 3: same chain, origin stays 1
    change("I", {"id": 1, "big": "new", "n": 0}, None)  # key 1 reused by a new row
    change("U", {"id": 1, "n": 9}, {"id": 1})  # the new row 1 is not moved
    change("D", None, {"id": 3})
    change("U", {"id": 4, "n": 4}, {"id": 5})  # another chain
    change("T", None, None)
    change("U", {"id": 4, "n": 5}, {"id": 4})  # after a truncate nothing is moved
    [staged] = writer.close()
    rows = read_rows(tmp_path, staged, moves=True)
    got = [
        (
            r["_CDC_SEQ"],
            r["_CDC_OP"],
            r["id"],
            r["_CDC_MOVED"],
            r["_CDC_CHAIN"],
            r["origin:id"],
            r["_CDC_UNCHANGED"],
        )
        for r in rows
    ]
    assert got == [
        (0, "D", 1, False, None, None, None),
        (1, "U", 2, True, 1, 1, ",2,"),
        (2, "U", 2, False, 1, 1, ",2,"),
        (3, "D", 2, False, None, None, None),
        (4, "U", 3, True, 1, 1, ",2,"),
        (5, "I", 1, False, None, None, None),
        (6, "U", 1, False, None, None, ",2,"),
        (7, "D", 3, False, None, None, None),
        (8, "D", 5, False, None, None, None),
        (9, "U", 4, True, 9, 5, ",2,"),
        (11, "U", 4, False, None, None, ",2,"),
    ]
    assert staged.truncate == (100, 10)


def test_key_order_differing_from_column_order_keeps_origin_types(tmp_path: Path) -> None:
    table = TableSchema(
        "s",
        "ba",
        (Column("a", 1, "text", 25, nullable=False), Column("b", 2, "integer", 23, nullable=False)),
        ("b", "a"),
    )
    writer = WindowWriter(tmp_path, lambda s, t: table)
    writer.add(
        Change("U", "s", "ba", Lsn(1), {"a": "x", "b": 2}, {"a": "x", "b": 1}),
        Lsn(10),
        "2026-11-29 07:02:32+00",
    )
    [staged] = writer.close()
    rows = read_rows(tmp_path, staged, moves=True)
    assert [(r["_CDC_OP"], r["b"], r["origin:b"], r["origin:a"]) for r in rows] == [
        ("D", 1, None, None),
        ("U", 2, 1, "x"),
    ]
