"""The parts of one table's copy: COPY text rows -> typed Arrow columns -> Parquet parts.

``TableParts.add_text`` parses whole rows of ``COPY ... TO STDOUT`` in PostgreSQL's text format
(tab-separated, ``\\N`` for NULL, backslash escapes, which ``cdc.snapshot.text.unescape_copy_text``
undoes) into string columns, which ``cdc.snapshot.text.text_to_arrow`` turns into the Arrow types
the window writer uses. Rows wait until ``part_max_rows`` rows or ``part_max_bytes`` Arrow bytes
are there; a part is then handed to a writer thread (Parquet encoding and ``on_part``, e.g. the
upload, overlap the next chunks; one part at most is in flight).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from cdc.batch import file_digest, part_name, part_schema
from cdc.convert import COMMIT_TS_TYPE
from cdc.errors import DecodeError
from cdc.model import Lsn, StagedFile, StagedTable, TableSchema
from cdc.snapshot.export import SnapshotPoint, snapshot_row_lsn
from cdc.snapshot.text import text_to_arrow, unescape_copy_text
from cdc.typemap import TypeMapping, column_mapping

__all__ = ["NULL_TEXT", "PARQUET_OPTIONS", "TEXT_FORMAT", "CopyProgress", "SnapshotTable", "TableParts"]

log = logging.getLogger(__name__)

LOG_EVERY_S = 15.0
# no dictionary pages: snapshot columns are mostly high-cardinality, where trying a dictionary costs
# time and bytes (measured: 2-3x faster encoding, 20% smaller parts on a mixed table); no min/max
# statistics but for the LSN and sequence (nothing reads the others; they cost 30% of the encoding
# of a table with long strings)
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "use_dictionary": False,
    "write_statistics": ["_CDC_LSN", "_CDC_SEQ"],
}
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
NULL_TEXT = "\\N"


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


def _read_type(mapping: TypeMapping) -> pa.DataType | None:
    """The Arrow type the CSV reader may parse a column into directly, or None (read as text)."""
    arrow = mapping.arrow
    if mapping.kind == "int" and pa.types.is_integer(arrow):
        return arrow
    if mapping.kind in ("float4", "float8") and pa.types.is_floating(arrow):
        return arrow
    if mapping.kind == "bool" and pa.types.is_boolean(arrow):
        return arrow
    return None


class TableParts:
    """Rows of one table's COPY (text format) parsed into Arrow, waiting to become parts, and the
    parts written so far. ``add_text`` runs in one thread (the parser); ``finish``, ``close`` and
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
        names = [c.stage_name for c in table.columns]
        # one thread: the parallelism is the pipeline's (receive, parse, encode); pyarrow's own
        # threads cost twice the CPU for the same chunk. Blocks of 1 MB parse faster than larger ones.
        self.read_options = pcsv.ReadOptions(column_names=names, use_threads=False, block_size=1 << 20)
        self.parse_options = pcsv.ParseOptions(**TEXT_FORMAT)
        self.convert_options = pcsv.ConvertOptions(
            column_types={n: pa.string() for n in names},
            strings_can_be_null=True,
            null_values=[NULL_TEXT],  # an empty field is the empty string
            check_utf8=True,
        )
        # integers, floats and booleans are read as their Arrow type straight away (the same
        # parsing as text_to_arrow's cast, without building strings first); a chunk the typed read
        # refuses is read again as text, and text_to_arrow and convert_column decide
        self.typed = {i: typ for i, m in enumerate(self.mappings) if (typ := _read_type(m)) is not None}
        self.typed_options = pcsv.ConvertOptions(
            column_types={n: self.typed.get(i, pa.string()) for i, n in enumerate(names)},
            strings_can_be_null=True,
            null_values=[NULL_TEXT],
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
        self.pending: list[pa.RecordBatch] = []
        self.pending_rows = 0
        self.pending_bytes = 0
        self.files: list[StagedFile] = []
        self.submitted = 0
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cdc-snapshot-parts")
        self.inflight: Future[StagedFile] | None = None
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

    def add_text(self, chunk: bytes | bytearray) -> None:
        """Whole rows of ``COPY ... TO STDOUT`` (text format): parse, convert, write full parts."""
        self.bytes += len(chunk)
        typed = bool(self.typed)
        try:
            try:
                parsed = self._read(chunk, self.typed_options if typed else self.convert_options)
            except pa.ArrowInvalid:
                if not typed:
                    raise
                typed = False
                parsed = self._read(chunk, self.convert_options)
        except pa.ArrowInvalid as exc:
            raise DecodeError(
                f"table {self.table.qualified}: the COPY output after row {self.rows} could not be read "
                f"({exc}); check that the server sends UTF-8 (client_encoding) and report it if it does"
            ) from exc
        # every backslash that does not start a NULL (\N) starts an escape: only then may a
        # column need unescaping
        escaped = chunk.find(b"\\") >= 0 and chunk.count(b"\\") != sum(c.null_count for c in parsed.columns)
        for texts in parsed.to_batches():  # one per block of the chunk
            self._add_batch(texts, escaped, typed)
        self._write_full_parts(final=False)
        self._report(done=False)

    def _read(self, chunk: bytes | bytearray, convert_options: pcsv.ConvertOptions) -> pa.Table:
        return pcsv.read_csv(
            pa.py_buffer(chunk),
            read_options=self.read_options,
            parse_options=self.parse_options,
            convert_options=convert_options,
        )

    def _add_batch(self, texts: pa.RecordBatch, escaped: bool, typed: bool) -> None:
        arrays = []
        for i, (col, mapping) in enumerate(zip(self.table.columns, self.mappings, strict=True)):
            column = texts.column(i)
            if typed and i in self.typed:
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

    def finish(self) -> None:
        self._write_full_parts(final=True)
        self._wait()
        self._report(done=True)

    def _write_full_parts(self, *, final: bool) -> None:
        while self.pending_rows and (
            final or self.pending_rows >= self.part_max_rows or self.pending_bytes >= self.part_max_bytes
        ):
            data = pa.Table.from_batches(self.pending, schema=self.schema)
            take = min(self.part_max_rows, data.num_rows)
            self._write_part(data.slice(0, take))
            rest = data.slice(take)
            self.pending = rest.combine_chunks().to_batches() if rest.num_rows else []
            self.pending_rows = rest.num_rows
            self.pending_bytes = sum(b.nbytes for b in self.pending)

    def _write_part(self, data: pa.Table) -> None:
        """Hand the part to the writer thread (Parquet encoding and ``on_part`` release the GIL and
        overlap the next chunk's reading); one part at most is in flight."""
        self._wait()
        name = part_name(self.submitted)
        self.submitted += 1
        self.inflight = self.writer.submit(self._write, name, data)

    def _wait(self) -> None:
        if self.inflight is not None:
            future, self.inflight = self.inflight, None
            self.files.append(future.result())

    def _write(self, name: str, data: pa.Table) -> StagedFile:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / name
        pq.write_table(data, path, **PARQUET_OPTIONS)
        size, digest = file_digest(path)
        staged = StagedFile(name=name, rows=data.num_rows, bytes=size, sha256=digest)
        log.debug(
            "snapshot part written",
            extra={"table": self.table.qualified, "part": name, "rows": staged.rows, "bytes": size},
        )
        if self.on_part is not None:
            self.on_part(path, staged)
        return staged

    def close(self) -> None:
        """Stop the writer thread (after the part in flight, whose outcome no longer matters)."""
        self.writer.shutdown(wait=True, cancel_futures=True)

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
