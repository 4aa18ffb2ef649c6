"""Value types shared by every layer: LSNs, table schemas, decoded changes, window results."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Op = Literal["I", "U", "D", "T"]

_LSN_TEXT = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")


@dataclass(frozen=True, order=True)
class Lsn:
    """A PostgreSQL write-ahead-log position (64-bit)."""

    value: int

    def __post_init__(self) -> None:
        if not 0 <= self.value < 1 << 64:
            raise ValueError(f"LSN out of range: {self.value}")

    @classmethod
    def parse(cls, text: str) -> Lsn:
        """Read ``X/Y`` (PostgreSQL's form) or 16 hex digits (the stage's zero-padded form)."""
        text = text.strip()
        match = _LSN_TEXT.match(text)
        if match:
            return cls((int(match.group(1), 16) << 32) | int(match.group(2), 16))
        if re.fullmatch(r"[0-9A-Fa-f]{16}", text):
            return cls(int(text, 16))
        raise ValueError(f"not an LSN: {text!r} (expected the form 0/16B3748)")

    @property
    def padded(self) -> str:
        """Zero-padded hex, so that stage keys sort in LSN order."""
        return f"{self.value:016X}"

    def __str__(self) -> str:
        return f"{self.value >> 32:X}/{self.value & 0xFFFFFFFF:X}"


ZERO_LSN = Lsn(0)


@dataclass(frozen=True)
class Column:
    """One source column as the catalog describes it."""

    name: str  # exact PostgreSQL spelling
    attnum: int  # never reused within a table, so it names the column across renames
    type_name: str  # format_type(), e.g. "numeric(12,2)", "timestamp with time zone"
    type_oid: int
    nullable: bool = True
    toastable: bool = False  # varlena with a storage that can move the value out of line
    # ALTER TABLE ... ADD COLUMN with a constant default: the value rows older than the column
    # read (PostgreSQL's attmissingval), as text. None: such rows read NULL.
    missing: str | None = None
    has_default: bool = False

    @property
    def stage_name(self) -> str:
        """The column's name in Parquet parts and load tables: safe in any SQL dialect."""
        return f"C{self.attnum}"

    @property
    def origin_name(self) -> str:
        """For a key column: the column holding the key a moved row had at window start."""
        return f"O{self.attnum}"


@dataclass(frozen=True)
class TableSchema:
    """A replicated source table: its columns in attnum order and its key columns.

    ``partitioned``: a partitioned table, whose rows are its partitions' (wal2json names the
    partition of each change; the catalog maps it to this table). A table that is not is read
    without the rows of tables that inherit from it, which wal2json reports under their own names
    (``cdc.source.catalog.relation_sql``)."""

    schema: str
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    partitioned: bool = False

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def ident(self) -> tuple[str, str]:
        return (self.schema, self.name)

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def key_columns(self) -> tuple[Column, ...]:
        return tuple(self.column(k) for k in self.key)

    @property
    def stage_dir(self) -> str:
        """Directory name of this table inside a staged window: readable and safe in SQL paths."""
        return stage_dir_name(self.schema, self.name)


_PLAIN_PATH = re.compile(r"^[A-Za-z0-9_$-]+$")


def stage_dir_name(schema: str, table: str) -> str:
    """``schema.table`` when both are plain, otherwise a readable slug plus a hash of the exact names.

    The result is unique per (schema, table), contains only ``[A-Za-z0-9_.$-]`` and so can sit
    unquoted in a Snowflake stage path.
    """
    if _PLAIN_PATH.match(schema) and _PLAIN_PATH.match(table):
        return f"{schema}.{table}"
    digest = hashlib.sha256(f"{schema}\x00{table}".encode()).hexdigest()[:12]

    def slug(s: str) -> str:
        return re.sub(r"[^A-Za-z0-9_]+", "_", s).strip("_")[:40] or "x"

    return f"{slug(schema)}.{slug(table)}.{digest}"


@dataclass(frozen=True)
class Begin:
    xid: int
    commit_lsn: Lsn  # LSN of the commit record (wal2json v2 "lsn" on B)
    end_lsn: Lsn  # LSN just past the commit record ("nextlsn"): where a restart resumes
    commit_ts: str


@dataclass(frozen=True)
class Commit:
    xid: int
    commit_lsn: Lsn
    end_lsn: Lsn
    commit_ts: str


@dataclass(frozen=True)
class Change:
    """One row change as wal2json v2 reported it.

    ``values`` holds the new row for I and U; a column missing from an update was not changed
    (an unchanged TOASTed value) and must keep the target's value. ``identity`` holds the old key
    for U and D. Values are JSON values as decoded (numbers with a fraction stay text so that
    nothing passes through a float).
    """

    op: Op
    schema: str
    table: str
    lsn: Lsn
    values: dict[str, Any] | None = None
    identity: dict[str, Any] | None = None
    xid: int | None = None
    # the attnum of each column of ``values``, in order (wal2json's include-column-positions):
    # tells which column a name the catalog no longer has belonged to
    positions: tuple[int, ...] | None = None

    @property
    def ident(self) -> tuple[str, str]:
        return (self.schema, self.table)

    def attnum(self, column: str) -> int | None:
        """The attnum of one column of ``values`` when the decoder reported positions."""
        if self.positions is None or self.values is None:
            return None
        for name, attnum in zip(self.values, self.positions, strict=False):
            if name == column:
                return attnum
        return None


Message = Begin | Commit | Change


class FieldLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> Any: ...
    @property
    def position(self) -> int | None: ...  # the column's attnum, when the decoder sent it


class RowLike(Protocol):
    """A row change: ``cdc.source.wal2json.RowChange`` is one, ``Change`` converts to one."""

    @property
    def op(self) -> str: ...
    @property
    def schema(self) -> str: ...
    @property
    def table(self) -> str: ...
    @property
    def lsn(self) -> object: ...
    @property
    def columns(self) -> Sequence[FieldLike] | None: ...
    @property
    def identity(self) -> Sequence[FieldLike] | None: ...


@dataclass(frozen=True)
class TableCounts:
    inserts: int = 0
    updates: int = 0
    deletes: int = 0
    truncates: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"I": self.inserts, "U": self.updates, "D": self.deletes, "T": self.truncates}


@dataclass(frozen=True)
class SlotHealth:
    """How much WAL the replication slot holds back, and how close it is to being invalidated."""

    wal_status: str | None  # reserved, extended, unreserved or lost
    retained_bytes: int | None  # WAL kept for the slot (current WAL LSN minus restart_lsn)
    safe_wal_bytes: int | None  # WAL that may be written before it is at risk (None: no limit)
    lag_bytes: int | None  # current WAL LSN minus the slot's confirmed LSN

    def risk(self, min_safe_bytes: int, max_retained_bytes: int) -> str | None:
        """Why the slot is at risk of invalidation (or the disk of filling), or None."""
        if self.wal_status in ("unreserved", "lost"):
            return (
                f"wal_status is {self.wal_status}: the WAL the slot needs is past max_slot_wal_keep_size "
                "and may be removed at the next checkpoint"
            )
        if self.safe_wal_bytes is not None and self.safe_wal_bytes < min_safe_bytes:
            return (
                f"only {self.safe_wal_bytes:,} bytes of WAL may be written before the slot passes "
                f"max_slot_wal_keep_size (warning below {min_safe_bytes:,})"
            )
        if self.safe_wal_bytes is None and (self.retained_bytes or 0) > max_retained_bytes:
            return (
                f"the slot retains {self.retained_bytes:,} bytes of WAL (warning above "
                f"{max_retained_bytes:,}) and the server keeps WAL for slots without limit: the disk "
                "may fill"
            )
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "wal_status": self.wal_status,
            "retained_bytes": self.retained_bytes,
            "safe_wal_bytes": self.safe_wal_bytes,
            "lag_bytes": self.lag_bytes,
        }


@dataclass(frozen=True)
class WindowResult:
    """What one run did; JSON-serialisable through ``as_dict``."""

    pipeline: str
    window_id: str
    status: Literal["applied", "empty", "lease_held", "snapshot", "snapshot_incomplete", "failed"]
    start_lsn: str | None = None
    end_lsn: str | None = None
    transactions: int = 0
    changes: int = 0
    tables: dict[str, dict[str, int]] = field(default_factory=dict)
    bytes_staged: int = 0
    duration_s: float = 0.0
    stop_reason: str | None = None
    caught_up: bool = False
    error: dict[str, str] | None = None
    notes: tuple[str, ...] = ()
    stopped_tables: tuple[str, ...] = ()  # tables that wait for a re-snapshot
    mode: str = "incremental"  # "incremental", "snapshot" (every table) or "tables"
    reason: str | None = None  # why a snapshot ran
    snapshot: dict[str, Any] | None = None
    slot: SlotHealth | None = None  # the slot after the window
    lag_s: float | None = None  # seconds from the last applied commit to the end of the window

    @property
    def failure(self) -> bool:
        """A failed window, or a snapshot that did not finish (every run would start it over):
        neither moved the pipeline on, and each needs an operator (dead letter, exit code 1)."""
        return self.status in ("failed", "snapshot_incomplete")

    def as_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "window_id": self.window_id,
            "status": self.status,
            "start_lsn": self.start_lsn,
            "end_lsn": self.end_lsn,
            "transactions": self.transactions,
            "changes": self.changes,
            "tables": self.tables,
            "bytes_staged": self.bytes_staged,
            "duration_s": round(self.duration_s, 3),
            "stop_reason": self.stop_reason,
            "caught_up": self.caught_up,
            "error": self.error,
            "notes": list(self.notes),
            "stopped_tables": list(self.stopped_tables),
            "mode": self.mode,
            "reason": self.reason,
            "snapshot": self.snapshot,
            "slot": self.slot.as_dict() if self.slot else None,
            "lag_s": None if self.lag_s is None else round(self.lag_s, 3),
        }


@dataclass(frozen=True)
class StagedFile:
    """One Parquet part of a staged table (``name`` is the file name inside the table's directory)."""

    name: str
    rows: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class StagedTable:
    """What a window staged for one table: the engine, the manifest and the Snowflake sink read it."""

    table: TableSchema
    stage_dir: str  # table.stage_dir
    files: tuple[StagedFile, ...]
    rows: int
    ops: dict[str, int]  # {"I": n, "U": n, "D": n, "T": n}: source changes, not emitted rows
    truncate: tuple[int, int] | None  # (commit LSN as int, seq) of the table's last truncate
    columns_as_text: tuple[str, ...]  # columns that travel as text: no exact mapping exists
