"""A snapshot run: copy, stage, load and swap tables one by one at one exported snapshot, within
a time budget.

The engine opens the snapshot (``create_slot_with_snapshot`` for a full snapshot that also creates
the pipeline's slot, ``create_temporary_snapshot`` to re-copy tables while the slot keeps
streaming), keeps it open around ``run_snapshot`` and closes it afterwards. ``run_snapshot`` never
touches the checkpoint: its result says which tables now hold the snapshot (each at the
snapshot's LSN S, see ``cdc.snapshot.export.in_snapshot`` for the rule the windows then apply) and
which did not get there.

Tables are done one at a time: parts are uploaded as they fill, the table is loaded into a fresh
Snowflake table and swapped in; only then is the next one started. The deadline is checked between
chunks of the copy and before each load: when it passes, the run stops cleanly (the table in
progress keeps its previous target; its staged parts are orphans under the snapshot's prefix,
never referenced by a manifest) and says so.
"""

from __future__ import annotations

import hashlib
import logging
import shlex
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cdc.errors import SourceError
from cdc.model import Lsn, StagedFile, TableSchema
from cdc.snapshot.copy import (
    DEFAULT_PART_MAX_BYTES,
    CopyProgress,
    SnapshotDeadline,
    SnapshotTable,
    copy_table,
)
from cdc.snapshot.export import ExportedSnapshot, SnapshotPoint, open_copy_connection, snapshot_row_lsn
from cdc.snapshot.load import SnapshotLoader
from cdc.stage import Stage, build_manifest, snapshot_prefix, write_manifest

__all__ = ["FinishedTable", "SnapshotProgress", "SnapshotResult", "new_snapshot_id", "run_snapshot"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SnapshotProgress:
    """One step of a snapshot run, for a progress bar (``phase`` "copy" repeats per chunk)."""

    phase: Literal["copy", "load", "done"]
    table: str
    index: int  # 0-based position of the table in the run
    tables: int
    rows: int
    bytes: int
    parts: int
    elapsed_s: float


@dataclass(frozen=True)
class FinishedTable:
    """A table whose target now holds the snapshot."""

    table: str  # schema.table
    lsn: Lsn  # the snapshot's consistent point S
    rows: int
    parts: int
    bytes_read: int
    copy_s: float
    load_s: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.copy_s if self.copy_s > 0 else float(self.rows)


@dataclass(frozen=True)
class SnapshotResult:
    snapshot_id: str
    lsn: Lsn
    prefix: str  # stage prefix of the snapshot's parts and manifest
    finished: tuple[FinishedTable, ...]
    unfinished: tuple[str, ...]
    stopped: Literal["complete", "deadline"]
    message: str
    duration_s: float

    @property
    def complete(self) -> bool:
        return not self.unfinished

    @property
    def table_lsns(self) -> dict[str, str]:
        """schema.table -> S of every finished table (what the checkpoint's ``extra`` records)."""
        return {t.table: str(t.lsn) for t in self.finished}

    def as_dict(self) -> dict[str, Any]:
        return {
            "snapshot_id": self.snapshot_id,
            "lsn": str(self.lsn),
            "prefix": self.prefix,
            "stopped": self.stopped,
            "complete": self.complete,
            "finished": [
                {
                    "table": t.table,
                    "lsn": str(t.lsn),
                    "rows": t.rows,
                    "parts": t.parts,
                    "bytes_read": t.bytes_read,
                    "copy_s": round(t.copy_s, 3),
                    "load_s": round(t.load_s, 3),
                    "rows_per_s": round(t.rows_per_s),
                }
                for t in self.finished
            ],
            "unfinished": list(self.unfinished),
            "message": self.message,
            "duration_s": round(self.duration_s, 3),
        }


def new_snapshot_id(lsn: Lsn) -> str:
    """``<16 hex LSN>-<8 hex>``: snapshots sort by LSN under ``snapshots/``."""
    return f"{lsn.padded}-{uuid.uuid4().hex[:8].upper()}"


def _token(snapshot_id: str) -> str:
    return hashlib.sha256(snapshot_id.encode()).hexdigest()[:10].upper()


def run_snapshot(
    snapshot: SnapshotPoint | ExportedSnapshot,
    tables: Sequence[TableSchema],
    *,
    conn_params: dict[str, Any],
    stage: Stage,
    loader: SnapshotLoader,
    pipeline: str,
    deadline: float,
    snapshot_id: str | None = None,
    part_max_rows: int = 50_000,
    part_max_bytes: int = DEFAULT_PART_MAX_BYTES,
    progress: Callable[[SnapshotProgress], None] | None = None,
    on_table: Callable[[FinishedTable], None] | None = None,
    spool_dir: Path | None = None,
    clock: Callable[[], float] = time.monotonic,
    fence: Callable[[], None] = lambda: None,
) -> SnapshotResult:
    """Copy, stage, load and swap ``tables`` at ``snapshot`` until done or ``deadline`` passes.

    ``deadline`` is a ``clock()`` value (``time.monotonic`` unless a test passes another clock).
    ``on_table`` runs as each table is swapped in (so a caller can record it even if a later table
    fails). A failure raises the error (the table that failed keeps its previous target); the
    tables swapped in before it stay swapped. ``fence`` runs before each table is loaded and
    swapped in, and raises when the run may no longer change the target (its lease).
    """
    point = snapshot.point if isinstance(snapshot, ExportedSnapshot) else snapshot
    started = time.monotonic()
    sid = snapshot_id or new_snapshot_id(point.lsn)
    token = _token(sid)
    prefix = snapshot_prefix(pipeline, sid)
    fields = {"pipeline": pipeline, "snapshot": sid, "lsn": str(point.lsn)}
    finished: list[FinishedTable] = []
    staged: list[SnapshotTable] = []
    log.info(
        "snapshot started: %d tables at %s", len(tables), point.lsn, extra={**fields, "tables": len(tables)}
    )
    conn: Any = None
    stopped: Literal["complete", "deadline"] = "complete"

    def publish_manifest() -> tuple[str, ...]:
        """The manifest of the tables swapped in so far (the others listed as unfinished): rebuild
        finds each table's latest copy by it, and prune keeps what it holds."""
        done_names = {t.table for t in finished}
        unfinished = tuple(t.qualified for t in tables if t.qualified not in done_names)
        manifest = build_manifest(
            pipeline,
            sid,
            point.lsn,
            point.lsn,
            [s.staged for s in staged],
            {
                "kind": "snapshot",
                "snapshot_id": sid,
                "lsn": str(point.lsn),
                "lsn_int": point.lsn.value,
                "row_lsn": snapshot_row_lsn(point.lsn),
                "taken_at": point.taken_at.isoformat(),
                "unfinished": list(unfinished),
            },
        )
        write_manifest(stage, prefix, manifest)
        return unfinished

    try:
        with tempfile.TemporaryDirectory(prefix="cdc-snapshot-", dir=spool_dir) as tmp:
            spool = Path(tmp)
            for index, table in enumerate(tables):
                if clock() >= deadline:
                    stopped = "deadline"
                    break
                if isinstance(snapshot, ExportedSnapshot) and not snapshot.alive:
                    raise _gone(snapshot)
                if conn is None or conn.closed:
                    conn = open_copy_connection(conn_params)
                report = _reporter(progress, index, len(tables))

                def upload(path: Path, _file: StagedFile) -> None:
                    stage.publish(spool, prefix)  # the spool holds only this part
                    path.unlink()

                try:
                    copied = copy_table(
                        conn,
                        table,
                        point,
                        spool,
                        part_max_rows=part_max_rows,
                        part_max_bytes=part_max_bytes,
                        on_part=upload,
                        deadline=deadline,
                        progress=report,
                        clock=clock,
                    )
                except SnapshotDeadline as exc:
                    log.warning("%s", exc, extra={**fields, "table": table.qualified})
                    stopped = "deadline"
                    break
                if clock() >= deadline:
                    log.warning(
                        "time budget ran out after copying %s and before loading it",
                        table.qualified,
                        extra={**fields, "table": table.qualified},
                    )
                    stopped = "deadline"
                    break
                fence()
                _emit(progress, "load", copied, index, len(tables))
                loaded = loader.load(copied.staged, f"{prefix}/{copied.staged.stage_dir}", token=token)
                done = FinishedTable(
                    table.qualified,
                    point.lsn,
                    copied.rows,
                    len(copied.staged.files),
                    copied.bytes_read,
                    copied.seconds,
                    loaded.seconds,
                )
                finished.append(done)
                staged.append(copied)
                _emit(progress, "done", copied, index, len(tables))
                if on_table is not None:
                    on_table(done)
        unfinished = publish_manifest()
    except BaseException as exc:
        if finished:
            exc.add_note(f"tables swapped in before the failure: {', '.join(t.table for t in finished)}")
            try:  # the tables swapped in are the targets' copies now: stage what they hold
                publish_manifest()
            except Exception as failed:  # noqa: BLE001 - the first failure is the one raised
                lost = (
                    f"the manifest of the tables swapped in could not be written ({failed}): "
                    "rebuild cannot use their copies, and prune takes them for unusable; "
                    "run cdc snapshot --tables for them again"
                )
                exc.add_note(lost)
                log.error(lost)
        log.error(
            "snapshot failed: %s",
            exc,
            extra={**fields, "finished": [t.table for t in finished], "error_class": type(exc).__name__},
        )
        raise
    finally:
        if conn is not None and not conn.closed:
            conn.close()
    message = _message(finished, unfinished)
    result = SnapshotResult(
        sid, point.lsn, prefix, tuple(finished), unfinished, stopped, message, time.monotonic() - started
    )
    log_fn = log.info if result.complete else log.warning
    log_fn(message, extra={**fields, "summary": result.as_dict()})
    return result


def _message(finished: list[FinishedTable], unfinished: tuple[str, ...]) -> str:
    rows = sum(t.rows for t in finished)
    if not unfinished:
        return f"snapshot complete: {len(finished)} tables, {rows} rows swapped in"
    return (
        f"snapshot stopped at the time budget: {len(finished)} of {len(finished) + len(unfinished)} tables "
        f"swapped in ({rows} rows); not finished: {', '.join(unfinished)}. Their targets and the checkpoint "
        "are untouched. Tables too large for one invocation: run `cdc snapshot --config FILE --tables "
        f"{shlex.quote(','.join(unfinished))}` from the CLI or a longer-running task (e.g. ECS/Fargate), "
        "not the Lambda"
    )


def _reporter(
    progress: Callable[[SnapshotProgress], None] | None, index: int, total: int
) -> Callable[[CopyProgress], None] | None:
    if progress is None:
        return None
    sink = progress

    def report(p: CopyProgress) -> None:
        sink(SnapshotProgress("copy", p.table, index, total, p.rows, p.bytes, p.parts, p.elapsed_s))

    return report


def _emit(
    progress: Callable[[SnapshotProgress], None] | None,
    phase: Literal["load", "done"],
    copied: SnapshotTable,
    index: int,
    total: int,
) -> None:
    if progress is not None:
        progress(
            SnapshotProgress(
                phase,
                copied.table.qualified,
                index,
                total,
                copied.rows,
                copied.bytes_read,
                len(copied.staged.files),
                copied.seconds,
            )
        )


def _gone(snapshot: ExportedSnapshot) -> Exception:
    return SourceError(
        f"the exported snapshot of slot {snapshot.slot} is gone (its connection closed); "
        "create a new snapshot and run again"
    )
