"""Copy one table at an exported snapshot into Parquet parts shaped like the stream's.

``COPY (SELECT ...) TO STDOUT`` (PostgreSQL's text format, cheaper for the server than CSV, with
``cdc.snapshot.parts.NULL_MARK`` for NULL) runs in a ``REPEATABLE READ`` transaction that imported
the snapshot. The work is spread so that receiving overlaps the Arrow work, which releases the GIL:

* the caller's thread runs the COPY: psycopg2 hands each row to the ``write`` of a buffered pipe
  (C code, no Python per row);
* Arrow's I/O thread reads the pipe in blocks of ``chunk_bytes`` (``_PipeSource``; up to
  ``READAHEAD_BLOCKS`` blocks ahead of the parser, so the COPY does not wait while a batch is
  converted or a part encoded) and notes whether a block holds a backslash;
* a parser thread takes the rows of each block from Arrow's streaming reader as columns and
  ``cdc.snapshot.parts.TableParts`` converts them (``progress`` is called from this thread);
* a writer thread (``cdc.snapshot.writer.PartWriter``) encodes them into the parts a row group at a
  time and runs ``on_part``.

A slower parser or writer holds the COPY back through the pipe, so memory holds the pipe, the
blocks read ahead, the rows waiting for a row group and the row groups handed to the writer (at
most ``cdc.snapshot.writer.MAX_QUEUED``), whatever the table's size. Parts have exactly the window
writer's schema (``C<attnum>`` columns with the PostgreSQL name and type as field metadata, the
metadata columns, the origin-key columns), with ``_CDC_LSN`` = ``snapshot_row_lsn(lsn)``,
``_CDC_SEQ`` = 0.., ``_CDC_OP`` = "I", ``_CDC_COMMIT_TS`` = the snapshot's time and the rest as the
writer fills them for an insert (``_CDC_MOVED`` false, NULLs), so the sink's load path and the
MERGE's "newer than the row" rule treat them like any change.
"""

from __future__ import annotations

import fcntl
import io
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg2
import pyarrow as pa
from psycopg2 import sql as pgsql

from cdc.batch import part_schema
from cdc.errors import CdcError, SchemaError, SnapshotInvalidated, SourceError
from cdc.model import StagedFile, TableSchema
from cdc.snapshot.export import SnapshotPoint
from cdc.snapshot.parts import COPY_OPTIONS, CopyProgress, SnapshotTable, TableParts
from cdc.source.catalog import pg_name, relation_sql
from cdc.source.slot import classify_error
from cdc.typemap import column_mapping

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_PART_MAX_BYTES",
    "PIPE_BYTES",
    "READAHEAD_BLOCKS",
    "READ_BUFFER_BYTES",
    "WRITE_BUFFER_BYTES",
    "CopyProgress",
    "SnapshotDeadline",
    "SnapshotTable",
    "arrow_schema",
    "copy_sql",
    "copy_table",
]

log = logging.getLogger(__name__)

DEFAULT_PART_MAX_BYTES = 128 << 20  # Arrow bytes of one part: it ends with the batch that reaches them
DEFAULT_CHUNK_BYTES = 1 << 20  # COPY bytes parsed at a time (blocks of 1 MB parse faster than larger ones)
# the blocks Arrow's streaming reader reads ahead of the batch being parsed (the queue of its
# background reader, and the blocks in hand): the COPY goes on while batches are converted
READAHEAD_BLOCKS = 34
PIPE_BYTES = 1 << 20  # the pipe's capacity, where the system allows it (F_SETPIPE_SZ)
WRITE_BUFFER_BYTES = 256 << 10  # what the receiving side gathers before each write to the pipe
READ_BUFFER_BYTES = 64 << 10  # what the pipe's reader buffers for blocks smaller than this
# the first block; each next one twice as large, up to chunk_bytes: parsing starts as soon as the
# first rows are there (Arrow's reader waits for two blocks before the first batch)
FIRST_BLOCK_BYTES = 64 << 10
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


class SnapshotDeadline(CdcError):
    """The time budget ran out before the table was copied; nothing of it may be loaded."""

    def __init__(self, table: str, rows: int) -> None:
        self.table = table
        self.rows = rows
        super().__init__(f"time budget ran out while copying table {table} after {rows} rows")


def arrow_schema(table: TableSchema) -> pa.Schema:
    """The Parquet schema of the table's parts: the window writer's (``cdc.batch``)."""
    return part_schema(table)


def copy_sql(table: TableSchema) -> pgsql.Composed:
    """The COPY of every column in attnum order; bytea as bare hex digits (what wal2json sends);
    NULL as ``NULL_MARK``."""
    items = []
    for col in table.columns:
        ref = pgsql.Identifier(col.name)
        bytea = column_mapping(col).kind == "bytes"
        items.append(pgsql.SQL("encode({}, 'hex')").format(ref) if bytea else ref)
    return pgsql.SQL("COPY (SELECT {} FROM {}) TO STDOUT {}").format(
        pgsql.SQL(", ").join(items), relation_sql(table), pgsql.SQL(COPY_OPTIONS)
    )


def copy_table(
    conn: Any,
    table: TableSchema,
    snapshot: SnapshotPoint,
    spool_dir: Path,
    *,
    part_max_rows: int = 50_000,
    part_max_bytes: int = DEFAULT_PART_MAX_BYTES,
    on_part: Callable[[Path, StagedFile], None] | None = None,
    deadline: float | None = None,
    progress: Callable[[CopyProgress], None] | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    clock: Callable[[], float] = time.monotonic,
) -> SnapshotTable:
    """Copy ``table`` as the exported ``snapshot`` sees it into parts under ``spool_dir/<stage_dir>``.

    ``conn`` is a connection from ``open_copy_connection`` (autocommit, the stream's session
    settings). ``on_part(path, file)`` runs after each part is written (to upload it and free the
    disk). When ``deadline`` (a ``clock()`` value) passes, the COPY is cancelled after the block
    being parsed and ``SnapshotDeadline`` raised: the parts written so far are incomplete.
    """
    if part_max_rows < 1 or part_max_bytes < 1:
        raise ValueError(f"part limits must be positive, got {part_max_rows} rows / {part_max_bytes} bytes")
    if not table.key:
        raise SchemaError(f"table {table.qualified} has no primary key: it cannot be snapshotted and merged")
    job = TableParts(table, snapshot, Path(spool_dir), part_max_rows, part_max_bytes, on_part, progress)
    reader = _CopyPipe(conn, job, chunk_bytes, deadline, clock)
    cur = conn.cursor()
    try:
        cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cur.execute("SET TRANSACTION SNAPSHOT %s", (snapshot.name,))
        cur.execute("SET LOCAL statement_timeout = 0")
        _check_not_rewritten(cur, table, snapshot)
        try:
            cur.copy_expert(copy_sql(table), reader.file)
        except psycopg2.Error as exc:
            reader.abandon()
            if reader.stopped is not None:  # we cancelled it
                raise reader.stopped from exc
            raise
        reader.finish()  # raises what stopped the copy, also when it was cancelled just at its end
        cur.execute("COMMIT")
    except psycopg2.Error as exc:
        _rollback(conn)
        if "invalid snapshot identifier" in str(exc):
            raise SourceError(
                f"cannot copy table {table.qualified}: snapshot {snapshot.name} is gone (the "
                "connection that exported it closed); create a new snapshot and copy again"
            ) from exc
        raise classify_error(exc, f"copying table {table.qualified}") from exc
    except BaseException:
        _rollback(conn)
        raise
    finally:
        reader.close()
        cur.close()
        job.close()
    return job.result()


# The table's heaps (its partitions', for a partitioned table) whose file changed since the
# snapshot: pg_class as the snapshot sees it against the relation's file now. Heaps created after
# the snapshot are not seen by it, and hold only rows the stream delivers.
_NEW_FILES_SQL = """
SELECT c.oid::regclass::text FROM pg_class c
WHERE (c.oid = %(t)s::regclass
       OR c.oid IN (SELECT relid FROM pg_partition_tree(%(t)s::regclass) WHERE isleaf))
  AND c.relfilenode <> pg_relation_filenode(c.oid)
ORDER BY 1
"""


def _check_not_rewritten(cur: Any, table: TableSchema, snapshot: SnapshotPoint) -> None:
    """Lock the table against rewrites until the copy ends, then make sure its file did not change
    since the snapshot point. ``ALTER TABLE`` rewrites a table (a column's type, a ``USING``
    expression, a constrained domain, a volatile default, ``SET LOGGED``) with row versions the
    snapshot cannot see: it would see the table empty, and no change of the stream brings the rows
    back. A truncate, ``VACUUM FULL`` or ``CLUSTER`` also gives the table a new file, and its rows
    look no different from a rewrite's from here, so any new file takes the copy again."""
    cur.execute(pgsql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(relation_sql(table)))
    cur.execute(_NEW_FILES_SQL, {"t": pg_name(table.schema, table.name)})
    new_files = [row[0] for row in cur.fetchall()]
    if new_files:
        raise SnapshotInvalidated(
            f"cannot copy table {table.qualified} at the snapshot point {snapshot.lsn}: "
            f"{', '.join(new_files)} got a new file after it (rewritten by ALTER TABLE, or truncated, "
            "vacuumed in full or clustered), and a snapshot does not see the rows of a rewritten "
            "table; the copy is taken again at a new snapshot point"
        )


def _rollback(conn: Any) -> None:
    try:
        if not conn.closed:
            conn.cursor().execute("ROLLBACK")
    except psycopg2.Error:
        log.warning("rollback after a failed copy failed; the connection is closed", exc_info=True)
        conn.close()


class _PipeSource:
    """The read end of the pipe as Arrow's ``PythonFile`` reads it (from Arrow's I/O thread): blocks
    of the requested size (the first ones smaller, from ``FIRST_BLOCK_BYTES``), counted, and whether
    any of them held a backslash (``escaped``, which then stays set).

    A block that holds no line end is read on to the next line end: Arrow's streaming reader
    refuses a row that spans more than two blocks, and one row may be longer than a block.
    ``close`` waits for a read in progress, so the descriptor is never read after it is closed.
    """

    def __init__(self, fd: int) -> None:
        self._file = io.BufferedReader(io.FileIO(fd, "rb", closefd=False), buffer_size=READ_BUFFER_BYTES)
        self._lock = threading.Lock()
        self.closed = False
        self.bytes = 0
        self.escaped = False
        self._block = FIRST_BLOCK_BYTES

    def read(self, size: int = -1) -> bytes:
        if size > 0:
            size, self._block = min(size, self._block), min(size, 2 * self._block)
        with self._lock:
            if self.closed:
                return b""
            data = self._file.read(size)  # ``size`` bytes, less only at the end of the COPY
            if data and data.find(b"\n") < 0:
                pieces = [data]
                while more := self._file.read(size):
                    pieces.append(more)
                    if more.find(b"\n") >= 0:
                        break
                data = b"".join(pieces)
        if not self.escaped and data.find(b"\\") >= 0:
            self.escaped = True
        self.bytes += len(data)
        return data

    def close(self) -> None:
        with self._lock:
            self.closed = True


class _CopyPipe:
    """The pipe the COPY is written into (``file``) and the parser thread that reads it.

    A failure or the deadline (checked by the parser after each block) cancels the COPY on the
    server; the parser then reads on to the end of the pipe, dropping what it reads, so the
    receiving side never blocks.
    """

    def __init__(
        self,
        conn: Any,
        job: TableParts,
        chunk_bytes: int,
        deadline: float | None,
        clock: Callable[[], float],
    ) -> None:
        self._conn = conn
        self._clock = clock
        self._job = job
        self._chunk_bytes = max(1, chunk_bytes)
        self._deadline = deadline
        read_fd, write_fd = os.pipe()
        try:
            fcntl.fcntl(write_fd, _F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:  # the system's limit: the default capacity only slows the hand-over
            log.debug("could not grow the COPY pipe", exc_info=True)
        self._read_fd = read_fd
        self.file = io.BufferedWriter(io.FileIO(write_fd, "wb"), buffer_size=WRITE_BUFFER_BYTES)
        self._abandoned = False
        self._closed = False
        self.stopped: BaseException | None = None
        self._source = _PipeSource(read_fd)
        self._parser = threading.Thread(target=self._parse, name="cdc-snapshot-parse", daemon=True)
        self._parser.start()

    def finish(self) -> None:
        """The COPY ended by itself: parse the last rows and write the last part."""
        self.close()
        if self.stopped is not None:
            raise self.stopped
        self._job.bytes = self._source.bytes
        self._job.finish()

    def abandon(self) -> None:
        """The COPY failed: what is left in the pipe (maybe half a row) is dropped, not parsed."""
        self._abandoned = True
        self.close()

    def close(self) -> None:
        """End the pipe and wait for the parser (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.file.close()
        finally:
            self._parser.join()

    def _parse(self) -> None:
        source = self._source
        try:
            reader = self._open(source)
            while reader is not None and self.stopped is None and not self._abandoned:
                texts = self._next(reader)
                if texts is None:
                    break
                self._job.add_texts(texts, source.escaped, source.bytes)
                if self._deadline is not None and self._clock() >= self._deadline:
                    raise SnapshotDeadline(self._job.table.qualified, self._job.rows)
        except BaseException as exc:  # copy_table raises it once the COPY has stopped
            self._stop(exc)
        finally:
            try:  # drop the rest, so that the receiving side never blocks on a full pipe
                while os.read(self._read_fd, PIPE_BYTES):
                    pass
            finally:
                source.close()
                os.close(self._read_fd)

    def _open(self, source: _PipeSource) -> Any:
        try:
            return self._job.open(pa.PythonFile(source, mode="r"), self._chunk_bytes)
        except pa.ArrowInvalid as exc:
            if not source.bytes:
                return None  # the COPY sent no rows at all
            raise self._job.read_error(exc) from exc

    def _next(self, reader: Any) -> pa.RecordBatch | None:
        try:
            return reader.read_next_batch()
        except StopIteration:
            return None
        except pa.ArrowInvalid as exc:
            raise self._job.read_error(exc) from exc

    def _stop(self, exc: BaseException) -> None:
        if self.stopped is not None or self._abandoned:
            return
        self.stopped = exc
        try:
            self._conn.cancel()
        except psycopg2.Error:  # the COPY then runs to its end, its rows dropped
            log.warning("could not cancel the COPY of %s", self._job.table.qualified, exc_info=True)
