"""Snapshot mode: when a window runs a snapshot instead of reading the slot, and how a snapshot
moves the checkpoint.

* A **full snapshot** (first run, slot missing or invalidated, checkpoint and slot disagreeing)
  drops a slot that cannot serve, creates the slot with
  an exported snapshot, copies every table at the slot's consistent point S, swaps each in, and
  sets the checkpoint to S: incremental mode resumes there with nothing missed or applied twice.
* A **re-snapshot** an operator asks for (of every table, or of the tables named) copies them at
  the consistent point S_T of a temporary slot while the pipeline's slot keeps its place and
  nothing stops; the checkpoint records S_T per table and
  later windows skip that table's changes committed before S_T (they are in the copy).

A snapshot that does not finish within the time budget leaves the previous targets and the
checkpoint as they were, and says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cdc.checkpoint import Checkpoint, Lease
from cdc.errors import CdcError, ConfigError, SchemaError, TransientError
from cdc.model import Lsn, WindowResult
from cdc.progress import ProgressLine, bar, clock_text
from cdc.snapshot.export import create_slot_with_snapshot, create_temporary_snapshot, drop_slot
from cdc.snapshot.load import SnapshotLoader
from cdc.snapshot.run import FinishedTable, SnapshotResult, run_snapshot
from cdc.snowflake.sql import target_columns
from cdc.source.slot import SlotInfo

if TYPE_CHECKING:
    from cdc.engine import Engine
    from cdc.source.catalog import Catalog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    mode: str  # "incremental" | "snapshot" | "tables"
    reason: str | None = None
    tables: tuple[str, ...] = ()


AUTO_RESNAPSHOT = "re-snapshot of tables a schema change stopped"


def decide(
    checkpoint: Checkpoint | None,
    slot: SlotInfo | None,
    requested: str | None,
    tables: tuple[str, ...],
    resnapshot_stopped: bool = False,
) -> Decision:
    """Which kind of window to run (pure: the inputs say everything).

    With ``resnapshot_stopped``, tables that a schema change stopped (their stop record says
    ``resnapshot``) are re-snapshotted by the next scheduled run, once: if that copy fails, the
    stop records the failure and waits for an operator.
    """
    if checkpoint is None:
        return Decision("snapshot", "no checkpoint: first run of the pipeline")
    if slot is None:
        return Decision("snapshot", f"replication slot is missing (checkpoint at {checkpoint.lsn})")
    if slot.wal_status == "lost":
        return Decision(
            "snapshot", "replication slot is invalidated (wal_status=lost): the WAL it needed is gone"
        )
    if slot.confirmed_flush is not None and slot.confirmed_flush > checkpoint.lsn:
        return Decision(
            "snapshot",
            f"replication slot is confirmed at {slot.confirmed_flush}, past the checkpoint {checkpoint.lsn}: "
            "changes in between cannot be read again (was the slot recreated?)",
        )
    if requested == "snapshot":
        # the slot is healthy: copy at a temporary slot's point while it keeps its place
        return Decision("tables", "requested", tables)
    if requested is None and resnapshot_stopped:
        stops = checkpoint.extra.get("stopped_tables") or {}
        due = tuple(
            sorted(t for t, v in stops.items() if v.get("resnapshot") and not v.get("resnapshot_failed"))
        )
        if due:
            return Decision("tables", AUTO_RESNAPSHOT, due)
    return Decision("incremental")


def table_oids(known: dict[str, str], current: dict[tuple[str, str], int]) -> dict[str, str]:
    """The OID -> ``schema.table`` map the checkpoint keeps, brought up to date with the catalog."""
    return {**known, **{str(oid): f"{schema}.{name}" for (schema, name), oid in current.items()}}


def copy_bookkeeping(
    known: dict[str, str],
    current: dict[tuple[str, str], int],
    refused: dict[tuple[str, str], int],
    source_tables: tuple[str, ...],
) -> dict[str, Any]:
    """What the checkpoint keeps so that a later window's ``copy_stops`` finds the tables renamed,
    replicated again after being refused, or added to ``source_tables`` since."""
    return {
        "table_oids": table_oids(known, current),
        "refused_oids": table_oids({}, refused),
        "source_tables": list(source_tables),
    }


def renamed_tables(known: dict[str, str], current: dict[tuple[str, str], int]) -> dict[str, str]:
    """Tables whose OID the pipeline knew under another name: ``{new name: old name}``.

    PostgreSQL keeps a table's OID through ALTER TABLE ... RENAME (and SET SCHEMA): a replicated
    table under a new name is a new target that holds none of its rows, so it needs a copy."""
    renamed = {}
    for (schema, name), oid in current.items():
        old = known.get(str(oid))
        if old is not None and old != f"{schema}.{name}":
            renamed[f"{schema}.{name}"] = old
    return renamed


def accepted_again(refused: dict[str, str], current: dict[tuple[str, str], int]) -> list[str]:
    """Replicated tables that were refused at the checkpoint (by OID): the stream skipped their
    changes meanwhile (and a first snapshot left them out), so their targets need a copy."""
    return [f"{schema}.{name}" for (schema, name), oid in current.items() if str(oid) in refused]


def newly_selected(before: list[str] | None, tables: list[str]) -> list[str]:
    """Of ``tables`` (replicated now), those ``source_tables`` did not name at the checkpoint
    (``before``; empty: every table, None: a checkpoint that did not record it). Their changes
    were never read, so their targets need a copy (also for a table created since: harmless)."""
    if not before:
        return []
    named = set(before)
    return [t for t in tables if t not in named]


def copy_stops(checkpoint: Checkpoint, catalog: Catalog) -> dict[str, dict[str, Any]]:
    """Stop records, with a re-snapshot due, for the tables whose targets miss rows: renamed ones
    (a new target), ones replicated again after being refused (``accepted_again``) and ones added
    to ``source_tables`` (``newly_selected``)."""
    reasons = {
        new: f"table {old} was renamed to {new}: its new target holds none of its rows (the target "
        f"of {old} is left as it was)"
        for new, old in renamed_tables(checkpoint.extra.get("table_oids") or {}, catalog.oids).items()
    }
    idents = {t.qualified: t.ident for t in catalog.tables.values()}
    for table in newly_selected(checkpoint.extra.get("source_tables"), sorted(idents)):
        reasons.setdefault(
            table,
            f"table {table} was added to source_tables: its target holds none of the rows it had before",
        )
    for table in accepted_again(checkpoint.extra.get("refused_oids") or {}, catalog.oids):
        reasons.setdefault(
            table,
            f"table {table} was refused until now and its changes were skipped meanwhile, so its "
            "target misses them",
        )
    return {
        table: {
            "schema": idents[table][0],
            "table": idents[table][1],
            "lsn": str(checkpoint.lsn),
            "reason": f"{reason}; re-snapshot the table (cdc snapshot --tables {table})",
            "resnapshot": True,
        }
        for table, reason in reasons.items()
        if table in idents
    }


def snapshot_lsns(checkpoint: Checkpoint | None) -> dict[str, Lsn]:
    """Per table, the LSN of its last table re-snapshot that windows must still honour."""
    if checkpoint is None:
        return {}
    raw = checkpoint.extra.get("snapshot_lsns") or {}
    return {table: Lsn.parse(text) for table, text in raw.items() if Lsn.parse(text) > checkpoint.lsn}


class ProgressPrinter:
    """Snapshot progress (a ``SnapshotProgress`` per step): a bar redrawn in place on a terminal
    (stderr), plain lines otherwise; copy steps are throttled, load and done always show."""

    def __init__(self, stream: Any, tty: bool) -> None:
        self.line = ProgressLine(stream, tty)
        self.tty = tty

    def __call__(self, p: Any) -> None:
        rate = p.rows / p.elapsed_s if p.elapsed_s else 0.0
        done = p.index + (1 if p.phase == "done" else 0)
        text = (
            f"{bar(done / p.tables if p.tables else 1.0, 12)} table {p.index + 1}/{p.tables} {p.table}: "
            f"{p.phase} {p.rows:,} rows, {p.bytes / 1e6:,.1f} MB, {p.parts} parts, {rate:,.0f} rows/s, "
            f"{clock_text(p.elapsed_s)}"
        )
        self.line.show(text, force=p.phase != "copy")
        if p.phase == "done":
            self.line.end()


ProgressHook = Callable[[Any], None]


def _select(catalog: Any, names: tuple[str, ...]) -> list[Any]:
    by_name = {t.qualified: t for t in catalog.tables.values()}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigError(
            [
                f"table {n!r} is not replicated by this pipeline (or has no key); replicated: "
                f"{', '.join(sorted(by_name)) or 'none'}"
                for n in unknown
            ]
        )
    return [by_name[n] for n in names]


def run_full(
    engine: Engine,
    window_id: str,
    lease: Lease,
    checkpoint: Checkpoint | None,
    slot: SlotInfo | None,
    reason: str,
    started: float,
    progress: ProgressHook | None,
) -> WindowResult:
    """Full snapshot: a new slot with an exported snapshot, every table copied at its consistent point."""
    settings = engine.settings
    params = engine.source.conn_params
    log.warning(
        "snapshot mode", extra={"pipeline": settings.pipeline, "window_id": window_id, "reason": reason}
    )
    if slot is not None:
        drop_slot(params, slot.name)  # it cannot serve: a new one exports the snapshot
    with create_slot_with_snapshot(params, engine.source.slot) as snap:
        catalog = _catalog_after_the_point(engine)
        notes = list(catalog.refused.values())
        tables, stopped = _mappable(list(catalog.tables.values()))
        notes += [f"table {t} stopped: {v['reason']}" for t, v in stopped.items()]
        result = _copy(engine, snap, tables, progress)
        lsn = snap.lsn
    if not result.complete:
        notes.append(result.message)
        return WindowResult(
            settings.pipeline,
            window_id,
            "snapshot_incomplete",
            end_lsn=str(checkpoint.lsn) if checkpoint else None,
            duration_s=time.monotonic() - started,
            mode="snapshot",
            reason=reason,
            snapshot=result.as_dict(),
            notes=tuple(notes),
        )
    engine.store.save(
        lsn=lsn,
        slot=engine.source.slot,
        window_id=window_id,
        lease=lease,
        expected=checkpoint,
        extra={
            "snapshot": {"id": result.snapshot_id, "lsn": str(lsn), "reason": reason},
            "stopped_tables": stopped,
            "snapshot_lsns": {},
            **copy_bookkeeping({}, catalog.oids, catalog.refused_oids, settings.source_tables),
        },
    )
    return WindowResult(
        settings.pipeline,
        window_id,
        "snapshot",
        str(checkpoint.lsn) if checkpoint else None,
        str(lsn),
        changes=sum(t.rows for t in result.finished),
        tables={t.table: {"snapshot_rows": t.rows} for t in result.finished},
        duration_s=time.monotonic() - started,
        caught_up=False,
        mode="snapshot",
        reason=reason,
        snapshot=result.as_dict(),
        notes=tuple(notes),
        stopped_tables=tuple(sorted(stopped)),
    )


def _catalog_after_the_point(engine: Engine) -> Catalog:
    """The tables and columns a snapshot copies, read once its point is fixed.

    Read before it, a column added and filled (or a table created and filled) in between would be
    left out of the copy while its values are not in the stream either. Read after it, a column
    added since then is copied with the value its rows read (its default, or NULL), and a table
    created since then is copied empty, its rows all coming through the stream; a table rewritten
    since then fails its copy (``cdc.snapshot.copy``), which is taken again."""
    return engine.source.catalog()


def _copy(
    engine: Engine,
    snap: Any,
    tables: list[Any],
    progress: ProgressHook | None,
    on_table: Callable[[FinishedTable], None] | None = None,
    automatic: bool = False,
) -> SnapshotResult:
    """Copy, stage, load and swap ``tables`` at ``snap`` within the engine's snapshot budget (an
    ``automatic`` re-snapshot's, or that of one an operator asked for)."""
    settings = engine.settings
    return run_snapshot(
        snap,
        tables,
        conn_params=engine.source.conn_params,
        stage=engine.stage,
        loader=SnapshotLoader.from_settings(
            engine.sink.connection, settings, settings.snowflake_swap_strategy
        ),
        pipeline=settings.pipeline,
        deadline=time.monotonic() + engine.budget.snapshot_s(automatic),
        part_max_rows=settings.part_max_rows,
        progress=progress,
        on_table=on_table,
        fence=engine.fence,
    )


class SnapshotIncomplete(CdcError):
    """An automatic re-snapshot ran out of time."""


def _mark_failed(stopped: dict[str, Any], names: tuple[str, ...], failure: CdcError) -> None:
    for name in names:
        if name in stopped:
            stopped[name] = {
                **stopped[name],
                "resnapshot_failed": f"{type(failure).__name__}: {failure}",
            }


def _mappable(tables: list[Any]) -> tuple[list[Any], dict[str, dict[str, str]]]:
    """The tables that map onto Snowflake, and the others with the reason: they stop, the rest go on."""
    good, stopped = [], {}
    for table in tables:
        try:
            target_columns(table)
        except SchemaError as exc:
            stopped[table.qualified] = {
                "schema": table.schema,
                "table": table.name,
                "lsn": "0/0",
                "reason": str(exc),
            }
            continue
        good.append(table)
    return good, stopped


def run_tables(
    engine: Engine,
    window_id: str,
    lease: Lease,
    checkpoint: Checkpoint,
    names: tuple[str, ...],
    started: float,
    progress: ProgressHook | None,
    reason: str | None = "requested",
) -> WindowResult:
    """Re-snapshot some tables at a temporary slot's consistent point; the pipeline's slot streams on."""
    settings = engine.settings
    params = engine.source.conn_params
    auto = reason == AUTO_RESNAPSHOT
    finished: list[FinishedTable] = []
    oids: dict[str, int] = {}  # of the catalog's tables, by schema.table

    def record(failure: CdcError | None = None) -> None:
        """Tables swapped in hold the copy at S_T: later windows must skip their older changes.
        They hold all their rows too: no window has to copy them because they were renamed,
        refused or not in source_tables before (``copy_stops``)."""
        extra = checkpoint.extra
        lsns = dict(extra.get("snapshot_lsns") or {})
        stopped = dict(extra.get("stopped_tables") or {})
        known = dict(extra.get("table_oids") or {})
        refused = dict(extra.get("refused_oids") or {})
        selected = list(extra.get("source_tables") or [])
        for table in finished:
            lsns[table.table] = str(table.lsn)
            stopped.pop(table.table, None)
            if table.table in oids:
                known[str(oids[table.table])] = table.table
                refused.pop(str(oids[table.table]), None)
            if selected and table.table not in selected:
                selected.append(table.table)
        if failure is not None:
            _mark_failed(stopped, names, failure)
        engine.store.save(
            lsn=checkpoint.lsn,
            slot=engine.source.slot,
            window_id=window_id,
            lease=lease,
            expected=checkpoint,
            extra={
                **extra,
                "snapshot_lsns": lsns,
                "stopped_tables": stopped,
                "table_oids": known,
                "refused_oids": refused,
                **({"source_tables": selected} if "source_tables" in extra else {}),
            },
        )

    try:
        with create_temporary_snapshot(params, f"cdc_snap_{settings.pipeline}") as snap:
            catalog = _catalog_after_the_point(engine)
            oids.update({f"{schema}.{name}": oid for (schema, name), oid in catalog.oids.items()})
            tables = _select(catalog, names) if names else _mappable(list(catalog.tables.values()))[0]
            result = _copy(engine, snap, tables, progress, finished.append, automatic=auto)
    except CdcError as exc:
        given_up = auto and (not isinstance(exc, TransientError) or engine.last_attempt)
        if finished or given_up:
            # the tables done before the failure stay done; an automatic re-snapshot that failed
            # for good, or for a passing reason on the window's last attempt, is not tried again
            # for the others (an operator runs cdc snapshot --tables): the other tables' changes
            # must not wait for it run after run. A passing failure before that is retried.
            record(exc if given_up else None)
        raise
    if auto and not result.complete:
        # a copy that does not fit the time budget is not tried again by every run (the other
        # tables' changes must keep flowing): an operator runs it with a longer budget
        record(SnapshotIncomplete(result.message))
    elif finished:
        record()
    stopped = {
        t: v
        for t, v in (checkpoint.extra.get("stopped_tables") or {}).items()
        if t not in {f.table for f in finished}
    }
    notes = () if result.complete else (result.message,)
    return WindowResult(
        settings.pipeline,
        window_id,
        "snapshot" if result.complete else "snapshot_incomplete",
        str(checkpoint.lsn),
        str(checkpoint.lsn),
        changes=sum(t.rows for t in result.finished),
        tables={t.table: {"snapshot_rows": t.rows} for t in result.finished},
        duration_s=time.monotonic() - started,
        mode="tables",
        reason=reason,
        snapshot=result.as_dict(),
        notes=notes,
        stopped_tables=tuple(sorted(stopped)),
    )
