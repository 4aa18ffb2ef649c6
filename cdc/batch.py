"""The window's writer: decoded changes -> rows per table -> Parquet parts in a spool dir.

Each table's rows wait as plain lists (values in column order, then the metadata) and are handed
to ``cdc.parts`` as soon as ``part_max_rows`` rows are waiting, so a large window never sits in
memory; that part is converted and written on a background thread while reading goes on. Every
row carries the metadata columns the MERGE orders by: ``_CDC_LSN`` (commit LSN of its
transaction), ``_CDC_SEQ`` (one counter for the whole window, in stream order), ``_CDC_OP``,
``_CDC_COMMIT_TS`` and ``_CDC_UNCHANGED`` (``",3,7,"``: attnums an update left out because their
TOASTed value did not change; the target keeps them).

``add`` takes a ``Change`` or anything shaped like the stream's row changes (``RowLike``: the
operation, the names and the values as lists of name/value fields). A complete row whose columns
come in table order, as wal2json sends them, is placed without a dict.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from cdc.errors import DecodeError, SchemaError, UnknownColumn
from cdc.model import Change, Column, FieldLike, Lsn, RowLike, StagedFile, StagedTable, TableSchema
from cdc.nan_fill import ValueLookup, fill_from_source
from cdc.part_writer import PartWriter
from cdc.parts import META_COLUMNS, file_digest, part_name, part_schema, write_part
from cdc.typemap import column_mapping

__all__ = [
    "META_COLUMNS",
    "RowLike",
    "StagedFile",
    "StagedTable",
    "WindowWriter",
    "file_digest",
    "part_name",
    "part_schema",
]

log = logging.getLogger(__name__)


class _Pair(NamedTuple):
    name: str
    value: Any
    position: int | None = None


class _Row(NamedTuple):
    op: str
    schema: str
    table: str
    lsn: Lsn
    columns: list[_Pair] | None
    identity: list[_Pair] | None

    @staticmethod
    def of(change: Change) -> _Row:
        def pairs(values: dict[str, Any] | None, positions: Any = ()) -> list[_Pair] | None:
            if values is None:
                return None
            at = list(positions or ()) + [None] * (len(values) - len(positions or ()))
            return [_Pair(k, v, a) for (k, v), a in zip(values.items(), at, strict=True)]

        return _Row(
            change.op,
            change.schema,
            change.table,
            change.lsn,
            pairs(change.values, change.positions),
            pairs(change.identity),
        )


class _TableBuffer:
    """Rows of one table waiting to be written, plus what the window did to the table.

    Waiting rows sit one after the other in one flat list (``width`` values each: the table's
    values in column order, then the META_COLUMNS values, then the origin key columns), so a row
    costs no container of its own; a flush slices the list into columns. Rows and inserts are
    counted when they leave the list, so adding a row updates no counter.
    """

    def __init__(self, table: TableSchema, spool_dir: Path, part_max_rows: int) -> None:
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
        self.names = [col.name for col in table.columns]
        self.key_names = list(table.key)
        self.key_index = [self.index[k] for k in table.key]
        self.no_origin = (None,) * len(table.key)
        self.width = len(table.columns) + len(META_COLUMNS) + len(table.key)
        self.full = part_max_rows * self.width  # ``waiting`` holds a whole part at this length
        self.op_index = len(table.columns) + [name for name, _ in META_COLUMNS].index("_CDC_OP")
        self.aliases: dict[str, str | None] = {}
        # a change's column is the table's column of the same attnum (wal2json's positions): a
        # column dropped and added again under its name, or renamed, is never taken for another
        self.attnums = [col.attnum for col in table.columns]
        self.by_attnum = {col.attnum: col.name for col in table.columns}
        self.attnum_aliases: dict[int, str | None] = {}
        self.waiting: list[Any] = []
        # key now -> (key before its first move in this window, seq of that move)
        self.moved: dict[tuple[Any, ...], tuple[tuple[Any, ...], int]] = {}
        self.files: list[StagedFile] = []
        self.parts = 0  # parts started (a part is added to ``files`` once written)
        self.taken = 0  # rows that left ``waiting`` for a part
        self.ops = {"I": 0, "U": 0, "D": 0, "T": 0}  # inserts counted as they leave ``waiting``
        # (commit LSN, seq) of each TRUNCATE, in stream order: the staged one is the last of those
        # committed within the window (a transaction the window cuts off is read again, whole, later)
        self.truncates: list[tuple[int, int]] = []

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

    def in_order(self, fields: Sequence[FieldLike] | None) -> list[Any] | None:
        """The values of a complete row listed in column order (what wal2json sends for every
        insert, and for an update that changed no TOASTed value); None for anything else."""
        return list(map(_VALUE, fields)) if fields and self.complete(fields) else None

    def complete(self, fields: Sequence[FieldLike]) -> bool:
        """Whether the fields are the table's columns in order: by attnum when the decoder sent
        positions (a column's name may have changed meanwhile, its attnum never), else by name."""
        if fields[0].position is not None:
            return list(map(_POSITION, fields)) == self.attnums
        return len(fields) == len(self.names) and not self.aliases and list(map(_NAME, fields)) == self.names

    def key_of(self, fields: Sequence[FieldLike]) -> tuple[Any, ...] | None:
        """The key of an identity that lists exactly the key columns, in key order; else None."""
        if len(fields) != len(self.key_names) or self.aliases or list(map(_NAME, fields)) != self.key_names:
            return None
        return tuple(map(_VALUE, fields))

    def key_row(self, key: tuple[Any, ...]) -> list[Any]:
        row: list[Any] = [None] * len(self.names)
        for i, value in zip(self.key_index, key, strict=True):
            row[i] = value
        return row

    @property
    def pending(self) -> int:
        """Rows waiting in the buffer."""
        return len(self.waiting) // self.width

    @property
    def rows(self) -> int:
        """Rows emitted in this window (a primary-key change emits two)."""
        return self.taken + self.pending

    def take(self, resolver: ValueLookup | None) -> list[list[Any]]:
        """The waiting rows as columns (values, META_COLUMNS, origins); the buffer is empty after."""
        flat, self.waiting = self.waiting, []
        columns = [flat[i :: self.width] for i in range(self.width)]
        del flat
        self.taken += len(columns[0])
        self.ops["I"] += columns[self.op_index].count("I")  # each insert emits one "I" row, nothing else does
        if resolver is not None:  # NaN/Infinity that wal2json sent as null: read them at the source
            n = len(self.names)
            fill_from_source(self.table, self.mappings, columns[:n], columns[n + 2], columns[n + 4], resolver)
        return columns

    def staged(self, max_lsn: int | None) -> StagedTable:
        committed = [t for t in self.truncates if max_lsn is None or t[0] <= max_lsn]
        return StagedTable(
            table=self.table,
            stage_dir=self.table.stage_dir,
            files=tuple(self.files),
            rows=self.rows,
            ops={**self.ops, "T": len(committed)},  # a TRUNCATE past max_lsn is counted by the next window
            truncate=committed[-1] if committed else None,
            columns_as_text=tuple(
                col.name for col, m in zip(self.table.columns, self.mappings, strict=True) if not m.exact
            ),
        )


class WindowWriter:
    """Collects one window's changes and writes them as Parquet parts under ``spool_dir``.

    A table's rows leave the buffer as soon as ``part_max_rows`` are waiting. With ``background``
    the part is converted and written on a background thread while changes go on being added
    (``cdc.part_writer``: one part at a time, the reader waits only when two more are waiting); an
    error of a part surfaces at a later flush or at ``close``.
    """

    def __init__(
        self,
        spool_dir: Path,
        schema_for: Callable[[str, str], TableSchema],
        part_max_rows: int = 50_000,
        resolver: ValueLookup | None = None,
        background: bool = False,
    ) -> None:
        if part_max_rows < 1:
            raise ValueError(f"part_max_rows must be at least 1, got {part_max_rows}")
        self._spool_dir = Path(spool_dir)
        self._schema_for = schema_for
        self._part_max_rows = part_max_rows
        self._resolver = resolver
        self._tables: dict[tuple[str, str], _TableBuffer] = {}
        self._seq = 0
        self._bytes = 0
        self._writer = PartWriter() if background else None
        self._result: list[StagedTable] | None = None

    @property
    def rows(self) -> int:
        """Rows emitted so far (a primary-key change emits two)."""
        return sum(buf.rows for buf in self._tables.values())

    @property
    def bytes_written(self) -> int:
        """Bytes of the Parquet parts written so far."""
        return self._bytes

    def add(self, change: Change | RowLike, commit_lsn: Lsn, commit_ts: str) -> None:
        """Add one change of the transaction that commits at ``commit_lsn``, in stream order."""
        if self._result is not None:
            raise RuntimeError("WindowWriter.add() after close()")
        row: RowLike = _Row.of(change) if isinstance(change, Change) else change
        buf = self._tables.get((row.schema, row.table)) or self._buffer(row.schema, row.table)
        lsn = commit_lsn.value
        op = row.op
        if op == "I":
            # the common case inline: every column, in table order (see _TableBuffer.in_order)
            fields = row.columns
            waiting = buf.waiting
            if fields and buf.complete(fields):
                waiting += map(_VALUE, fields)
            else:
                waiting += _insert_values(buf, row)
            if buf.moved:
                base = len(waiting) - len(buf.names)
                buf.moved.pop(tuple(waiting[base + i] for i in buf.key_index), None)
            waiting += (lsn, self._seq, "I", commit_ts, None, False, None)
            waiting += buf.no_origin
            self._seq += 1
            if len(waiting) >= buf.full:
                self._flush(buf)
            return
        if op == "U":
            self._update(buf, row, lsn, commit_ts)
        elif op == "D":
            key = buf.key_of(row.identity) if row.identity is not None else None
            if key is None:
                old = _values(row, "identity", buf)
                key = tuple(_key(buf, old, row))
            if buf.moved:
                buf.moved.pop(key, None)
            self._emit(buf, buf.key_row(key), lsn, "D", commit_ts, None)
        elif op == "T":
            buf.truncates.append((lsn, self._seq))
            buf.moved.clear()
            self._seq += 1
        else:
            raise DecodeError(f"table {buf.table.qualified}: unknown change operation {op!r}")
        buf.ops[op] += 1

    def _update(self, buf: _TableBuffer, change: RowLike, lsn: int, ts: str) -> None:
        old_key = buf.key_of(change.identity) if change.identity is not None else None
        if old_key is None:
            old_key = tuple(_key(buf, _values(change, "identity", buf), change))
        row = buf.in_order(change.columns)
        unchanged: str | None = None
        if row is None:
            # a key column the update left out (an unchanged TOASTed key) still has the old value
            values = dict(zip(buf.table.key, old_key, strict=True)) | _values(change, "columns", buf)
            omitted = [col.attnum for col in buf.table.columns if col.name not in values]
            unchanged = "," + "".join(f"{attnum}," for attnum in omitted) if omitted else None
            row = _row(buf, values)
        new_key = tuple(row[i] for i in buf.key_index)
        if new_key != old_key:
            # a key change: delete the old key, then move the row in under the new one
            self._emit(buf, buf.key_row(old_key), lsn, "D", ts, None)
            origin, chain = buf.moved.pop(old_key, (old_key, self._seq))
            buf.moved[new_key] = (origin, chain)
            self._emit(buf, row, lsn, "U", ts, unchanged, True, chain, origin)
        elif buf.moved and new_key in buf.moved:
            origin, chain = buf.moved[new_key]
            self._emit(buf, row, lsn, "U", ts, unchanged, False, chain, origin)
        else:
            self._emit(buf, row, lsn, "U", ts, unchanged)

    def alias(self, table: TableSchema, name: str, current: str | None) -> None:
        """Read ``name`` in this table's changes as column ``current`` (None: ignore its values)."""
        self._buffer(table.schema, table.name).aliases[name] = current

    def alias_attnum(self, table: TableSchema, attnum: int, current: str | None) -> None:
        """Read the column ``attnum`` in this table's changes as ``current`` (None: ignore it)."""
        self._buffer(table.schema, table.name).attnum_aliases[attnum] = current

    def has_rows(self, table: TableSchema) -> bool:
        buf = self._tables.get(table.ident)
        return buf is not None and (buf.rows > 0 or bool(buf.truncates))

    def replace_schema(self, table: TableSchema) -> None:
        """Use a newer schema for a table that has no rows in this window yet."""
        buf = self._tables.get(table.ident)
        if buf is not None and (buf.rows or buf.truncates):
            raise RuntimeError(f"table {table.qualified} already has rows in this window")
        self._tables.pop(table.ident, None)

    def close(self, max_lsn: int | None = None) -> list[StagedTable]:
        """Write what is still buffered; return one ``StagedTable`` per table the window touched.
        With ``max_lsn`` (the window's last commit), a TRUNCATE of a transaction past it (one the
        window cuts off) is not staged: the MERGE leaves that transaction's rows out too."""
        if self._result is None:
            for buf in self._tables.values():
                self._flush(buf)
            if self._writer is not None:
                self._writer.close()
            self._result = [buf.staged(max_lsn) for buf in self._tables.values()]
        return list(self._result)

    def _buffer(self, schema: str, table: str) -> _TableBuffer:
        buf = self._tables.get((schema, table))
        if buf is None:
            buf = _TableBuffer(self._schema_for(schema, table), self._spool_dir, self._part_max_rows)
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
        waiting = buf.waiting
        waiting += row
        waiting += (lsn, self._seq, op, ts, unchanged, moved, chain)
        waiting += buf.no_origin if origin is None else origin
        self._seq += 1
        if len(waiting) >= buf.full:
            self._flush(buf)

    def _flush(self, buf: _TableBuffer) -> None:
        """Hand the buffer's rows to the part writer (or write them now, without background)."""
        if not buf.waiting:
            return
        columns = buf.take(self._resolver)
        path = buf.dir / part_name(buf.parts)
        buf.parts += 1
        table, mappings, schema = buf.table, buf.mappings, buf.schema

        def write() -> StagedFile:
            return write_part(table, mappings, schema, columns, path)

        def done(staged: StagedFile) -> None:
            buf.files.append(staged)
            self._bytes += staged.bytes

        if self._writer is None:
            done(write())
        else:
            self._writer.put(write, done)


_NAME = operator.attrgetter("name")
_POSITION = operator.attrgetter("position")
_VALUE = operator.attrgetter("value")


def _values(change: RowLike, what: str, buf: _TableBuffer) -> dict[str, Any]:
    fields = change.columns if what == "columns" else change.identity
    if fields is None:
        op = {"I": "insert", "U": "update", "D": "delete"}.get(change.op, change.op)
        noun = "values" if what == "columns" else what
        raise DecodeError(
            f"table {buf.table.qualified}: {op} at LSN {change.lsn} has no {noun}; the table needs a "
            "primary key (or REPLICA IDENTITY) and the slot the pipeline's wal2json options"
        )
    if what == "columns" and fields and fields[0].position is not None:
        return _values_by_attnum(change, fields, buf)
    values = {f.name: f.value for f in fields}
    if len(values) != len(fields):
        seen: set[str] = set()
        twice = [f.name for f in fields if f.name in seen or seen.add(f.name)]  # type: ignore[func-returns-value]
        raise _listed_twice(buf, change, twice[0], what)
    return buf.known(values, buf.aliases)


def _listed_twice(buf: _TableBuffer, change: RowLike, name: str, what: str) -> DecodeError:
    return DecodeError(
        f"table {buf.table.qualified}: the change at LSN {change.lsn} lists column {name!r} "
        f'twice in "{what}"; check that the slot uses the wal2json plugin with format-version 2'
    )


def _values_by_attnum(change: RowLike, fields: Sequence[FieldLike], buf: _TableBuffer) -> dict[str, Any]:
    """A change's values under the current names of the columns with their attnums: a renamed
    column under its new name, a dropped one left out (``alias_attnum``), an attnum the window's
    schema does not have raises ``UnknownColumn`` (the reader decides: added, or dropped)."""
    values: dict[str, Any] = {}
    for f in fields:
        position = f.position
        if position is None:
            name: str | None = buf.aliases.get(f.name, f.name)
            if name is not None and name not in buf.index:
                raise UnknownColumn(buf.table.schema, buf.table.name, f.name)
        elif position in buf.by_attnum:
            name = buf.by_attnum[position]
        elif position in buf.attnum_aliases:
            name = buf.attnum_aliases[position]
        else:
            raise UnknownColumn(buf.table.schema, buf.table.name, f.name)
        if name is None:
            continue
        if name in values:
            raise _listed_twice(buf, change, name, "columns")
        values[name] = f.value
    return values


def _insert_values(buf: _TableBuffer, change: RowLike) -> list[Any]:
    """An insert's row when its columns are not simply the table's in order."""
    values = _values(change, "columns", buf)
    if len(values) < len(buf.table.columns):
        # columns added after this insert: the row reads their missing value (or NULL)
        values = {
            **{c.name: _missing_value(c) for c in buf.table.columns if c.name not in values},
            **values,
        }
    return _row(buf, values)


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


def _key(buf: _TableBuffer, values: dict[str, Any], change: RowLike) -> list[Any]:
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
