"""What a window leaves for ``cdc status`` and its result: the newest applied change per table,
the window's summary, and the commit-time lag."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cdc.model import Lsn, StagedTable
from cdc.reader import WindowRead

log = logging.getLogger(__name__)


def positions(spool: Path, read: WindowRead, window_id: str) -> dict[str, dict[str, Any]]:
    """Per staged table, the commit LSN and time of the newest change this window applies to it
    (rows of a transaction cut off at the window end are not applied), read from its parts."""
    if read.last_commit_lsn is None:
        return {}
    limit = read.last_commit_lsn.value
    out: dict[str, dict[str, Any]] = {}
    for staged in read.staged:
        best, best_ts = -1, None
        for f in staged.files:
            try:
                part = pq.read_table(
                    spool / staged.stage_dir / f.name, columns=["_CDC_LSN", "_CDC_COMMIT_TS"]
                )
            except (OSError, pa.ArrowException) as exc:  # only `cdc status` misses it: never fail the window
                log.warning("cannot read a part's positions", extra={"part": f.name, "error": str(exc)})
                continue
            kept = part.filter(pc.less_equal(part["_CDC_LSN"], limit))
            top = pc.max(kept["_CDC_LSN"]).as_py() if kept.num_rows else None
            if top is not None and top > best:
                newest = kept.filter(pc.equal(kept["_CDC_LSN"], top))
                best, best_ts = top, pc.max(newest["_CDC_COMMIT_TS"]).as_py()
        if staged.truncate is not None and best < staged.truncate[0] <= limit:
            best, best_ts = staged.truncate[0], None
        if best >= 0:
            out[staged.table.qualified] = {
                "lsn": str(Lsn(best)),
                "commit_ts": best_ts.isoformat() if best_ts is not None else None,
                "window_id": window_id,
            }
    return out


def _dt_iso(text: str) -> str | None:
    """PostgreSQL's ``2026-11-29 07:02:32.502865+00`` as ISO 8601 (None when it is not that form)."""
    try:
        return dt.datetime.fromisoformat(text).isoformat()
    except ValueError:
        return None


def summary(
    window_id: str,
    start: Lsn,
    read: WindowRead,
    applied: list[StagedTable],
    positions: dict[str, dict[str, Any]],
    new_stops: dict[str, Any],
    notes: list[str],
) -> dict[str, Any]:
    """The window's result as the checkpoint keeps it (``cdc status`` shows it); the caller adds
    ``duration_s``, ``started_at``, ``bytes_staged`` and ``retries``."""
    last = str(read.last_commit_lsn) if read.last_commit_lsn is not None else None
    return {
        "window_id": window_id,
        "status": "applied" if read.staged else "empty",
        "start_lsn": str(start),
        "end_lsn": str(read.end),
        "last_commit_lsn": last,
        "last_commit_ts": (
            _dt_iso(read.last_commit_ts)
            if read.last_commit_ts
            else next((p["commit_ts"] for p in positions.values() if p["lsn"] == last), None)
        ),
        "transactions": read.transactions,
        "changes": read.changes,
        "stop_reason": read.stop_reason,
        "caught_up": read.caught_up,
        "tables": {s.table.qualified: dict(s.ops) for s in applied},
        "errors": {t: str(v.get("reason", "")) for t, v in new_stops.items()},
        "notes": [n[:300] for n in notes[:10]],
    }


def commit_lag_s(commit_ts: str | None) -> float | None:
    """Seconds from a commit (wal2json's UTC timestamp text) until now; None when unreadable."""
    if not commit_ts:
        return None
    try:
        committed = dt.datetime.fromisoformat(commit_ts)
    except ValueError:
        return None
    if committed.tzinfo is None:
        committed = committed.replace(tzinfo=dt.UTC)
    return max((dt.datetime.now(dt.UTC) - committed).total_seconds(), 0.0)
