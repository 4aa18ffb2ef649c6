"""Which staged windows and snapshots ``cdc stage prune`` removes and which it keeps (pure planning)."""

from __future__ import annotations

from cdc.model import Lsn
from cdc.prune import SnapshotDir, latest_snapshots, plan_prune
from cdc.replay.plan import WindowDir


def window(start: int, end: int, complete: bool = True) -> WindowDir:
    name = f"{start:016X}-{end:016X}"
    return WindowDir(Lsn(start), Lsn(end), f"p/windows/{name}", complete, 1)


def snapshot(lsn: int, *tables: str, manifest: bool = True, damaged: str | None = None) -> SnapshotDir:
    sid = f"{lsn:016X}-ABCDEF{lsn % 100:02d}"
    return SnapshotDir(sid, f"p/snapshots/{sid}", Lsn(lsn), tuple(tables), manifest, damaged)


WINDOWS = [
    window(100, 200),
    window(200, 250, complete=False),  # a crash between staging and the checkpoint, re-read later
    window(200, 300),
    window(300, 400),
    window(400, 500),
    window(500, 600),  # after the checkpoint
]
FULL = snapshot(100, "s.a", "s.b")
A_AGAIN = snapshot(350, "s.a")
FAILED = snapshot(320, manifest=False)
DAMAGED = snapshot(150, damaged="checksum mismatch")


def names(ws: list[WindowDir]) -> list[str]:
    return [w.name for w in ws]


def test_latest_snapshot_per_table_ignores_failed_and_damaged_ones() -> None:
    latest = latest_snapshots([FULL, A_AGAIN, FAILED, DAMAGED])
    assert latest == {"s.a": A_AGAIN, "s.b": FULL}


def test_windows_a_rebuild_from_the_oldest_latest_snapshot_needs_are_kept() -> None:
    plan = plan_prune(WINDOWS, [FULL, A_AGAIN, FAILED, DAMAGED], checkpoint=Lsn(500), before=Lsn(500))
    assert plan.windows == []  # s.b's latest snapshot is at 100: every later window rebuilds it
    kept = {k["name"]: k["reason"] for k in plan.kept}
    assert set(kept) == {*names(WINDOWS[:5]), FULL.snapshot_id, A_AGAIN.snapshot_id, DAMAGED.snapshot_id}
    assert kept[WINDOWS[2].name] == (
        f"needed to rebuild s.b from the latest snapshot {FULL.snapshot_id} (at 0/64); a newer snapshot "
        "(`cdc snapshot --tables s.b`) releases it"
    )
    assert kept[WINDOWS[3].name].startswith("needed to rebuild s.b and 1 more table(s)")  # s.a's is at 350
    assert kept[FULL.snapshot_id] == "latest complete snapshot of s.b"
    assert kept[A_AGAIN.snapshot_id] == "latest complete snapshot of s.a"
    assert kept[DAMAGED.snapshot_id].startswith("its manifest is damaged (checksum mismatch)")
    assert plan.snapshots == [FAILED]  # a failed snapshot run was never usable


def test_a_newer_snapshot_releases_the_windows_before_it() -> None:
    b_again = snapshot(300, "s.b")
    plan = plan_prune(WINDOWS, [FULL, A_AGAIN, b_again], checkpoint=Lsn(500), before=Lsn(600))
    assert names(plan.windows) == names(WINDOWS[:3])  # everything ending at or before 300
    assert plan.snapshots == [FULL]  # superseded for s.a and s.b
    kept = {k["name"]: k["reason"] for k in plan.kept}
    assert kept[WINDOWS[3].name].startswith(
        f"needed to rebuild s.b and 1 more table(s) from the latest snapshot {b_again.snapshot_id} (at 0/12C)"
    )
    assert kept[WINDOWS[5].name] == "ends after the checkpoint 0/1F4: not applied yet"
    assert plan.notes == [
        "--before 0/258 is past the checkpoint 0/1F4: windows after the checkpoint are kept"
    ]


def test_before_limits_what_goes() -> None:
    plan = plan_prune(WINDOWS, [snapshot(500, "s.a", "s.b")], checkpoint=Lsn(500), before=Lsn(250))
    assert names(plan.windows) == names(WINDOWS[:2])  # the windows ending at 200 and 250 only
    assert plan.kept == [] and plan.snapshots == []  # the snapshot is not before 250


def test_without_snapshots_only_the_checkpoint_limits() -> None:
    plan = plan_prune(WINDOWS, [], checkpoint=Lsn(400), before=Lsn(1000))
    assert names(plan.windows) == names(WINDOWS[:4])
    assert [k["name"] for k in plan.kept] == names(WINDOWS[4:])
    assert "no complete snapshot is staged: no window is kept for a rebuild" in plan.notes
