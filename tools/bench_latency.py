"""Commit-to-visible latency at a steady 1,000 changes/s, against the real devstack.

Two modes, each with its own pipeline, slot and target table, each for ``seconds`` of load:

* ``scheduled``: one window every 10 seconds (``Engine.run_window``), like a schedule;
* ``follow``: ``cdc sync --follow --idle-wait 0.5 --json`` in a child process (the real command).

The load: ten transactions a second on ``benchlat.events``, each with 80 inserts and one
statement updating 20 earlier rows, every row carrying the transaction's number ``k``. A poller
reads ``MAX(K)`` of the target table every 100 ms; the first time it sees ``k`` or more, every
transaction up to ``k`` is visible (a window applies whole transactions, in commit order). The
latency of a transaction is that time minus the time its COMMIT returned; p50 and p95 are
reported (the poll interval bounds the resolution). Nothing here asserts on time.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extras

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = "benchlat"
TXN_PER_S = 10
INSERTS, UPDATES = 80, 20  # per transaction: 1,000 changes a second
POLL_S = 0.1
SCHEDULE_S = 10.0
FOLLOW_IDLE_S = 0.5


def _prepare(admin_dsn: str) -> None:
    conn = psycopg2.connect(admin_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        cur.execute(f"CREATE SCHEMA {SCHEMA}")
        cur.execute(f"CREATE TABLE {SCHEMA}.events (id bigint PRIMARY KEY, k int NOT NULL, v int, note text)")
        cur.execute(f"GRANT USAGE ON SCHEMA {SCHEMA} TO PUBLIC")
        cur.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {SCHEMA} TO PUBLIC")
    conn.close()


def _load(admin_dsn: str, seconds: float, commits: list[tuple[int, float]]) -> None:
    """Ten transactions a second for ``seconds``; records (k, wall time the COMMIT returned)."""
    conn = psycopg2.connect(admin_dsn)
    next_id, k = 1, 0
    start = time.monotonic()
    try:
        with conn.cursor() as cur:
            while time.monotonic() - start < seconds:
                k += 1
                rows = [(next_id + i, k, i, "x" * 40) for i in range(INSERTS)]
                psycopg2.extras.execute_values(cur, f"INSERT INTO {SCHEMA}.events VALUES %s", rows)
                if next_id > UPDATES:
                    ids = [1 + (next_id * 7 + i * 13) % (next_id - 1) for i in range(UPDATES)]
                    cur.execute(f"UPDATE {SCHEMA}.events SET v = v + 1, k = %s WHERE id = ANY(%s)", (k, ids))
                next_id += INSERTS
                conn.commit()
                commits.append((k, time.time()))
                time.sleep(max(0.0, start + k / TXN_PER_S - time.monotonic()))
    finally:
        conn.close()


class _Poller:
    """Watches MAX(K) of the target table; records (k, wall time first seen)."""

    def __init__(self, settings: Any) -> None:
        from cdc.app import build_sink
        from cdc.model import Column, TableSchema
        from cdc.secrets import VaultSecrets
        from cdc.snowflake import sql as sfsql

        self.sink = build_sink(settings, VaultSecrets.from_settings(settings))
        table = TableSchema(SCHEMA, "events", (Column("k", 2, "integer", 23),), ("k",))
        self.sql = f"SELECT MAX(K) FROM {sfsql.target_table(settings.snowflake_database, table)}"
        self.seen: list[tuple[int, float]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        cur = self.sink.connection.cursor()
        best = 0
        while not self.stop.wait(POLL_S):
            try:
                cur.execute(self.sql)
                value = cur.fetchone()[0]
            except Exception:  # the table appears with the pipeline's first window
                continue
            if value is not None and int(value) > best:
                best = int(value)
                self.seen.append((best, time.time()))

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sink.close()


def _latencies(commits: list[tuple[int, float]], seen: list[tuple[int, float]]) -> list[float]:
    out: list[float] = []
    i = 0
    for k, committed in commits:
        while i < len(seen) and seen[i][0] < k:
            i += 1
        if i < len(seen):
            out.append(seen[i][1] - committed)
    return out


def _summary(commits: list[tuple[int, float]], seen: list[tuple[int, float]]) -> dict[str, Any]:
    lat = sorted(_latencies(commits, seen))
    if not lat:
        return {"transactions": len(commits), "visible": 0}
    return {
        "transactions": len(commits),
        "visible": len(lat),
        "p50_s": statistics.median(lat),
        "p95_s": lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))],
        "max_s": lat[-1],
        "poll_interval_s": POLL_S,
    }


def _mode(env: dict[str, Any], settings: Any, mode: str, seconds: float, log: Any) -> dict[str, Any]:
    from cdc.app import build_engine

    pipe_settings = settings.replace(pipeline=f"benchlat{mode}", source_tables=(f"{SCHEMA}.events",))
    _prepare(env["postgres_admin_dsn"])
    engine = build_engine(pipe_settings)
    first = engine.run_window()  # snapshot: creates the slot and a fresh target table
    if first.status != "snapshot":
        engine.close()
        raise RuntimeError(f"latency {mode}: the first window should snapshot, it returned {first.as_dict()}")
    poller = _Poller(pipe_settings)
    commits: list[tuple[int, float]] = []
    load = threading.Thread(target=_load, args=(env["postgres_admin_dsn"], seconds, commits))
    child: subprocess.Popen[bytes] | None = None
    windows = 0
    try:
        if mode == "follow":
            engine.close()
            child_env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("CDC_")},
                "CDC_PIPELINE": pipe_settings.pipeline,
                "CDC_SOURCE_TABLES": f"{SCHEMA}.events",
            }
            child = subprocess.Popen(
                [sys.executable, "-m", "cdc.cli", "sync", "--config", str(env["config"]), "--follow"]
                + ["--idle-wait", str(FOLLOW_IDLE_S), "--json"],
                cwd=ROOT,
                env=child_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        load.start()

        def all_visible() -> bool:
            return not load.is_alive() and bool(poller.seen) and poller.seen[-1][0] >= commits[-1][0]

        deadline = time.monotonic() + seconds + 60  # the last transactions too must become visible
        next_start = time.monotonic()
        while not all_visible() and time.monotonic() < deadline:
            if mode == "scheduled" and time.monotonic() >= next_start:
                done = engine.run_window()
                if done.status not in ("applied", "empty"):
                    raise RuntimeError(f"latency {mode}: a window returned {done.as_dict()}")
                windows += 1
                next_start += SCHEDULE_S
            time.sleep(0.05)
        load.join()
    finally:
        if child is not None:
            child.send_signal(signal.SIGTERM)
            out, _ = child.communicate(timeout=120)
            windows = len([line for line in out.decode().splitlines() if line.strip()])
        poller.close()
        engine.close()
        _drop_slot(env["postgres_admin_dsn"], pipe_settings.source_slot)
    result = _summary(commits, poller.seen)
    result["windows"] = windows
    log(f"latency {mode}: p50 {result.get('p50_s', 0):.2f} s, p95 {result.get('p95_s', 0):.2f} s")
    return result


def _drop_slot(admin_dsn: str, slot: str) -> None:
    conn = psycopg2.connect(admin_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name = %s AND NOT active",
            (slot,),
        )
    conn.close()


def measure_latency(env: dict[str, Any], settings: Any, seconds: float, log: Any) -> dict[str, Any]:
    return {
        "changes_per_s": TXN_PER_S * (INSERTS + UPDATES),
        "seconds_per_mode": seconds,
        "scheduled_every_10s": _mode(env, settings, "scheduled", seconds, log),
        f"follow_idle_wait_{FOLLOW_IDLE_S:g}s": _mode(env, settings, "follow", seconds, log),
    }
