"""Re-apply staged windows (``replay``) and rebuild a target table from a staged snapshot (``rebuild``).

Both check everything first (the windows chain, every manifest's checksum, every part's sha256)
and apply nothing when any check fails. Both hold the pipeline lease while they apply, so no
window runs at the same time. Neither reads the source database nor moves the checkpoint: the
MERGE ignores changes the target already has, so re-applying is idempotent. A replay that stops
below the checkpoint says so: a row a later window deleted comes back until the replay goes on to
the checkpoint.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cdc.checkpoint import CheckpointStore
from cdc.errors import PermanentError
from cdc.lease import HeldLease
from cdc.model import Lsn
from cdc.progress import WorkProgress
from cdc.replay.plan import (
    WindowDir,
    list_window_dirs,
    manifest_tables,
    select_windows,
    table_name,
    verify_parts,
)
from cdc.settings import Settings
from cdc.stage import ManifestCorrupt, Stage, StageObjectMissing, read_manifest, staged_tables

log = logging.getLogger(__name__)


class ReplayRefused(PermanentError):
    """A check failed before anything was applied; ``problems`` lists every failure."""

    def __init__(self, what: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{what} refused, nothing was applied:\n  " + "\n  ".join(problems))


@dataclass
class PlannedWindow:
    window: WindowDir
    manifest: dict[str, Any]
    entries: list[dict[str, Any]]  # the manifest's table entries to apply

    def as_dict(self) -> dict[str, Any]:
        return {
            "window": self.window.name,
            "window_id": self.manifest.get("window_id"),
            "start_lsn": str(self.window.start),
            "end_lsn": str(self.window.end),
            "last_commit_lsn": str(Lsn(self.manifest["last_commit_lsn"]))
            if self.manifest.get("last_commit_lsn") is not None
            else None,
            "tables": {
                table_name(e): {"rows": e["rows"], "ops": e["ops"], "files": len(e["files"])}
                for e in self.entries
            },
        }


@dataclass
class Plan:
    windows: list[PlannedWindow] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    gaps: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def plan_windows(
    stage: Stage,
    pipeline: str,
    start: Lsn,
    end: Lsn | None,
    tables: set[str] | None,
    *,
    allow_gaps: bool = False,
    overlapping: bool = False,
    anchored: bool = False,
    what: str = "replay",
) -> Plan:
    """Select, read and verify the windows; raise ``ReplayRefused`` naming every problem."""
    sel = select_windows(
        list_window_dirs(stage, pipeline),
        start,
        end,
        allow_gaps=allow_gaps,
        overlapping=overlapping,
        anchored=anchored,
    )
    problems = list(sel.problems)
    plan = Plan(
        superseded=[w.name for w in sel.superseded],
        gaps=[(str(a), str(b)) for a, b in sel.gaps],
        notes=list(sel.notes),
    )
    for w in sel.chain:
        try:
            manifest = read_manifest(stage, w.prefix)
        except (ManifestCorrupt, StageObjectMissing) as exc:
            problems.append(f"window {w.describe()}: {exc}")
            continue
        if manifest.get("pipeline") != pipeline:
            problems.append(
                f"window {w.describe()}: manifest belongs to pipeline {manifest.get('pipeline')!r}"
            )
            continue
        if (manifest.get("start_lsn_int"), manifest.get("end_lsn_int")) != (w.start.value, w.end.value):
            problems.append(f"window {w.describe()}: manifest range differs from its directory name")
            continue
        entries = manifest_tables(manifest, tables)
        problems += [f"window {w.describe()}: {p}" for p in verify_parts(stage, w.prefix, entries)]
        plan.windows.append(PlannedWindow(w, manifest, entries))
    if problems:
        raise ReplayRefused(what, problems)
    return plan


def _apply_window(sink: Any, pw: PlannedWindow, floors: dict[str, int]) -> dict[str, Any]:
    """Apply one window's tables; a table in ``floors`` only with its changes committed at or after
    its floor (the LSN of the copy the target holds: its older changes are in that copy)."""
    applied: dict[str, Any] = {}
    last = pw.manifest.get("last_commit_lsn")
    if last is None:
        return applied
    wanted = {table_name(e) for e in pw.entries}
    for staged in staged_tables(pw.manifest):
        if staged.table.qualified not in wanted:
            continue
        sink.ensure_table(staged.table)
        result = sink.apply(
            staged.table,
            f"{pw.window.prefix}/{staged.stage_dir}",
            window_id=f"replay-{pw.manifest.get('window_id') or uuid.uuid4().hex[:16]}",
            max_lsn=int(last),
            truncate=staged.truncate,
            min_lsn=floors.get(staged.table.qualified),
        )
        applied[staged.table.qualified] = {
            "loaded": result.loaded_rows,
            "inserted": result.inserted,
            "updated": result.updated,
            "deleted": result.deleted,
        }
    return applied


def staged_rows(pw: PlannedWindow) -> int:
    return sum(int(e["rows"]) for e in pw.entries)


def apply_windows(
    sink: Any,
    plan: Plan,
    progress: WorkProgress,
    fence: Callable[[], None] | None = None,
    floors: dict[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Apply the planned windows in LSN order, reporting each to ``progress`` (windows, rows,
    rate and time left by the staged row counts); ``floors``: see ``_apply_window``."""
    done = []
    progress.start(len(plan.windows), sum(staged_rows(pw) for pw in plan.windows))
    for pw in plan.windows:
        if fence is not None:
            fence()
        applied = _apply_window(sink, pw, floors or {})
        rows = sum(v["loaded"] for v in applied.values())
        progress.advance(
            staged_rows(pw),
            f"{pw.window.name} ({pw.window.start} -> {pw.window.end}): "
            f"{len(applied)} tables, {rows} rows applied",
            label=pw.window.name,
        )
        done.append({**pw.as_dict(), "applied": applied})
    progress.finish()
    return done


# --- snapshots --------------------------------------------------------------------------------------


def latest_snapshot_with(stage: Stage, pipeline: str, table: str) -> tuple[str, dict[str, Any]]:
    """(prefix, manifest) of the latest staged snapshot that holds ``table`` completely."""
    base = f"{pipeline}/snapshots/"
    prefixes = sorted(
        {k.rsplit("/", 1)[0] for k in stage.list_keys(base) if k.endswith("/manifest.json")},
        reverse=True,
    )
    for prefix in prefixes:
        manifest = read_manifest(stage, prefix)  # a damaged manifest stops the rebuild (raised)
        if manifest.get("kind") != "snapshot" or table in (manifest.get("unfinished") or []):
            continue
        if any(table_name(t) == table for t in manifest["tables"]):
            return prefix, manifest
    raise ReplayRefused(
        f"rebuild of {table}",
        [
            f"no staged snapshot under {stage.url}/{base} holds table {table}; "
            f"run `cdc snapshot --tables {table}`"
        ],
    )


def _replay_owner() -> str:
    return f"cdc-replay-{uuid.uuid4().hex[:12]}"


def replay(
    settings: Settings,
    stage: Stage,
    store: CheckpointStore,
    sink_factory: Callable[[], Any],
    *,
    start: Lsn,
    end: Lsn | None,
    tables: set[str] | None,
    dry_run: bool,
    allow_gaps: bool,
    progress: WorkProgress,
) -> dict[str, Any]:
    """Apply the staged windows from ``start`` (to ``end``, or on to the checkpoint). A real replay
    takes the lease before it chooses the windows, so no window runs, and no prune deletes, between
    the choice and the apply."""
    run = functools.partial(
        _replay, settings, stage, store, start=start, end=end, tables=tables, allow_gaps=allow_gaps,
        progress=progress,
    )  # fmt: skip
    if dry_run:
        return run(None)
    with HeldLease(store, settings.lease_ttl_s, owner=_replay_owner()) as lease:

        def apply(plan: Plan) -> list[dict[str, Any]]:
            # a table re-snapshotted at S holds its changes before S in that copy; later windows
            # skipped them, so replaying them would bring back rows they deleted
            checkpoint = store.load()
            raw = (checkpoint.extra.get("snapshot_lsns") or {}) if checkpoint else {}
            floors = {table: Lsn.parse(text).value for table, text in raw.items()}
            return apply_windows(sink_factory(), plan, progress, lease.fence, floors)

        return run(apply)


def _replay(
    settings: Settings,
    stage: Stage,
    store: CheckpointStore,
    apply: Callable[[Plan], list[dict[str, Any]]] | None,
    *,
    start: Lsn,
    end: Lsn | None,
    tables: set[str] | None,
    allow_gaps: bool,
    progress: WorkProgress,
) -> dict[str, Any]:
    """``replay`` once the lease is held (``apply`` given) or for a dry run (``apply`` None)."""
    dry_run = apply is None
    # anchored: a first window that starts after ``start`` leaves changes out (pruned, or lost)
    plan = plan_windows(stage, settings.pipeline, start, end, tables, allow_gaps=allow_gaps, anchored=True)
    checkpoint = store.load()
    reached = plan.windows[-1].window.end if plan.windows else start
    if end is None and checkpoint is not None and reached < checkpoint.lsn and not allow_gaps:
        raise ReplayRefused(
            "replay",
            [
                f"gap: the staged windows end at {reached}, before the checkpoint {checkpoint.lsn}: the "
                "windows after it were lost or pruned, or a full snapshot moved the checkpoint there; "
                "replaying only the earlier ones would bring back rows that later changes deleted. "
                "Check the stage (or re-run with --allow-gaps if nothing is missing)"
            ],
        )
    if end is not None and checkpoint is not None and end < checkpoint.lsn:
        plan.notes.append(
            f"replaying to {end}, below the checkpoint {checkpoint.lsn}: the target holds changes up to "
            "the checkpoint, and a row that a later window deleted comes back when an earlier change "
            "of it is replayed; replay on to the checkpoint (leave out --to-lsn) to bring it back to "
            "the checkpoint's state"
        )
    result: dict[str, Any] = {
        "pipeline": settings.pipeline,
        "mode": "replay",
        "dry_run": dry_run,
        "from_lsn": str(start),
        "to_lsn": str(end) if end else None,
        "tables_filter": sorted(tables) if tables else None,
        "superseded": plan.superseded,
        "gaps": [list(g) for g in plan.gaps],
        "notes": plan.notes,
    }
    for note in plan.notes:
        progress.note(f"note: {note}")
    if dry_run:
        for n, pw in enumerate(plan.windows, 1):
            d = pw.as_dict()
            tables_text = ", ".join(f"{t} {v['rows']} rows" for t, v in d["tables"].items()) or "no tables"
            progress.note(
                f"window {n}/{len(plan.windows)} {d['window']} ({d['start_lsn']} -> {d['end_lsn']}): "
                f"{tables_text}"
            )
        return {**result, "status": "dry_run", "windows": [pw.as_dict() for pw in plan.windows]}
    assert apply is not None
    return {**result, "status": "replayed", "windows": apply(plan)}


def rebuild(
    settings: Settings,
    stage: Stage,
    store: CheckpointStore,
    sink_factory: Callable[[], Any],
    *,
    tables: list[str],
    dry_run: bool,
    allow_gaps: bool,
    progress: WorkProgress,
) -> dict[str, Any]:
    """Load each table from its latest staged snapshot, then re-apply every later staged window
    (under the lease, taken before the snapshots and windows are chosen)."""
    from cdc.snapshot.load import SnapshotLoader  # imports Snowflake: only when rebuilding

    out: dict[str, Any] = {
        "pipeline": settings.pipeline,
        "mode": "rebuild",
        "dry_run": dry_run,
        "tables": [],
    }
    if dry_run:
        for table, _prefix, manifest, entries, plan in _prepare_rebuild(settings, stage, tables, allow_gaps):
            progress.note(
                f"{table}: snapshot {manifest['snapshot_id']} at {manifest['lsn']} "
                f"({entries[0]['rows']} rows), "
                f"then {len(plan.windows)} windows"
            )
            out["tables"].append(
                _rebuild_dict(table, manifest, entries, [pw.as_dict() for pw in plan.windows])
            )
        return {**out, "status": "dry_run"}
    with HeldLease(store, settings.lease_ttl_s, owner=_replay_owner()) as lease:
        prepared = _prepare_rebuild(settings, stage, tables, allow_gaps)
        sink = sink_factory()
        loader = SnapshotLoader.from_settings(sink.connection, settings, settings.snowflake_swap_strategy)
        for table, prefix, manifest, entries, plan in prepared:
            lease.fence()
            staged = next(s for s in staged_tables(manifest) if s.table.qualified == table)
            loaded = loader.load(staged, f"{prefix}/{staged.stage_dir}", token=uuid.uuid4().hex[:10].upper())
            progress.note(
                f"{table}: loaded snapshot {manifest['snapshot_id']} ({loaded.rows} rows) "
                f"into {loaded.target}"
            )
            floor = {table: Lsn(int(manifest["lsn_int"])).value}  # the copy just loaded holds the rest
            windows = apply_windows(sink, plan, progress, lease.fence, floor)
            out["tables"].append(_rebuild_dict(table, manifest, entries, windows))
    return {**out, "status": "rebuilt"}


def _prepare_rebuild(
    settings: Settings, stage: Stage, tables: list[str], allow_gaps: bool
) -> list[tuple[str, str, dict[str, Any], list[dict[str, Any]], Plan]]:
    """Per table: its latest snapshot (prefix, manifest, entries) and the windows to apply after
    it; ``ReplayRefused`` naming every problem of every table."""
    prepared = []
    problems: list[str] = []
    for table in tables:
        prefix, manifest = latest_snapshot_with(stage, settings.pipeline, table)
        entries = manifest_tables(manifest, {table})
        problems += [f"snapshot {prefix}: {p}" for p in verify_parts(stage, prefix, entries)]
        snap_lsn = Lsn(int(manifest["lsn_int"]))
        try:
            plan = plan_windows(
                stage,
                settings.pipeline,
                snap_lsn,
                None,
                {table},
                allow_gaps=allow_gaps,
                overlapping=True,
                anchored=True,
                what=f"rebuild of {table}",
            )
        except ReplayRefused as exc:
            problems += exc.problems
            continue
        plan.windows = [pw for pw in plan.windows if pw.entries]
        prepared.append((table, prefix, manifest, entries, plan))
    if problems:
        raise ReplayRefused("rebuild", problems)
    return prepared


def _rebuild_dict(
    table: str, manifest: dict[str, Any], entries: list[dict[str, Any]], windows: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "table": table,
        "snapshot_id": manifest["snapshot_id"],
        "snapshot_lsn": manifest["lsn"],
        "snapshot_rows": entries[0]["rows"],
        "windows": windows,
    }
