"""Throughput benchmark of the replicator against the embedded local stack.

Usage::

    python tools/bench.py [--changes N] [--repeat 3] [--seed 8] [--out bench.json] [--no-profile]

It starts (or reuses) a devstack in ``.devstack/bench``, recreates schema ``bench`` with a narrow
table (``accounts``, like pgbench_accounts) and a wide one (``wide``, 15 mixed columns), and
creates every replication slot the run reads *before* the workload: one per measurement and
repetition (``bench_dec_<r>``, ``bench_rcv_<r>``, ``bench_pipe_<r>``, plus ``bench_prof``). All
slots therefore start before the workload's first commit and each one decodes exactly the same WAL;
no slot is read twice (pg_recvlogical and the pipeline confirm what they read, so a slot cannot be
reused, and pg_replication_slot_advance cannot move a slot backwards). The slots are dropped at the
end, also on failure. The workload is seeded (same ``--seed`` and ``--changes``: same statements):
transactions of ~1,000 row changes, ~75% inserts, 20% updates, 5% deletes, half on each table.

Then, ``--repeat`` times each (median and range reported):

* decode: a minimal reader on its own slot over the streaming replication protocol (psycopg2,
  ``WAL2JSON_OPTIONS``, the reader's session settings), counting messages and bytes, sleeping
  2 ms when the socket is empty so messages arrive in batches: the decode ceiling;
* recvlogical: ``pg_recvlogical`` with the same options to /dev/null, ``--endpos`` = WAL end;
* pipeline: a child process runs windows the way the engine does, without Snowflake: catalog,
  ``WindowReader.read`` (stream + parse + Arrow + Parquet into a spool dir), ``LocalStage.publish``
  plus manifest into the stack's stage, ``confirm``; changes/s and the child's peak RSS
  (``ru_maxrss`` of that child from ``os.wait4``, i.e. what ``getrusage(RUSAGE_CHILDREN)`` reports
  for a single child);
* apply: the windows the first pipeline repetition staged, loaded into fresh target tables on the
  fakesnow stand-in (``SnowflakeSink.apply``: COPY + MERGE; table creation not timed);
* snapshot: ``cdc.snapshot.copy.copy_table`` of each table (CSV COPY -> Arrow -> Parquet) vs a raw
  ``COPY table TO STDOUT (FORMAT binary)`` into a byte counter.

A profiled pipeline run (cProfile, own slot) lists the top functions. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import cProfile
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
from cdc.source.wal2json import WAL2JSON_OPTIONS  # noqa: E402

PG_RECVLOGICAL = "/usr/lib/postgresql/15/bin/pg_recvlogical"
from bench_report import print_table, stats, top_functions  # noqa: E402
from bench_workload import DDL, SCHEMA, SLOT_PREFIX, TABLES, TXN_ROWS, run_workload  # noqa: E402


def decode_ceiling(dsn: str, slot: str, expected_messages: int) -> dict[str, Any]:
    """Minimal streaming reader: count wal2json messages until every expected one arrived."""
    started = time.monotonic()
    conn = psycopg2.connect(
        dsn, options=SESSION_OPTIONS, connection_factory=psycopg2.extras.LogicalReplicationConnection
    )
    try:
        cur = conn.cursor()
        cur.start_replication(slot_name=slot, decode=False, options=WAL2JSON_OPTIONS)
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
    finally:
        conn.close()
    return {"seconds": seconds, "messages": messages, "payload_bytes": payload}


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


def pipeline_child(
    env: dict[str, Any], slot: str, end: Lsn, prefix: str, profile: Path | None
) -> dict[str, Any]:
    """Run the pipeline part in a child process; its peak RSS comes from wait4 (RUSAGE of that child)."""
    args = {
        "dsn": env["postgres_dsn"],
        "stage_dir": env["stage_dir"],
        "slot": slot,
        "end": str(end),
        "prefix": prefix,
        "profile": str(profile) if profile else None,
    }
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"pipeline child failed ({proc.returncode}):\n{err.decode()[-3000:]}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    result["max_rss_kb"] = usage.ru_maxrss
    return result


def _child_main(raw: str) -> None:
    """Inside the child: windows as the engine runs them, with Snowflake left out."""
    import logging
    import resource

    from cdc.reader import ReadBounds, WindowReader
    from cdc.settings import FIELDS
    from cdc.source.slot import PostgresSource
    from cdc.stage import LocalStage, build_manifest, window_prefix, write_manifest

    logging.disable(logging.WARNING)
    args = json.loads(raw)
    defaults = {f.name: f.default for f in FIELDS}
    params = psycopg2.extensions.parse_dsn(args["dsn"])
    source = PostgresSource(params, args["slot"], TABLES)
    stage = LocalStage(Path(args["stage_dir"]))
    end = Lsn.parse(args["end"])
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out: dict[str, Any] = {"changes": 0, "transactions": 0, "windows": 0, "bytes_staged": 0, "prefixes": []}

    def work() -> None:
        info = source.slot_info()
        assert info is not None and info.confirmed_flush is not None
        start = info.confirmed_flush
        while True:
            catalog = source.catalog()
            reader = WindowReader(source, catalog, lambda table: {})
            bounds = ReadBounds(
                until=end,
                deadline=time.monotonic() + 3600,
                max_changes=defaults["window_max_changes"],
                part_max_rows=defaults["part_max_rows"],
            )
            with tempfile.TemporaryDirectory(prefix="bench-spool-") as spool:
                read = reader.read(start, Path(spool), bounds)
                if read.end <= start and not read.staged:
                    break
                prefix = window_prefix(args["prefix"], start, read.end)
                out["bytes_staged"] += stage.publish(Path(spool), prefix)
                manifest = build_manifest(
                    args["prefix"],
                    f"w{out['windows']}",
                    start,
                    read.end,
                    read.staged,
                    {
                        "last_commit_lsn": read.last_commit_lsn.value if read.last_commit_lsn else None,
                        "transactions": read.transactions,
                        "changes": read.changes,
                    },
                )
                write_manifest(stage, prefix, manifest)
            source.confirm(read.end)
            out["prefixes"].append(prefix)
            out["windows"] += 1
            out["changes"] += read.changes
            out["transactions"] += read.transactions
            start = read.end
            if read.caught_up or read.end >= end:
                break

    started = time.monotonic()
    if args["profile"]:
        prof = cProfile.Profile()
        prof.runcall(work)
        prof.dump_stats(args["profile"])
    else:
        work()
    out["seconds"] = time.monotonic() - started
    out["rss_before_kb"] = rss_before
    source.close()
    print(json.dumps(out))


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


class _Counter:
    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.bytes += len(data)
        return len(data)


def snapshot_pair(dsn: str, table: Any) -> dict[str, Any]:
    from cdc.snapshot.copy import copy_table
    from cdc.snapshot.export import create_temporary_snapshot, open_copy_connection

    params = psycopg2.extensions.parse_dsn(dsn)
    conn = psycopg2.connect(dsn)
    try:
        counter = _Counter()
        started = time.monotonic()
        with conn.cursor() as cur:
            cur.copy_expert(f'COPY "{table.schema}"."{table.name}" TO STDOUT (FORMAT binary)', counter)
        raw_s = time.monotonic() - started
    finally:
        conn.close()
    with create_temporary_snapshot(params, "bench_snap") as snap:
        copy_conn = open_copy_connection(params)
        try:
            with tempfile.TemporaryDirectory(prefix="bench-snap-") as spool:
                started = time.monotonic()
                result = copy_table(copy_conn, table, snap.point, Path(spool))
                copy_s = time.monotonic() - started
        finally:
            copy_conn.close()
    return {
        "raw_seconds": raw_s,
        "raw_bytes": counter.bytes,
        "copy_seconds": copy_s,
        "rows": result.rows,
        "csv_bytes": result.bytes_read,
    }


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
    opts = ap.parse_args(argv)
    if opts.changes < 1 or opts.repeat < 1:
        ap.error("--changes and --repeat must be positive")

    from cdc import devstack
    from cdc.settings import load
    from cdc.source.catalog import load_catalog

    log = print if sys.stderr.isatty() else (lambda *a: print(*a, file=sys.stderr))
    log(f"devstack in {opts.dir} ...")
    env = devstack.up(Path(opts.dir))
    settings = load(env["config"], env={})
    dsn = env["postgres_dsn"]
    admin = psycopg2.connect(env["postgres_admin_dsn"])
    admin.autocommit = True
    result: dict[str, Any] = {
        "params": {
            "changes": opts.changes,
            "repeat": opts.repeat,
            "seed": opts.seed,
            "txn_rows": TXN_ROWS,
            "started": datetime.now(UTC).isoformat(),
        }
    }
    try:
        drop_bench_slots(admin)
        with admin.cursor() as cur:
            for stmt in DDL:
                cur.execute(stmt)
        slots = [f"{SLOT_PREFIX}{kind}_{r}" for r in range(opts.repeat) for kind in ("dec", "rcv", "pipe")]
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
            runs["decode"].append(decode_ceiling(dsn, f"{SLOT_PREFIX}dec_{r}", expected))
            runs["recvlogical"].append(recvlogical(dsn, f"{SLOT_PREFIX}rcv_{r}", end))
            runs["pipeline"].append(pipeline_child(env, f"{SLOT_PREFIX}pipe_{r}", end, f"bench-r{r}", None))
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

        log("apply (COPY + MERGE on fakesnow) ...")
        applies = [
            apply_windows(settings, env["stage_dir"], runs["pipeline"][0]["prefixes"])
            for _ in range(opts.repeat)
        ]
        asecs = [a["seconds"] for a in applies]
        measured["apply"] = {
            "seconds": stats(asecs),
            "changes_per_s": stats([n / s for s in asecs]),
            "loaded_rows": applies[0]["loaded_rows"],
            "target_rows": applies[0]["target_rows"],
        }
        expected_rows = {f"{SCHEMA}.{t}": c for t, c in work["rows"].items()}
        measured["apply"]["target_matches_source_count"] = applies[0]["target_rows"] == expected_rows

        log("snapshot vs raw COPY ...")
        catalog_conn = psycopg2.connect(dsn, options=SESSION_OPTIONS)
        try:
            catalog = load_catalog(catalog_conn, TABLES)
        finally:
            catalog_conn.close()
        measured["snapshot"] = {}
        for _ident, table in sorted(catalog.tables.items()):
            pairs = [snapshot_pair(dsn, table) for _ in range(opts.repeat)]
            rows = pairs[0]["rows"]
            measured["snapshot"][table.qualified] = {
                "rows": rows,
                "raw_copy_bytes": pairs[0]["raw_bytes"],
                "raw_copy_rows_per_s": stats([rows / p["raw_seconds"] for p in pairs]),
                "copy_table_rows_per_s": stats([rows / p["copy_seconds"] for p in pairs]),
                "ratio_copy_table_to_raw": stats([p["raw_seconds"] / p["copy_seconds"] for p in pairs]),
            }
        result["measured"] = measured
        pipe, dec = (
            measured["pipeline"]["changes_per_s"]["median"],
            measured["decode"]["changes_per_s"]["median"],
        )
        result["ratios"] = {
            "pipeline_to_decode_ceiling": pipe / dec,
            "pipeline_to_recvlogical": pipe / measured["recvlogical"]["changes_per_s"]["median"],
            "decode_ceiling_to_recvlogical": dec / measured["recvlogical"]["changes_per_s"]["median"],
            "apply_to_pipeline": measured["apply"]["changes_per_s"]["median"] / pipe,
            "snapshot_to_raw_copy": {
                t: v["ratio_copy_table_to_raw"]["median"] for t, v in measured["snapshot"].items()
            },
        }
        if not opts.no_profile:
            log("profiled pipeline run ...")
            with tempfile.TemporaryDirectory() as tmp:
                prof_path = Path(tmp) / "pipeline.prof"
                prof_run = pipeline_child(env, f"{SLOT_PREFIX}prof", end, "bench-prof", prof_path)
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


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        _child_main(sys.argv[2])
        sys.exit(0)
    sys.exit(main())
