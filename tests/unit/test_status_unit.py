"""``cdc status``: the status object from what was read, the lag rules, and the table for people."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cdc.checkpoint import Checkpoint, Lease
from cdc.model import Lsn
from cdc.source.slot import SlotInfo
from cdc.status import Observed, TargetCount, assemble, render

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()


def last_window(**changes: Any) -> dict[str, Any]:
    window = {
        "window_id": "w2",
        "status": "applied",
        "start_lsn": "0/1000",
        "end_lsn": "0/2000",
        "last_commit_lsn": "0/1FE0",
        "last_commit_ts": "2026-03-01T11:59:50+00:00",
        "transactions": 3,
        "changes": 40,
        "stop_reason": "wal_end",
        "caught_up": True,
        "started_at": T0 - 5,
        "duration_s": 1.25,
        "retries": 1,
        "bytes_staged": 4096,
        "tables": {"s.items": {"I": 40, "U": 0, "D": 0, "T": 0}},
        "errors": {},
        "notes": [],
    }
    return {**window, **changes}


def observed(window: dict[str, Any] | None, wal: int = 0x2100, **extra: Any) -> Observed:
    cp = Checkpoint(
        "p",
        Lsn(0x2000),
        "cdc_p",
        "w2",
        T0 - 3,
        7,
        {
            **({"last_window": window} if window else {}),
            "tables": {
                "s.items": {"lsn": "0/1FE0", "commit_ts": "2026-03-01T11:59:50+00:00", "window_id": "w2"}
            },
            "stopped_tables": {
                "s.bad": {"schema": "s", "table": "bad", "lsn": "0/1000", "reason": "type change"}
            },
            **extra,
        },
    )
    return Observed(
        "p",
        "cdc_p",
        checkpoint=cp,
        lease=Lease("p", "cdc-x", 8, 0.0),
        slot=SlotInfo("cdc_p", "wal2json", Lsn(0x2000), Lsn(0x1800), "reserved", None, 0x900),
        wal=Lsn(wal),
        replicated=["s.bad", "s.items", "s.other"],
        refused={"s.nokey": "table s.nokey has no primary key"},
        targets={"s.items": TargetCount(40, Lsn(0x1FE0)), "s.other": "cannot count: no such table"},
        target_names={"s.items": '"DB"."S"."ITEMS"', "s.other": '"DB"."S"."OTHER"'},
    )


def test_status_fields_come_from_checkpoint_slot_and_target() -> None:
    s = assemble(observed(last_window()), T0)
    assert s["status"] == "ok"
    assert s["checkpoint"] == {
        "lsn": "0/2000",
        "version": 7,
        "window_id": "w2",
        "updated_at": T0 - 3,
        "last_commit_lsn": "0/1FE0",
        "last_commit_ts": "2026-03-01T11:59:50+00:00",
    }
    assert s["slot"]["confirmed_flush_lsn"] == "0/2000" and s["slot"]["restart_lsn"] == "0/1800"
    assert s["slot"]["retained_wal_bytes"] == 0x900 and s["wal_lsn"] == "0/2100"
    assert s["lease"] == {"owner": "cdc-x", "epoch": 8, "expires_at": 0.0, "held": False}
    tables = {t["table"]: t for t in s["tables"]}
    assert list(tables) == ["s.bad", "s.items", "s.nokey", "s.other"]
    assert tables["s.items"]["target_rows"] == 40 and tables["s.items"]["last_applied_lsn"] == "0/1FE0"
    assert tables["s.items"]["target_max_lsn"] == "0/1FE0" and tables["s.items"]["state"] == "replicating"
    assert (tables["s.bad"]["state"], tables["s.bad"]["reason"]) == ("stopped", "type change")
    assert (tables["s.nokey"]["state"], tables["s.nokey"]["reason"]) == (
        "refused",
        "table s.nokey has no primary key",
    )
    assert tables["s.other"]["target_error"] == "cannot count: no such table"


def test_lag_of_a_window_that_caught_up_counts_from_its_start() -> None:
    lag = assemble(observed(last_window()), T0)["lag"]
    assert lag == {
        "bytes": 0x100,
        "seconds": 5.0,
        "as_of": "2026-03-01T11:59:55.000+00:00",
        "basis": "start of the last window, which read up to the WAL end",
        "slot_bytes": 0x100,
    }


def test_lag_of_a_window_that_stopped_early_counts_from_its_last_commit() -> None:
    lag = assemble(observed(last_window(caught_up=False, stop_reason="max_changes")), T0)["lag"]
    assert (lag["seconds"], lag["basis"]) == (10.0, "commit time of the last applied transaction")


def test_no_wal_after_the_checkpoint_is_no_lag() -> None:
    assert assemble(observed(last_window(), wal=0x2000), T0)["lag"]["seconds"] == 0.0


def test_lag_after_a_snapshot_counts_from_the_snapshot_and_a_moved_checkpoint_has_none() -> None:
    seen = observed(None, snapshot={"id": "X", "lsn": "0/2000"})
    seen.snapshot_taken_at = T0 - 60
    assert assemble(seen, T0)["lag"]["seconds"] == 60.0
    moved = assemble(observed(last_window(end_lsn="0/1000")), T0)
    assert moved["lag"]["seconds"] is None
    assert moved["last_window"]["note"] == "the checkpoint was moved to 0/2000 after this window"


def test_a_part_that_could_not_be_read_makes_the_status_incomplete() -> None:
    seen = observed(last_window())
    seen.failed("snowflake", RuntimeError("connection refused"))
    s = assemble(seen, T0)
    assert s["status"] == "incomplete"
    assert s["errors"] == [{"part": "snowflake", "message": "RuntimeError: connection refused"}]


def test_render_is_a_readable_table() -> None:
    text = render(assemble(observed(last_window()), T0))
    lines = text.splitlines()
    assert lines[0] == "pipeline p  (slot cdc_p)"
    assert "  checkpoint    0/2000  version 7, window w2, written 2026-03-01 11:59:57 UTC" in lines
    assert "  last commit   0/1FE0  committed 2026-03-01 11:59:50.000 UTC" in lines
    assert (
        "  lag           256 B of WAL after the checkpoint, 5.0 s (target holds the source as of "
        "2026-03-01 11:59:55.000 UTC)"
    ) in lines
    assert "  lease         free (last cdc-x (epoch 8), released)" in lines
    assert (
        "  last window   w2 applied 0/1000 -> 0/2000: 3 txns, 40 changes in 1.25 s (wal_end), 1 retries, no errors"
    ) in lines
    table = lines[lines.index("tables") + 1 :]
    assert table[0].split() == ["TABLE", "STATE", "TARGET", "ROWS", "LAST", "APPLIED", "LSN", "LAST", "COMMIT", "(UTC)",
                                "MAX", "_CDC_LSN"]  # fmt: skip
    assert table[2].split() == [
        "s.items",
        "replicating",
        "40",
        "0/1FE0",
        "2026-03-01",
        "11:59:50.000",
        "0/1FE0",
    ]
    assert "  s.bad: type change" in table and "  s.other: cannot count: no such table" in table


def test_a_pipeline_that_never_ran() -> None:
    seen = Observed("p", "cdc_p", wal=Lsn(0x500), replicated=["s.t"])
    s = assemble(seen, T0)
    assert s["checkpoint"] is None and s["last_window"] is None and s["lease"] is None
    assert s["slot"]["exists"] is False
    assert s["lag"] == {"bytes": None, "seconds": None, "as_of": None, "basis": None, "slot_bytes": None}
    assert s["tables"][0]["table"] == "s.t" and s["tables"][0]["state"] == "replicating"
    lines = render(s).splitlines()
    assert "  checkpoint    none: the next window runs a full snapshot" in lines
    assert "  slot          does not exist: the next window creates it and snapshots" in lines
    assert "  lease         free (never taken)" in lines
