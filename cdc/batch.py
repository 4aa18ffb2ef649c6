"""The window's writer: decoded changes -> typed Arrow columns -> zstd Parquet parts in a spool dir.

Each table's rows are buffered column by column (plain Python lists) and converted and written
as a part as soon as ``part_max_rows`` rows are waiting, so a large window never sits in memory.
Every row carries the metadata columns the MERGE orders by: ``_CDC_LSN`` (commit LSN of its
transaction), ``_CDC_SEQ`` (one counter for the whole window, in stream order), ``_CDC_OP``,
``_CDC_COMMIT_TS`` and ``_CDC_UNCHANGED`` (``",3,7,"``: attnums an update left out because their
TOASTed value did not change; the target keeps them).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cdc.convert import COMMIT_TS_TYPE, ValueLookup, commit_timestamps, convert_column, fill_from_source
from cdc.errors import DecodeError, SchemaError, UnknownColumn
from cdc.model import Change, Column, Lsn, StagedFile, StagedTable, TableSchema
from cdc.typemap import column_mapping

__all__ = ["META_COLUMNS", "StagedFile", "StagedTable", "WindowWriter", "part_name"]

log = logging.getLogger(__name__)

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


class _TableBuffer:
    """Rows of one table waiting to be written, plus what the window did to the table."""

    def __init__(self, table: TableSchema, spool_dir: Path) -> None:
        if not table.key:
            raise SchemaError(
                f"table {table.qualified} has no primary key: changes cannot be merged by key. "
                "Add a primary key or exclude the table from replication."
            )
        self.table = table
        self.mappings = [column_mapping(col) for col in table.columns]
        self.index = {col.name: i for i, col in enumerate(table.columns)}
        for key in table.key:
            if key not in self.index:
                raise SchemaError(f"table {table.qualified}: key column {key!r} is not among its columns")
        self.dir = spool_dir / table.stage_dir
        self.schema = part_schema(table)
        self.key_columns = table.key_columns
        self.aliases: dict[str, str | None] = {}
        self.values: list[list[Any]] = [[] for _ in table.columns]
        self.meta: list[list[Any]] = [[] for _ in META_COLUMNS]
        self.origins: list[list[Any]] = [[] for _ in table.key]
        # key now -> (key before its first move in this window, seq of that move)
        self.moved: dict[tuple[Any, ...], tuple[tuple[Any, ...], int]] = {}
        self.files: list[StagedFile] = []
        self.rows = 0
        self.ops = {"I": 0, "U": 0, "D": 0, "T": 0}
        self.truncate: tuple[int, int] | None = None

    @property
    def pending(self) -> int:
        return len(self.meta[0])

    def known(self, names: dict[str, Any], aliases: dict[str, str | None]) -> dict[str, Any]:
        """The values under their current column names: renamed columns under the new name,
        dropped columns left out. A name nobody knows raises ``UnknownColumn``."""
        if aliases:
            renamed: dict[str, Any] = {}
            for name, value in names.items():
                current = aliases.get(name, name)
                if current is not None:
                    renamed[current] = value
            names = renamed
        for name in names:
            if name not in self.index:
                raise UnknownColumn(self.table.schema, self.table.name, name)
        return names

    def append(
        self,
        row: list[Any],
        meta: tuple[int, int, str, str, str | None, bool, int | None],
        origin: tuple[Any, ...] | None,
    ) -> None:
        for column, value in zip(self.values, row, strict=True):
            column.append(value)
        for column, value in zip(self.meta, meta, strict=True):
            column.append(value)
        for i, column in enumerate(self.origins):
            column.append(None if origin is None else origin[i])
        self.rows += 1

    def flush(self, resolver: ValueLookup | None = None) -> StagedFile | None:
        if not self.pending:
            return None
        if resolver is not None:  # NaN/Infinity that wal2json sent as null: read them at the source
            fill_from_source(self.table, self.mappings, self.values, self.meta[2], self.meta[4], resolver)
        arrays: list[pa.Array] = []
        for i, (col, mapping) in enumerate(zip(self.table.columns, self.mappings, strict=True)):
            arrays.append(convert_column(self.table, col, mapping, self.values[i]))
            self.values[i] = []
        lsns, seqs, ops, stamps, unchanged, moved, chain = self.meta
        arrays += [
            pa.array(lsns, pa.int64()),
            pa.array(seqs, pa.int64()),
            pa.array(ops, pa.string()),
            commit_timestamps(self.table, stamps),
            pa.array(unchanged, pa.string()),
            pa.array(moved, pa.bool_()),
            pa.array(chain, pa.int64()),
        ]
        self.meta = [[] for _ in META_COLUMNS]
        for i, col in enumerate(self.key_columns):
            mapping = self.mappings[self.index[col.name]]
            arrays.append(convert_column(self.table, col, mapping, self.origins[i]))
            self.origins[i] = []
        data = pa.Table.from_arrays(arrays, schema=self.schema)
        name = part_name(len(self.files))
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / name
        pq.write_table(data, path, compression="zstd")
        size, digest = file_digest(path)
        staged = StagedFile(name=name, rows=data.num_rows, bytes=size, sha256=digest)
        self.files.append(staged)
        return staged

    def staged(self) -> StagedTable:
        return StagedTable(
            table=self.table,
            stage_dir=self.table.stage_dir,
            files=tuple(self.files),
            rows=self.rows,
            ops=dict(self.ops),
            truncate=self.truncate,
            columns_as_text=tuple(
                col.name for col, m in zip(self.table.columns, self.mappings, strict=True) if not m.exact
            ),
        )


class WindowWriter:
    """Collects one window's changes and writes them as Parquet parts under ``spool_dir``."""

    def __init__(
        self,
        spool_dir: Path,
        schema_for: Callable[[str, str], TableSchema],
        part_max_rows: int = 50_000,
        resolver: ValueLookup | None = None,
    ) -> None:
        if part_max_rows < 1:
            raise ValueError(f"part_max_rows must be at least 1, got {part_max_rows}")
        self._spool_dir = Path(spool_dir)
        self._schema_for = schema_for
        self._part_max_rows = part_max_rows
        self._resolver = resolver
        self._tables: dict[tuple[str, str], _TableBuffer] = {}
        self._seq = 0
        self._rows = 0
        self._bytes = 0
        self._result: list[StagedTable] | None = None

    @property
    def rows(self) -> int:
        """Rows emitted so far (a primary-key change emits two)."""
        return self._rows

    @property
    def bytes_written(self) -> int:
        """Bytes of the Parquet parts written so far."""
        return self._bytes

    def add(self, change: Change, commit_lsn: Lsn, commit_ts: str) -> None:
        """Add one change of the transaction that commits at ``commit_lsn``, in stream order."""
        if self._result is not None:
            raise RuntimeError("WindowWriter.add() after close()")
        buf = self._buffer(change.schema, change.table)
        lsn = commit_lsn.value
        if change.op == "T":
            buf.truncate = (lsn, self._seq)
            buf.moved.clear()
            self._seq += 1
        elif change.op == "I":
            values = _values(change, "values", buf)
            if len(values) < len(buf.table.columns):
                # columns added after this insert: the row reads their missing value (or NULL)
                values = {
                    **{c.name: _missing_value(c) for c in buf.table.columns if c.name not in values},
                    **values,
                }
            buf.moved.pop(tuple(values[k] for k in buf.table.key), None)
            self._emit(buf, _row(buf, values), lsn, "I", commit_ts, None)
        elif change.op == "U":
            identity = _values(change, "identity", buf)
            old = dict(zip(buf.table.key, _key(buf, identity, change), strict=True))
            # a key column the update left out (an unchanged TOASTed key) still has the old value
            values = old | _values(change, "values", buf)
            old_key = tuple(old.values())
            new_key = tuple(values[k] for k in buf.table.key)
            omitted = [col.attnum for col in buf.table.columns if col.name not in values]
            unchanged = "," + "".join(f"{attnum}," for attnum in omitted) if omitted else None
            if new_key != old_key:
                # a key change: delete the old key, then move the row in under the new one
                self._emit(buf, _row(buf, old), lsn, "D", commit_ts, None)
                origin, chain = buf.moved.pop(old_key, (old_key, self._seq))
                buf.moved[new_key] = (origin, chain)
                self._emit(buf, _row(buf, values), lsn, "U", commit_ts, unchanged, True, chain, origin)
            elif new_key in buf.moved:
                origin, chain = buf.moved[new_key]
                self._emit(buf, _row(buf, values), lsn, "U", commit_ts, unchanged, False, chain, origin)
            else:
                self._emit(buf, _row(buf, values), lsn, "U", commit_ts, unchanged)
        elif change.op == "D":
            old = dict(zip(buf.table.key, _key(buf, _values(change, "identity", buf), change), strict=True))
            buf.moved.pop(tuple(old.values()), None)
            self._emit(buf, _row(buf, old), lsn, "D", commit_ts, None)
        else:
            raise DecodeError(f"table {buf.table.qualified}: unknown change operation {change.op!r}")
        buf.ops[change.op] += 1

    def alias(self, table: TableSchema, name: str, current: str | None) -> None:
        """Read ``name`` in this table's changes as column ``current`` (None: ignore its values)."""
        self._buffer(table.schema, table.name).aliases[name] = current

    def has_rows(self, table: TableSchema) -> bool:
        buf = self._tables.get(table.ident)
        return buf is not None and (buf.rows > 0 or buf.truncate is not None)

    def replace_schema(self, table: TableSchema) -> None:
        """Use a newer schema for a table that has no rows in this window yet."""
        buf = self._tables.get(table.ident)
        if buf is not None and (buf.rows or buf.truncate is not None):
            raise RuntimeError(f"table {table.qualified} already has rows in this window")
        self._tables.pop(table.ident, None)

    def close(self) -> list[StagedTable]:
        """Write what is still buffered; return one ``StagedTable`` per table the window touched."""
        if self._result is None:
            for buf in self._tables.values():
                self._flush(buf)
            self._result = [buf.staged() for buf in self._tables.values()]
        return list(self._result)

    def _buffer(self, schema: str, table: str) -> _TableBuffer:
        buf = self._tables.get((schema, table))
        if buf is None:
            buf = _TableBuffer(self._schema_for(schema, table), self._spool_dir)
            for col, mapping in zip(buf.table.columns, buf.mappings, strict=True):
                if mapping.kind == "text":
                    log.warning(
                        "table %s column %r (type %s) has no exact Arrow/Snowflake mapping: it travels "
                        "as its PostgreSQL text form",
                        buf.table.qualified,
                        col.name,
                        col.type_name,
                        extra={"table": buf.table.qualified, "column": col.name, "pg_type": col.type_name},
                    )
            self._tables[(schema, table)] = buf
        return buf

    def _emit(
        self,
        buf: _TableBuffer,
        row: list[Any],
        lsn: int,
        op: str,
        ts: str,
        unchanged: str | None,
        moved: bool = False,
        chain: int | None = None,
        origin: tuple[Any, ...] | None = None,
    ) -> None:
        buf.append(row, (lsn, self._seq, op, ts, unchanged, moved, chain), origin)
        self._seq += 1
        self._rows += 1
        if buf.pending >= self._part_max_rows:
            self._flush(buf)

    def _flush(self, buf: _TableBuffer) -> None:
        staged = buf.flush(self._resolver)
        if staged is not None:
            self._bytes += staged.bytes


def _values(change: Change, what: str, buf: _TableBuffer) -> dict[str, Any]:
    values = change.values if what == "values" else change.identity
    if values is None:
        op = {"I": "insert", "U": "update", "D": "delete"}.get(change.op, change.op)
        raise DecodeError(
            f"table {buf.table.qualified}: {op} at LSN {change.lsn} has no {what}; the table needs a "
            "primary key (or REPLICA IDENTITY) and the slot the pipeline's wal2json options"
        )
    return buf.known(values, buf.aliases)


def _missing_value(column: Column) -> Any:
    """PostgreSQL's text form of a column's missing value, as wal2json would have sent it."""
    text = column.missing
    if text is None:
        return None
    kind = column_mapping(column).kind
    if kind == "int":
        return int(text)
    if kind == "bool":
        return text in ("t", "true")
    if kind == "bytes" and text.startswith("\\x"):
        return text[2:]
    return text


def _key(buf: _TableBuffer, values: dict[str, Any], change: Change) -> list[Any]:
    missing = [k for k in buf.table.key if k not in values]
    if missing:
        raise DecodeError(
            f"table {buf.table.qualified}: the identity (old key) of the change at LSN {change.lsn} "
            f"lacks key column(s) {missing} (key {list(buf.table.key)}); check the table's primary key "
            "and REPLICA IDENTITY"
        )
    return [values[k] for k in buf.table.key]


def _row(buf: _TableBuffer, values: dict[str, Any]) -> list[Any]:
    row: list[Any] = [None] * len(buf.table.columns)
    for name, value in values.items():
        row[buf.index[name]] = value
    return row


def file_digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()
