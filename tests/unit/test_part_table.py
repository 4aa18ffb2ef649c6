"""A part's columns -> the Arrow table staged for them: the metadata columns built without a Python
step per row hold exactly what ``pa.array`` builds from the same values, and take any other value
the way ``pa.array`` takes it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cdc.convert import COMMIT_TS_TYPE
from cdc.errors import DecodeError
from cdc.model import Column, TableSchema
from cdc.parts import META_COLUMNS, commit_timestamps, part_schema, part_table, write_part
from cdc.typemap import column_mapping

TABLE = TableSchema(
    "s",
    "t",
    (Column("id", 1, "bigint", 20), Column("name", 2, "text", 25), Column("tags", 3, "text[]", 1009)),
    ("id",),
)
MAPPINGS = [column_mapping(c) for c in TABLE.columns]
SCHEMA = part_schema(TABLE)
TS1 = "2026-11-29 07:02:32.502865+00"
TS2 = "2026-11-29 07:02:33+00"


def part(**meta: list[Any]) -> list[list[Any]]:
    """Three rows of a part: values, then META_COLUMNS (overridable by name), then the origin key."""
    columns: dict[str, list[Any]] = {
        "_CDC_LSN": [100, 100, 200],
        "_CDC_SEQ": [7, 8, 9],
        "_CDC_OP": ["I", "U", "D"],
        "_CDC_COMMIT_TS": [TS1, TS1, TS2],
        "_CDC_UNCHANGED": [None, None, None],
        "_CDC_MOVED": [False, False, False],
        "_CDC_CHAIN": [None, None, None],
    }
    columns.update(meta)
    values = [[1, 2, 3], ["a", None, "c"], ["{x,NULL}", None, "{x,NULL}"]]
    return values + [columns[name] for name, _ in META_COLUMNS] + [[None, None, None]]


def reference(columns: list[list[Any]]) -> pa.Table:
    """The part as plain ``pa.array`` builds it, column by column."""
    n = len(TABLE.columns)
    arrays = [pa.array(columns[0], pa.int64()), pa.array(columns[1], pa.string())]
    arrays.append(pa.array([None if v is None else '["x",null]' for v in columns[2]], pa.string()))
    for (_, arrow), values in zip(META_COLUMNS, columns[n : n + len(META_COLUMNS)], strict=True):
        texts = arrow == COMMIT_TS_TYPE
        arrays.append(pa.array(values, pa.string()).cast(arrow) if texts else pa.array(values, arrow))
    arrays.append(pa.array(columns[-1], pa.int64()))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


@pytest.mark.parametrize(
    "meta",
    [
        {},
        {"_CDC_OP": ["U", "U", "U"], "_CDC_UNCHANGED": [",2,", None, ",2,3,"]},
        {"_CDC_MOVED": [False, True, False], "_CDC_CHAIN": [None, 8, 8]},
        {"_CDC_OP": ["I", "T", "D"]},  # a letter that is not I/U/D: built by pa.array
        {"_CDC_LSN": [0, (1 << 63) - 1, 5], "_CDC_SEQ": [None, 1, 2]},
        {"_CDC_UNCHANGED": [None, None, ",3,"], "_CDC_CHAIN": [None, None, 0]},
        {"_CDC_COMMIT_TS": [TS2, TS1, TS2]},
        {"_CDC_COMMIT_TS": [TS1, None, TS1]},
    ],
    ids=["common", "updates", "moved", "other-op", "int64-range", "late-values", "repeated-ts", "null-ts"],
)
def test_metadata_columns_hold_what_pa_array_builds(meta: dict[str, list[Any]]) -> None:
    columns = part(**meta)
    table = part_table(TABLE, MAPPINGS, SCHEMA, columns)
    assert table.equals(reference(columns))
    assert table.schema.equals(SCHEMA, check_metadata=True)


def test_the_values_of_the_common_part_are_exact() -> None:
    rows = part_table(TABLE, MAPPINGS, SCHEMA, part()).to_pylist()
    assert [(r["_CDC_LSN"], r["_CDC_SEQ"], r["_CDC_OP"], r["_CDC_MOVED"]) for r in rows] == [
        (100, 7, "I", False),
        (100, 8, "U", False),
        (200, 9, "D", False),
    ]
    utc = dt.UTC
    assert [r["_CDC_COMMIT_TS"] for r in rows] == [
        dt.datetime(2026, 11, 29, 7, 2, 32, 502865, tzinfo=utc),
        dt.datetime(2026, 11, 29, 7, 2, 32, 502865, tzinfo=utc),
        dt.datetime(2026, 11, 29, 7, 2, 33, tzinfo=utc),
    ]
    assert [r["C3"] for r in rows] == ['["x",null]', None, '["x",null]']
    assert {r["_CDC_UNCHANGED"] for r in rows} == {None}
    assert {r["_CDC_CHAIN"] for r in rows} == {None}


def test_an_lsn_beyond_int64_fails_as_pa_array_fails() -> None:
    with pytest.raises(OverflowError):
        part_table(TABLE, MAPPINGS, SCHEMA, part(_CDC_LSN=[1 << 63, 1, 1]))


def test_an_empty_part_is_an_empty_table() -> None:
    table = part_table(
        TABLE, MAPPINGS, SCHEMA, [[] for _ in range(len(TABLE.columns) + len(META_COLUMNS) + 1)]
    )
    assert table.num_rows == 0
    assert table.schema.equals(SCHEMA)


@pytest.mark.parametrize(
    ("stamps", "first"),
    [
        ([TS1, "2026-11-29T07:02:32Z?"], repr(TS1)),
        (["yesterday", TS1], "'yesterday'"),
        (["x\ny", TS1], "'x\\ny'"),  # a line break: not one join
        (["9" * 100], repr("9" * 100)[:80] + "..."),
    ],
)
def test_a_commit_timestamp_in_another_form_is_a_decode_error(stamps: list[str], first: str) -> None:
    with pytest.raises(DecodeError) as caught:
        commit_timestamps(TABLE, stamps)
    message = str(caught.value)
    assert message.startswith("table s.t: a commit timestamp is not in PostgreSQL's form")
    assert message.endswith(f"; first one: {first}")


def test_commit_timestamps_read_each_text_as_its_utc_instant() -> None:
    stamps = [TS1] * 3 + ["0044-03-15 13:14:15+00", TS2] + [TS1]
    assert commit_timestamps(TABLE, stamps).equals(pa.array(stamps, pa.string()).cast(COMMIT_TS_TYPE))


def test_a_written_part_reads_back_as_its_table(tmp_path: Path) -> None:
    columns = part(_CDC_MOVED=[False, True, False], _CDC_CHAIN=[None, 8, 8])
    expected = reference(columns)
    staged = write_part(TABLE, MAPPINGS, SCHEMA, columns, tmp_path / "part-00000.parquet")
    assert columns == []  # the values are let go once converted
    assert staged.rows == 3
    written = pq.read_table(tmp_path / "part-00000.parquet")
    assert written.equals(expected)
    assert written.schema.equals(SCHEMA, check_metadata=True)
    group = pq.ParquetFile(tmp_path / "part-00000.parquet").metadata.row_group(0)
    chunks = [group.column(i) for i in range(group.num_columns)]
    assert {c.compression for c in chunks} == {"ZSTD"}
    assert not [c.path_in_schema for c in chunks if "DICTIONARY" in " ".join(c.encodings)]
    assert [c.path_in_schema for c in chunks if c.is_stats_set] == ["_CDC_LSN", "_CDC_SEQ"]
    lsn = chunks[SCHEMA.names.index("_CDC_LSN")].statistics
    assert (lsn.min, lsn.max) == (100, 200)
