"""Throughput benchmark of the replicator against the embedded local stack.

Usage::

    python tools/bench.py [--changes N] [--repeat 3] [--seed 8] [--out bench.json] [--no-profile]
                          [--snapshot-repeat 5] [--window-changes N] [--skip apply,snapshot]
                          [--latency [--latency-seconds S]]

It starts (or reuses) a devstack in ``.devstack/bench``, recreates schema ``bench`` with a narrow
table (``accounts``, like pgbench_accounts) and a wide one (``wide``, 15 mixed columns), and
creates every replication slot the run reads *before* the workload: one per measurement and
repetition (``bench_dec_<r>``, ``bench_rcv_<r>``, ``bench_pipe_<r>``, plus ``bench_half`` and
``bench_prof``). All
slots therefore start before the workload's first commit and each one decodes exactly the same WAL;
no slot is read twice (pg_recvlogical and the pipeline confirm what they read, so a slot cannot be
reused, and pg_replication_slot_advance cannot move a slot backwards). The slots are dropped at the
end, also on failure. The workload is seeded (same ``--seed`` and ``--changes``: same statements):
transactions of ~1,000 row changes, ~75% inserts, 20% updates, 5% deletes, half on each table.

Then, ``--repeat`` times each (median and range reported):

* decode: a minimal reader on its own slot over the streaming replication protocol (psycopg2,
  ``WAL2JSON_OPTIONS``, the reader's session settings), counting messages and bytes, sleeping
  2 ms when the socket is empty so messages arrive in batches (as the pipeline's reader does): the
  decode ceiling, with the walsender's CPU time and the counting reader's;
* recvlogical: ``pg_recvlogical`` with the same options to /dev/null, ``--endpos`` = WAL end;
* pipeline: a child process runs windows the way the engine does, without Snowflake (see
  ``bench_pipeline``), ``--window-changes`` per window (default: the whole workload in one window);
  changes/s, the child's peak RSS, its CPU time (reading thread and part writer) and the
  walsender's; then once more with windows half as large, to show peak memory does not grow with
  the window;
* apply: the windows the first pipeline repetition staged, loaded into fresh target tables on the
  fakesnow stand-in (``SnowflakeSink.apply``: COPY + MERGE; table creation not timed);
* snapshot: ``cdc.snapshot.copy.copy_table`` of each table (text COPY -> Arrow -> Parquet) vs a raw
  ``COPY table TO STDOUT (FORMAT binary)`` into a byte counter, ``--snapshot-repeat`` alternating
  pairs (not ``--repeat``: a pair takes about a second, and single pairs scatter by a fifth on a
  shared machine) after a warm-up pair that is reported apart (``warm_up``).

A profiled pipeline run (cProfile of the reading thread, own slot) lists the top functions.
``--big-txn 500000,1000000``, ``--snapshot-rows N`` and ``--apply-tables K`` run phases of their own
instead (see ``bench_phases``: peak memory of one large transaction per size, snapshot vs raw COPY
on large tables, apply of one table vs several tables merged one and several at a time).
``--latency`` adds commit-to-visible latency at a steady 1,000 changes/s (``bench_latency``), for
one window per 10 s and for ``cdc sync --follow``. ``--skip`` leaves out the apply and/or snapshot
phases. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402
import psycopg2.extensions  # noqa: E402
import psycopg2.extras  # noqa: E402

from cdc.model import Lsn  # noqa: E402
from cdc.source.slot import SESSION_OPTIONS  # noqa: E402
from cdc.source.tls import enable_read_ahead  # noqa: E402
from cdc.source.wal2json import WAL2JSON_OPTIONS  # noqa: E402

PG_RECVLOGICAL = "/usr/lib/postgresql/15/bin/pg_recvlogical"
from bench_pipeline import WalsenderClock, pipeline_child  # noqa: E402
from bench_report import print_table, stats, top_functions  # noqa: E402
from bench_workload import DDL, SCHEMA, SLOT_PREFIX, TABLES, TXN_ROWS, run_workload  # noqa: E402


def decode_ceiling(dsn: str, admin_dsn: str, slot: str, expected_messages: int) -> dict[str, Any]:
    """Minimal streaming reader: count wal2json messages until every expected one arrived.

    Like the pipeline's reader, it sleeps 2 ms whenever the socket is empty, so the walsender
    (which sends and flushes each change on its own) fills the socket instead of waking the
    reader per message, and it reads with TLS read-ahead (``cdc.source.tls``); its CPU time and
    the walsender's are reported."""
    clock = WalsenderClock(admin_dsn, slot)
    cpu_before = time.process_time()
    started = time.monotonic()
    conn = psycopg2.connect(
        dsn, options=SESSION_OPTIONS, connection_factory=psycopg2.extras.LogicalReplicationConnection
    )
    try:
        cur = conn.cursor()
        cur.start_replication(slot_name=slot, decode=False, options=WAL2JSON_OPTIONS)
        enable_read_ahead(conn)
        messages = payload = 0
        deadline = started + 3600
        while messages < expected_messages:
            msg = cur.read_message()
            if msg is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"decode: only {messages} of {expected_messages} messages in an hour")
                time.sleep(0.002)
                continue
            messages += 1
            payload += len(msg.payload)
        seconds = time.monotonic() - started
        cpu = time.process_time() - cpu_before
    finally:
        conn.close()
        walsender = clock.stop()
    return {
        "seconds": seconds,
        "messages": messages,
        "payload_bytes": payload,
        "reader_cpu_s": cpu,
        "walsender_cpu_s": walsender,
    }


def recvlogical(dsn: str, slot: str, end: Lsn) -> dict[str, Any]:
    conninfo = f"{dsn} options='{SESSION_OPTIONS}'"
    cmd = [
        PG_RECVLOGICAL,
        "-d",
        conninfo,
        "-S",
        slot,
        "--start",
        "-E",
        str(end),
        "-f",
        "/dev/null",
        "--no-loop",
    ]
    for key, value in WAL2JSON_OPTIONS.items():
        cmd += ["-o", f"{key}={value}"]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"pg_recvlogical exited {proc.returncode}: {err.strip()}")
    return {"seconds": seconds, "max_rss_kb": usage.ru_maxrss}


def apply_windows(settings: Any, stage_dir: str, prefixes: list[str]) -> dict[str, Any]:
    """COPY + MERGE the staged windows into freshly created target tables on fakesnow."""
    from cdc.app import build_sink
    from cdc.secrets import VaultSecrets
    from cdc.snowflake import sql as sfsql
    from cdc.stage import LocalStage, read_manifest, staged_tables

    stage = LocalStage(Path(stage_dir))
    sink = build_sink(settings, VaultSecrets.from_settings(settings))
    try:
        windows = [(p, read_manifest(stage, p)) for p in prefixes]
        tables = {s.table.ident: s.table for _, m in windows for s in staged_tables(m)}
        cur = sink.connection.cursor()
        for table in tables.values():
            cur.execute(f"DROP TABLE IF EXISTS {sfsql.target_table(settings.snowflake_database, table)}")
            sink.ensure_table(table)
        rows = 0
        started = time.monotonic()
        for i, (prefix, manifest) in enumerate(windows):
            for staged in staged_tables(manifest):
                result = sink.apply(
                    staged.table,
                    f"{prefix}/{staged.stage_dir}",
                    window_id=f"bench{i}",
                    max_lsn=manifest["last_commit_lsn"],
                    truncate=staged.truncate,
                )
                rows += result.loaded_rows
        seconds = time.monotonic() - started
        counts = {}
        for table in tables.values():
            cur.execute(f"SELECT count(*) FROM {sfsql.target_table(settings.snowflake_database, table)}")
            counts[table.qualified] = cur.fetchone()[0]
    finally:
        sink.close()
    return {"seconds": seconds, "loaded_rows": rows, "target_rows": counts}


# -- driver ---------------------------------------------------------------------------------------
def drop_bench_slots(admin: Any) -> None:
    with admin.cursor() as cur:
        cur.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name LIKE %s AND NOT active",
            (SLOT_PREFIX + "%",),
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--changes", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--out", default="bench.json")
    ap.add_argument("--dir", default=str(ROOT / ".devstack" / "bench"))
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument(
        "--window-changes", type=int, default=0, help="changes per pipeline window (default: all in one)"
    )
    ap.add_argument(
        "--snapshot-repeat",
        type=int,
        default=5,
        help="snapshot vs raw COPY pairs per table (each takes about a second; single pairs scatter)",
    )
    ap.add_argument("--skip", default="", help="phases to leave out: apply,snapshot")
    ap.add_argument("--latency", action="store_true", help="also measure commit-to-visible latency")
    ap.add_argument("--latency-seconds", type=float, default=60.0, help="steady load per latency mode")
    phases = ap.add_argument_group("phases run on their own (tools/bench_phases.py)")
    phases.add_argument("--big-txn", default="", help="memory of one transaction per size: 500000,1000000")
    phases.add_argument("--tracemalloc", action="store_true", help="--big-txn: largest allocation sites")
    phases.add_argument("--snapshot-rows", type=int, default=0, help="snapshot vs raw COPY of N-row tables")
    phases.add_argument("--apply-tables", type=int, default=0, help="apply of K tables one/several at a time")
    phases.add_argument("--apply-rows", type=int, default=20_000, help="--apply-tables: rows per table")
    opts = ap.parse_args(argv)
    if opts.changes < 1 or opts.repeat < 1 or opts.snapshot_repeat < 1 or opts.window_changes < 0:
        ap.error("--changes, --repeat and --snapshot-repeat must be positive, --window-changes 0 or more")
    skip = {p.strip() for p in opts.skip.split(",") if p.strip()}
    if skip - {"apply", "snapshot"}:
        ap.error(f"--skip takes apply and/or snapshot, not {sorted(skip - {'apply', 'snapshot'})}")
    window = opts.window_changes or opts.changes

    from cdc import devstack
    from cdc.settings import load

    log = print if sys.stderr.isatty() else (lambda *a: print(*a, file=sys.stderr))
    log(f"devstack in {opts.dir} ...")
    env = devstack.up(Path(opts.dir))
    settings = load(env["config"], env={})
    if opts.big_txn or opts.snapshot_rows or opts.apply_tables:
        from bench_phases import run_phases

        phased = run_phases(opts, env, settings, log)
        Path(opts.out).write_text(json.dumps(phased, indent=2, default=str) + "\n")
        print(json.dumps({k: v for k, v in phased.items() if k != "params"}, indent=2, default=str))
        return 0
    dsn = env["postgres_dsn"]
    admin = psycopg2.connect(env["postgres_admin_dsn"])
    admin.autocommit = True
    result: dict[str, Any] = {
        "params": {
            "changes": opts.changes,
            "repeat": opts.repeat,
            "snapshot_repeat": opts.snapshot_repeat,
            "seed": opts.seed,
            "txn_rows": TXN_ROWS,
            "window_changes": window,
            "started": datetime.now(UTC).isoformat(),
        }
    }
    try:
        drop_bench_slots(admin)
        with admin.cursor() as cur:
            for stmt in DDL:
                cur.execute(stmt)
        slots = [f"{SLOT_PREFIX}{kind}_{r}" for r in range(opts.repeat) for kind in ("dec", "rcv", "pipe")]
        slots.append(f"{SLOT_PREFIX}half")  # memory: the same changes in windows half as large
        if not opts.no_profile:
            slots.append(f"{SLOT_PREFIX}prof")
        with admin.cursor() as cur:
            for slot in slots:
                cur.execute("SELECT pg_create_logical_replication_slot(%s, 'wal2json')", (slot,))
            cur.execute(
                "SELECT min(confirmed_flush_lsn)::text, max(confirmed_flush_lsn)::text "
                "FROM pg_replication_slots WHERE slot_name LIKE %s",
                (SLOT_PREFIX + "%",),
            )
            slot_min, slot_max = cur.fetchone()
        log(f"{len(slots)} slots created at {slot_min}..{slot_max}; workload of {opts.changes} changes ...")
        work = run_workload(env["postgres_admin_dsn"], opts.changes, opts.seed)  # cdc may only read
        with admin.cursor() as cur:
            cur.execute(
                "SELECT pg_current_wal_lsn()::text, pg_wal_lsn_diff(pg_current_wal_lsn(), %s)::bigint",
                (slot_max,),
            )
            end_text, wal_bytes = cur.fetchone()
        end = Lsn.parse(end_text)
        expected = work["changes"] + 2 * work["transactions"]
        work.update(
            {
                "slot_start": slot_min,
                "wal_end": end_text,
                "wal_bytes": wal_bytes,
                "expected_messages": expected,
            }
        )
        result["workload"] = work
        log(
            f"workload: {work['changes']} changes in {work['transactions']} txns, "
            f"{wal_bytes / 1e6:.1f} MB WAL, "
            f"{work['seconds']:.1f} s"
        )

        runs: dict[str, list[dict[str, Any]]] = {"decode": [], "recvlogical": [], "pipeline": []}
        for r in range(opts.repeat):
            runs["decode"].append(
                decode_ceiling(dsn, env["postgres_admin_dsn"], f"{SLOT_PREFIX}dec_{r}", expected)
            )
            runs["recvlogical"].append(recvlogical(dsn, f"{SLOT_PREFIX}rcv_{r}", end))
            runs["pipeline"].append(
                pipeline_child(env, f"{SLOT_PREFIX}pipe_{r}", end, f"bench-r{r}", window, None)
            )
            log(
                f"rep {r + 1}/{opts.repeat}: decode {runs['decode'][-1]['seconds']:.2f} s, recvlogical "
                f"{runs['recvlogical'][-1]['seconds']:.2f} s, "
                f"pipeline {runs['pipeline'][-1]['seconds']:.2f} s"
            )
        for run in runs["pipeline"]:
            if run["changes"] != work["changes"]:
                raise RuntimeError(
                    f"pipeline read {run['changes']} changes, the workload made {work['changes']}"
                )

        n = work["changes"]
        measured: dict[str, Any] = {}
        for kind, key in (("decode", "seconds"), ("recvlogical", "seconds"), ("pipeline", "seconds")):
            secs = [run[key] for run in runs[kind]]
            measured[kind] = {"seconds": stats(secs), "changes_per_s": stats([n / s for s in secs])}
        measured["decode"]["payload_bytes"] = runs["decode"][0]["payload_bytes"]
        measured["recvlogical"]["max_rss_kb"] = stats([float(x["max_rss_kb"]) for x in runs["recvlogical"]])
        measured["pipeline"]["max_rss_kb"] = stats([float(x["max_rss_kb"]) for x in runs["pipeline"]])
        measured["pipeline"]["rss_after_imports_kb"] = runs["pipeline"][0]["rss_before_kb"]
        measured["pipeline"]["windows"] = runs["pipeline"][0]["windows"]
        measured["pipeline"]["bytes_staged"] = runs["pipeline"][0]["bytes_staged"]
        # where the CPU goes, in microseconds per change (median over the repetitions)
        measured["cpu_us_per_change"] = {
            "walsender_for_decode_ceiling": stats([1e6 * x["walsender_cpu_s"] / n for x in runs["decode"]]),
            "counting_reader": stats([1e6 * x["reader_cpu_s"] / n for x in runs["decode"]]),
            "walsender_for_pipeline": stats([1e6 * x["walsender_cpu_s"] / n for x in runs["pipeline"]]),
            "pipeline_process": stats([1e6 * x["cpu_s"] / n for x in runs["pipeline"]]),
            "pipeline_reading_thread": stats([1e6 * x["reading_thread_cpu_s"] / n for x in runs["pipeline"]]),
            "pipeline_receiver_process": stats([1e6 * x["receiver_cpu_s"] / n for x in runs["pipeline"]]),
        }
        log(f"memory: the same changes in windows of {max(1, window // 2)} ...")
        half = pipeline_child(env, f"{SLOT_PREFIX}half", end, "bench-half", max(1, window // 2), None)
        measured["memory"] = {
            "window_changes": window,
            "max_rss_kb": measured["pipeline"]["max_rss_kb"]["median"],
            "half_window_changes": max(1, window // 2),
            "half_window_max_rss_kb": float(half["max_rss_kb"]),
            "half_window_windows": half["windows"],
        }

        if "apply" not in skip:
            log("apply (COPY + MERGE on fakesnow) ...")
            measured["apply"] = measure_apply(settings, env, runs, work, opts.repeat)
        if "snapshot" not in skip:
            log("snapshot vs raw COPY ...")
            measured["snapshot"] = measure_snapshot(dsn, opts.snapshot_repeat)
        result["measured"] = measured
        pipe, dec = (
            measured["pipeline"]["changes_per_s"]["median"],
            measured["decode"]["changes_per_s"]["median"],
        )
        result["ratios"] = {
            "pipeline_to_decode_ceiling": pipe / dec,
            # each repetition's pipeline against the ceiling measured just before it, under the
            # same load
            "pipeline_to_decode_ceiling_per_repetition": stats(
                [d["seconds"] / p["seconds"] for d, p in zip(runs["decode"], runs["pipeline"], strict=True)]
            ),
            "pipeline_to_recvlogical": pipe / measured["recvlogical"]["changes_per_s"]["median"],
            "decode_ceiling_to_recvlogical": dec / measured["recvlogical"]["changes_per_s"]["median"],
        }
        if "apply" in measured:
            result["ratios"]["apply_to_pipeline"] = measured["apply"]["changes_per_s"]["median"] / pipe
        if "snapshot" in measured:
            result["ratios"]["snapshot_to_raw_copy"] = {
                t: v["ratio_copy_table_to_raw"]["median"] for t, v in measured["snapshot"].items()
            }
        if opts.latency:
            from bench_latency import measure_latency

            log(f"latency at a steady 1,000 changes/s ({opts.latency_seconds:.0f} s per mode) ...")
            result["latency"] = measure_latency(env, settings, opts.latency_seconds, log)
        if not opts.no_profile:
            log("profiled pipeline run ...")
            with tempfile.TemporaryDirectory() as tmp:
                prof_path = Path(tmp) / "pipeline.prof"
                prof_run = pipeline_child(env, f"{SLOT_PREFIX}prof", end, "bench-prof", window, prof_path)
                result["profile"] = {
                    "seconds_under_cprofile": prof_run["seconds"],
                    "top_by_tottime": top_functions(prof_path),
                }
    finally:
        drop_bench_slots(admin)
        admin.close()
    Path(opts.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_table(result)
    print(f"\nwritten to {opts.out}")
    return 0


def measure_apply(
    settings: Any,
    env: dict[str, Any],
    runs: dict[str, list[dict[str, Any]]],
    work: dict[str, Any],
    repeat: int,
) -> dict[str, Any]:
    n = work["changes"]
    applies = [
        apply_windows(settings, env["stage_dir"], runs["pipeline"][0]["prefixes"]) for _ in range(repeat)
    ]
    asecs = [a["seconds"] for a in applies]
    expected_rows = {f"{SCHEMA}.{t}": c for t, c in work["rows"].items()}
    return {
        "seconds": stats(asecs),
        "changes_per_s": stats([n / s for s in asecs]),
        "loaded_rows": applies[0]["loaded_rows"],
        "target_rows": applies[0]["target_rows"],
        "target_matches_source_count": applies[0]["target_rows"] == expected_rows,
    }


def measure_snapshot(dsn: str, repeat: int) -> dict[str, Any]:
    from bench_phases import snapshot_pair

    from cdc.source.catalog import load_catalog

    params = psycopg2.extensions.parse_dsn(dsn)
    catalog_conn = psycopg2.connect(dsn, options=SESSION_OPTIONS)
    try:
        catalog = load_catalog(catalog_conn, TABLES)
    finally:
        catalog_conn.close()
    out: dict[str, Any] = {}
    for _ident, table in sorted(catalog.tables.items()):
        # the first copy_table in a process also starts Arrow's thread pool and grows its memory
        # pools: a warm-up pair, reported apart and left out of the median
        warm_up = snapshot_pair(dsn, params, table)
        pairs = [snapshot_pair(dsn, params, table) for _ in range(repeat)]
        rows = pairs[0].copied.rows
        out[table.qualified] = {
            "rows": rows,
            "raw_copy_bytes": pairs[0].raw_bytes,
            "raw_copy_rows_per_s": stats([rows / p.raw[0] for p in pairs]),
            "copy_table_rows_per_s": stats([rows / p.ours[0] for p in pairs]),
            "ratio_copy_table_to_raw": stats([p.raw[0] / p.ours[0] for p in pairs]),
            "warm_up": {"raw_seconds": round(warm_up.raw[0], 3), "copy_seconds": round(warm_up.ours[0], 3)},
        }
    return out


if __name__ == "__main__":
    sys.exit(main())
