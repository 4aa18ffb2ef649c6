"""``cdc stage prune``: remove staged windows and snapshots that neither the checkpoint nor a rebuild
needs any more.

A window ``<start>-<end>`` (or an incomplete one, left by a crash) is removed when it lies before
``--before`` (``end <= before``) and

* ends at or before the checkpoint: windows after the checkpoint are the next runs' and replay's;
* ends at or before the LSN of the oldest *latest complete snapshot* of any table: a rebuild of a
  table loads its latest snapshot (taken at S) and re-applies every window that ends after S, and
  the windows must chain without gaps, so each of those windows is kept.

A snapshot ``snapshots/<id>/`` taken before ``--before`` is removed when every table it holds has a
later complete snapshot (it is superseded), or when it has no manifest (a snapshot run that
failed: it was never usable). A snapshot whose manifest is damaged is kept and reported.

Removal holds the pipeline lease (no window, snapshot or replay runs meanwhile) and deletes each
window's manifest before its parts, so an interrupted prune leaves incomplete windows that the
next prune removes, never a manifest pointing at missing parts.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from cdc.checkpoint import CheckpointStore
from cdc.errors import PermanentError
from cdc.model import Lsn
from cdc.replay.plan import WindowDir, parse_window_dirs, table_name
from cdc.stage import MANIFEST_NAME, ManifestCorrupt, Stage, StageObjectMissing, read_manifest

_SNAPSHOT_ID = re.compile(r"^([0-9A-F]{16})-[0-9A-Za-z]+$")


class PruneRefused(PermanentError):
    """Prune cannot decide safely what to keep (no checkpoint)."""


@dataclass(frozen=True)
class SnapshotDir:
    """One directory under ``<pipeline>/snapshots/``."""

    snapshot_id: str
    prefix: str
    lsn: Lsn
    tables: tuple[str, ...] = ()  # schema.table of every table it holds completely
    has_manifest: bool = False
    damaged: str | None = None  # why its manifest cannot be read


@dataclass
class PrunePlan:
    windows: list[WindowDir] = field(default_factory=list)  # to remove, in LSN order
    snapshots: list[SnapshotDir] = field(default_factory=list)  # to remove
    kept: list[dict[str, Any]] = field(default_factory=list)  # before --before, but kept: why
    notes: list[str] = field(default_factory=list)


def latest_snapshots(snapshots: list[SnapshotDir]) -> dict[str, SnapshotDir]:
    """Per table, the latest snapshot that holds it completely (what a rebuild loads)."""
    latest: dict[str, SnapshotDir] = {}
    for snap in sorted(snapshots, key=lambda s: (s.lsn.value, s.snapshot_id)):
        if snap.has_manifest and snap.damaged is None:
            for table in snap.tables:
                latest[table] = snap
    return latest


def plan_prune(
    windows: list[WindowDir], snapshots: list[SnapshotDir], checkpoint: Lsn, before: Lsn
) -> PrunePlan:
    """What to remove and what to keep (pure; see the module docstring for the rules)."""
    plan = PrunePlan()
    latest = latest_snapshots(snapshots)
    if before > checkpoint:
        plan.notes.append(
            f"--before {before} is past the checkpoint {checkpoint}: windows after the checkpoint are kept"
        )
    if not latest:
        plan.notes.append("no complete snapshot is staged: no window is kept for a rebuild")
    for w in windows:
        if w.end > before:
            continue
        if w.end > checkpoint:
            plan.kept.append(_kept_window(w, f"ends after the checkpoint {checkpoint}: not applied yet"))
            continue
        needing = sorted(
            ((snap.lsn, table) for table, snap in latest.items() if snap.lsn < w.end),
            key=lambda x: (x[0].value, x[1]),
        )
        if needing:
            oldest_lsn, oldest = needing[0]
            more = f" and {len(needing) - 1} more table(s)" if len(needing) > 1 else ""
            plan.kept.append(
                _kept_window(
                    w,
                    f"needed to rebuild {oldest}{more} from the latest snapshot "
                    f"{latest[oldest].snapshot_id} (at {oldest_lsn}); a newer snapshot "
                    f"(`cdc snapshot --tables {oldest}`) releases it",
                )
            )
            continue
        plan.windows.append(w)
    for snap in sorted(snapshots, key=lambda s: (s.lsn.value, s.snapshot_id)):
        if snap.lsn >= before:
            continue
        holds = sorted(t for t, latest_snap in latest.items() if latest_snap is snap)
        if snap.damaged is not None:
            plan.kept.append(_kept_snapshot(snap, f"its manifest is damaged ({snap.damaged}); inspect it"))
        elif holds:
            shown = ", ".join(holds[:3]) + (f" and {len(holds) - 3} more" if len(holds) > 3 else "")
            plan.kept.append(_kept_snapshot(snap, f"latest complete snapshot of {shown}"))
        else:
            plan.snapshots.append(snap)
    return plan


def _kept_window(w: WindowDir, reason: str) -> dict[str, Any]:
    return {
        "kind": "window",
        "name": w.name,
        "start_lsn": str(w.start),
        "end_lsn": str(w.end),
        "reason": reason,
    }


def _kept_snapshot(s: SnapshotDir, reason: str) -> dict[str, Any]:
    return {"kind": "snapshot", "name": s.snapshot_id, "lsn": str(s.lsn), "reason": reason}


# --- reading the stage -----------------------------------------------------------------------


def list_snapshots(stage: Stage, pipeline: str) -> tuple[list[SnapshotDir], dict[str, list[str]]]:
    """Every snapshot directory (manifests read and checked) and the keys under each prefix."""
    base = f"{pipeline}/snapshots/"
    keys: dict[str, list[str]] = {}
    for key in stage.list_keys(base):
        sid, _, rest = key[len(base) :].partition("/")
        if _SNAPSHOT_ID.match(sid) and rest:
            keys.setdefault(base + sid, []).append(key)
    result = []
    for prefix, under in sorted(keys.items()):
        sid = prefix[len(base) :]
        match = _SNAPSHOT_ID.match(sid)
        assert match is not None
        lsn = Lsn(int(match.group(1), 16))
        if f"{prefix}/{MANIFEST_NAME}" not in under:
            result.append(SnapshotDir(sid, prefix, lsn))
            continue
        try:
            manifest = read_manifest(stage, prefix)
        except (ManifestCorrupt, StageObjectMissing) as exc:
            result.append(SnapshotDir(sid, prefix, lsn, has_manifest=True, damaged=str(exc)))
            continue
        unfinished = set(manifest.get("unfinished") or [])
        tables = tuple(sorted(table_name(t) for t in manifest["tables"] if table_name(t) not in unfinished))
        result.append(SnapshotDir(sid, prefix, Lsn(int(manifest["lsn_int"])), tables, has_manifest=True))
    return result, keys


def list_windows(stage: Stage, pipeline: str) -> tuple[list[WindowDir], dict[str, list[str]]]:
    base = f"{pipeline}/windows/"
    keys = stage.list_keys(base)
    by_prefix: dict[str, list[str]] = {}
    for key in keys:
        name, _, rest = key[len(base) :].partition("/")
        if rest:
            by_prefix.setdefault(base + name, []).append(key)
    return parse_window_dirs(pipeline, keys), by_prefix


# --- the command -----------------------------------------------------------------------------


def prune(
    stage: Stage,
    store: CheckpointStore,
    pipeline: str,
    before: Lsn,
    *,
    dry_run: bool,
    lease_ttl_s: int,
) -> dict[str, Any]:
    """Plan (and unless ``dry_run`` carry out, under the lease) the removal; the result object."""
    from cdc.lease import HeldLease

    if dry_run:
        return _run(stage, store, pipeline, before, dry_run=True)
    with HeldLease(store, lease_ttl_s, owner=f"cdc-prune-{uuid.uuid4().hex[:12]}"):
        return _run(stage, store, pipeline, before, dry_run=False)


def _run(
    stage: Stage, store: CheckpointStore, pipeline: str, before: Lsn, *, dry_run: bool
) -> dict[str, Any]:
    checkpoint = store.load()
    if checkpoint is None:
        raise PruneRefused(
            f"pipeline {pipeline!r} has no checkpoint: nothing tells which windows were applied; "
            "run `cdc sync` first (prune removes only windows before the checkpoint)"
        )
    windows, window_keys = list_windows(stage, pipeline)
    snapshots, snapshot_keys = list_snapshots(stage, pipeline)
    plan = plan_prune(windows, snapshots, checkpoint.lsn, before)
    deleted = 0
    if not dry_run:
        for w in plan.windows:
            under = window_keys.get(w.prefix, [])
            manifest = [k for k in under if k == f"{w.prefix}/{MANIFEST_NAME}"]
            deleted += stage.delete_keys(manifest)  # first: the window is no longer complete
            deleted += stage.delete_keys([k for k in under if k not in manifest])
        for snap in plan.snapshots:
            under = snapshot_keys.get(snap.prefix, [])
            manifest = [k for k in under if k == f"{snap.prefix}/{MANIFEST_NAME}"]
            deleted += stage.delete_keys(manifest)
            deleted += stage.delete_keys([k for k in under if k not in manifest])
    remaining = [w for w in windows if w not in plan.windows]
    return {
        "pipeline": pipeline,
        "status": "dry_run" if dry_run else "pruned",
        "stage": stage.url,
        "before": str(before),
        "checkpoint_lsn": str(checkpoint.lsn),
        "windows": [
            {"name": w.name, "start_lsn": str(w.start), "end_lsn": str(w.end), "complete": w.has_manifest}
            for w in plan.windows
        ],
        "snapshots": [
            {"name": s.snapshot_id, "lsn": str(s.lsn), "complete": s.has_manifest} for s in plan.snapshots
        ],
        "deleted_keys": deleted,
        "kept": plan.kept,
        "first_remaining_window": remaining[0].name if remaining else None,
        "notes": plan.notes,
    }


def describe(r: dict[str, Any]) -> str:
    """The result for a person."""
    verb = "would remove" if r["status"] == "dry_run" else "removed"
    lines = [
        f"stage prune of {r['pipeline']} before {r['before']} "
        f"(checkpoint {r['checkpoint_lsn']}, stage {r['stage']}):",
        f"  {verb} {len(r['windows'])} windows and {len(r['snapshots'])} snapshots"
        + (f" ({r['deleted_keys']} keys)" if r["status"] != "dry_run" else ""),
    ]
    if r["windows"]:
        first, last = r["windows"][0], r["windows"][-1]
        lines.append(
            f"  windows {first['start_lsn']} -> {last['end_lsn']} ({first['name']} .. {last['name']})"
        )
    lines += [f"  snapshot {s['name']} at {s['lsn']}" for s in r["snapshots"]]
    if r["kept"]:
        lines.append(f"  kept {len(r['kept'])} before {r['before']}:")
        shown = r["kept"][:20]
        lines += [f"    {k['kind']} {k['name']}: {k['reason']}" for k in shown]
        if len(r["kept"]) > len(shown):
            lines.append(f"    ... and {len(r['kept']) - len(shown)} more (see --json)")
    lines += [f"  note: {n}" for n in r["notes"]]
    return "\n".join(lines)
