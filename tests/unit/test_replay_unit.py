"""Window selection and gap detection of ``cdc replay`` on in-memory stage listings and manifests."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from cdc.model import Lsn
from cdc.replay import register
from cdc.replay.plan import parse_window_dirs, select_windows, verify_parts
from cdc.replay.run import ReplayRefused, plan_windows
from cdc.stage import StageObjectMissing, build_manifest

P = "pipe"


def key(start: int, end: int, rest: str = "manifest.json") -> str:
    return f"{P}/windows/{start:016X}-{end:016X}/{rest}"


def windows(*ranges: tuple[int, int], orphans: tuple[tuple[int, int], ...] = ()) -> list[Any]:
    keys = [key(s, e) for s, e in ranges] + [key(s, e, "a.t/part-00000.parquet") for s, e in ranges]
    keys += [key(s, e, "a.t/part-00000.parquet") for s, e in orphans]
    return parse_window_dirs(P, keys + ["other/windows/x", f"{P}/snapshots/1/manifest.json"])


def names(ws: list[Any]) -> list[tuple[int, int]]:
    return [(w.start.value, w.end.value) for w in ws]


def test_parse_groups_keys_into_windows_in_lsn_order() -> None:
    ws = windows((0x20, 0x30), (0x10, 0x20), orphans=((0x30, 0x40),))
    assert names(ws) == [(0x10, 0x20), (0x20, 0x30), (0x30, 0x40)]
    assert [w.has_manifest for w in ws] == [True, True, False]
    assert ws[2].files == 1


def test_selects_windows_inside_the_range_and_chains_them() -> None:
    ws = windows((0x10, 0x20), (0x20, 0x30), (0x30, 0x40), (0x40, 0x50))
    sel = select_windows(ws, Lsn(0x20), Lsn(0x40))
    assert names(sel.chain) == [(0x20, 0x30), (0x30, 0x40)]
    assert not sel.problems and not sel.gaps
    assert names(select_windows(ws, Lsn(0)).chain) == names(ws)
    assert names(select_windows(ws, Lsn(0x25)).chain) == [(0x30, 0x40), (0x40, 0x50)]
    assert "begins before" in select_windows(ws, Lsn(0x25)).notes[0]


def test_gap_is_a_problem_naming_both_windows_unless_allowed() -> None:
    ws = windows((0x10, 0x20), (0x28, 0x30))
    sel = select_windows(ws, Lsn(0x10))
    assert sel.gaps == [(Lsn(0x20), Lsn(0x28))]
    [problem] = sel.problems
    assert "0/20 -> 0/28" in problem and f"{0x10:016X}-{0x20:016X}" in problem and f"{0x28:016X}" in problem
    allowed = select_windows(ws, Lsn(0x10), allow_gaps=True)
    assert not allowed.problems and names(allowed.chain) == [(0x10, 0x20), (0x28, 0x30)]


def test_window_without_manifest_is_a_problem_unless_a_rerun_covers_it() -> None:
    sel = select_windows(windows((0x10, 0x20), (0x30, 0x40), orphans=((0x20, 0x30),)), Lsn(0))
    assert any("manifest.json is missing" in p and f"{0x20:016X}-{0x30:016X}" in p for p in sel.problems)
    # a crash after staging [0x10, 0x28): the re-read staged [0x10, 0x20) and went on: covered
    covered = select_windows(windows((0x10, 0x20), (0x20, 0x30), orphans=((0x10, 0x28),)), Lsn(0))
    assert not covered.problems
    assert names(covered.chain) == [(0x10, 0x20), (0x20, 0x30)]
    assert names(covered.superseded) == [(0x10, 0x28)]


def test_two_windows_with_one_start_apply_the_one_that_continues_the_chain() -> None:
    sel = select_windows(windows((0x10, 0x28), (0x10, 0x20), (0x20, 0x30)), Lsn(0))
    assert names(sel.chain) == [(0x10, 0x20), (0x20, 0x30)]
    assert names(sel.superseded) == [(0x10, 0x28)]
    assert not sel.problems


def test_rebuild_selection_takes_overlapping_windows_and_anchors_at_the_snapshot() -> None:
    ws = windows((0x10, 0x20), (0x20, 0x30))
    sel = select_windows(ws, Lsn(0x18), overlapping=True, anchored=True)
    assert names(sel.chain) == [(0x10, 0x20), (0x20, 0x30)] and not sel.problems
    late = select_windows(windows((0x20, 0x30)), Lsn(0x18), overlapping=True, anchored=True)
    assert late.gaps == [(Lsn(0x18), Lsn(0x20))] and late.problems


class MemoryStage:
    url = "mem://"

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def put_bytes(self, k: str, data: bytes) -> None:
        self.data[k] = data

    def get_bytes(self, k: str) -> bytes:
        if k not in self.data:
            raise StageObjectMissing(k)
        return self.data[k]

    def list_keys(self, prefix: str) -> list[str]:
        return sorted(k for k in self.data if k.startswith(prefix))

    def exists(self, k: str) -> bool:
        return k in self.data

    def publish(self, spool_dir: Any, prefix: str) -> int:
        raise NotImplementedError


def test_plan_reads_manifests_and_reports_damaged_parts_and_manifests() -> None:
    stage = MemoryStage()
    for s, e in ((0x10, 0x20), (0x20, 0x30), (0x30, 0x40)):
        prefix = f"{P}/windows/{s:016X}-{e:016X}"
        payload = f"part {s}".encode()
        stage.put_bytes(f"{prefix}/a.t/part-00000.parquet", payload)
        table = {
            "schema": "a", "table": "t", "stage_dir": "a.t", "key": ["id"], "columns": [],
            "files": [{"name": "part-00000.parquet", "rows": 3, "bytes": len(payload),
                       "sha256": hashlib.sha256(payload).hexdigest()}],
            "rows": 3, "ops": {"I": 3}, "truncate": None, "columns_as_text": [],
        }  # fmt: skip
        manifest = build_manifest(P, f"w{s:x}", Lsn(s), Lsn(e), [], {"last_commit_lsn": e - 1}) | {
            "tables": [table]
        }
        manifest.pop("checksum")
        import json

        from cdc.stage import _canonical

        manifest["checksum"] = hashlib.sha256(_canonical(manifest)).hexdigest()
        stage.put_bytes(f"{prefix}/manifest.json", json.dumps(manifest).encode())
    plan = plan_windows(stage, P, Lsn(0), None, None)
    assert [pw.as_dict()["tables"] for pw in plan.windows] == [
        {"a.t": {"rows": 3, "ops": {"I": 3}, "files": 1}}
    ] * 3
    assert plan_windows(stage, P, Lsn(0), None, {"b.x"}).windows[0].entries == []
    damaged = f"{P}/windows/{0x20:016X}-{0x30:016X}/a.t/part-00000.parquet"
    stage.data[damaged] = b"flipped"
    broken_manifest = f"{P}/windows/{0x30:016X}-{0x40:016X}/manifest.json"
    stage.data[broken_manifest] = stage.data[broken_manifest].replace(b'"rows": 3', b'"rows": 4', 1)
    with pytest.raises(ReplayRefused) as refused:
        plan_windows(stage, P, Lsn(0), None, None)
    problems = refused.value.problems
    assert any(damaged in p and "damaged" in p for p in problems)
    assert any("checksum" in p and f"{0x30:016X}" in p for p in problems)
    del stage.data[damaged]
    assert any("is missing" in p for p in verify_parts(stage, damaged.rsplit("/", 2)[0], [
        {"schema": "a", "table": "t", "stage_dir": "a.t", "files": [{"name": "part-00000.parquet", "sha256": "x"}]}
    ]))  # fmt: skip


def test_register_adds_replay_and_checkpoint() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["replay", "--config", "c", "--from-lsn", "0/16B3748", "--to-lsn", "0/2000000"])
    assert args.from_lsn == Lsn.parse("0/16B3748") and args.to_lsn == Lsn.parse("0/2000000")
    args = parser.parse_args(["checkpoint", "set", "--config", "c", "--lsn", "0/10", "--yes"])
    assert args.action == "set" and args.lsn == Lsn(0x10) and args.yes
    with pytest.raises(SystemExit):
        parser.parse_args(["replay", "--config", "c", "--from-lsn", "nope"])
