"""Exported snapshots: a logical slot's consistent point plus a snapshot that sees exactly the
transactions committed before it.

``CREATE_REPLICATION_SLOT ... LOGICAL wal2json EXPORT_SNAPSHOT`` on a replication connection
returns ``(slot_name, consistent_point, snapshot_name, output_plugin)``. The snapshot can be
imported (``SET TRANSACTION SNAPSHOT``) by other sessions only while that connection stays open
and runs no other command, so ``ExportedSnapshot`` holds it and ``close()`` ends it. A TEMPORARY
slot gives the same pair for re-copying tables while the pipeline's own slot keeps streaming; the
server drops it when the connection closes.

The boundary rule (PostgreSQL decodes a transaction when its commit record starts at or after the
slot's start, and the exported snapshot sees the transactions committed before the consistent
point): a transaction is in the copy iff its commit LSN is *below* the consistent point S, and the
stream from S delivers exactly the others. Copied rows therefore carry ``_CDC_LSN = S - 1`` (the
last LSN the copy covers), so the MERGE's "apply only if newer than the row" rule applies every
change the copy lacks, including one whose commit record starts exactly at S.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extras

from cdc.errors import SourceError
from cdc.model import Lsn
from cdc.source.slot import SESSION_OPTIONS, classify_error

__all__ = [
    "COPY_SESSION_OPTIONS",
    "ExportedSnapshot",
    "SnapshotPoint",
    "create_slot_with_snapshot",
    "create_temporary_snapshot",
    "drop_slot",
    "in_snapshot",
    "open_copy_connection",
    "snapshot_row_lsn",
]

log = logging.getLogger(__name__)

# the stream's text forms (money as lc_monetary=C prints it, see cdc.convert), UTF-8 whatever
# the server encoding
COPY_SESSION_OPTIONS = (
    SESSION_OPTIONS
    + ("" if "lc_monetary=" in SESSION_OPTIONS else " -c lc_monetary=C")
    + " -c client_encoding=UTF8"
)

_SLOT_NAME = re.compile(r"^[a-z0-9_]{1,63}$")
_SNAPSHOT_NAME = re.compile(r"^[0-9A-Fa-f]+(-[0-9A-Fa-f]+)+$")


@dataclass(frozen=True)
class SnapshotPoint:
    """What a copy needs to know about the snapshot it reads."""

    name: str  # for SET TRANSACTION SNAPSHOT
    lsn: Lsn  # the slot's consistent point
    taken_at: datetime  # UTC, when the slot was created (the copied rows' commit time)

    def __post_init__(self) -> None:
        if not _SNAPSHOT_NAME.match(self.name):
            raise ValueError(f"not an exported snapshot name: {self.name!r}")
        if self.lsn.value < 1:
            raise ValueError("a snapshot's consistent point is never 0/0")


def snapshot_row_lsn(lsn: Lsn) -> int:
    """``_CDC_LSN`` of a copied row: the last LSN the copy covers (every commit below ``lsn``)."""
    return lsn.value - 1


def in_snapshot(commit_lsn: Lsn | int, snapshot_lsn: Lsn | int) -> bool:
    """Whether a transaction committed at ``commit_lsn`` is already in a copy taken at ``snapshot_lsn``.

    The window writer drops a table's changes (and truncates) for which this is true.
    """
    commit = commit_lsn.value if isinstance(commit_lsn, Lsn) else commit_lsn
    snapshot = snapshot_lsn.value if isinstance(snapshot_lsn, Lsn) else snapshot_lsn
    return commit < snapshot


class ExportedSnapshot:
    """A slot's consistent point and exported snapshot, valid while ``connection`` stays open.

    Unpacks as ``lsn, name, connection = create_slot_with_snapshot(...)``. Use it as a context
    manager (or call ``close()``) so the snapshot, and a temporary slot, end with the copy.
    """

    def __init__(self, slot: str, point: SnapshotPoint, connection: Any, *, temporary: bool) -> None:
        self.slot = slot
        self.point = point
        self.connection = connection
        self.temporary = temporary

    @property
    def lsn(self) -> Lsn:
        return self.point.lsn

    @property
    def name(self) -> str:
        return self.point.name

    @property
    def alive(self) -> bool:
        return not self.connection.closed

    def __iter__(self) -> Any:
        return iter((self.point.lsn, self.point.name, self.connection))

    def close(self) -> None:
        """End the snapshot (and drop the slot if it is temporary)."""
        if not self.connection.closed:
            self.connection.close()

    def __enter__(self) -> ExportedSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "temporary " if self.temporary else ""
        return f"ExportedSnapshot({kind}slot={self.slot!r}, lsn={self.lsn}, name={self.name!r})"


def create_slot_with_snapshot(conn_params: dict[str, Any], slot: str) -> ExportedSnapshot:
    """Create the pipeline's (permanent) wal2json slot and export its snapshot."""
    return _create(conn_params, slot, temporary=False)


def create_temporary_snapshot(conn_params: dict[str, Any], prefix: str = "cdc_snap") -> ExportedSnapshot:
    """A TEMPORARY wal2json slot (dropped with its connection) only for its LSN and snapshot.

    The pipeline's slot is not touched: its changes with a commit LSN at or after the returned
    LSN are the ones the copy lacks. ``prefix`` (e.g. ``cdc_snap_<pipeline>``) names the slot in
    ``pg_replication_slots`` while it exists; characters a slot name cannot hold become ``_``.
    """
    clean = re.sub(r"[^a-z0-9_]", "_", prefix.lower())[:50]
    return _create(conn_params, f"{clean}_{uuid.uuid4().hex[:12]}", temporary=True)


def drop_slot(conn_params: dict[str, Any], slot: str) -> bool:
    """Drop a replication slot that no session is using; False if it did not exist.

    For a full snapshot when the pipeline's slot exists but cannot serve (lost, or no checkpoint):
    its exported snapshot can only come with a new slot.
    """
    try:
        conn = psycopg2.connect(**conn_params, options=SESSION_OPTIONS)
    except psycopg2.Error as exc:
        raise classify_error(exc, "connecting to drop a replication slot") from exc
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                (slot,),
            )
            dropped = cur.rowcount > 0
    except psycopg2.Error as exc:
        raise classify_error(exc, f"dropping replication slot {slot}") from exc
    finally:
        conn.close()
    if dropped:
        log.warning("replication slot dropped for a new snapshot", extra={"slot": slot})
    return dropped


def _create(conn_params: dict[str, Any], slot: str, *, temporary: bool) -> ExportedSnapshot:
    if not _SLOT_NAME.match(slot):
        raise SourceError(
            f"replication slot name {slot!r} is invalid: use 1-63 lower-case letters, digits or underscores"
        )
    what = f"creating {'temporary ' if temporary else ''}replication slot {slot} with an exported snapshot"
    try:
        conn = psycopg2.connect(
            **conn_params,
            options=SESSION_OPTIONS,
            connection_factory=psycopg2.extras.LogicalReplicationConnection,
        )
    except psycopg2.Error as exc:
        raise classify_error(exc, "opening the replication connection") from exc
    try:
        cur = conn.cursor()
        kind = "TEMPORARY " if temporary else ""
        cur.execute(f'CREATE_REPLICATION_SLOT "{slot}" {kind}LOGICAL "wal2json" EXPORT_SNAPSHOT')
        row = cur.fetchone()
        taken_at = datetime.now(UTC)
    except psycopg2.errors.DuplicateObject as exc:
        conn.close()
        raise SourceError(
            f"replication slot {slot} already exists: a snapshot needs a slot created with it. Drop the "
            "slot (SELECT pg_drop_replication_slot(...)) to start over, or copy with a temporary slot"
        ) from exc
    except psycopg2.Error as exc:
        conn.close()
        raise classify_error(exc, what) from exc
    if row is None or len(row) < 3 or not row[2]:
        conn.close()
        raise SourceError(f"{what}: the server returned no snapshot ({row!r})")
    point = SnapshotPoint(name=row[2], lsn=Lsn.parse(row[1]), taken_at=taken_at)
    log.info(
        "replication slot created with an exported snapshot",
        extra={"slot": slot, "lsn": str(point.lsn), "snapshot": point.name, "temporary": temporary},
    )
    return ExportedSnapshot(slot, point, conn, temporary=temporary)


def open_copy_connection(conn_params: dict[str, Any]) -> Any:
    """A plain connection for ``copy_table``: autocommit, with the stream's session settings."""
    try:
        conn = psycopg2.connect(**conn_params, options=COPY_SESSION_OPTIONS)
    except psycopg2.Error as exc:
        raise classify_error(exc, "connecting for the snapshot copy") from exc
    conn.autocommit = True
    return conn
