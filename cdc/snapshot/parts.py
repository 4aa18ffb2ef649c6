"""The parts of one table's copy: COPY text rows -> typed Arrow columns -> Parquet parts.

``TableParts.open`` gives Arrow's streaming CSV reader over the text of ``COPY ... TO STDOUT``
(PostgreSQL's text format with ``NULL_MARK`` for NULL, see ``COPY_OPTIONS``): it reads and splits the
text into columns in C++, a block at a time, without the GIL (the built-in integer, float and
boolean types parsed into their Arrow type, the others as text). ``TableParts.add_texts`` takes
each such batch: ``cdc.snapshot.text.unescape_copy_text`` undoes the backslash escapes (only when
the text read so far holds a backslash at all), ``cdc.snapshot.text.text_to_arrow`` turns the text
columns into the Arrow types the window writer uses. Rows go to a writer thread
(``cdc.snapshot.writer.PartWriter``) a row group at a time, once ``ROW_GROUP_BYTES`` Arrow bytes
wait, and a part ends after ``part_max_rows`` rows or once it holds ``part_max_bytes`` Arrow bytes.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from cdc.batch import part_schema
from cdc.convert import COMMIT_TS_TYPE
from cdc.errors import DecodeError
from cdc.model import Column, Lsn, StagedFile, StagedTable, TableSchema
from cdc.snapshot.export import SnapshotPoint, snapshot_row_lsn
from cdc.snapshot.text import text_to_arrow, unescape_copy_text
from cdc.snapshot.writer import PartWriter
from cdc.typemap import TypeMapping, column_mapping

__all__ = [
    "COPY_OPTIONS",
    "NULL_MARK",
    "ROW_GROUP_BYTES",
    "TEXT_FORMAT",
    "CopyProgress",
    "SnapshotTable",
    "TableParts",
]

log = logging.getLogger(__name__)

LOG_EVERY_S = 15.0
# Arrow bytes waiting before they go to the writer as a row group: the encoding keeps pace with the
# COPY, and what is left to encode once it ends stays small. Smaller groups cost more CPU (every
# column chunk is compressed on its own: 1 MB groups took 50% longer to encode than whole parts)
ROW_GROUP_BYTES = 4 << 20
# NULL as a vertical tab instead of the text format's default \N: COPY's text format writes a
# vertical tab in a value as the escape \v (like \b, \f, \n, \r, \t and the backslash itself), so
# the mark cannot be mistaken for a value, and a backslash in the COPY text then always starts an
# escape: text without one needs no unescaping (one memchr per block tells)
NULL_MARK = "\x0b"
COPY_OPTIONS = "(FORMAT text, NULL E'\\x0b')"
# PostgreSQL's COPY text format: a tab between fields, no quoting; a line break, tab or backslash in
# a value is escaped, so every line is one row (an empty line is a row of one empty string)
TEXT_FORMAT: dict[str, Any] = {
    "delimiter": "\t",
    "quote_char": False,
    "double_quote": False,
    "escape_char": False,
    "newlines_in_values": False,
    "ignore_empty_lines": False,
}


@dataclass(frozen=True)
class CopyProgress:
    """Where a table's copy stands (for a progress bar)."""

    table: str
    rows: int
    bytes: int  # COPY bytes received from PostgreSQL
    parts: int
    elapsed_s: float
    done: bool


@dataclass(frozen=True)
class SnapshotTable:
    """One table copied at a snapshot: its staged parts and where the copy stands in the WAL."""

    staged: StagedTable
    lsn: Lsn  # the snapshot's consistent point: the copy holds every commit before it
    bytes_read: int  # COPY bytes received from PostgreSQL
    seconds: float

    @property
    def table(self) -> TableSchema:
        return self.staged.table

    @property
    def rows(self) -> int:
        return self.staged.rows

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float(self.rows)


# the built-in types whose every text form Arrow's reader parses as text_to_arrow would, by kind
_TYPED = {
    "smallint": "int",
    "integer": "int",
    "bigint": "int",
    "oid": "int",
    "real": "float4",
    "double precision": "float8",
    "boolean": "bool",
}
_ARROW_COLUMN = re.compile(r"CSV column #(\d+)")


def _read_type(column: Column, mapping: TypeMapping) -> pa.DataType | None:
    """The Arrow type Arrow's reader may parse ``column`` into directly, or None (read as text)."""
    kind = _TYPED.get(column.type_name)
    if kind is None or kind != mapping.kind:
        return None
    fits = {"int": pa.types.is_integer, "bool": pa.types.is_boolean}.get(kind, pa.types.is_floating)
    return mapping.arrow if fits(mapping.arrow) else None


class TableParts:
    """Rows of one table's COPY (text format) parsed into Arrow, waiting to become parts, and the
    parts written so far. ``add_texts`` runs in one thread (the parser); ``finish``, ``close`` and
    ``result`` after it."""

    def __init__(
        self,
        table: TableSchema,
        snapshot: SnapshotPoint,
        spool_dir: Path,
        part_max_rows: int,
        part_max_bytes: int,
        on_part: Callable[[Path, StagedFile], None] | None,
        progress: Callable[[CopyProgress], None] | None,
    ) -> None:
        self.table = table
        self.snapshot = snapshot
        self.dir = spool_dir / table.stage_dir
        self.schema = part_schema(table)
        self.mappings: list[TypeMapping] = [column_mapping(c) for c in table.columns]
        self.part_max_rows = part_max_rows
        self.part_max_bytes = part_max_bytes
        self.on_part = on_part
        self.progress = progress
        self.names = [c.stage_name for c in table.columns]
        self.parse_options = pcsv.ParseOptions(**TEXT_FORMAT)
        # columns of the built-in integer, float and boolean types are read as their Arrow type
        # straight away: every text form PostgreSQL prints for them (NaN and Infinity too) parses
        # exactly as text_to_arrow's cast would; every other column is read as text
        self.typed: dict[int, pa.DataType] = {}
        for i, (col, mapping) in enumerate(zip(table.columns, self.mappings, strict=True)):
            if (typ := _read_type(col, mapping)) is not None:
                self.typed[i] = typ
        self.convert_options = pcsv.ConvertOptions(
            column_types={n: self.typed.get(i, pa.string()) for i, n in enumerate(self.names)},
            strings_can_be_null=True,
            null_values=[NULL_MARK],  # an empty field is the empty string
            true_values=["t"],
            false_values=["f"],
            check_utf8=True,
        )
        self.lsn = pa.scalar(snapshot_row_lsn(snapshot.lsn), pa.int64())
        self.commit_ts = pa.scalar(snapshot.taken_at, COMMIT_TS_TYPE)
        meta = [f.name for f in list(self.schema)[len(table.columns) :]]
        self._seq_index = meta.index("_CDC_SEQ")
        self._constant_rows = 0
        self._constants: list[pa.Array] = []
        self.pending: list[pa.RecordBatch] = []  # rows not handed to the writer yet
        self.pending_rows = 0
        self.pending_bytes = 0
        self.part_rows = 0  # rows and Arrow bytes of the open part handed to the writer
        self.part_bytes = 0
        self.writer = PartWriter(self.dir, self.schema, table.qualified, on_part)
        self.rows = 0
        self.bytes = 0
        self.started = time.monotonic()
        self.logged = self.started
        for col, mapping in zip(table.columns, self.mappings, strict=True):
            if not mapping.exact:
                log.warning(
                    "table %s column %r (type %s) has no exact Arrow/Snowflake mapping: it travels "
                    "as its PostgreSQL text form",
                    table.qualified,
                    col.name,
                    col.type_name,
                    extra={"table": table.qualified, "column": col.name, "pg_type": col.type_name},
                )

    def open(self, source: pa.NativeFile, block_bytes: int) -> pcsv.CSVStreamingReader:
        """Arrow's reader of the COPY text in ``source``, ``block_bytes`` at a time (one thread: the
        parallelism is the pipeline's; pyarrow's own threads cost twice the CPU for the same text).
        Raises ``pa.ArrowInvalid`` for text without a single row."""
        return pcsv.open_csv(
            source,
            read_options=pcsv.ReadOptions(column_names=self.names, use_threads=False, block_size=block_bytes),
            parse_options=self.parse_options,
            convert_options=self.convert_options,
        )

    def read_error(self, exc: pa.ArrowInvalid) -> DecodeError:
        """What Arrow's reader refused, as a DecodeError naming the column where Arrow says which."""
        found = _ARROW_COLUMN.search(str(exc))
        index = int(found.group(1)) if found else -1
        where = f"table {self.table.qualified}"
        if 0 <= index < len(self.table.columns):
            col = self.table.columns[index]
            where += f" column {col.name!r} ({col.type_name})"
        if index in self.typed:
            return DecodeError(
                f"{where}: a value after row {self.rows} is not one of this type ({exc}); if the "
                "column's type changed since the catalog was read, run the snapshot again"
            )
        return DecodeError(
            f"{where}: the COPY output after row {self.rows} could not be read ({exc}); check that "
            "the server sends UTF-8 (client_encoding) and report it if it does"
        )

    def add_texts(self, texts: pa.RecordBatch, escaped: bool, copy_bytes: int) -> None:
        """Whole rows of ``COPY ... TO STDOUT`` as Arrow's reader gives them (the typed columns as
        their type, the others as text): convert, hand row groups and full parts to the writer.

        ``escaped``: whether the COPY text read so far holds a backslash, i.e. any escape (NULL is
        ``NULL_MARK``); ``copy_bytes``: the COPY bytes received so far."""
        self.bytes = copy_bytes
        arrays = []
        columns = zip(texts.columns, self.table.columns, self.mappings, strict=True)
        for i, (column, col, mapping) in enumerate(columns):
            if i in self.typed:
                arrays.append(column)
                continue
            if escaped:
                column = unescape_copy_text(self.table, col, column)
            arrays.append(text_to_arrow(self.table, col, mapping, column))
        n = texts.num_rows
        arrays += self._metadata(n)
        batch = pa.RecordBatch.from_arrays(arrays, schema=self.schema)
        self.pending.append(batch)
        self.pending_rows += n
        self.pending_bytes += batch.nbytes
        self.rows += n
        self._hand_over(final=False)
        self._report(done=False)

    def _metadata(self, n: int) -> list[pa.Array]:
        """What the window writer gives an insert: the metadata columns, then null origin keys.

        Slices of arrays made once per table (the constants, and 0.. for ``_CDC_SEQ``), grown when
        a batch is longer than any before."""
        if n > self._constant_rows:
            self._constant_rows = max(n, 2 * self._constant_rows)
            self._constants = self._make_constants(self._constant_rows)
        arrays = [a.slice(0, n) for a in self._constants]
        seq = self._seq_index
        arrays[seq] = pc.add(arrays[seq], pa.scalar(self.rows, pa.int64()))
        return arrays

    def _make_constants(self, n: int) -> list[pa.Array]:
        arrays: list[pa.Array] = []
        for field in list(self.schema)[len(self.table.columns) :]:
            if field.name == "_CDC_LSN":
                arrays.append(pa.repeat(self.lsn, n))
            elif field.name == "_CDC_SEQ":
                ones = pa.repeat(pa.scalar(1, pa.int64()), n)
                arrays.append(pc.subtract(pc.cumulative_sum(ones), pa.scalar(1, pa.int64())))
            elif field.name == "_CDC_OP":
                arrays.append(pa.repeat(pa.scalar("I", field.type), n))
            elif field.name == "_CDC_COMMIT_TS":
                arrays.append(pa.repeat(self.commit_ts, n))
            elif field.name == "_CDC_MOVED":
                arrays.append(pa.repeat(pa.scalar(False, field.type), n))
            else:  # _CDC_UNCHANGED, _CDC_CHAIN, the origin keys of moved rows
                arrays.append(pa.nulls(n, field.type))
        return arrays

    @property
    def files(self) -> list[StagedFile]:
        return self.writer.files

    def finish(self) -> None:
        self._hand_over(final=True)
        self.writer.flush()
        self._report(done=True)

    def _hand_over(self, *, final: bool) -> None:
        """Hand the waiting rows to the writer: the rows that fill the open part (``part_max_rows``
        rows, or ``part_max_bytes`` reached), a row group once ``ROW_GROUP_BYTES`` wait, and all of
        them when ``final``. The batches go as they are, sliced, never copied."""
        while self.pending_rows:
            room = self.part_max_rows - self.part_rows
            full = self.pending_rows >= room or self.part_bytes + self.pending_bytes >= self.part_max_bytes
            if not (final or full or self.pending_bytes >= ROW_GROUP_BYTES):
                return
            data = pa.Table.from_batches(self.pending, schema=self.schema)
            take = min(room, data.num_rows)
            group = data.slice(0, take)
            self.writer.write(group)
            if full or final:
                self.writer.end_part()
                self.part_rows = self.part_bytes = 0
            else:
                self.part_rows += take
                self.part_bytes += group.nbytes
            self.pending = data.slice(take).to_batches()
            self.pending_rows = data.num_rows - take
            self.pending_bytes = sum(b.nbytes for b in self.pending)
        if final and self.part_rows:
            self.writer.end_part()
            self.part_rows = self.part_bytes = 0

    def close(self) -> None:
        """Stop the writer thread (after the row group in progress, whose outcome no longer matters)."""
        self.writer.close()

    def _report(self, *, done: bool) -> None:
        now = time.monotonic()
        elapsed = now - self.started
        if self.progress is not None:
            self.progress(
                CopyProgress(self.table.qualified, self.rows, self.bytes, len(self.files), elapsed, done)
            )
        if done or now - self.logged >= LOG_EVERY_S:
            self.logged = now
            rate = self.rows / elapsed if elapsed > 0 else 0.0
            log.info(
                "%s %s: %d rows, %.1f MB in %.1f s (%.0f rows/s, %.1f MB/s), %d parts",
                "copied" if done else "copying",
                self.table.qualified,
                self.rows,
                self.bytes / 1e6,
                elapsed,
                rate,
                self.bytes / 1e6 / elapsed if elapsed > 0 else 0.0,
                len(self.files),
                extra={
                    "table": self.table.qualified,
                    "rows": self.rows,
                    "bytes": self.bytes,
                    "parts": len(self.files),
                    "rows_per_s": round(rate),
                    "lsn": str(self.snapshot.lsn),
                },
            )

    def result(self) -> SnapshotTable:
        staged = StagedTable(
            table=self.table,
            stage_dir=self.table.stage_dir,
            files=tuple(self.files),
            rows=self.rows,
            ops={"I": self.rows, "U": 0, "D": 0, "T": 0},
            truncate=None,
            columns_as_text=tuple(
                c.name for c, m in zip(self.table.columns, self.mappings, strict=True) if not m.exact
            ),
        )
        return SnapshotTable(staged, self.snapshot.lsn, self.bytes, time.monotonic() - self.started)
