"""One verify run: every replicated table (or a chosen few) compared, source against target.

``Verifier`` takes its clients through the constructor (a psycopg2 connection, the Snowflake
connection, the checkpoint store); ``verify(settings)`` builds them from settings. Results are
plain dataclasses whose ``as_dict`` is the ``--json`` output.

Consistency: the source and the target are read while the pipeline may be running. A row changed
after the last applied window differs until the next window applies it; run verify when the
pipeline is caught up. The report carries the checkpoint LSN and the source's WAL LSN at the
start of the run so that the operator can tell.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg2

from cdc.app import aws_client, build_sink, build_source, source_params
from cdc.checkpoint import CheckpointStore
from cdc.errors import CdcError, ConfigError, PermanentError, SchemaError
from cdc.model import Lsn, TableSchema
from cdc.secrets import VaultSecrets
from cdc.settings import Settings
from cdc.snowflake import sql as sfsql
from cdc.source.catalog import Catalog
from cdc.source.slot import SESSION_OPTIONS, classify_error
from cdc.verify.command import DEFAULT_BATCH_SIZE, DEFAULT_MAX_MISMATCHES
from cdc.verify.merge import Comparison, Layout, VerifyError, merge_compare
from cdc.verify.read import (
    Batches,
    source_count_sql,
    source_error,
    stream_source,
    stream_target,
    target_scan_sql,
    target_shape,
)

log = logging.getLogger(__name__)

# text output as the pipeline reads it (see cdc.compare): the walsender's settings, money in C
VERIFY_SESSION_OPTIONS = f"{SESSION_OPTIONS} -c lc_monetary=C"


@dataclass
class TableReport:
    table: str  # schema.table as PostgreSQL spells it
    source_rows: int | None = None
    target_rows: int | None = None
    comparison: Comparison | None = None
    error: str | None = None
    batches: Batches = field(default_factory=Batches)

    @property
    def equal(self) -> bool:
        return self.error is None and self.comparison is not None and self.comparison.equal

    def as_dict(self) -> dict[str, Any]:
        c = self.comparison
        return {
            "table": self.table,
            "source_rows": self.source_rows,
            "target_rows": self.target_rows,
            "equal": self.equal,
            "missing_in_target": list(c.missing) if c else [],
            "extra_in_target": list(c.extra) if c else [],
            "different": [{"key": k, "columns": cols} for k, cols in c.different] if c else [],
            "missing_count": c.missing_count if c else 0,
            "extra_count": c.extra_count if c else 0,
            "different_count": c.different_count if c else 0,
            "truncated": c.truncated if c else False,
            "error": self.error,
        }


@dataclass
class VerifyReport:
    pipeline: str
    tables: list[TableReport] = field(default_factory=list)
    checkpoint_lsn: Lsn | None = None
    source_wal_lsn: Lsn | None = None
    skipped: dict[str, str] = field(default_factory=dict)  # table -> why it is not replicated
    notes: list[str] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return all(t.equal for t in self.tables)

    @property
    def lag_bytes(self) -> int | None:
        if self.checkpoint_lsn is None or self.source_wal_lsn is None:
            return None
        return max(0, self.source_wal_lsn.value - self.checkpoint_lsn.value)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "equal": self.equal,
            "tables": [t.as_dict() for t in self.tables],
            "checkpoint_lsn": str(self.checkpoint_lsn) if self.checkpoint_lsn else None,
            "source_wal_lsn": str(self.source_wal_lsn) if self.source_wal_lsn else None,
            "lag_bytes": self.lag_bytes,
            "skipped": [{"table": t, "reason": r} for t, r in self.skipped.items()],
            "notes": list(self.notes),
        }


def select_tables(catalog: Catalog, wanted: Sequence[tuple[str, str]] | None) -> list[TableSchema]:
    """The replicated tables to verify: all of them, or those named (each must be replicated)."""
    if wanted is None:
        return [catalog.tables[k] for k in sorted(catalog.tables)]
    problems = []
    for schema, name in wanted:
        if (schema, name) in catalog.refused:
            problems.append(f"--tables: {catalog.refused[(schema, name)]}")
        elif (schema, name) not in catalog.tables:
            problems.append(
                f"--tables: table {schema}.{name} is not replicated by this pipeline (not in its "
                "source_tables, or it does not exist); names are exact and case-sensitive"
            )
    if problems:
        raise ConfigError(problems)
    return [catalog.tables[k] for k in dict.fromkeys(wanted)]


class Verifier:
    """Compares source tables with their targets through the connections it is given."""

    def __init__(
        self,
        source: Any,
        target: Any,
        *,
        database: str,
        pipeline: str,
        store: CheckpointStore | None = None,
        max_mismatches: int = DEFAULT_MAX_MISMATCHES,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        if batch_size < 1 or max_mismatches < 0:
            raise ConfigError(["--batch-size must be at least 1 and --max-mismatches at least 0"])
        self._source = source  # psycopg2 connection, session options VERIFY_SESSION_OPTIONS
        self._target = target  # snowflake connection
        self._database = database
        self._pipeline = pipeline
        self._store = store
        self._limit = max_mismatches
        self._batch = batch_size

    def run(
        self,
        tables: Sequence[TableSchema],
        *,
        on_table: Callable[[TableReport], None] | None = None,
    ) -> VerifyReport:
        report = VerifyReport(self._pipeline)
        self._positions(report)
        for table in tables:
            result = self.table(table)
            report.tables.append(result)
            if on_table is not None:
                on_table(result)
        return report

    def _positions(self, report: VerifyReport) -> None:
        try:
            with self._source.cursor() as cur:
                cur.execute("SELECT pg_current_wal_lsn()::text")
                report.source_wal_lsn = Lsn.parse(cur.fetchone()[0])
        except psycopg2.Error as exc:
            raise source_error(exc, "reading the current WAL position") from exc
        finally:
            self._end_source_transaction()
        if self._store is None:
            return
        try:
            checkpoint = self._store.load()
        except CdcError as exc:
            report.notes.append(f"checkpoint unknown: {exc}")
            return
        if checkpoint is None:
            report.notes.append("the pipeline has no checkpoint yet: nothing has been replicated")
        else:
            report.checkpoint_lsn = checkpoint.lsn
            stopped = checkpoint.extra.get("stopped_tables") or {}
            for name, info in sorted(stopped.items()):
                reason = info.get("reason") if isinstance(info, dict) else None
                why = f": {reason}" if reason else ""
                report.notes.append(f"table {name} is stopped, not replicated{why}; expect it to differ")
        if report.lag_bytes:
            report.notes.append(
                f"the source WAL is {report.lag_bytes} bytes past the checkpoint: rows changed since "
                f"{report.checkpoint_lsn} may differ until the pipeline catches up (that WAL may also "
                "hold changes to tables the pipeline does not replicate)"
            )

    def table(self, table: TableSchema) -> TableReport:
        """Compare one table; a problem with this table is reported in it, not raised."""
        report = TableReport(table.qualified)
        fields = {"pipeline": self._pipeline, "table": table.qualified}
        try:
            self._compare(table, report)
        except PermanentError as exc:
            report.error = str(exc)
            report.comparison = None
            report.source_rows = report.target_rows = None
            log.warning("verify of %s failed: %s", table.qualified, exc, extra=fields)
        finally:
            self._end_source_transaction()
        if report.error is None and report.comparison is not None:
            c = report.comparison
            log.debug(
                "verified %s: %d source rows, %d target rows, %d missing, %d extra, %d different",
                table.qualified,
                c.source_rows,
                c.target_rows,
                c.missing_count,
                c.extra_count,
                c.different_count,
                extra=fields,
            )
        return report

    def _compare(self, table: TableSchema, report: TableReport) -> None:
        shape = target_shape(self._target, self._database, table)
        if shape is None:
            report.error = (
                f"target table {sfsql.target_table(self._database, table)} does not exist (or the role "
                "cannot see it): the pipeline has not created it yet, or it was dropped; a snapshot "
                "of the table recreates it"
            )
            report.source_rows = self._count(table)
            return
        try:
            named = sfsql.target_columns(table)
        except SchemaError as exc:
            raise VerifyError(str(exc)) from exc
        present = [(col, quoted) for col, quoted in named if shape.has(quoted)]
        absent = [col.name for col, quoted in named if not shape.has(quoted)]
        layout = Layout.of(table, [col for col, _ in present])
        text, flagged = target_scan_sql(self._database, layout, [q for _, q in present], shape)
        source = stream_source(self._source, layout, self._batch, report.batches)
        target = stream_target(
            self._target, text, flagged, len(present), self._batch, report.batches, table.qualified
        )
        try:
            comparison = merge_compare(layout, source, target, limit=self._limit)
        finally:  # a stream left early closes its cursor now, inside the source transaction
            source.close()
            target.close()
        report.comparison = comparison
        report.source_rows, report.target_rows = comparison.source_rows, comparison.target_rows
        if absent:
            report.error = (
                f"target table lacks column(s) {', '.join(repr(a) for a in absent)}: the other "
                "columns were compared; the next window that changes the table adds them"
            )

    def _count(self, table: TableSchema) -> int:
        try:
            with self._source.cursor() as cur:
                cur.execute(source_count_sql(table))
                return int(cur.fetchone()[0])
        except psycopg2.Error as exc:
            raise source_error(exc, f"counting the rows of {table.qualified}") from exc

    def _end_source_transaction(self) -> None:
        try:
            self._source.rollback()  # read-only work: nothing to commit; frees the named cursor
        except psycopg2.Error as exc:
            raise source_error(exc, "ending a read transaction") from exc


def connect_source(settings: Settings, secrets: VaultSecrets) -> Any:
    """A read-only psycopg2 connection whose text output matches what the slot sends."""
    try:
        conn = psycopg2.connect(**source_params(settings, secrets), options=VERIFY_SESSION_OPTIONS)
    except psycopg2.Error as exc:  # the pipeline's rules: refused TLS or login is permanent
        raise classify_error(exc, "connecting to verify") from exc
    conn.set_session(readonly=True, autocommit=False)
    return conn


def verify(
    settings: Settings,
    tables: Sequence[tuple[str, str]] | None = None,
    *,
    max_mismatches: int = DEFAULT_MAX_MISMATCHES,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_table: Callable[[TableReport], None] | None = None,
    secrets: VaultSecrets | None = None,
) -> VerifyReport:
    """Compare the pipeline's replicated tables (or ``tables``) in the source with the target."""
    secrets = secrets or VaultSecrets.from_settings(settings)
    store = CheckpointStore(aws_client(settings, "dynamodb"), settings.checkpoint_table, settings.pipeline)
    pipeline_source = build_source(settings, secrets)  # the catalog exactly as the pipeline sees it
    try:
        catalog = pipeline_source.catalog()
    finally:
        pipeline_source.close()
    chosen = select_tables(catalog, tables)
    source = connect_source(settings, secrets)
    try:
        sink = build_sink(settings, secrets)
        try:
            verifier = Verifier(
                source,
                sink.connection,
                database=settings.snowflake_database,
                pipeline=settings.pipeline,
                store=store,
                max_mismatches=max_mismatches,
                batch_size=batch_size,
            )
            report = verifier.run(chosen, on_table=on_table)
            if tables is None:
                report.skipped = {f"{s}.{t}": reason for (s, t), reason in sorted(catalog.refused.items())}
            return report
        finally:
            sink.close()
    finally:
        source.close()
