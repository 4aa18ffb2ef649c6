"""A table copy's Parquet parts, written a row group at a time on one writer thread.

The parser hands over row groups as soon as they are there (``PartWriter.write``) and says where a
part ends (``end_part``), so the encoding (Parquet, zstd; it releases the GIL) runs while the COPY
goes on instead of all at once when a part is full, and once the COPY ends only the last row group
is left to write. A part is a file of the window writer's layout (``cdc.batch.part_schema``), with
one or more row groups; ``on_part`` runs once it is closed and digested (e.g. to upload it).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cdc.model import StagedFile
from cdc.parts import PARQUET_OPTIONS, file_digest, part_name

__all__ = ["MAX_QUEUED", "PartWriter"]

log = logging.getLogger(__name__)

MAX_QUEUED = 2  # row groups handed over and not yet written; the parser waits beyond that


class PartWriter:
    """Row groups -> part files ``part-NNNNN.parquet`` under ``directory``, in order, on one thread.

    ``write`` and ``end_part`` run in the parser's thread; ``files`` holds the finished parts once
    ``flush`` returned. A failure of the writer thread is raised by the next call.
    """

    def __init__(
        self,
        directory: Path,
        schema: pa.Schema,
        table: str,
        on_part: Callable[[Path, StagedFile], None] | None,
    ) -> None:
        self.directory = directory
        self.schema = schema
        self.table = table
        self.on_part = on_part
        self.files: list[StagedFile] = []
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cdc-snapshot-parts")
        self._queued: deque[Future[StagedFile | None]] = deque()
        # the writer thread's own state: the open part
        self._file: pq.ParquetWriter | None = None
        self._path: Path | None = None
        self._rows = 0
        self._index = 0  # of the next part

    def write(self, group: pa.Table) -> None:
        """Append ``group`` (rows of ``schema``) to the open part as one row group."""
        self._submit(self._write_group, group)

    def end_part(self) -> None:
        """Close the open part (digest it, run ``on_part``)."""
        self._submit(self._close_part)

    def flush(self) -> None:
        """Wait until everything handed over is written."""
        while self._queued:
            self._collect(self._queued.popleft())

    def close(self) -> None:
        """Stop the thread (after the task in progress; the rest is dropped). A part left open,
        incomplete, is closed without being digested or handed to ``on_part``."""
        self._thread.shutdown(wait=True, cancel_futures=True)
        if self._file is not None:
            file, self._file = self._file, None
            try:
                file.close()
            except (OSError, pa.ArrowException):
                log.debug("closing the incomplete part %s failed", self._path, exc_info=True)

    def _submit(self, task: Callable[..., StagedFile | None], *args: Any) -> None:
        while len(self._queued) >= MAX_QUEUED or (self._queued and self._queued[0].done()):
            self._collect(self._queued.popleft())
        self._queued.append(self._thread.submit(task, *args))

    def _collect(self, future: Future[StagedFile | None]) -> None:
        staged = future.result()
        if staged is not None:
            self.files.append(staged)

    # --- on the writer thread -------------------------------------------------------------------

    def _write_group(self, group: pa.Table) -> None:
        if self._file is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._path = self.directory / part_name(self._index)
            self._file = pq.ParquetWriter(self._path, self.schema, **PARQUET_OPTIONS)
            self._rows = 0
        self._file.write_table(group, row_group_size=group.num_rows)
        self._rows += group.num_rows

    def _close_part(self) -> StagedFile | None:
        if self._file is None or self._path is None:
            return None
        file, path, self._file = self._file, self._path, None
        self._index += 1
        file.close()
        size, digest = file_digest(path)
        staged = StagedFile(name=path.name, rows=self._rows, bytes=size, sha256=digest)
        log.debug(
            "snapshot part written",
            extra={"table": self.table, "part": path.name, "rows": staged.rows, "bytes": size},
        )
        if self.on_part is not None:
            self.on_part(path, staged)
        return staged
