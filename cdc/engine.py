"""One window of the pipeline: lease, checkpoint, read, stage, apply, checkpoint, confirm.

The engine composes the outside systems through small protocols and keeps every invariant in
one place: the checkpoint never moves past what Snowflake committed, and the slot is never
confirmed past the checkpoint. A crash between any two steps is harmless because the next run
re-reads from the checkpoint and the MERGE ignores changes the target already has.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
import uuid
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, Protocol

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from cdc import failpoints, snapshot_mode, window_summary
from cdc.apply import ApplySink, OutOfTime, SinkPool, TableApply, TimeGuard, apply_tables
from cdc.budget import InvocationBudget
from cdc.checkpoint import Checkpoint, CheckpointStore, Lease
from cdc.errors import CdcError, LeaseHeld, SchemaError, TransientError
from cdc.lease import LeaseKeeper
from cdc.logs import WindowLog, redact
from cdc.model import Begin, Commit, Lsn, Message, SlotHealth, TableSchema, WindowResult
from cdc.reader import ReadBounds, WindowRead, WindowReader
from cdc.settings import Settings
from cdc.snapshot_mode import ProgressHook
from cdc.source.catalog import Catalog
from cdc.source.slot import SlotInfo, StreamPosition
from cdc.source.wal2json import RowChange
from cdc.stage import Stage, build_manifest, window_prefix, write_manifest

log = logging.getLogger(__name__)


class Source(Protocol):
    slot: str
    conn_params: dict[str, Any]

    def catalog(self) -> Catalog: ...
    def current_wal_lsn(self) -> Lsn: ...
    def slot_info(self) -> SlotInfo | None: ...
    def create_slot(self) -> SlotInfo: ...
    def stream(
        self, start: Lsn, until: Lsn, deadline: float, position: StreamPosition
    ) -> Generator[tuple[Message, int], None, None]: ...
    def stream_rows(
        self, start: Lsn, until: Lsn, deadline: float, position: StreamPosition, hard: bool = True
    ) -> Generator[tuple[Begin | Commit | RowChange, int], None, None]: ...
    def confirm(self, lsn: Lsn) -> None: ...


class Sink(ApplySink, Protocol):
    @property
    def connection(self) -> Any: ...

    def ensure_table(self, table: TableSchema) -> Any: ...
    def column_origins(self, table: TableSchema) -> dict[str, int]: ...


class Engine:
    def __init__(
        self,
        settings: Settings,
        *,
        source: Source,
        sink_factory: Callable[[], Sink],
        stage: Stage,
        store: CheckpointStore,
        time_left: Callable[[], float] | None = None,
        owner: str | None = None,
    ) -> None:
        self.settings = settings
        self.source = source
        self._sink_factory = sink_factory
        self._sink: Sink | None = None
        # the applies of a window's tables run side by side, each on a sink of its own
        self._sinks = SinkPool(lambda: self.sink, sink_factory)
        self.stage = stage
        self.store = store
        self.budget = InvocationBudget(settings, time_left)
        self._keeper: LeaseKeeper | None = None  # while a window runs (see fence)
        self.owner = owner or f"cdc-{uuid.uuid4().hex[:12]}"
        self.last_retries = 0
        self.last_checkpoint_lsn: str | None = None

    @property
    def sink(self) -> Sink:
        if self._sink is None:
            self._sink = self._sink_factory()
        return self._sink

    def close(self) -> None:
        """Close the connections this engine opened."""
        close_source = getattr(self.source, "close", None)
        if close_source is not None:
            close_source()
        self._sinks.close()
        if self._sink is not None:
            close_sink = getattr(self._sink, "close", None)
            if close_sink is not None:
                close_sink()
            self._sink = None

    def slot_health(self) -> SlotHealth | None:
        """The slot's wal_status, retained and safe WAL and lag; None when it cannot be read."""
        try:
            slot = self.source.slot_info()
            if slot is None:
                return None
            wal = self.source.current_wal_lsn()
        except Exception as exc:  # noqa: BLE001 - only reported: never fails the window it describes
            log.warning("cannot read the slot's health", extra={"error": f"{type(exc).__name__}: {exc}"})
            return None
        lag = wal.value - slot.confirmed_flush.value if slot.confirmed_flush is not None else None
        return SlotHealth(slot.wal_status, slot.retained_bytes, slot.safe_wal_bytes, lag)

    def fence(self) -> None:
        """Before a step that changes the target (a MERGE, a snapshot's swap): raise
        ``CheckpointConflict`` unless this run still holds its lease (``cdc.lease``)."""
        if self._keeper is not None:
            self._keeper.check()

    @property
    def last_attempt(self) -> bool:
        """Whether the window's current attempt is its last (no retry follows a failure)."""
        return self.last_retries + 1 >= self.settings.retry_attempts

    def run_window(
        self,
        mode: str | None = None,
        tables: tuple[str, ...] = (),
        progress: ProgressHook | None = None,
    ) -> WindowResult:
        """Run one window: incremental, or a snapshot when one is needed or ``mode == "snapshot"``
        asks for it (of ``tables`` only, when given)."""
        started = time.monotonic()
        window_id = uuid.uuid4().hex[:16]
        wlog = WindowLog(log, {"pipeline": self.settings.pipeline, "window_id": window_id})
        lease: Lease | None = None
        self.last_retries = 0
        try:
            for attempt in Retrying(
                retry=retry_if_exception_type(TransientError),
                stop=stop_after_attempt(self.settings.retry_attempts),
                wait=wait_exponential_jitter(initial=1, max=20),
                reraise=True,
            ):
                with attempt:
                    n = attempt.retry_state.attempt_number
                    self.last_retries = n - 1
                    if n > 1:
                        wlog.warning("retrying window after a transient error", extra={"attempt": n})
                    if lease is None:  # DynamoDB unreachable or throttled is retried like the rest
                        lease = self.store.acquire_lease(self.owner, self.settings.lease_ttl_s)
                        # kept alive from here to the release, across the attempts
                        self._keeper = LeaseKeeper(self.store, lease, self.settings.lease_ttl_s).__enter__()
                    result = self._window(window_id, lease, wlog, started, mode, tables, progress)
        except LeaseHeld as held:  # only acquire_lease raises it: no lease was taken
            wlog.info("lease held by another run; nothing to do", extra={"owner": held.owner})
            return WindowResult(self.settings.pipeline, window_id, "lease_held", notes=(str(held),))
        except Exception as exc:  # noqa: BLE001 - every failure is a failed result that is dead-lettered
            known = isinstance(exc, CdcError)
            message = (
                "; ".join([str(exc), *getattr(exc, "__notes__", [])])  # what else it says (add_note)
                if known
                else f"unexpected error {type(exc).__name__}: {exc}; the window stopped there and the next "
                "run starts again from the checkpoint; the log line 'window failed' has the traceback: "
                "report it if it happens again"
            )
            wlog.error(
                "window failed",
                exc_info=not known,
                extra={"error_class": type(exc).__name__, "error": message},
            )
            result = WindowResult(
                self.settings.pipeline,
                window_id,
                "failed",
                duration_s=time.monotonic() - started,
                error={
                    "class": type(exc).__name__,
                    "message": redact(message),
                    "kind": "transient" if isinstance(exc, TransientError) else "permanent",
                },
            )
        finally:
            if self._keeper is not None:
                self._keeper.__exit__(None, None, None)
                self._keeper = None
            try:
                if lease is not None:
                    self.store.release_lease(lease)
            except Exception as exc:  # noqa: BLE001 - the lease expires on its own; the result stands
                wlog.warning("could not release the lease", extra={"error": f"{type(exc).__name__}: {exc}"})
        # reported for failed windows too: WAL piles up most while windows fail
        result = dataclasses.replace(result, slot=self.slot_health())
        wlog.info("window summary", extra={"summary": result.as_dict()})
        return result

    # -- the steps ---------------------------------------------------------------------------
    def _window(
        self,
        window_id: str,
        lease: Lease,
        wlog: WindowLog,
        started: float,
        mode: str | None,
        tables: tuple[str, ...],
        progress: ProgressHook | None,
    ) -> WindowResult:
        checkpoint = self.store.load()
        self.last_checkpoint_lsn = str(checkpoint.lsn) if checkpoint else None
        slot = self.source.slot_info()
        decision = snapshot_mode.decide(
            checkpoint, slot, mode, tables, resnapshot_stopped=self.settings.resnapshot_stopped_tables
        )
        progress = _with_failpoint(progress)
        if decision.mode == "snapshot":
            return snapshot_mode.run_full(
                self, window_id, lease, checkpoint, slot, decision.reason or "", started, progress
            )
        assert checkpoint is not None
        if decision.mode == "tables":
            return snapshot_mode.run_tables(
                self, window_id, lease, checkpoint, decision.tables, started, progress, decision.reason
            )

        catalog = self.source.catalog()
        stopped: dict[str, Any] = dict(checkpoint.extra.get("stopped_tables") or {})
        for table, stop in snapshot_mode.copy_stops(checkpoint, catalog).items():
            stopped.setdefault(table, stop)  # renamed, replicated again, newly selected: copy it
        notes = list(catalog.refused.values())
        notes += [
            f"table {t} is stopped since {v['lsn']}: {v['reason']}"
            + (
                f"; the automatic re-snapshot failed: {v['resnapshot_failed']}"
                if "resnapshot_failed" in v
                else ""
            )
            for t, v in stopped.items()
        ]
        for note in notes:
            wlog.warning(note)
        reader = WindowReader(
            self.source,
            catalog,
            lambda table: self.sink.column_origins(table),
            skip={(v["schema"], v["table"]) for v in stopped.values()},
            snapshot_lsns=snapshot_mode.snapshot_lsns(checkpoint),
        )
        self.budget.check_reserve()
        bounds = ReadBounds(
            until=self.source.current_wal_lsn(),
            deadline=time.monotonic() + self.budget.read_s(),
            max_changes=self.settings.window_max_changes,
            part_max_rows=self.settings.part_max_rows,
            hard_deadline=self.budget.time_left is not None,
            whole_budget=self.last_retries == 0,
        )
        pipeline = self.settings.pipeline
        with tempfile.TemporaryDirectory(prefix="cdc-window-") as spool:
            read = reader.read(checkpoint.lsn, Path(spool), bounds)
            notes += read.notes
            failpoints.hit("after_read")
            if read.end <= checkpoint.lsn and not read.staged:
                copy_due = self._keep_stops(checkpoint, lease, stopped, catalog, reader)
                return WindowResult(
                    pipeline,
                    window_id,
                    "empty",
                    str(checkpoint.lsn),
                    str(checkpoint.lsn),
                    duration_s=time.monotonic() - started,
                    stop_reason=read.stop_reason,
                    caught_up=read.caught_up and not copy_due,
                    notes=tuple(notes),
                    stopped_tables=tuple(sorted(stopped)),
                )
            prefix = window_prefix(pipeline, checkpoint.lsn, read.end)
            # every window that moves the checkpoint leaves a manifest (an empty one has no
            # tables), so the staged windows chain without gaps for replay
            bytes_staged = self._stage(window_id, checkpoint.lsn, read, Path(spool), prefix)
            failpoints.hit("after_stage")
            positions = window_summary.positions(Path(spool), read, window_id)
        # reading may have taken long: make sure no other run took over before anything is applied
        lease = self.store.renew_lease(lease, self.settings.lease_ttl_s)
        for table, reason in read.stopped.items():
            schema_name, table_name = reader.tables_by_name[table]
            stopped[table] = {
                "schema": schema_name,
                "table": table_name,
                "lsn": str(checkpoint.lsn),
                "reason": reason,
                "resnapshot": True,  # a copy of the table at a new point resolves it
            }
        ready: list[TableApply] = []
        for staged in read.staged:
            try:
                evolution = self.sink.ensure_table(staged.table)
            except SchemaError as exc:
                # this table stops (until it is re-snapshotted); the others go on
                stopped[staged.table.qualified] = {
                    "schema": staged.table.schema,
                    "table": staged.table.name,
                    "lsn": str(checkpoint.lsn),
                    "reason": str(exc),
                    "resnapshot": True,
                }
                wlog.error("table stopped", extra={"table": staged.table.qualified, "reason": str(exc)})
                continue
            notes += list(getattr(evolution, "notes", []))
            ready.append(TableApply(staged, f"{prefix}/{staged.stage_dir}"))
        assert read.last_commit_lsn is not None or not ready
        try:
            applied = apply_tables(
                ready,
                self._sinks,
                parallelism=self.settings.apply_parallelism,
                window_id=window_id,
                max_lsn=read.last_commit_lsn.value if read.last_commit_lsn else 0,
                guard=TimeGuard(
                    self.budget.time_left,
                    self.settings.window_safety_margin_s,
                    self.settings.window_merge_reserve_s,
                ),
                between=lambda: failpoints.hit("between_merges"),
                fence=self.fence,
            )
        except OutOfTime as exc:  # the checkpoint stays: the next run applies the window again
            wlog.warning("window stopped before applying every table", extra={"error": str(exc)})
            return WindowResult(
                pipeline,
                window_id,
                "failed",
                str(checkpoint.lsn),
                str(read.end),
                transactions=read.transactions,
                changes=read.changes,
                bytes_staged=bytes_staged,
                duration_s=time.monotonic() - started,
                stop_reason="time_budget",
                error={"class": "OutOfTime", "message": str(exc), "kind": "transient"},
                notes=tuple(notes),
            )
        failpoints.hit("after_merge")
        new_stops = {t: v for t, v in stopped.items() if t not in checkpoint.extra.get("stopped_tables", {})}
        auto = " (the next run re-snapshots it)" if self.settings.resnapshot_stopped_tables else ""
        notes += [
            f"table {t} stopped: {v['reason']}{auto if v.get('resnapshot') else ''}"
            for t, v in new_stops.items()
        ]
        done = {s.table.qualified for s in applied}
        positions = {t: p for t, p in positions.items() if t in done}
        summary = window_summary.summary(
            window_id, checkpoint.lsn, read, applied, positions, new_stops, notes
        )
        summary.update(bytes_staged=bytes_staged, retries=self.last_retries)
        summary.update(duration_s=round(time.monotonic() - started, 3))
        summary.update(started_at=round(time.time() - summary["duration_s"], 3))
        self.store.save(
            lsn=read.end,
            slot=self.source.slot,
            window_id=window_id,
            lease=lease,
            expected=checkpoint,
            extra={
                **checkpoint.extra,
                "transactions": read.transactions,
                "changes": read.changes,
                "stage_prefix": prefix,
                **self._tables_kept(checkpoint, stopped, catalog, reader),
                # for `cdc status`: what this window did, and per table its newest applied change
                "last_window": summary,
                "tables": {**(checkpoint.extra.get("tables") or {}), **positions},
            },
        )
        failpoints.hit("after_checkpoint")
        failpoints.hit("before_confirm")
        self.source.confirm(read.end)
        failpoints.hit("after_confirm")
        return WindowResult(
            pipeline,
            window_id,
            "applied" if read.staged else "empty",
            str(checkpoint.lsn),
            str(read.end),
            transactions=read.transactions,
            changes=read.changes,
            tables={s.table.qualified: dict(s.ops) for s in applied},
            bytes_staged=bytes_staged,
            duration_s=time.monotonic() - started,
            stop_reason=read.stop_reason,
            # a table waiting for its automatic re-snapshot: the next run has work to do
            caught_up=read.caught_up and not any(auto and v.get("resnapshot") for v in new_stops.values()),
            notes=tuple(notes),
            stopped_tables=tuple(sorted(stopped)),
            lag_s=window_summary.commit_lag_s(read.last_commit_ts) if read.staged else None,
        )

    def _keep_stops(
        self,
        checkpoint: Checkpoint,
        lease: Lease,
        stopped: dict[str, Any],
        catalog: Catalog,
        reader: WindowReader,
    ) -> bool:
        """Save the stop records a window that read nothing found (a table added to
        source_tables, renamed, or replicated again), with the checkpoint at the same LSN: an
        idle source moves no WAL, and the next run must copy those tables all the same. True when
        such a copy is now due (the next run makes it)."""
        if all(t in (checkpoint.extra.get("stopped_tables") or {}) for t in stopped):
            return False
        lease = self.store.renew_lease(lease, self.settings.lease_ttl_s)
        self.store.save(
            lsn=checkpoint.lsn,
            slot=self.source.slot,
            window_id=checkpoint.window_id,
            lease=lease,
            expected=checkpoint,
            extra={**checkpoint.extra, **self._tables_kept(checkpoint, stopped, catalog, reader)},
        )
        return self.settings.resnapshot_stopped_tables

    def _tables_kept(
        self, checkpoint: Checkpoint, stopped: dict[str, Any], catalog: Catalog, reader: WindowReader
    ) -> dict[str, Any]:
        """What the checkpoint keeps about the tables: the stopped ones, and what tells the next
        window which tables were renamed, refused or newly selected (``snapshot_mode.copy_stops``)."""
        known = checkpoint.extra.get("table_oids") or {}
        return {
            "stopped_tables": stopped,
            **snapshot_mode.copy_bookkeeping(
                known, catalog.oids, reader.refused_oids, self.settings.source_tables
            ),
        }

    def _stage(self, window_id: str, start: Lsn, read: WindowRead, spool: Path, prefix: str) -> int:
        """Upload the window's parts, then its manifest: a manifest means the window is complete."""
        size = self.stage.publish(spool, prefix)
        manifest = build_manifest(
            self.settings.pipeline,
            window_id,
            start,
            read.end,
            read.staged,
            {
                "last_commit_lsn": read.last_commit_lsn.value if read.last_commit_lsn else None,
                "transactions": read.transactions,
                "changes": read.changes,
            },
        )
        write_manifest(self.stage, prefix, manifest)
        return size


def _with_failpoint(progress: ProgressHook | None) -> ProgressHook:
    """``progress``, plus the crash tests' snapshot failpoints (see cdc.failpoints)."""

    def hook(p: Any) -> None:
        if progress is not None:
            progress(p)
        if p.phase == "copy":
            failpoints.hit("snapshot_copying")
        if p.phase == "done":  # the table is swapped in
            failpoints.hit("snapshot_table_swapped")

    return hook
