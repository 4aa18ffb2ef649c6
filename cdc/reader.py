"""The read step of a window: stream the slot from the checkpoint to a bound, always ending on a
commit, and write each replicated table's changes as Parquet parts.

It also follows the source schema while reading: a change of a partition counts for its
partitioned root table, a table created after the window started is picked up, a renamed column
is read under its new name and a dropped one is left out, and a column added while the window is
being read ends the window just before it (the next window starts with the new schema).
"""

from __future__ import annotations

import gc
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from cdc.batch import StagedTable, WindowWriter
from cdc.errors import SchemaError, SourceError, TransactionTooLarge, UnknownColumn
from cdc.model import Begin, Commit, Lsn, TableSchema
from cdc.parts import rows_past
from cdc.source.catalog import Catalog
from cdc.source.slot import StreamPosition
from cdc.source.wal2json import RowChange

if TYPE_CHECKING:
    from cdc.engine import Source

log = logging.getLogger(__name__)


DEADLINE_CHECK_EVERY = 1000  # changes of one transaction between looks at the clock


@dataclass
class WindowRead:
    """What the read step produced."""

    staged: list[StagedTable]
    end: Lsn  # restart position after this window
    last_commit_lsn: Lsn | None
    last_commit_ts: str | None = None  # commit time of the last transaction read (UTC text)
    # transactions that carried changes of the replicated tables; ``commits`` counts every commit
    # read, also those of transactions with nothing for this pipeline (an autovacuum's, another
    # schema's), which still move the window's end
    transactions: int = 0
    changes: int = 0
    commits: int = 0
    stop_reason: str = "caught_up"
    caught_up: bool = False
    skipped_tables: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    stopped: dict[str, str] = field(default_factory=dict)  # table -> why it stopped in this window
    # the transaction the window ended inside (its commit LSN, its changes read): the next reads it
    cut_off: tuple[Lsn, int] | None = None


@dataclass
class ReadBounds:
    until: Lsn  # the WAL end seen at window start
    deadline: float  # time.monotonic() when reading must stop
    max_changes: int
    part_max_rows: int
    # the deadline is the invocation's (Lambda): a transaction that alone outlasts it can never be
    # applied by this kind of run, so it fails the window rather than time out again and again
    hard_deadline: bool = False
    # the read has the invocation's whole budget (its first attempt): only then does a transaction
    # that outlasts it prove too large; a retry late in an invocation leaves it to the next one
    whole_budget: bool = True


class WindowReader:
    def __init__(
        self,
        source: Source,
        catalog: Catalog,
        column_origins: Callable[[TableSchema], dict[str, int]],
        skip: set[tuple[str, str]] | None = None,
        snapshot_lsns: dict[str, Lsn] | None = None,
    ) -> None:
        self.source = source
        self.catalog = catalog
        self.tables = dict(catalog.tables)
        # the refused tables that exist (at the start, and those a refresh found) by OID: their
        # changes are skipped without reading the catalog again, and the checkpoint keeps them, so
        # that a table replicated later is copied first. A configured table that does not exist
        # is not among them: it may be created meanwhile.
        self.refused_oids = dict(catalog.refused_oids)
        self._outside: set[tuple[str, str]] = set()  # a refresh found them outside source_tables
        self.partitions = dict(catalog.partitions)
        self.partition_attnums = dict(catalog.partition_attnums)
        self.partition_leaves = dict(catalog.partition_leaves)
        # per partitioned table, the LSN of a TRUNCATE of its partitions in the open transaction
        # and the partitions it emptied so far
        self._truncating: dict[tuple[str, str], tuple[str, set[tuple[str, str]]]] = {}
        self._column_origins = column_origins
        self.skip = set(skip or ())  # tables stopped in earlier windows (waiting for a re-snapshot)
        # tables re-snapshotted at S: their changes committed before S are in the copy already
        self.snapshot_lsns = dict(snapshot_lsns or {})
        self._direct: set[tuple[str, str]] = set()  # see read()

    def read(self, start: Lsn, spool: Path, bounds: ReadBounds) -> WindowRead:
        position = StreamPosition(server_lsn=start)
        read = WindowRead([], start, None)
        writer = WindowWriter(
            spool,
            lambda s, t: self.tables[(s, t)],
            bounds.part_max_rows,
            resolver=getattr(self.source, "lookup_values", None),
            background=True,  # a full part is written while the stream goes on
        )
        txn: Begin | None = None
        commit_lsn = Lsn(0)
        commit_ts = ""
        in_txn_changes = 0
        # tables whose changes go to the writer as they are: replicated, no partition of another,
        # not skipped or stopped, no snapshot to filter against (the rest take ``_route``)
        direct = {
            ident
            for ident in self.tables
            if ident not in self.skip and f"{ident[0]}.{ident[1]}" not in self.snapshot_lsns
        }
        self._direct = direct
        add = writer.add
        stream = self.source.stream_rows(start, bounds.until, bounds.deadline, position, bounds.hard_deadline)
        gc_was_enabled = gc.isenabled()
        # the stream allocates millions of short-lived objects and no cycles: collections would
        # only walk the rows waiting in the buffers again and again
        gc.disable()
        try:
            for message, _size in stream:
                if isinstance(message, RowChange):
                    if txn is None:
                        raise SourceError("decoder sent a change outside a transaction")
                    change = message
                    if (message.schema, message.table) not in direct:
                        routed = self._route(message, read, txn.commit_lsn)
                        if routed is None:
                            continue
                        change = routed
                    try:
                        add(change, commit_lsn, commit_ts)
                    except SchemaError:  # a column it does not know, or a table it cannot stage
                        if not self._add(writer, change, txn, read):
                            read.stop_reason = "schema_change"
                            break
                    in_txn_changes += 1
                    if (
                        in_txn_changes % DEADLINE_CHECK_EVERY == 0
                        and time.monotonic() >= bounds.deadline
                        and self._out_of_time(read, bounds, txn, in_txn_changes)
                    ):
                        break
                elif isinstance(message, Begin):
                    txn, in_txn_changes = message, 0
                    commit_lsn, commit_ts = message.commit_lsn, message.commit_ts
                elif isinstance(message, Commit):
                    txn = None
                    if self._truncating:
                        self._settle_truncates(read)
                    read.commits += 1
                    if in_txn_changes:
                        read.transactions += 1
                        read.changes += in_txn_changes
                    read.end = message.end_lsn
                    read.last_commit_lsn = message.commit_lsn
                    read.last_commit_ts = message.commit_ts
                    if message.end_lsn >= bounds.until:
                        read.stop_reason, read.caught_up = "wal_end", True
                        break
                    if read.changes >= bounds.max_changes:
                        read.stop_reason = "max_changes"
                        break
                    if time.monotonic() >= bounds.deadline:
                        read.stop_reason = "time_budget"
                        break
            else:
                if position.caught_up:
                    read.caught_up = True
                    # Every commit before the server's position has been received: safe to move there.
                    read.end = max(read.end, position.server_lsn)
                else:
                    if txn is not None:  # the deadline came inside a transaction (hard: see _out_of_time)
                        self._out_of_time(read, bounds, txn, in_txn_changes)
                    read.stop_reason = "time_budget"
        finally:
            stream.close()
            if gc_was_enabled:
                gc.enable()
        if txn is not None:  # ended inside it (time up, a schema change): the next window reads it
            read.cut_off = (txn.commit_lsn, in_txn_changes)
        if read.skipped_tables:
            log.debug(
                "changes of tables outside the replicated set skipped",
                extra={"tables": sorted(read.skipped_tables)},
            )
        staged = writer.close(read.last_commit_lsn.value if read.last_commit_lsn else 0)
        if read.cut_off is not None and read.last_commit_lsn is not None:
            staged = [_committed(s, spool, read.last_commit_lsn.value) for s in staged]
        # Rows of a transaction cut off at the window end stay in the parts; the MERGE filters them
        # with max_lsn (their commit LSN lies past the window's last commit).
        read.staged = (
            [s for s in staged if (s.rows or s.truncate) and s.table.qualified not in read.stopped]
            if read.last_commit_lsn
            else []
        )
        kept = {s.stage_dir for s in read.staged}
        for s in staged:  # nothing of these is applied: their parts are not uploaded
            if s.stage_dir not in kept:
                shutil.rmtree(spool / s.stage_dir, ignore_errors=True)
        return read

    @staticmethod
    def _out_of_time(read: WindowRead, bounds: ReadBounds, txn: Begin, in_txn_changes: int) -> bool:
        """True when the window ends at its last commit because its time is up (the open
        transaction's rows wait in the parts past max_lsn: the MERGE leaves them out and the next
        window reads it); a transaction that alone outlasts an invocation's whole budget raises. A
        retry late in an invocation (``whole_budget`` false) ends without it: the next invocation
        reads it with its whole budget."""
        if read.commits or (bounds.hard_deadline and not bounds.whole_budget):
            read.stop_reason = "time_budget"
            return True
        if bounds.hard_deadline:
            raise TransactionTooLarge(
                f"the transaction committing at {txn.commit_lsn} has more changes than "
                f"this invocation can read in its time budget ({in_txn_changes:,} read so "
                "far): a window never splits a transaction, so run this window where "
                "time is not limited (cdc sync --until-caught-up), or raise the Lambda "
                "timeout"
            )
        return False

    def _route(self, change: RowChange, read: WindowRead, commit_lsn: Lsn) -> RowChange | None:
        """The change as it counts for a replicated table, or None when no replicated table has it
        (or it committed before the table's re-snapshot, which holds it already)."""
        ident = change.ident
        leaf = None
        root = self.partitions.get(ident) if self.partitions else None
        if root is not None:
            leaf = ident
            change = change.moved_to(root[0], root[1], self.partition_attnums.get(ident))
            ident = change.ident
        if ident in self.skip or (read.stopped and f"{change.schema}.{change.table}" in read.stopped):
            return None
        if ident not in self.tables and ident not in self.refused_oids and ident not in self._outside:
            self._refresh()  # a table created after the window started
            root = self.partitions.get(ident)
            if root is not None:
                return self._route(change, read, commit_lsn)
            if ident not in self.tables:
                self._outside.add(ident)
        if ident not in self.tables:
            read.skipped_tables.add(f"{change.schema}.{change.table}")
            return None
        copied_at = self.snapshot_lsns.get(f"{change.schema}.{change.table}")
        if copied_at is not None and commit_lsn < copied_at:
            return None
        if leaf is not None and change.op == "T" and not self._truncates_root(ident, leaf, change.lsn, read):
            return None
        return change

    def _truncates_root(
        self, root: tuple[str, str], leaf: tuple[str, str], lsn: str, read: WindowRead
    ) -> bool:
        """A partition's TRUNCATE counts as its root's at the first partition a statement empties
        (True: the change goes on, for the root); the statement's other partitions come with the same
        LSN (False). At the commit, a statement that left partitions untouched stops the table
        (``_settle_truncates``)."""
        seen = self._truncating.get(root)
        if seen is not None and seen[0] == lsn:
            seen[1].add(leaf)
            return False
        if seen is not None:
            self._settle_truncates(read, root)
        self._truncating[root] = (lsn, {leaf})
        return True

    def _settle_truncates(self, read: WindowRead, only: tuple[str, str] | None = None) -> None:
        """Stop each table (or ``only`` that one) whose TRUNCATE statement left partitions
        untouched; forget the statements."""
        for root in [only] if only is not None else list(self._truncating):
            _lsn, leaves = self._truncating.pop(root)
            left = self.partition_leaves.get(root, frozenset()) - leaves
            if left and root in self.tables and self.tables[root].qualified not in read.stopped:
                self._stop(
                    self.tables[root],
                    f"its partitions {_names(leaves)} were truncated and not {_names(left)}: the "
                    "target cannot empty only the rows of some partitions",
                    read,
                )

    def _refresh(self) -> Catalog:
        fresh = self.source.catalog()
        for ident, table in fresh.tables.items():
            self.tables.setdefault(ident, table)
        for ident, oid in fresh.refused_oids.items():
            if ident not in self.tables:
                self.refused_oids.setdefault(ident, oid)
        self.partitions.update(fresh.partitions)
        self.partition_attnums.update(fresh.partition_attnums)
        self.partition_leaves.update(fresh.partition_leaves)
        return fresh

    def _add(self, writer: WindowWriter, change: RowChange, txn: Begin, read: WindowRead) -> bool:
        """Add a change; False when the window must end before its transaction (schema change)."""
        table = self.tables[change.ident]
        for _ in range(len(table.columns) + 8):  # each round resolves one unknown column
            try:
                writer.add(change, txn.commit_lsn, txn.commit_ts)
                return True
            except UnknownColumn as unknown:
                if not self._resolve(writer, table, unknown, read, change.attnum(unknown.column)):
                    return False
            except SchemaError as exc:
                self._stop(table, str(exc), read)
                return True
        raise SourceError(f"table {table.qualified}: could not resolve the columns of a change")

    def _resolve(
        self,
        writer: WindowWriter,
        table: TableSchema,
        unknown: UnknownColumn,
        read: WindowRead,
        attnum: int | None = None,
    ) -> bool:
        """Map a column name the window's schema does not have onto a current column (renamed),
        or on nothing (dropped); False when the window must end before this change (added).

        The change's own attnum for the name (wal2json's column positions) decides when there is
        one: PostgreSQL never reuses an attnum in a table, so even a name the target never saw (a
        column added and renamed, or renamed twice, between two windows) finds its column. The
        column registry's former names are the fallback."""
        renamed = next((c.name for c in table.columns if c.attnum == attnum), None) if attnum else None
        if renamed is not None:
            # a column of the window's schema under its name before a rename (the old key of an
            # update or delete carries names only): read it as the column it is now
            writer.alias(table, unknown.column, renamed)
            return True
        fresh = self._refresh().tables.get(table.ident)
        if fresh is not None and any(
            c.attnum == attnum if attnum is not None else c.name == unknown.column for c in fresh.columns
        ):
            if writer.has_rows(table):
                return False  # added while this window was read: the next window has it
            # the window has no rows of this table yet: read on with the newer schema
            self.tables[table.ident] = fresh
            writer.replace_schema(fresh)
            return True
        position = attnum  # the change's own attnum for the name, when the decoder sent it
        if attnum is None:
            attnum = self._column_origins(table).get(unknown.column)
        current = next((c.name for c in table.columns if c.attnum == attnum), None)
        if position is not None:
            writer.alias_attnum(table, position, current)
        else:
            writer.alias(table, unknown.column, current)
        note = (
            f"table {table.qualified}: column {unknown.column!r} is now {current!r}"
            if current is not None
            else f"table {table.qualified}: column {unknown.column!r} was dropped in the source; "
            "its values are no longer applied and the target keeps the column (new rows get NULL)"
        )
        if note not in read.notes:
            read.notes.append(note)
            log.warning(note, extra={"table": table.qualified})
        return True

    @property
    def tables_by_name(self) -> dict[str, tuple[str, str]]:
        return {t.qualified: ident for ident, t in self.tables.items()}

    def _stop(self, table: TableSchema, reason: str, read: WindowRead) -> None:
        read.stopped[table.qualified] = reason
        self._direct.discard(table.ident)
        log.error("table stopped", extra={"table": table.qualified, "reason": reason})


def _names(tables: set[tuple[str, str]] | frozenset[tuple[str, str]], shown: int = 5) -> str:
    """Some table names for a message: the first ``shown``, and how many more."""
    names = sorted(f"{s}.{t}" for s, t in tables)
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _committed(staged: StagedTable, spool: Path, max_lsn: int) -> StagedTable:
    """``staged`` counted without the rows of the transaction the window cut off: the next window
    reads and counts them (the metrics would count them twice). A table with no rows left, and no
    TRUNCATE, has nothing to apply: it is not staged."""
    try:
        rows, ops = rows_past(spool / staged.stage_dir, staged.files, max_lsn)
    except (OSError, pa.ArrowException) as exc:  # only the counts are at stake: never fail the window
        log.warning("cannot count a part's rows", extra={"table": staged.table.qualified, "error": str(exc)})
        return staged
    counted = {op: n - ops.get(op, 0) for op, n in staged.ops.items()}
    return replace(staged, rows=staged.rows - rows, ops=counted)
