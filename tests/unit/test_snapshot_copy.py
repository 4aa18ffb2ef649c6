"""copy_table without a server: a fake connection replays COPY output as PostgreSQL writes it (text
format with a vertical tab for NULL, one write per row). Parts must match the window writer's parts
for the same rows, split exactly, and a deadline or a bad value must cancel the COPY."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2.errors
import pyarrow.parquet as pq
import pytest
from psycopg2 import sql as pgsql

from cdc.batch import WindowWriter
from cdc.errors import DecodeError
from cdc.model import Change, Column, Lsn, StagedFile, TableSchema
from cdc.snapshot import (
    SnapshotDeadline,
    SnapshotPoint,
    arrow_schema,
    copy_table,
    in_snapshot,
    snapshot_row_lsn,
)
from cdc.snapshot.copy import PIPE_BYTES, READ_BUFFER_BYTES, READAHEAD_BLOCKS, WRITE_BUFFER_BYTES
from cdc.source.catalog import relation_sql

TABLE = TableSchema(
    "public",
    "Odd tbl",
    (
        Column("id", 1, "integer", 23, nullable=False),
        Column("t", 2, "text", 25, toastable=True),
        Column("b", 3, "bytea", 17, toastable=True),
        Column("n", 5, "numeric(12,2)", 1700),  # attnum 4 was dropped
        Column("f", 6, "double precision", 701),
        Column("ok", 7, "boolean", 16),
        Column("j", 8, "jsonb", 3802, toastable=True),
        Column("ts", 9, "timestamp with time zone", 1184),
        Column("arr", 10, "integer[]", 1007, toastable=True),
    ),
    ("id",),
)

# what COPY (SELECT id, t, encode(b, 'hex'), ...) TO STDOUT (FORMAT text, NULL E'\\x0b') writes
# (captured from PostgreSQL 15): tab-separated, a vertical tab for NULL, backslash escapes for line
# breaks, tabs, vertical tabs and backslashes
ROWS = [
    b"1\t\x0b\t\x0b\t\x0b\t\x0b\t\x0b\t\x0b\t\x0b\t\x0b\n",
    b'2\t\t\t0.00\t0\tf\t""\t2024-01-01 00:00:00+00\t{}\n',
    b'3\ta"b,c\\nd\\r\\ne\t00ff\t-1234567890.12\t-Infinity\tt\t{"k": "v\\\\n"}\t'
    b"2024-02-29 11:14:15.123456+00\t{1,NULL,3}\n",
    "4\théllo 🎉 \\\\.\tdeadbeef\t0.01\t1e+300\tt\tnull\t0044-03-15 12:00:00.5+00 BC\t[0:1]={7,8}\n".encode(),
    b"5\t\\\\.\t\x0b\t9999999999.99\tNaN\tf\t[1, 2.50]\tinfinity\t\x0b\n",
]
# the same rows as wal2json sends them (what the window writer converts)
WAL2JSON: list[dict[str, Any]] = [
    {"id": 1, "t": None, "b": None, "n": None, "f": None, "ok": None, "j": None, "ts": None, "arr": None},
    {
        "id": 2,
        "t": "",
        "b": "",
        "n": "0.00",
        "f": 0,
        "ok": False,
        "j": '""',
        "ts": "2024-01-01 00:00:00+00",
        "arr": "{}",
    },
    {
        "id": 3,
        "t": 'a"b,c\nd\r\ne',
        "b": "00ff",
        "n": "-1234567890.12",
        "f": "-Infinity",
        "ok": True,
        "j": '{"k": "v\\n"}',
        "ts": "2024-02-29 11:14:15.123456+00",
        "arr": "{1,NULL,3}",
    },
    {
        "id": 4,
        "t": "héllo 🎉 \\.",
        "b": "deadbeef",
        "n": "0.01",
        "f": "1e+300",
        "ok": True,
        "j": "null",
        "ts": "0044-03-15 12:00:00.5+00 BC",
        "arr": "[0:1]={7,8}",
    },
    {
        "id": 5,
        "t": "\\.",
        "b": None,
        "n": "9999999999.99",
        "f": "NaN",
        "ok": False,
        "j": "[1, 2.50]",
        "ts": "infinity",
        "arr": None,
    },
]
TAKEN_AT = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
POINT = SnapshotPoint("00000003-0000000E-1", Lsn(0x1920088), TAKEN_AT)


class FakeCursor:
    def __init__(self, conn: FakeConn) -> None:
        self.conn = conn

    def execute(self, statement: str, args: Any = None) -> None:
        self.conn.statements.append(statement if args is None else (statement, args))

    def fetchall(self) -> list[tuple[Any, ...]]:
        return []  # no heap of the table was rewritten since the snapshot

    def copy_expert(self, statement: Any, file: Any) -> None:
        self.conn.statements.append("COPY")
        for row in self.conn.rows:
            if self.conn.cancelled:
                raise psycopg2.errors.QueryCanceled("canceling statement due to user request")
            self.conn.written += 1
            file.write(row)
        if self.conn.fail_with is not None:  # the connection breaks in the middle of a row
            file.write(b"99\thalf a r")
            raise self.conn.fail_with

    def close(self) -> None:
        pass


class FakeConn:
    closed = False

    def __init__(self, rows: Iterable[bytes], fail_with: Exception | None = None) -> None:
        self.rows = rows
        self.statements: list[Any] = []
        self.cancelled = False
        self.written = 0
        self.fail_with = fail_with

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def cancel(self) -> None:
        self.cancelled = True


def _read(directory: Path, files: tuple[StagedFile, ...]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for f in files:
        rows += pq.read_table(directory / TABLE.stage_dir / f.name).to_pylist()
    return rows


def test_parts_equal_the_window_writers_parts_for_the_same_rows(tmp_path: Path) -> None:
    snap = copy_table(FakeConn(ROWS), TABLE, POINT, tmp_path / "copy")
    writer = WindowWriter(tmp_path / "stream", lambda s, t: TABLE)
    for values in WAL2JSON:
        writer.add(
            Change("I", TABLE.schema, TABLE.name, Lsn(1), values=values), Lsn(7), "2026-01-01 00:00:00+00"
        )
    (stream,) = writer.close()
    copied_schema = pq.read_schema(tmp_path / "copy" / TABLE.stage_dir / "part-00000.parquet")
    stream_schema = pq.read_schema(tmp_path / "stream" / TABLE.stage_dir / "part-00000.parquet")
    assert copied_schema.equals(stream_schema, check_metadata=True)
    assert copied_schema.equals(arrow_schema(TABLE), check_metadata=True)

    copied = pq.read_table(tmp_path / "copy" / TABLE.stage_dir / "part-00000.parquet")
    streamed = pq.read_table(tmp_path / "stream" / TABLE.stage_dir / "part-00000.parquet")
    for field in copied.schema:
        if field.name in ("_CDC_LSN", "_CDC_COMMIT_TS"):
            continue
        a, b = copied.column(field.name), streamed.column(field.name)
        assert [repr(x) for x in a.to_pylist()] == [repr(x) for x in b.to_pylist()], field.name
    assert snap.rows == 5 and snap.staged.ops == {"I": 5, "U": 0, "D": 0, "T": 0}
    assert snap.lsn == POINT.lsn


def test_null_and_empty_string_stay_distinct_and_values_are_exact(tmp_path: Path) -> None:
    snap = copy_table(FakeConn(ROWS), TABLE, POINT, tmp_path)
    rows = {r["C1"]: r for r in _read(tmp_path, snap.staged.files)}
    assert rows[1]["C2"] is None and rows[2]["C2"] == ""
    assert rows[1]["C3"] is None and rows[2]["C3"] == b""
    assert rows[3]["C2"] == 'a"b,c\nd\r\ne'
    assert rows[3]["C3"] == b"\x00\xff"
    assert str(rows[3]["C5"]) == "-1234567890.12"
    assert rows[4]["C2"] == "héllo 🎉 \\."
    assert rows[5]["C2"] == "\\."
    assert rows[2]["C8"] == '""' and rows[4]["C8"] == "null"  # JSON string "" and JSON null
    assert rows[4]["C10"] == '{"lower_bounds":[0],"values":[7,8]}'


def test_metadata_marks_rows_as_inserts_just_before_the_consistent_point(tmp_path: Path) -> None:
    snap = copy_table(FakeConn(ROWS), TABLE, POINT, tmp_path, part_max_rows=2)
    rows = _read(tmp_path, snap.staged.files)
    assert [r["_CDC_SEQ"] for r in rows] == [0, 1, 2, 3, 4]
    assert {r["_CDC_LSN"] for r in rows} == {POINT.lsn.value - 1}
    assert {r["_CDC_OP"] for r in rows} == {"I"}
    assert {r["_CDC_COMMIT_TS"] for r in rows} == {TAKEN_AT}
    assert {(r["_CDC_UNCHANGED"], r["_CDC_MOVED"], r["_CDC_CHAIN"], r["O1"]) for r in rows} == {
        (None, False, None, None)
    }


def text_row(key: int, text: str = "") -> bytes:
    """A COPY text-format row of TABLE with a key and a text, every other column NULL."""
    return f"{key}\t{text}".encode() + b"\t\x0b" * 7 + b"\n"


@pytest.mark.parametrize("chunk_bytes", [1, 1 << 20])
def test_parts_split_exactly_at_part_max_rows(tmp_path: Path, chunk_bytes: int) -> None:
    rows = [text_row(i, f"v{i}") for i in range(7)]
    seen: list[tuple[str, int, bool]] = []

    def on_part(path: Path, f: StagedFile) -> None:
        seen.append((f.name, f.rows, path.is_file()))

    snap = copy_table(
        FakeConn(rows), TABLE, POINT, tmp_path, part_max_rows=3, chunk_bytes=chunk_bytes, on_part=on_part
    )
    assert [f.rows for f in snap.staged.files] == [3, 3, 1]
    assert seen == [
        ("part-00000.parquet", 3, True),
        ("part-00001.parquet", 3, True),
        ("part-00002.parquet", 1, True),
    ]
    assert [r["C1"] for r in _read(tmp_path, snap.staged.files)] == list(range(7))
    assert [r["C2"] for r in _read(tmp_path, snap.staged.files)] == [f"v{i}" for i in range(7)]
    assert [r["_CDC_SEQ"] for r in _read(tmp_path, snap.staged.files)] == list(range(7))


def test_parts_split_at_part_max_bytes(tmp_path: Path) -> None:
    rows = [text_row(i, "x" * 1000) for i in range(10)]
    snap = copy_table(FakeConn(rows), TABLE, POINT, tmp_path, part_max_bytes=2500, chunk_bytes=1)
    assert len(snap.staged.files) >= 3
    assert sum(f.rows for f in snap.staged.files) == 10
    assert all(f.rows <= 3 for f in snap.staged.files)


def test_escapes_of_the_text_format_are_undone(tmp_path: Path) -> None:
    rows = [
        b"1\tline\\nbreak\\ttab\\rcr\\\\n not a break\t00ff" + b"\t\x0b" * 6 + b"\n",
        b"2\t\\\\N\t\x0b" + b"\t\x0b" * 6 + b"\n",  # the text \\N, then NULL
        b"3\t\\b\\f\\v\t" + b"\t\x0b" * 6 + b"\n",
        b"4\t\\v\t\x0b" + b"\t\x0b" * 6 + b"\n",  # a vertical tab (escaped), not NULL
    ]
    snap = copy_table(FakeConn(rows), TABLE, POINT, tmp_path, chunk_bytes=7)
    got = [(r["C1"], r["C2"], r["C3"]) for r in _read(tmp_path, snap.staged.files)]
    assert got == [
        (1, "line\nbreak\ttab\rcr\\n not a break", b"\x00\xff"),
        (2, "\\N", None),
        (3, "\b\f\v", b""),
        (4, "\v", None),
    ]


@pytest.mark.parametrize("at", [0, 150, 299])
def test_an_escape_anywhere_among_clean_blocks_is_undone(tmp_path: Path, at: int) -> None:
    texts = [f"v{i}" for i in range(300)]
    texts[at] = "a\\tb\\\\c"
    rows = [text_row(i, t) for i, t in enumerate(texts)]
    snap = copy_table(FakeConn(rows), TABLE, POINT, tmp_path, chunk_bytes=256, part_max_rows=64)
    got = [r["C2"] for r in _read(tmp_path, snap.staged.files)]
    assert got[at] == "a\tb\\c"
    assert got[:at] + got[at + 1 :] == [f"v{i}" for i in range(300) if i != at]


def test_a_row_longer_than_a_chunk_and_a_single_column_row_of_an_empty_string(tmp_path: Path) -> None:
    long = "é" * 5000
    snap = copy_table(FakeConn([text_row(1, long), text_row(2, "")]), TABLE, POINT, tmp_path, chunk_bytes=64)
    assert [(r["C1"], r["C2"]) for r in _read(tmp_path, snap.staged.files)] == [(1, long), (2, "")]
    keyonly = TableSchema("public", "k", (Column("k", 1, "text", 25, nullable=False),), ("k",))
    snap = copy_table(FakeConn([b"\n", b"a\n"]), keyonly, POINT, tmp_path / "k")
    rows = pq.read_table(tmp_path / "k" / keyonly.stage_dir / "part-00000.parquet").to_pylist()
    assert [r["C1"] for r in rows] == ["", "a"]  # an empty line is a row


def test_an_empty_table_has_no_parts(tmp_path: Path) -> None:
    snap = copy_table(FakeConn([]), TABLE, POINT, tmp_path)
    assert snap.rows == 0 and snap.staged.files == ()


def test_the_copy_imports_the_snapshot_in_one_repeatable_read_transaction(tmp_path: Path) -> None:
    conn = FakeConn(ROWS)
    copy_table(conn, TABLE, POINT, tmp_path)
    lock, (rewritten, _args) = conn.statements[3], conn.statements[4]
    assert conn.statements == [
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        ("SET TRANSACTION SNAPSHOT %s", (POINT.name,)),
        "SET LOCAL statement_timeout = 0",
        lock,
        (rewritten, {"t": '"public"."Odd tbl"'}),
        "COPY",
        "COMMIT",
    ]
    assert lock == pgsql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(relation_sql(TABLE))
    assert "ONLY" in str(lock)
    assert "c.relfilenode <> pg_relation_filenode(c.oid)" in rewritten


def many_rows(count: int, width: int = 100) -> Iterator[bytes]:
    """``count`` rows of about ``width`` bytes, made as they are read."""
    return (text_row(i, "x" * width) for i in range(count))


def bytes_bound(row: int, chunk: int) -> int:
    """Rows the COPY can still hand over once the parser cancels it: the block it parsed and the
    blocks Arrow read ahead, what the pipe reader buffered, what fills the pipe and the write
    buffer, and the row being written."""
    read = (1 + READAHEAD_BLOCKS) * chunk + READ_BUFFER_BYTES
    return (read + PIPE_BYTES + (PIPE_BYTES + WRITE_BUFFER_BYTES + row)) // row + 1


def test_the_deadline_cancels_the_copy_between_chunks(tmp_path: Path) -> None:
    conn = FakeConn(many_rows(100_000))
    row = len(text_row(0, "x" * 100))
    with pytest.raises(SnapshotDeadline) as err:
        copy_table(conn, TABLE, POINT, tmp_path, chunk_bytes=1000, deadline=time.monotonic() - 1)
    assert conn.cancelled
    assert conn.written <= bytes_bound(row, 1000) < 100_000  # the rest of the COPY was never read
    assert conn.statements[-1] == "ROLLBACK"
    assert err.value.table == "public.Odd tbl" and err.value.rows > 0


def test_a_value_that_does_not_fit_cancels_the_copy_and_names_the_column(tmp_path: Path) -> None:
    bad = b"1\t\x0b\t\x0b\tNaN" + b"\t\x0b" * 5 + b"\n"
    conn = FakeConn(itertools.chain([bad], many_rows(100_000)))
    row = len(text_row(0, "x" * 100))
    with pytest.raises(DecodeError, match=r"column 'n' \(numeric\(12,2\)\): value 'NaN'"):
        copy_table(conn, TABLE, POINT, tmp_path, chunk_bytes=100)
    assert conn.cancelled and conn.written <= bytes_bound(row, 100) < 100_000
    assert conn.statements[-1] == "ROLLBACK"


def test_copy_refuses_a_table_without_key(tmp_path: Path) -> None:
    from cdc.errors import SchemaError

    keyless = TableSchema("public", "k", TABLE.columns[:2], ())
    with pytest.raises(SchemaError, match="no primary key"):
        copy_table(FakeConn([]), keyless, POINT, tmp_path)


def test_a_commit_is_in_the_copy_exactly_when_it_is_below_the_consistent_point() -> None:
    s = Lsn(0x1920088)
    assert in_snapshot(Lsn(0x1920087), s)
    assert not in_snapshot(s, s)  # a commit record starting at S is decoded from S: not in the copy
    assert not in_snapshot(Lsn(0x1920089), s)
    assert in_snapshot(0x1000, 0x1920088)
    assert snapshot_row_lsn(s) == 0x1920087  # the MERGE applies a change iff commit LSN > this


@pytest.mark.parametrize("name", ["", "x'; DROP", "0000-", "abc"])
def test_snapshot_point_refuses_what_is_not_a_snapshot_name(name: str) -> None:
    with pytest.raises(ValueError):
        SnapshotPoint(name, Lsn(1), TAKEN_AT)


def test_a_number_its_column_cannot_hold_is_named(tmp_path: Path) -> None:
    small = TableSchema(
        "public",
        "s",
        (Column("id", 1, "integer", 23, nullable=False), Column("n", 2, "smallint", 21)),
        ("id",),
    )
    snap = copy_table(FakeConn([b"1\t-32768\n", b"2\t\x0b\n"]), small, POINT, tmp_path / "ok")
    rows = pq.read_table(tmp_path / "ok" / small.stage_dir / "part-00000.parquet").to_pylist()
    assert [(r["C1"], r["C2"]) for r in rows] == [(1, -32768), (2, None)] and snap.rows == 2
    with pytest.raises(
        DecodeError, match=r"column 'n' \(smallint\): a value after row 0 is not one of this type.*'40000'"
    ):
        copy_table(FakeConn([b"1\t5\n", b"2\t40000\n"]), small, POINT, tmp_path / "bad")


def test_a_copy_that_breaks_off_raises_its_own_error_not_the_half_row(tmp_path: Path) -> None:
    from cdc.errors import SourceUnavailable

    lost = psycopg2.OperationalError("server closed the connection unexpectedly")
    conn = FakeConn(many_rows(5000), fail_with=lost)
    with pytest.raises(SourceUnavailable, match="server closed the connection unexpectedly") as err:
        copy_table(conn, TABLE, POINT, tmp_path, chunk_bytes=4096)
    assert err.value.__cause__ is lost and not conn.cancelled
    assert conn.statements[-1] == "ROLLBACK"


def test_a_failing_upload_cancels_the_copy_and_is_raised(tmp_path: Path) -> None:
    def on_part(path: Path, f: StagedFile) -> None:
        raise OSError("No space left on device")

    conn = FakeConn(many_rows(100_000))
    with pytest.raises(OSError, match="No space left on device"):
        copy_table(conn, TABLE, POINT, tmp_path, part_max_rows=100, chunk_bytes=1000, on_part=on_part)
    row = len(text_row(0, "x" * 100))
    assert conn.cancelled and conn.written <= bytes_bound(row, 1000) + 100 < 100_000
    assert conn.statements[-1] == "ROLLBACK"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [b"1\tonly two fields\n"],
            r"table public.Odd tbl: .* after row 0 could not be read .*Expected 9 columns, got 2",
        ),
        (
            [text_row(1, "ok"), b"2\t\xff\xfe not UTF-8" + b"\t\x0b" * 7 + b"\n"],
            r"table public.Odd tbl column 't' \(text\): .* after row 1 could not be read .*invalid UTF8 .*check that the server sends UTF-8",
        ),
    ],
)
def test_copy_output_arrow_cannot_read_is_refused_naming_the_row_and_column(
    tmp_path: Path, rows: list[bytes], message: str
) -> None:
    with pytest.raises(DecodeError, match=message):
        copy_table(FakeConn(rows), TABLE, POINT, tmp_path, chunk_bytes=8)


def test_row_groups_go_to_the_writer_while_a_part_fills(tmp_path: Path) -> None:
    from cdc.snapshot.parts import ROW_GROUP_BYTES

    text = "y" * (ROW_GROUP_BYTES // 10)  # about ten rows fill a row group
    rows = [text_row(i, f"{i}{text}") for i in range(35)]
    snap = copy_table(FakeConn(rows), TABLE, POINT, tmp_path, part_max_rows=30, chunk_bytes=1 << 20)
    assert [(f.name, f.rows) for f in snap.staged.files] == [
        ("part-00000.parquet", 30),
        ("part-00001.parquet", 5),
    ]
    first = pq.ParquetFile(tmp_path / TABLE.stage_dir / "part-00000.parquet")
    assert first.metadata.num_row_groups >= 3 and first.metadata.num_rows == 30
    got = _read(tmp_path, snap.staged.files)
    assert [(r["C1"], r["C2"], r["_CDC_SEQ"]) for r in got] == [(i, f"{i}{text}", i) for i in range(35)]
