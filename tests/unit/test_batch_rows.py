"""WindowWriter fed as the stream feeds it (``RowChange`` from ``parse_row``, parts written on a
background thread) stages exactly what it stages for ``Change`` values written in line."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from test_batch import FIXTURES, schema_for

from cdc.batch import WindowWriter
from cdc.errors import DecodeError, UnknownColumn
from cdc.model import Begin, Change, Column, Commit, Lsn, TableSchema
from cdc.parts import part_schema, part_table
from cdc.source.wal2json import Field, RowChange, RowInsert, parse_message, parse_row
from cdc.typemap import column_mapping

SCENARIOS = (
    "insert_types",
    "update",
    "update_toast",
    "key_change",
    "delete",
    "truncate",
    "odd_names",
    "multi_statement",
    "replica_full",
)


def feed(writer: WindowWriter, rows: bool) -> None:
    current: Begin | None = None
    for scenario in SCENARIOS:
        for line in (FIXTURES / f"{scenario}.jsonl").read_text().splitlines():
            message = parse_row(line.encode()) if rows else parse_message(line)
            if isinstance(message, Begin):
                current = message
            elif isinstance(message, Commit):
                current = None
            elif isinstance(message, RowChange | Change):
                assert current is not None
                writer.add(message, current.commit_lsn, current.commit_ts)


def staged_parts(spool: Path, writer: WindowWriter) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for staged in writer.close():
        rows: list[dict[str, Any]] = []
        for f in staged.files:
            rows += pq.read_table(spool / staged.stage_dir / f.name).to_pylist()
        out[staged.table.qualified] = rows
    return out


@pytest.mark.parametrize("part_max_rows", [1, 2, 50_000])
def test_stream_rows_in_background_stage_what_changes_stage_in_line(
    tmp_path: Path, part_max_rows: int
) -> None:
    inline = WindowWriter(tmp_path / "a", schema_for, part_max_rows)
    feed(inline, rows=False)
    background = WindowWriter(tmp_path / "b", schema_for, part_max_rows, background=True)
    feed(background, rows=True)
    expected = staged_parts(tmp_path / "a", inline)
    assert staged_parts(tmp_path / "b", background) == expected
    assert sum(len(rows) for rows in expected.values()) == inline.rows == background.rows
    assert inline.bytes_written == background.bytes_written
    assert [(s.table.qualified, [f.name for f in s.files], s.ops) for s in inline.close()] == [
        (s.table.qualified, [f.name for f in s.files], s.ops) for s in background.close()
    ]


SMALL = TableSchema(
    "s",
    "small",
    (Column("id", 1, "smallint", 21), Column("price", 2, "numeric(5,2)", 1700)),
    ("id",),
)


def test_a_column_listed_twice_is_a_decode_error_at_add(tmp_path: Path) -> None:
    writer = WindowWriter(tmp_path, lambda s, t: SMALL)
    change = RowInsert("s", "small", "0/10", columns=[Field("id", 1), Field("id", 2)])
    with pytest.raises(DecodeError, match=r"lists column 'id' twice in \"columns\""):
        writer.add(change, Lsn(10), "2026-11-29 07:02:32+00")
    assert writer.rows == 0


def test_a_part_that_fails_in_the_background_fails_the_next_flush_or_close(tmp_path: Path) -> None:
    writer = WindowWriter(tmp_path, lambda s, t: SMALL, part_max_rows=1, background=True)
    bad = RowInsert("s", "small", "0/10", columns=[Field("id", 1), Field("price", "12345.67")])
    writer.add(bad, Lsn(10), "2026-11-29 07:02:32+00")  # full: handed to the part writer
    with pytest.raises(DecodeError, match="'price'.*'12345.67'.*does not fit"):
        writer.close()


T1, T2 = "2026-11-29 07:02:32.5+00", "2026-11-29 07:02:33+00"


def test_waiting_rows_are_sliced_into_columns_in_part_order(tmp_path: Path) -> None:
    writer = WindowWriter(tmp_path, lambda s, t: SMALL, part_max_rows=10)
    writer.add(RowInsert("s", "small", "0/1", columns=[Field("id", 1), Field("price", "1.50")]), Lsn(7), T1)
    writer.add(
        parse_row(
            b'{"action":"U","lsn":"0/2","schema":"s","table":"small","columns":[{"name":"id","value":2},'
            b'{"name":"price","value":2.25}],"identity":[{"name":"id","value":1}]}'
        ),  # type: ignore[arg-type]
        Lsn(8),
        T2,
    )
    buf = writer._tables[("s", "small")]
    assert buf.pending == 3 and len(buf.waiting) == 3 * buf.width
    columns = buf.take(None)
    assert columns == [
        [1, 1, 2],  # id
        ["1.50", None, "2.25"],  # price
        [7, 8, 8],  # _CDC_LSN
        [0, 1, 2],  # _CDC_SEQ
        ["I", "D", "U"],  # _CDC_OP (a key change: delete the old key, move the row in)
        [T1, T2, T2],  # _CDC_COMMIT_TS
        [None, None, None],  # _CDC_UNCHANGED
        [False, False, True],  # _CDC_MOVED
        [None, None, 2],  # _CDC_CHAIN: the seq of the move
        [None, None, 1],  # origin of the key column
    ]
    assert buf.pending == 0 and buf.waiting == []
    table = part_table(SMALL, [column_mapping(c) for c in SMALL.columns], part_schema(SMALL), columns)
    assert table.column("C2").to_pylist() == [Decimal("1.50"), None, Decimal("2.25")]
    assert table.column("O1").to_pylist() == [None, None, 1]


# a table whose column w (attnum 2) was dropped and added again (attnum 3), and whose n is attnum 4
READDED = TableSchema(
    "s",
    "t",
    (
        Column("id", 1, "integer", 23, nullable=False),
        Column("w", 3, "text", 25),
        Column("m", 4, "integer", 23),
    ),
    ("id",),
)


def test_values_go_to_the_column_of_their_attnum_not_of_their_name(tmp_path: Path) -> None:
    writer = WindowWriter(tmp_path, lambda s, t: READDED)
    old = RowInsert("s", "t", "0/1", columns=[Field("id", 1, 1), Field("w", 5, 2), Field("n", 6, 4)])
    with pytest.raises(UnknownColumn) as unknown:  # the old w: the reader decides (dropped)
        writer.add(old, Lsn(7), T1)
    assert unknown.value.column == "w" and writer.rows == 0
    writer.alias_attnum(READDED, 2, None)
    writer.add(old, Lsn(7), T1)  # the old w left out; n (attnum 4, renamed since) lands in m
    new = RowInsert("s", "t", "0/2", columns=[Field("id", 2, 1), Field("w", "x", 3), Field("m", 8, 4)])
    writer.add(new, Lsn(8), T2)
    columns = writer._tables[("s", "t")].take(None)
    assert columns[:3] == [[1, 2], [None, "x"], [6, 8]]
