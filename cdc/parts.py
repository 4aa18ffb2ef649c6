"""Parquet parts: the columns of a table's waiting rows -> typed Arrow arrays -> a zstd Parquet file.

A part is written by ``write_part``; ``PartJob`` runs one on a background thread so that the
reader goes on decoding the stream meanwhile (Arrow's conversions, the Parquet encoder, zstd and
the checksum release the GIL). The window and the snapshot share the part layout (``part_schema``).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cdc.convert import COMMIT_TS_TYPE, commit_timestamps, convert_column
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
        pa.array(lsns, pa.int64()),
        pa.array(seqs, pa.int64()),
        pa.array(ops, pa.string()),
        commit_timestamps(table, list(stamps)),
        pa.array(unchanged, pa.string()),
        pa.array(moved, pa.bool_()),
        pa.array(chain, pa.int64()),
    ]
    position = {col.name: i for i, col in enumerate(table.columns)}
    origins = columns[n + len(META_COLUMNS) :]
    for col, values in zip(table.key_columns, origins, strict=True):
        arrays.append(convert_column(table, col, mappings[position[col.name]], values))
    return pa.Table.from_arrays(arrays, schema=schema)


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
    pq.write_table(data, path, compression="zstd")
    size, digest = file_digest(path)
    return StagedFile(name=path.name, rows=data.num_rows, bytes=size, sha256=digest)


class PartJob:
    """``write_part`` on a background thread. ``wait`` returns the file, or raises what the
    thread raised (a ``DecodeError`` for a value that does not fit, an ``OSError``...)."""

    def __init__(
        self,
        table: TableSchema,
        mappings: Sequence[TypeMapping],
        schema: pa.Schema,
        columns: list[list[Any]],
        path: Path,
        owner: Any = None,
    ) -> None:
        self.owner = owner  # whatever the caller wants back with the result
        self._args: tuple[Any, ...] | None = (table, mappings, schema, columns, path)
        self._result: StagedFile | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="cdc-part-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        args, self._args = self._args, None
        try:
            assert args is not None
            self._result = write_part(*args)
        except BaseException as exc:  # handed to the waiting thread by wait()
            self._error = exc

    def wait(self) -> StagedFile:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


def file_digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
