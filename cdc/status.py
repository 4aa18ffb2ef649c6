"""Where a pipeline stands (``cdc status``): checkpoint, slot, lag, lease, the last window, per-table
target rows and positions, and the dead-letter queue.

``gather`` reads every part (DynamoDB, PostgreSQL, Snowflake, SQS, the stage) and records a part it
cannot read under ``errors`` instead of stopping; ``assemble`` (pure) turns what was read into the
status object and ``render`` into the table a person reads.

Times: ``*_at`` fields are epoch seconds, ``*_ts`` fields ISO 8601 timestamps (UTC).

Lag: ``lag.bytes`` is the source's WAL position minus the checkpoint. ``lag.seconds`` is how old
the newest source state the target is known to hold is: the target holds every change committed
before ``lag.as_of``, which is the start of the last window when that window read up to the WAL end
(everything committed before it started is applied), else the commit time of the last transaction
it applied (or the snapshot's time when a full snapshot set the checkpoint).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cdc.checkpoint import Checkpoint, CheckpointStore, Lease
from cdc.errors import CdcError
from cdc.logs import redact
from cdc.model import Lsn
from cdc.settings import Settings
from cdc.source.slot import SlotInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetCount:
    """One target table as Snowflake has it."""

    rows: int
    max_lsn: Lsn | None  # MAX(_CDC_LSN): commit LSN of the newest change the rows hold
    deleted: int | None = None  # rows marked _CDC_DELETED (soft delete only)


@dataclass
class Observed:
    """What ``gather`` read; any part may be missing (its error is in ``errors``)."""

    pipeline: str
    slot_name: str
    checkpoint: Checkpoint | None = None
    lease: Lease | None = None
    slot: SlotInfo | None = None
    wal: Lsn | None = None
    replicated: list[str] = field(default_factory=list)  # schema.table the catalog replicates
    refused: dict[str, str] = field(default_factory=dict)  # schema.table -> why not
    targets: dict[str, TargetCount | str] = field(default_factory=dict)  # count, or why none
    target_names: dict[str, str] = field(default_factory=dict)  # schema.table -> Snowflake name
    dead_letter: dict[str, Any] | None = None
    snapshot_taken_at: float | None = None
    errors: list[dict[str, str]] = field(default_factory=list)

    def failed(self, part: str, exc: BaseException) -> None:
        self.errors.append({"part": part, "message": redact(f"{type(exc).__name__}: {exc}")})


def pipeline_status(settings: Settings, secrets: Any = None) -> dict[str, Any]:
    """The status object of the pipeline ``settings`` describe (see the module docstring)."""
    return assemble(gather(settings, secrets), time.time())


# --- reading ---------------------------------------------------------------------------------


def gather(settings: Settings, secrets: Any = None) -> Observed:
    from cdc.app import aws_client, build_sink, build_source
    from cdc.logs import register_secret
    from cdc.secrets import VaultSecrets

    seen = Observed(settings.pipeline, settings.source_slot)
    for secret in (settings.vault_token, settings.vault_secret_id):
        if secret:
            register_secret(secret.reveal())
    secrets = secrets or VaultSecrets.from_settings(settings)
    store = CheckpointStore(aws_client(settings, "dynamodb"), settings.checkpoint_table, settings.pipeline)
    _try(seen, "dynamodb", lambda: _read_store(seen, store))
    catalog: Any = None
    try:
        source = build_source(settings, secrets)
        try:
            seen.slot = source.slot_info()
            seen.wal = source.current_wal_lsn()
            catalog = source.catalog()
        finally:
            source.close()
    except CdcError as exc:
        seen.failed("postgres", exc)
    if catalog is not None:
        seen.replicated = sorted(t.qualified for t in catalog.tables.values())
        seen.refused = {f"{s}.{t}": reason for (s, t), reason in catalog.refused.items()}
        _try(seen, "snowflake", lambda: _read_targets(seen, settings, build_sink(settings, secrets), catalog))
    dlq = settings.dlq_url
    if dlq:
        _try(seen, "sqs", lambda: _read_dead_letter(seen, aws_client(settings, "sqs"), dlq))
    snapshot = (seen.checkpoint.extra.get("snapshot") or {}) if seen.checkpoint else {}
    if seen.checkpoint and "last_window" not in seen.checkpoint.extra and snapshot.get("id"):
        _try(seen, "stage", lambda: _read_snapshot_time(seen, settings, snapshot["id"]))
    return seen


def _try(seen: Observed, part: str, action: Callable[[], None]) -> None:
    try:
        action()
    except CdcError as exc:
        seen.failed(part, exc)
    except Exception as exc:  # noqa: BLE001 - a client's own error: reported, the other parts still shown
        seen.failed(part, exc)


def _read_store(seen: Observed, store: CheckpointStore) -> None:
    seen.checkpoint = store.load()
    seen.lease = store.read_lease()


def _read_targets(seen: Observed, settings: Settings, sink: Any, catalog: Any) -> None:
    from cdc.snowflake import sql

    soft = settings.delete_mode == "soft"
    deleted = f", SUM(CASE WHEN {sql.ident('_CDC_DELETED')} THEN 1 ELSE 0 END)" if soft else ""
    try:
        for table in sorted(catalog.tables.values(), key=lambda t: t.qualified):
            fq = sql.target_table(settings.snowflake_database, table)
            seen.target_names[table.qualified] = fq
            try:
                cur = sink.connection.cursor()
                cur.execute(f'SELECT COUNT(*), MAX("_CDC_LSN"){deleted} FROM {fq}')
                row = cur.fetchone()
            except Exception as exc:  # noqa: BLE001 - the connector's error names the cause
                text = " ".join(str(getattr(exc, "msg", None) or exc).split())
                seen.targets[table.qualified] = redact(f"cannot count {fq}: {text}")
                continue
            seen.targets[table.qualified] = TargetCount(
                int(row[0]),
                Lsn(int(row[1])) if row[1] is not None else None,
                int(row[2] or 0) if soft else None,
            )
    finally:
        sink.close()


def _read_dead_letter(seen: Observed, sqs: Any, url: str) -> None:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    seen.dead_letter = {
        "url": url,
        "messages": int(attrs.get("ApproximateNumberOfMessages", 0)),
        "in_flight": int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
    }


def _read_snapshot_time(seen: Observed, settings: Settings, snapshot_id: str) -> None:
    from cdc.app import aws_client
    from cdc.stage import open_stage, read_manifest, snapshot_prefix

    s3 = aws_client(settings, "s3") if settings.stage_url.startswith("s3://") else None
    manifest = read_manifest(
        open_stage(settings.stage_url, s3), snapshot_prefix(settings.pipeline, snapshot_id)
    )
    if manifest.get("taken_at"):
        seen.snapshot_taken_at = datetime.fromisoformat(manifest["taken_at"]).timestamp()


# --- the status object -----------------------------------------------------------------------


def assemble(seen: Observed, now: float) -> dict[str, Any]:
    """The status object (pure: ``seen`` and the clock say everything)."""
    cp = seen.checkpoint
    extra = cp.extra if cp else {}
    last = extra.get("last_window")
    if last is not None and cp is not None and last.get("end_lsn") != str(cp.lsn):
        last = {**last, "note": f"the checkpoint was moved to {cp.lsn} after this window"}
    slot = seen.slot
    return {
        "pipeline": seen.pipeline,
        "status": "ok" if not seen.errors else "incomplete",
        "checkpoint": None
        if cp is None
        else {
            "lsn": str(cp.lsn),
            "version": cp.version,
            "window_id": cp.window_id,
            "updated_at": cp.updated_at,
            "last_commit_lsn": (last or {}).get("last_commit_lsn"),
            "last_commit_ts": (last or {}).get("last_commit_ts"),
        },
        "slot": {
            "name": seen.slot_name,
            "exists": slot is not None if seen.wal is not None else None,
            "plugin": slot.plugin if slot else None,
            "active_pid": slot.active_pid if slot else None,
            "confirmed_flush_lsn": str(slot.confirmed_flush) if slot and slot.confirmed_flush else None,
            "restart_lsn": str(slot.restart) if slot and slot.restart else None,
            "wal_status": slot.wal_status if slot else None,
            "retained_wal_bytes": slot.retained_bytes if slot else None,
            "safe_wal_bytes": slot.safe_wal_bytes if slot else None,
        },
        "wal_lsn": str(seen.wal) if seen.wal is not None else None,
        "lag": _lag(seen, last, now),
        "lease": None
        if seen.lease is None
        else {
            "owner": seen.lease.owner,
            "epoch": seen.lease.epoch,
            "expires_at": seen.lease.expires_at,
            "held": seen.lease.expires_at > now,
        },
        "last_window": last,
        "snapshot": extra.get("snapshot"),
        "tables": _tables(seen, extra),
        "dead_letter": seen.dead_letter,
        "errors": list(seen.errors),
    }


def _lag(seen: Observed, last: dict[str, Any] | None, now: float) -> dict[str, Any]:
    cp, wal, slot = seen.checkpoint, seen.wal, seen.slot
    as_of, basis = None, None
    if cp is not None and last is not None and "note" not in last:
        if last.get("caught_up") and last.get("started_at") is not None:
            as_of, basis = float(last["started_at"]), "start of the last window, which read up to the WAL end"
        elif last.get("last_commit_ts"):
            as_of = datetime.fromisoformat(last["last_commit_ts"]).timestamp()
            basis = "commit time of the last applied transaction"
    elif cp is not None and seen.snapshot_taken_at is not None:
        as_of, basis = seen.snapshot_taken_at, "time of the snapshot that set the checkpoint"
    lag_bytes = wal.value - cp.lsn.value if wal is not None and cp is not None else None
    seconds = None
    if as_of is not None:
        seconds = 0.0 if lag_bytes is not None and lag_bytes <= 0 else round(max(0.0, now - as_of), 3)
    return {
        "bytes": lag_bytes,
        "seconds": seconds,
        "as_of": _iso(as_of) if as_of is not None else None,
        "basis": basis,
        "slot_bytes": wal.value - slot.confirmed_flush.value
        if wal is not None and slot is not None and slot.confirmed_flush is not None
        else None,
    }


def _tables(seen: Observed, extra: dict[str, Any]) -> list[dict[str, Any]]:
    stopped = extra.get("stopped_tables") or {}
    applied = extra.get("tables") or {}
    names = sorted(set(seen.replicated) | set(seen.refused) | set(stopped) | set(applied))
    rows = []
    for name in names:
        target = seen.targets.get(name)
        count = target if isinstance(target, TargetCount) else None
        position = applied.get(name) or {}
        if name in stopped:
            state, reason = "stopped", stopped[name].get("reason")
        elif name in seen.refused:
            state, reason = "refused", seen.refused[name]
        elif name in seen.replicated or not seen.replicated:
            state, reason = "replicating", None
        else:
            state, reason = "not in source", "the source catalog no longer lists this table"
        rows.append(
            {
                "table": name,
                "state": state,
                "reason": reason,
                "target": seen.target_names.get(name),
                "target_rows": count.rows if count else None,
                "target_deleted_rows": count.deleted if count else None,
                "target_max_lsn": str(count.max_lsn) if count and count.max_lsn else None,
                "target_error": target if isinstance(target, str) else None,
                "last_applied_lsn": position.get("lsn"),
                "last_commit_ts": position.get("commit_ts"),
                "last_window_id": position.get("window_id"),
            }
        )
    return rows


# --- for people --------------------------------------------------------------------------------


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ts(text: str | None) -> str:
    return (
        "-"
        if not text
        else datetime.fromisoformat(text).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    )


def _size(n: int | None) -> str:
    """``512 B``, ``12.3 kB``, ``4.1 MB``, ``2.0 GB``."""
    if n is None:
        return "-"
    if abs(n) < 1000:
        return f"{n:,} B"
    value = float(n)
    for unit in ("kB", "MB"):
        value /= 1000
        if abs(value) < 1000:
            return f"{value:,.1f} {unit}"
    return f"{value / 1000:,.1f} GB"


def table_text(header: list[str], rows: list[list[str]], right: frozenset[int] = frozenset()) -> list[str]:
    """Columns padded to their widest cell (``right``: right-aligned column indexes)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(header), *(line(r) for r in rows)]


def render(s: dict[str, Any]) -> str:
    """The status as a person reads it on a terminal."""
    slot, lag, cp, last = s["slot"], s["lag"], s["checkpoint"], s["last_window"]
    out = [f"pipeline {s['pipeline']}  (slot {slot['name']})"]
    if cp is None:
        out.append("  checkpoint    none: the next window runs a full snapshot")
    else:
        out.append(
            f"  checkpoint    {cp['lsn']}  version {cp['version']}, window {cp['window_id']}, "
            f"written {_when(cp['updated_at'])}"
        )
        if cp["last_commit_lsn"]:
            out.append(f"  last commit   {cp['last_commit_lsn']}  committed {_ts(cp['last_commit_ts'])} UTC")
    if slot["exists"] is False:
        out.append("  slot          does not exist: the next window creates it and snapshots")
    elif slot["exists"]:
        active = f"active (pid {slot['active_pid']})" if slot["active_pid"] else "inactive"
        safe = "" if slot["safe_wal_bytes"] is None else f" (safe for {_size(slot['safe_wal_bytes'])} more)"
        out.append(
            f"  slot          confirmed {slot['confirmed_flush_lsn']}  restart {slot['restart_lsn']}  "
            f"wal_status {slot['wal_status']}  retains {_size(slot['retained_wal_bytes'])}{safe}  {active}"
        )
    out.append(f"  source WAL    {s['wal_lsn'] or '-'}")
    seconds = "-" if lag["seconds"] is None else f"{lag['seconds']:,.1f} s"
    as_of = f" (target holds the source as of {_ts(lag['as_of'])} UTC)" if lag["as_of"] else ""
    out.append(f"  lag           {_size(lag['bytes'])} of WAL after the checkpoint, {seconds}{as_of}")
    lease = s["lease"]
    if lease is None:
        out.append("  lease         free (never taken)")
    else:
        who, until = f"{lease['owner']} (epoch {lease['epoch']})", _when(lease["expires_at"])
        ended = "released" if not lease["expires_at"] else f"expired {until}"  # a release sets 0
        held = f"held by {who} until {until}" if lease["held"] else f"free (last {who}, {ended})"
        out.append(f"  lease         {held}")
    if last:
        errors = "; ".join(f"{t}: {e}" for t, e in (last.get("errors") or {}).items()) or "no errors"
        out.append(
            f"  last window   {last['window_id']} {last['status']} {last['start_lsn']} -> {last['end_lsn']}: "
            f"{last['transactions']} txns, {last['changes']} changes in {last.get('duration_s', 0):.2f} s "
            f"({last['stop_reason']}), {last.get('retries', 0)} retries, {errors}"
        )
        if last.get("note"):
            out.append(f"                {last['note']}")
    elif s["snapshot"]:
        snap = s["snapshot"]
        out.append(f"  last window   snapshot {snap.get('id')} at {snap.get('lsn')} ({snap.get('reason')})")
    dead = s["dead_letter"]
    if dead is not None:
        out.append(
            f"  dead letters  {dead['messages']} waiting, {dead['in_flight']} in flight ({dead['url']})"
        )
    rows = [
        [
            t["table"],
            t["state"],
            "-" if t["target_rows"] is None else f"{t['target_rows']:,}",
            t["last_applied_lsn"] or "-",
            _ts(t["last_commit_ts"]),
            t["target_max_lsn"] or "-",
        ]
        for t in s["tables"]
    ]
    if rows:
        out.append("tables")
        header = ["TABLE", "STATE", "TARGET ROWS", "LAST APPLIED LSN", "LAST COMMIT (UTC)", "MAX _CDC_LSN"]
        out += ["  " + line for line in table_text(header, rows, right=frozenset({2}))]
        for t in s["tables"]:
            if t["reason"] or t["target_error"]:
                out.append(f"  {t['table']}: {t['reason'] or t['target_error']}")
    for e in s["errors"]:
        out.append(f"could not read {e['part']}: {e['message']}")
    return "\n".join(out)
