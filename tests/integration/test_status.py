"""``cdc status`` against the real local stack: every field checked against the checkpoint, the slot,
the staged manifest, the target tables and the dead-letter queue after a few windows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import Pipeline

from cdc.app import aws_client, build_engine
from cdc.cli import main
from cdc.demo import replicate_until_caught_up
from cdc.model import Lsn
from cdc.stage import read_manifest, window_prefix

TABLES = ("items", "other", "quiet", "nokey")


@pytest.fixture
def p(stack: Any, tmp_path: Path, restore_logging: None) -> Iterator[Pipeline]:
    pipeline = Pipeline(stack)
    s = pipeline.schema
    with pipeline.conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {s}")
        for name in TABLES[:3]:
            cur.execute(f"CREATE TABLE {s}.{name} (id int PRIMARY KEY, v text)")
        cur.execute(f"CREATE TABLE {s}.nokey (a int)")
        cur.execute(f"INSERT INTO {s}.quiet SELECT g, 'q' || g FROM generate_series(1, 3) g")
    pipeline.conn.commit()
    pipeline.engine.close()
    pipeline.settings = pipeline.settings.replace(
        source_tables=tuple(f"{s}.{t}" for t in TABLES), window_max_changes=15
    )
    pipeline.engine = build_engine(pipeline.settings)
    config = tmp_path / "cdc.toml"
    config.write_text(
        f"source_tables = {json.dumps([f'{s}.{t}' for t in TABLES])}\n"
        + Path(stack.env["config"])
        .read_text()
        .replace('pipeline = "devstack"', f'pipeline = "{pipeline.name}"')
    )
    pipeline.config = config  # type: ignore[attr-defined]
    yield pipeline
    pipeline.close()


def sql(p: Pipeline, *statements: str) -> None:
    with p.conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement.replace("{s}", p.schema))
    p.conn.commit()


def cli(p: Pipeline, capsys: Any, *extra: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["status", "--config", str(p.config), *extra])  # type: ignore[attr-defined]
    out = capsys.readouterr()
    return code, out.out, out.err


def target(p: Pipeline, name: str) -> list[dict[str, Any]]:
    table = p.engine.source.catalog().tables[(p.schema, name)]
    return p.engine.sink.fetch_table(table)  # type: ignore[attr-defined]


def test_status_after_a_few_windows_matches_checkpoint_slot_and_target(p: Pipeline, capsys: Any) -> None:
    assert p.engine.run_window().status == "snapshot"
    for i in range(1, 11):
        sql(p, f"INSERT INTO {{s}}.items VALUES ({i}, 'v{i}')")
    sql(p, "INSERT INTO {s}.other SELECT g, 'o' || g FROM generate_series(1, 5) g")
    sql(p, "UPDATE {s}.items SET v = v || '!' WHERE id % 4 = 0", "DELETE FROM {s}.items WHERE id % 5 = 0")
    sql(p, "INSERT INTO {s}.quiet VALUES (4, 'q4'), (5, 'q5')")
    windows = replicate_until_caught_up(p.engine)
    assert sum(r["status"] == "applied" for r in windows) >= 2
    quiet_window = next(r for r in reversed(windows) if f"{p.schema}.quiet" in r["tables"])
    sql(p, "INSERT INTO {s}.items VALUES (100, 'last')", "UPDATE {s}.other SET v = 'last' WHERE id = 1")
    final = p.engine.run_window()
    assert final.status == "applied" and final.caught_up

    code, out, err = cli(p, capsys, "--json")
    assert code == 0 and len(out.splitlines()) == 1, err
    s = json.loads(out)
    checkpoint, lease = p.store.load(), p.store.read_lease()
    assert checkpoint is not None and lease is not None
    manifest = read_manifest(
        p.engine.stage, window_prefix(p.name, Lsn.parse(final.start_lsn), checkpoint.lsn)
    )
    last_commit = str(Lsn(manifest["last_commit_lsn"]))
    with p.admin.cursor() as cur:
        cur.execute(
            "SELECT plugin, confirmed_flush_lsn::text, restart_lsn::text, wal_status, active_pid, "
            "safe_wal_size IS NULL FROM pg_replication_slots WHERE slot_name = %s",
            (p.settings.source_slot,),
        )
        plugin, confirmed, restart, wal_status, active_pid, unlimited = cur.fetchone()
        cur.execute("SELECT pg_current_wal_lsn()::text")
        wal_after = Lsn.parse(cur.fetchone()[0])
    dlq = aws_client(p.settings, "sqs").get_queue_attributes(
        QueueUrl=p.settings.dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]

    assert s["pipeline"] == p.name and s["status"] == "ok" and s["errors"] == []
    assert s["checkpoint"] == {
        "lsn": str(checkpoint.lsn),
        "version": checkpoint.version,
        "window_id": final.window_id,
        "updated_at": checkpoint.updated_at,
        "last_commit_lsn": last_commit,
        "last_commit_ts": s["last_window"]["last_commit_ts"],
    }
    assert checkpoint.lsn == Lsn.parse(final.end_lsn) and Lsn.parse(last_commit) < checkpoint.lsn
    retained = s["slot"].pop("retained_wal_bytes")
    assert (s["slot"].pop("safe_wal_bytes") is None) == unlimited  # None: max_slot_wal_keep_size is -1
    assert s["slot"] == {
        "name": p.settings.source_slot,
        "exists": True,
        "plugin": plugin,
        "active_pid": active_pid,
        "confirmed_flush_lsn": confirmed,
        "restart_lsn": restart,
        "wal_status": wal_status,
    }
    assert confirmed == str(checkpoint.lsn)  # the slot is confirmed exactly to the checkpoint
    wal = Lsn.parse(s["wal_lsn"])
    assert checkpoint.lsn <= wal <= wal_after and Lsn.parse(restart).value + retained <= wal.value
    assert s["lag"]["bytes"] == wal.value - checkpoint.lsn.value
    assert s["lag"]["slot_bytes"] == wal.value - Lsn.parse(confirmed).value
    assert s["lag"]["basis"] == "start of the last window, which read up to the WAL end"
    started = s["last_window"]["started_at"]
    assert s["lag"]["as_of"] == datetime.fromtimestamp(started, UTC).isoformat(timespec="milliseconds")
    assert started <= checkpoint.updated_at
    assert s["lease"] == {"owner": p.engine.owner, "epoch": lease.epoch, "expires_at": 0.0, "held": False}

    last = s["last_window"]
    assert {
        k: last[k] for k in ("window_id", "status", "start_lsn", "end_lsn", "transactions", "changes")
    } == {
        "window_id": final.window_id,
        "status": "applied",
        "start_lsn": final.start_lsn,
        "end_lsn": final.end_lsn,
        "transactions": final.transactions,
        "changes": 2,
    }
    assert (last["caught_up"], last["stop_reason"], last["errors"], last["retries"]) == (
        True,
        "wal_end",
        {},
        0,
    )
    assert last["tables"] == final.tables and last["bytes_staged"] == final.bytes_staged
    assert last["last_commit_lsn"] == last_commit

    tables = {t["table"]: t for t in s["tables"]}
    assert list(tables) == sorted(f"{p.schema}.{t}" for t in TABLES)
    items, other, quiet = (target(p, n) for n in ("items", "other", "quiet"))
    assert [len(items), len(other), len(quiet)] == [9, 5, 5]
    # the final window's one transaction changed both; a commit of another session (an
    # autovacuum's) may have come after it, and then is the window's last commit
    newest_lsn = str(Lsn(max(r["_CDC_LSN"] for r in items)))
    assert Lsn.parse(newest_lsn) <= Lsn.parse(last_commit)
    for name, rows in (("items", items), ("other", other)):
        row = tables[f"{p.schema}.{name}"]
        assert row["state"] == "replicating" and row["target_rows"] == len(rows)
        assert row["last_applied_lsn"] == newest_lsn == row["target_max_lsn"]
        assert row["last_window_id"] == final.window_id
        newest = max(rows, key=lambda r: r["_CDC_LSN"])
        assert datetime.fromisoformat(row["last_commit_ts"]) == newest["_CDC_COMMIT_TS"]
    q = tables[f"{p.schema}.quiet"]
    assert q["target_rows"] == 5 and q["last_window_id"] == quiet_window["window_id"]
    assert q["last_applied_lsn"] == q["target_max_lsn"] == str(Lsn(max(r["_CDC_LSN"] for r in quiet)))
    assert Lsn.parse(q["last_applied_lsn"]) < Lsn.parse(last_commit)
    nokey = tables[f"{p.schema}.nokey"]
    assert nokey["state"] == "refused" and nokey["target_rows"] is None
    assert nokey["reason"].startswith(f"table {p.schema}.nokey has no primary key and cannot be replicated")
    assert s["dead_letter"]["messages"] == int(dlq["ApproximateNumberOfMessages"])

    code, out, err = cli(p, capsys)
    assert code == 0 and out == ""
    lines = err.splitlines()
    assert (
        f"  checkpoint    {checkpoint.lsn}  version {checkpoint.version}, window {final.window_id}"
        in "\n".join(lines)
    )
    row = next(line for line in lines if line.startswith(f"  {p.schema}.items "))
    assert row.split()[:4] == [f"{p.schema}.items", "replicating", "9", newest_lsn]
