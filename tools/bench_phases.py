"""Benchmark phases run on their own (``tools/bench.py --big-txn ... / --snapshot-rows N /
--apply-tables K``), each on its own schema and slots in the bench devstack:

* big-txn: one transaction of N row changes per size (e.g. 500,000 and 1,000,000), each read on
  its own slot by a child process that runs the window as the engine does without Snowflake
  (``WindowReader.read`` into a spool dir, ``LocalStage.publish``, manifest); the child samples its
  RSS every 0.2 s (``/proc/self/statm``) and reports the samples by changes read, and its peak RSS
  comes from ``os.wait4``. Peak memory must not grow with N. ``--tracemalloc`` also lists the
  largest Python allocation sites at the end of the read (slower).
* snapshot: tables ``bench_snap.accounts`` (N rows, like pgbench_accounts) and
  ``bench_snap.wide`` (N/3 rows, 15 mixed columns with an array), then ``--snapshot-repeat`` alternating
  pairs of a raw ``COPY table TO STDOUT (FORMAT binary)`` into a byte counter and
  ``cdc.snapshot.copy.copy_table`` (COPY -> Arrow -> Parquet parts); wall time, client and server
  (the backend's ``/proc`` CPU time) seconds of each, median ratio. A warm-up pair runs first and
  is reported apart (``warm_up``): the first copy in a process also starts Arrow's thread pool and
  grows its memory pools.
* apply: K tables of R rows each staged as one window, then applied with ``cdc.apply.apply_tables``
  into fresh targets on the fakesnow stand-in, one table at a time and ``apply_parallelism`` at a
  time; the same rows in one table for comparison.

Nothing here asserts on time.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402
import psycopg2.extensions  # noqa: E402

from cdc.model import Lsn  # noqa: E402

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
Log = Callable[..., None]

BIG_SCHEMA = "bench_big"
SNAP_SCHEMA = "bench_snap"
APPLY_SCHEMA = "bench_apply"
SLOT_PREFIX = "bench_ph_"


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _admin(env: dict[str, Any]) -> Any:
    conn = psycopg2.connect(env["postgres_admin_dsn"])
    conn.autocommit = True
    return conn


def drop_phase_slots(env: dict[str, Any]) -> None:
    conn = _admin(env)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE slot_name LIKE %s AND NOT active",
                (SLOT_PREFIX + "%",),
            )
    finally:
        conn.close()


# -- big transactions -------------------------------------------------------------------------------
def big_txn(env: dict[str, Any], sizes: list[int], log: Log, trace: bool = False) -> dict[str, Any]:
    """Peak memory of reading one transaction of each size in ``sizes``."""
    admin = _admin(env)
    out: dict[str, Any] = {}
    try:
        with admin.cursor() as cur:
            cur.execute(f"DROP SCHEMA IF EXISTS {BIG_SCHEMA} CASCADE; CREATE SCHEMA {BIG_SCHEMA}")
            cur.execute(f"GRANT USAGE ON SCHEMA {BIG_SCHEMA} TO PUBLIC")
        for n in sizes:
            table, slot = f"t{n}", f"{SLOT_PREFIX}big_{n}"
            with admin.cursor() as cur:
                cur.execute(
                    f"CREATE TABLE {BIG_SCHEMA}.{table} (id bigint PRIMARY KEY, k integer NOT NULL, "
                    "note text, amount numeric(12,2), at timestamptz)"
                )
                cur.execute(f"GRANT SELECT ON {BIG_SCHEMA}.{table} TO PUBLIC")
                cur.execute("SELECT pg_create_logical_replication_slot(%s, 'wal2json')", (slot,))
                started = time.monotonic()
                cur.execute(  # one statement in autocommit: one transaction of n changes
                    f"INSERT INTO {BIG_SCHEMA}.{table} SELECT i, i %% 1000, md5(i::text), i / 100.0, "
                    "timestamptz '2024-01-01' + i * interval '1 second' FROM generate_series(1, %s) i",
                    (n,),
                )
                cur.execute("SELECT pg_current_wal_lsn()::text")
                end = cur.fetchone()[0]
            log(f"big-txn: {n} changes in one transaction ({time.monotonic() - started:.1f} s); reading ...")
            run = _child(env, {"slot": slot, "table": f"{BIG_SCHEMA}.{table}", "end": end, "trace": trace})
            if run["changes"] != n or run["transactions"] != 1:
                raise RuntimeError(f"big-txn: read {run['changes']} changes in {run['transactions']} txns")
            out[str(n)] = run
            log(
                f"big-txn {n}: {run['seconds']:.1f} s, peak RSS {run['max_rss_kb'] / 1024:.0f} MB "
                f"(after imports {run['rss_before_kb'] / 1024:.0f} MB), {run['parts']} parts"
            )
            with admin.cursor() as cur:
                cur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                cur.execute(f"DROP TABLE {BIG_SCHEMA}.{table}")
        peaks = {n: out[str(n)]["max_rss_kb"] for n in sizes}
        out["peak_rss_kb_by_size"] = peaks
        if len(sizes) > 1:
            small, large = min(sizes), max(sizes)
            out["peak_growth_largest_vs_smallest"] = peaks[large] / peaks[small]
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP SCHEMA IF EXISTS {BIG_SCHEMA} CASCADE")
        admin.close()
        drop_phase_slots(env)
    return out


def _child(env: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
    args = {**args, "dsn": env["postgres_dsn"], "stage_dir": env["stage_dir"]}
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "big-txn-child", json.dumps(args)],
            stdout=subprocess.PIPE,
            stderr=err,
        )
        assert proc.stdout is not None
        data = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise RuntimeError(f"big-txn child failed:\n{err.read().decode()[-3000:]}")
    result: dict[str, Any] = json.loads(data.decode().strip().splitlines()[-1])
    result["max_rss_kb"] = usage.ru_maxrss
    return result


def _big_txn_child(raw: str) -> None:
    """In the child: one window over the slot, as the engine reads it, sampling RSS."""
    import logging
    import tracemalloc

    from cdc.reader import ReadBounds, WindowReader
    from cdc.settings import FIELDS
    from cdc.source.slot import PostgresSource
    from cdc.stage import LocalStage, build_manifest, window_prefix, write_manifest

    logging.disable(logging.WARNING)
    args = json.loads(raw)
    defaults = {f.name: f.default for f in FIELDS}
    source = PostgresSource(psycopg2.extensions.parse_dsn(args["dsn"]), args["slot"], (args["table"],))
    stage = LocalStage(Path(args["stage_dir"]))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        statm = Path("/proc/self/statm")
        while not stop.wait(0.2):
            samples.append((time.monotonic(), int(statm.read_text().split()[1]) * _PAGE // 1024))

    sampler = threading.Thread(target=sample, daemon=True)
    if args["trace"]:
        tracemalloc.start(8)
    info = source.slot_info()
    assert info is not None and info.confirmed_flush is not None
    start = info.confirmed_flush
    reader = WindowReader(source, source.catalog(), lambda table: {})
    bounds = ReadBounds(
        until=Lsn.parse(args["end"]),
        deadline=time.monotonic() + 3600,
        max_changes=defaults["window_max_changes"],
        part_max_rows=defaults["part_max_rows"],
    )
    started = time.monotonic()
    sampler.start()
    with tempfile.TemporaryDirectory(prefix="bench-big-") as spool:
        read = reader.read(start, Path(spool), bounds)
        top = []
        if args["trace"]:
            snap = tracemalloc.take_snapshot()
            top = [
                {"where": str(stat.traceback[0]), "kb": stat.size // 1024, "blocks": stat.count}
                for stat in snap.statistics("lineno")[:12]
            ]
        read_s = time.monotonic() - started
        prefix = window_prefix("bench-big", start, read.end)
        staged = stage.publish(Path(spool), prefix)
        write_manifest(
            stage,
            prefix,
            build_manifest("bench-big", "w0", start, read.end, read.staged, {"changes": read.changes}),
        )
    stop.set()
    sampler.join()
    source.confirm(read.end)
    source.close()
    peak = max((kb for _, kb in samples), default=0)
    quarter = [
        max((kb for t, kb in samples if t <= started + read_s * q / 4), default=0) for q in (1, 2, 3, 4)
    ]
    print(
        json.dumps(
            {
                "changes": read.changes,
                "transactions": read.transactions,
                "seconds": time.monotonic() - started,
                "read_seconds": read_s,
                "parts": sum(len(s.files) for s in read.staged),
                "bytes_staged": staged,
                "rss_before_kb": rss_before,
                "sampled_peak_rss_kb": peak,
                "sampled_peak_rss_kb_by_quarter_of_the_read": quarter,
                "samples": len(samples),
                "tracemalloc_top": top,
            }
        )
    )


# -- snapshot ---------------------------------------------------------------------------------------
SNAP_DDL = [
    f"DROP SCHEMA IF EXISTS {SNAP_SCHEMA} CASCADE",
    f"CREATE SCHEMA {SNAP_SCHEMA}",
    f"""CREATE TABLE {SNAP_SCHEMA}.accounts (
        aid bigint PRIMARY KEY, bid integer NOT NULL, abalance integer NOT NULL, filler char(84))""",
    f"""CREATE TABLE {SNAP_SCHEMA}.wide (
        id bigint PRIMARY KEY, amount numeric(12,2), ratio double precision, qty integer,
        name text, code varchar(32), active boolean, created_at timestamptz, birth date,
        attrs jsonb, ref uuid, tags text[], note text, score bigint, small smallint)""",
    f"GRANT USAGE ON SCHEMA {SNAP_SCHEMA} TO PUBLIC",
]
SNAP_FILL = [
    f"""INSERT INTO {SNAP_SCHEMA}.accounts
        SELECT i, i %% 100 + 1, ((i::bigint * 7919) %% 10001 - 5000)::int, ''
        FROM generate_series(1, %(n)s) i""",
    f"""INSERT INTO {SNAP_SCHEMA}.wide
        SELECT i, round((random() * 2e7 - 1e7)::numeric, 2),
               CASE WHEN i %% 50 = 0 THEN NULL ELSE random() * 1000 END, (random() * 10000)::int,
               'alpha bravo ' || md5(i::text), 'C-' || substr(md5(i::text), 1, 10), i %% 2 = 0,
               timestamptz '2024-01-01' + random() * interval '347 days', date '2024-01-01' - i %% 30000,
               jsonb_build_object('k', i %% 100, 'w', 'delta', 'v', jsonb_build_array(1, 2, 3)),
               md5(i::text)::uuid, (ARRAY['alpha', 'bravo', 'kilo', 'lima'])[1:i %% 5],
               CASE WHEN i %% 10 = 0 THEN NULL ELSE repeat('x', 10 + i %% 190) END,
               (random() * 4e18)::bigint, (random() * 60000 - 30000)::int
        FROM generate_series(1, %(n)s / 3) i""",
]


class _Counter:
    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.bytes += len(data)
        return len(data)


def snapshot(env: dict[str, Any], rows: int, repeat: int, log: Log) -> dict[str, Any]:
    """copy_table against a raw binary COPY of the same table, alternating, ``repeat`` pairs each
    after a warm-up pair."""
    from cdc.source.catalog import load_catalog
    from cdc.source.slot import SESSION_OPTIONS

    dsn = env["postgres_dsn"]
    params = psycopg2.extensions.parse_dsn(dsn)
    admin = _admin(env)
    out: dict[str, Any] = {"rows": rows}
    try:
        started = time.monotonic()
        with admin.cursor() as cur:
            for stmt in SNAP_DDL:
                cur.execute(stmt)
            for stmt in SNAP_FILL:
                cur.execute(stmt, {"n": rows})
            cur.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {SNAP_SCHEMA} TO PUBLIC")
        with admin.cursor() as cur:
            cur.execute(f"VACUUM ANALYZE {SNAP_SCHEMA}.accounts")
            cur.execute(f"VACUUM ANALYZE {SNAP_SCHEMA}.wide")
        log(f"snapshot: tables of {rows} and {rows // 3} rows made in {time.monotonic() - started:.1f} s")
        conn = psycopg2.connect(dsn, options=SESSION_OPTIONS)
        try:
            catalog = load_catalog(conn, (f"{SNAP_SCHEMA}.accounts", f"{SNAP_SCHEMA}.wide"))
        finally:
            conn.close()
        for (_, name), table in sorted(catalog.tables.items()):
            # the first copy_table in a process also pays one-time costs (Arrow's thread pool and
            # memory pools, the first Parquet writer): a warm-up pair, reported apart, not in the median
            cold = snapshot_pair(dsn, params, table)
            log(f"snapshot {name} warm-up: raw {cold.raw[0]:.2f} s, copy_table {cold.ours[0]:.2f} s")
            pairs = []
            for _ in range(repeat):
                pair = snapshot_pair(dsn, params, table)
                pairs.append((pair.raw, pair.ours))
                log(
                    f"snapshot {name}: raw {pair.raw[0]:.2f} s, copy_table {pair.ours[0]:.2f} s "
                    f"(ratio {pair.raw[0] / pair.ours[0]:.2f})"
                )

            def med(i: int, j: int, pairs: list[Any] = pairs) -> float:
                return round(statistics.median(p[i][j] for p in pairs), 3)

            out[table.qualified] = {
                "rows": pair.copied.rows,
                "raw_copy_bytes": pair.raw_bytes,
                "copy_bytes": pair.copied.bytes_read,
                "parquet_bytes": pair.parquet_bytes,
                "raw": {"wall_s": med(0, 0), "client_cpu_s": med(0, 1), "server_cpu_s": med(0, 2)},
                "copy_table": {"wall_s": med(1, 0), "client_cpu_s": med(1, 1), "server_cpu_s": med(1, 2)},
                "ratios": [round(p[0][0] / p[1][0], 3) for p in pairs],
                "ratio_copy_table_to_raw": round(statistics.median(p[0][0] / p[1][0] for p in pairs), 3),
                "warm_up": {"raw_wall_s": round(cold.raw[0], 3), "copy_table_wall_s": round(cold.ours[0], 3)},
            }
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP SCHEMA IF EXISTS {SNAP_SCHEMA} CASCADE")
        admin.close()
    return out


class SnapshotPair(NamedTuple):
    raw: tuple[float, float, float]  # wall, client CPU and server CPU seconds of the raw COPY
    ours: tuple[float, float, float]  # the same of copy_table
    raw_bytes: int
    copied: Any  # copy_table's SnapshotTable
    parquet_bytes: int


def snapshot_pair(dsn: str, params: dict[str, Any], table: Any) -> SnapshotPair:
    """A raw binary COPY of ``table`` into a byte counter, then copy_table of it at a fresh snapshot."""
    from cdc.snapshot.copy import copy_table
    from cdc.snapshot.export import create_temporary_snapshot, open_copy_connection

    conn = psycopg2.connect(dsn)
    try:
        pid, counter = conn.info.backend_pid, _Counter()
        s0, c0, t0 = _cpu_s(pid), time.process_time(), time.monotonic()
        conn.cursor().copy_expert(f'COPY "{table.schema}"."{table.name}" TO STDOUT (FORMAT binary)', counter)
        raw = (time.monotonic() - t0, time.process_time() - c0, _cpu_s(pid) - s0)
    finally:
        conn.close()
    with create_temporary_snapshot(params, "bench_ph_snap") as snap:
        copy_conn = open_copy_connection(params)
        pid = copy_conn.info.backend_pid
        try:
            with tempfile.TemporaryDirectory(prefix="bench-snap-") as spool:
                s0, c0, t0 = _cpu_s(pid), time.process_time(), time.monotonic()
                copied = copy_table(copy_conn, table, snap.point, Path(spool))
                ours = (time.monotonic() - t0, time.process_time() - c0, _cpu_s(pid) - s0)
                parquet = sum(f.bytes for f in copied.staged.files)
        finally:
            copy_conn.close()
    return SnapshotPair(raw, ours, counter.bytes, copied, parquet)


# -- apply ------------------------------------------------------------------------------------------
def apply(
    env: dict[str, Any], settings: Any, tables: int, rows: int, repeat: int, log: Log
) -> dict[str, Any]:
    """Apply throughput of one window of ``tables`` tables, one at a time and side by side."""
    from cdc.app import build_sink
    from cdc.apply import SinkPool, TableApply, TimeGuard, apply_tables
    from cdc.reader import ReadBounds, WindowReader
    from cdc.secrets import VaultSecrets
    from cdc.snowflake import sql as sfsql
    from cdc.source.slot import PostgresSource
    from cdc.stage import LocalStage, window_prefix

    secrets = VaultSecrets.from_settings(settings)
    admin = _admin(env)
    slot = f"{SLOT_PREFIX}apply"
    out: dict[str, Any] = {"tables": tables, "rows_per_table": rows, "repeat": repeat}
    layouts = {"one_table": [("single", rows * tables)], "tables": [(f"t{i}", rows) for i in range(tables)]}
    try:
        with admin.cursor() as cur:
            cur.execute(f"DROP SCHEMA IF EXISTS {APPLY_SCHEMA} CASCADE; CREATE SCHEMA {APPLY_SCHEMA}")
            cur.execute(f"GRANT USAGE ON SCHEMA {APPLY_SCHEMA} TO PUBLIC")
            for layout in layouts.values():
                for name, _n in layout:
                    cur.execute(
                        f"CREATE TABLE {APPLY_SCHEMA}.{name} (id bigint PRIMARY KEY, k int, note text, "
                        "amount numeric(12,2))"
                    )
            cur.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {APPLY_SCHEMA} TO PUBLIC")
            cur.execute("SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'wal2json')", (slot,))
            start = Lsn.parse(cur.fetchone()[0])
            for layout in layouts.values():
                for name, n in layout:
                    cur.execute(
                        f"INSERT INTO {APPLY_SCHEMA}.{name} SELECT i, i %% 97, md5(i::text), i / 7.0 "
                        "FROM generate_series(1, %s) i",
                        (n,),
                    )
            cur.execute("SELECT pg_current_wal_lsn()::text")
            end = Lsn.parse(cur.fetchone()[0])
        source = PostgresSource(psycopg2.extensions.parse_dsn(env["postgres_dsn"]), slot, ())
        stage = LocalStage(Path(env["stage_dir"]))
        log(f"apply: staging {tables} tables x {rows} rows and 1 table x {rows * tables} rows ...")
        with tempfile.TemporaryDirectory(prefix="bench-apply-") as spool:
            reader = WindowReader(source, source.catalog(), lambda table: {})
            read = reader.read(start, Path(spool), ReadBounds(end, time.monotonic() + 3600, 10**9, 50_000))
            prefix = window_prefix("bench-apply", start, read.end)
            stage.publish(Path(spool), prefix)
        source.close()
        assert read.last_commit_lsn is not None
        by_name = {s.table.name: s for s in read.staged}
        first = build_sink(settings, secrets)
        try:
            for label, layout in layouts.items():
                items = [TableApply(by_name[n], f"{prefix}/{by_name[n].stage_dir}") for n, _ in layout]
                total = sum(n for _, n in layout)
                for parallelism in sorted({1, settings.apply_parallelism}):
                    secs: list[float] = []
                    connects: list[float] = []
                    for _ in range(repeat):
                        cur = first.connection.cursor()
                        for item in items:  # an empty target: every row is inserted
                            first.ensure_table(item.staged.table)
                            target = sfsql.target_table(settings.snowflake_database, item.staged.table)
                            cur.execute(f"TRUNCATE TABLE {target}")
                        pool = SinkPool(lambda: first, lambda: build_sink(settings, secrets))
                        try:
                            t0 = time.monotonic()  # log in the pool's connections first
                            for sink in [pool.take() for _ in range(min(parallelism, len(items)))]:
                                pool.give(sink)
                            connects.append(time.monotonic() - t0)
                            t0 = time.monotonic()
                            apply_tables(
                                items,
                                pool,
                                parallelism=parallelism,
                                window_id="benchapply",
                                max_lsn=read.last_commit_lsn.value,
                                guard=TimeGuard(None, 0, 0),
                            )
                            secs.append(time.monotonic() - t0)
                        finally:
                            pool.close()
                    out[f"{label}_parallelism_{parallelism}"] = {
                        "tables": len(items),
                        "rows": total,
                        "seconds": round(statistics.median(secs), 3),
                        "rows_per_s": round(total / statistics.median(secs)),
                        "runs": [round(s, 3) for s in secs],
                        "connect_s": round(statistics.median(connects), 3),  # not in "seconds"
                    }
                    log(f"apply {label} x{parallelism}: {statistics.median(secs):.2f} s for {total} rows")
        finally:
            first.close()
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP SCHEMA IF EXISTS {APPLY_SCHEMA} CASCADE")
        admin.close()
        drop_phase_slots(env)
    return out


def run_phases(opts: Any, env: dict[str, Any], settings: Any, log: Log) -> dict[str, Any]:
    """The phases ``tools/bench.py`` was asked for (``--big-txn``, ``--snapshot-rows``,
    ``--apply-tables``), in that order."""
    result: dict[str, Any] = {"params": {k: v for k, v in vars(opts).items() if v not in (None, "")}}
    try:
        if opts.big_txn:
            sizes = [int(s) for s in opts.big_txn.split(",") if s.strip()]
            result["big_txn"] = big_txn(env, sizes, log, opts.tracemalloc)
        if opts.snapshot_rows:
            result["snapshot"] = snapshot(env, opts.snapshot_rows, opts.snapshot_repeat, log)
        if opts.apply_tables:
            result["apply"] = apply(env, settings, opts.apply_tables, opts.apply_rows, opts.repeat, log)
    finally:
        drop_phase_slots(env)
    return result


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "big-txn-child":
        _big_txn_child(sys.argv[2])
        sys.exit(0)
    sys.exit("usage: run through tools/bench.py --big-txn / --snapshot-rows / --apply-tables")
