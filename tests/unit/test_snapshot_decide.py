"""Which kind of window runs: the pure decision over checkpoint, slot and request."""

from __future__ import annotations

from typing import Any

from cdc.checkpoint import Checkpoint
from cdc.model import Lsn
from cdc.snapshot_mode import (
    AUTO_RESNAPSHOT,
    Decision,
    accepted_again,
    decide,
    newly_selected,
    renamed_tables,
    table_oids,
)
from cdc.source.slot import SlotInfo

SLOT = SlotInfo("cdc_p", "wal2json", Lsn.parse("0/100"), Lsn.parse("0/80"), "reserved", None, 0)


def checkpoint(lsn: str = "0/100", **extra: Any) -> Checkpoint:
    return Checkpoint("p", Lsn.parse(lsn), "cdc_p", "w", 0.0, 1, extra)


def stop(resnapshot: bool = True, failed: str | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {"schema": "s", "table": "t", "lsn": "0/90", "reason": "x"}
    if resnapshot:
        record["resnapshot"] = True
    if failed:
        record["resnapshot_failed"] = failed
    return record


def test_first_run_missing_lost_and_recreated_slots_take_a_full_snapshot() -> None:
    assert decide(None, SLOT, None, ()).mode == "snapshot"
    assert decide(checkpoint(), None, None, ()).mode == "snapshot"
    lost = SlotInfo("cdc_p", "wal2json", Lsn.parse("0/100"), None, "lost", None, None)
    assert "wal_status=lost" in (decide(checkpoint(), lost, None, ()).reason or "")
    assert "past the checkpoint" in (decide(checkpoint("0/50"), SLOT, None, ()).reason or "")


def test_a_requested_snapshot_of_a_healthy_slot_copies_the_tables_named() -> None:
    assert decide(checkpoint(), SLOT, "snapshot", ("s.a",)) == Decision("tables", "requested", ("s.a",))


def test_tables_a_schema_change_stopped_are_re_snapshotted_once_when_enabled() -> None:
    stops = {"s.b": stop(), "s.a": stop(), "s.nokey": stop(resnapshot=False), "s.f": stop(failed="boom")}
    cp = checkpoint(stopped_tables=stops)
    assert decide(cp, SLOT, None, (), resnapshot_stopped=True) == Decision(
        "tables", AUTO_RESNAPSHOT, ("s.a", "s.b")
    )
    assert decide(cp, SLOT, None, (), resnapshot_stopped=False) == Decision("incremental")
    done = checkpoint(stopped_tables={"s.nokey": stop(resnapshot=False), "s.f": stop(failed="boom")})
    assert decide(done, SLOT, None, (), resnapshot_stopped=True) == Decision("incremental")


def test_a_requested_snapshot_comes_before_the_automatic_one() -> None:
    cp = checkpoint(stopped_tables={"s.a": stop()})
    assert decide(cp, SLOT, "snapshot", ("s.z",), resnapshot_stopped=True).tables == ("s.z",)


def test_a_table_known_by_its_oid_under_another_name_is_renamed() -> None:
    known = {"101": "s.orders", "102": "s.items"}
    current = {("s", "orders_v2"): 101, ("s", "items"): 102, ("t", "new"): 103}
    assert renamed_tables(known, current) == {"s.orders_v2": "s.orders"}
    assert renamed_tables({}, current) == {}
    assert table_oids(known, current) == {"101": "s.orders_v2", "102": "s.items", "103": "t.new"}


def test_a_table_refused_at_the_checkpoint_and_replicated_now_is_accepted_again() -> None:
    refused = table_oids({}, {("s", "scratch"): 201, ("s", "nokey"): 202})
    assert refused == {"201": "s.scratch", "202": "s.nokey"}
    current = {("s", "scratch"): 201, ("s", "items"): 102}
    assert accepted_again(refused, current) == ["s.scratch"]
    assert accepted_again({}, current) == []
    # by OID: a table refused under another name is the same table
    assert accepted_again(refused, {("t", "scratch_renamed"): 201}) == ["t.scratch_renamed"]


def test_tables_source_tables_did_not_name_at_the_checkpoint_are_newly_selected() -> None:
    assert newly_selected(["s.a"], ["s.a", "s.b"]) == ["s.b"]
    assert newly_selected(["s.a", "s.b"], ["s.a"]) == []
    assert newly_selected([], ["s.a", "s.b"]) == []  # every table was replicated already
    assert newly_selected(None, ["s.a", "s.b"]) == []  # a checkpoint that did not record it
