"""Parquet parts: the columns of a table's waiting rows -> typed Arrow arrays -> a zstd Parquet file.

A part is written by ``write_part``; ``cdc.part_writer`` runs it on a background thread so that
the reader goes on decoding the stream meanwhile (Arrow's conversions, the Parquet encoder, zstd
and the checksum release the GIL). The window and the snapshot share the part layout (``part_schema``).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cdc.convert import COMMIT_TS_TYPE, CONVERT_ERRORS, convert_column, joined_texts, shown
from cdc.errors import DecodeError
from cdc.model import StagedFile, TableSchema
from cdc.typemap import TypeMapping, column_mapping

META_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("_CDC_LSN", pa.int64()),
    ("_CDC_SEQ", pa.int64()),
    ("_CDC_OP", pa.string()),
    ("_CDC_COMMIT_TS", COMMIT_TS_TYPE),
    ("_CDC_UNCHANGED", pa.string()),
    ("_CDC_MOVED", pa.bool_()),
    ("_CDC_CHAIN", pa.int64()),
)
# After META_COLUMNS, one origin column (``Column.origin_name``) per key column: on the rows of a
# row whose key changed in this window (from the move on), the key it had before its first move,
# and in ``_CDC_CHAIN`` the seq of that first move. The MERGE takes unchanged TOAST values of a
# moved row from its origin. ``_CDC_MOVED`` marks the row a key change moved in.


# the window's parts and the snapshot's alike: no dictionary pages (the columns are mostly
# high-cardinality; trying a dictionary cost a third of the encoding time of a window's part and made
# it 5-30% larger, measured on a mixed table and a narrow one), and min/max statistics for the LSN and
# sequence only (nothing reads the others; they cost 30% of the encoding of a table with long strings)
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "use_dictionary": False,
    "write_statistics": ["_CDC_LSN", "_CDC_SEQ"],
}


def part_schema(table: TableSchema) -> pa.Schema:
    """The Arrow schema of a table's Parquet parts (window and snapshot alike)."""
    return pa.schema(
        [
            pa.field(
                col.stage_name,
                column_mapping(col).arrow,
                metadata={"pg_name": col.name, "pg_type": col.type_name},
            )
            for col in table.columns
        ]
        + [pa.field(name, typ) for name, typ in META_COLUMNS]
        + [pa.field(col.origin_name, column_mapping(col).arrow) for col in table.key_columns],
        metadata={"pg_schema": table.schema, "pg_table": table.name},
    )


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def part_table(
    table: TableSchema,
    mappings: Sequence[TypeMapping],
    schema: pa.Schema,
    columns: Sequence[Sequence[Any]],
) -> pa.Table:
    """A part's columns (the table's values in column order, then META_COLUMNS, then the origin
    key columns) as an Arrow table of ``schema``. A value that does not fit raises DecodeError."""
    n = len(table.columns)
    if len(columns) != n + len(META_COLUMNS) + len(table.key):
        raise ValueError(
            f"table {table.qualified}: a part needs {n + len(META_COLUMNS) + len(table.key)} columns"
        )
    arrays = [
        convert_column(table, col, mapping, columns[i])
        for i, (col, mapping) in enumerate(zip(table.columns, mappings, strict=True))
    ]
    lsns, seqs, ops, stamps, unchanged, moved, chain = columns[n : n + len(META_COLUMNS)]
    arrays += [
        _int64s(lsns),
        _int64s(seqs),
        _ops(ops),
        commit_timestamps(table, stamps),
        _all_null_or(unchanged, pa.string()),
        pa.repeat(False, len(moved)) if moved.count(False) == len(moved) else pa.array(moved, pa.bool_()),
        _all_null_or(chain, pa.int64()),
    ]
    position = {col.name: i for i, col in enumerate(table.columns)}
    origins = columns[n + len(META_COLUMNS) :]
    for col, values in zip(table.key_columns, origins, strict=True):
        arrays.append(convert_column(table, col, mappings[position[col.name]], values))
    return pa.Table.from_arrays(arrays, schema=schema)


# The metadata columns are built without a Python step per row where they can: one copy of the
# whole list, and Arrow (which releases the GIL) for the rest; any other value goes to pa.array.


def _int64s(values: Sequence[Any]) -> pa.Array:
    """``_CDC_LSN`` and ``_CDC_SEQ``: Python ints packed by ``struct``, a third of ``pa.array``'s time."""
    try:
        data = pa.py_buffer(struct.pack(f"={len(values)}q", *values))
    except struct.error:  # a None, or a number beyond int64: pa.array says what
        return pa.array(values, pa.int64())
    return pa.Array.from_buffers(pa.int64(), len(values), [None, data])


_OPS = frozenset({"I", "U", "D"})
_OP_DICTIONARY = pa.array(["I", "U", "D"], pa.string())
_OP_CODES = bytes.maketrans(b"IUD", b"\x00\x01\x02")


def _ops(ops: Sequence[Any]) -> pa.Array:
    """``_CDC_OP``: the letters joined into one byte string that becomes dictionary codes."""
    if not _OPS.issuperset(ops):
        return pa.array(ops, pa.string())
    codes = pa.py_buffer("".join(ops).encode().translate(_OP_CODES))
    indices = pa.Array.from_buffers(pa.int8(), len(ops), [None, codes])
    return pa.DictionaryArray.from_arrays(indices, _OP_DICTIONARY).cast(pa.string())


def _all_null_or(values: Sequence[Any], arrow: pa.DataType) -> pa.Array:
    """``_CDC_UNCHANGED`` and ``_CDC_CHAIN``, null on most rows of most parts."""
    if values and values[0] is None and values.count(None) == len(values):
        return pa.nulls(len(values), arrow)
    return pa.array(values, arrow)


def commit_timestamps(table: TableSchema, stamps: Sequence[str]) -> pa.Array:
    """``_CDC_COMMIT_TS``: each distinct text (one per transaction) is read once."""
    try:
        texts = joined_texts(stamps)
        codes = pc.dictionary_encode(pa.array(stamps, pa.string()) if texts is None else texts)
        return codes.dictionary.cast(COMMIT_TS_TYPE).take(codes.indices)
    except CONVERT_ERRORS as exc:
        raise DecodeError(
            f"table {table.qualified}: a commit timestamp is not in PostgreSQL's form "
            f"'2026-11-29 07:02:32.502865+00' ({exc}); first one: "
            f"{shown(stamps[0])}"
        ) from exc


def write_part(
    table: TableSchema,
    mappings: Sequence[TypeMapping],
    schema: pa.Schema,
    columns: list[list[Any]],
    path: Path,
) -> StagedFile:
    """Convert a part's columns (see ``part_table``) and write them as zstd Parquet at ``path``."""
    data = part_table(table, mappings, schema, columns)
    columns.clear()  # the Python values are no longer needed while the file is written
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(data, path, **PARQUET_OPTIONS)
    size, digest = file_digest(path)
    return StagedFile(name=path.name, rows=data.num_rows, bytes=size, sha256=digest)


def file_digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def rows_past(directory: Path, files: Sequence[StagedFile], max_lsn: int) -> tuple[int, dict[str, int]]:
    """The rows of the parts in ``directory`` committed past ``max_lsn`` (a transaction a window cut
    off at its end), and the changes they stand for by operation: an insert, an update or a delete
    each emit one row of their own ``_CDC_OP``, but a key change emits a delete and the moved row."""
    rows, ops = 0, {"I": 0, "U": 0, "D": 0}
    for f in files:
        if _lsn_at_most(pq.read_metadata(directory / f.name), max_lsn):
            continue  # its statistics say so: all but the last parts, as a rule
        part = pq.read_table(directory / f.name, columns=["_CDC_LSN", "_CDC_OP", "_CDC_MOVED"])
        past = part.filter(pc.greater(part["_CDC_LSN"], max_lsn))
        rows += past.num_rows
        for item in pc.value_counts(past["_CDC_OP"]).to_pylist():
            ops[item["values"]] += item["counts"]
        ops["D"] -= pc.sum(past["_CDC_MOVED"]).as_py() or 0
    return rows, ops


def _lsn_at_most(meta: pq.FileMetaData, max_lsn: int) -> bool:
    """Whether every row group's ``_CDC_LSN`` statistics show it at most ``max_lsn``."""
    if not meta.num_row_groups:
        return True
    leaves = meta.row_group(0)
    column = [leaves.column(j).path_in_schema for j in range(meta.num_columns)].index("_CDC_LSN")
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(column).statistics
        if stats is None or not stats.has_min_max or stats.max > max_lsn:
            return False
    return True
