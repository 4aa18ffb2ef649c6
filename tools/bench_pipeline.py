"""The benchmark's pipeline measurement: extract and stage in a child process, as the engine runs it.

``pipeline_child`` starts ``python tools/bench_pipeline.py '<json args>'``; the child runs windows
the way the engine does, with Snowflake left out (catalog, ``WindowReader.read``: stream + parse +
Arrow + Parquet into a spool dir, ``LocalStage.publish`` plus manifest into the stack's stage,
``confirm``). Its peak RSS is the peak of its own RSS plus that of the slot receiver process it
started (``cdc.source.receiver``; both run at once), sampled every 20 ms, and at least its own
``ru_maxrss``; it reports its CPU time, split into the
reading thread and the rest (the part writer), the receivers' CPU time, and the walsender's CPU
time over the run (``/proc/<pid>/stat`` of each walsender that served it).
"""

from __future__ import annotations

import cProfile
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402
import psycopg2.extensions  # noqa: E402

from cdc.model import Lsn  # noqa: E402

_TICK = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process on this machine (0.0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


class WalsenderClock:
    """Adds up the CPU time of the walsender serving a slot, sampling while it is active."""

    def __init__(self, admin_dsn: str, slot: str) -> None:
        self._conn = psycopg2.connect(admin_dsn)
        self._conn.autocommit = True
        self._slot = slot
        self._seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            with self._conn.cursor() as cur:
                cur.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (self._slot,))
                row = cur.fetchone()
            pid = row[0] if row else None
            if pid:
                self._seen[pid] = max(self._seen.get(pid, 0.0), process_cpu_s(pid))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self._conn.close()
        return sum(self._seen.values())


_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _rss_kb(pid: int | str) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE_KB
    except (OSError, IndexError, ValueError):
        return 0


def _receiver_pids() -> list[str]:
    """This process's children that run the slot receiver (not yet exec'ed ones: their pages are ours)."""
    pids: list[str] = []
    for task in Path("/proc/self/task").iterdir():
        try:
            pids += (task / "children").read_text().split()
        except OSError:
            continue
    out = []
    for pid in pids:
        try:
            if b"cdc.source.receiver" in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.append(pid)
        except OSError:
            continue
    return out


class RssSampler:
    """Peak of this process's RSS plus its receiver children's, sampled every 20 ms."""

    def __init__(self) -> None:
        self.peak_kb = 0
        self.peak_self_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            own = _rss_kb("self")
            self.peak_self_kb = max(self.peak_self_kb, own)
            self.peak_kb = max(self.peak_kb, own + sum(_rss_kb(pid) for pid in _receiver_pids()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def pipeline_child(
    env: dict[str, Any], slot: str, end: Lsn, prefix: str, window_changes: int, profile: Path | None
) -> dict[str, Any]:
    """Run the pipeline part in a child process; its peak RSS comes from wait4 (RUSAGE of that child)."""
    args = {
        "dsn": env["postgres_dsn"],
        "stage_dir": env["stage_dir"],
        "slot": slot,
        "end": str(end),
        "prefix": prefix,
        "window_changes": window_changes,
        "profile": str(profile) if profile else None,
    }
    clock = WalsenderClock(env["postgres_admin_dsn"], slot)
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), json.dumps(args)],
            stdout=subprocess.PIPE,
            stderr=err,
        )
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, _ = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        walsender_s = clock.stop()
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"pipeline child failed ({proc.returncode}):\n{err.read().decode()[-3000:]}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    result["walsender_cpu_s"] = walsender_s
    # both processes at once: the peak of the sum, sampled (wait4 would give the larger of the two,
    # and a receiver's own figure counts the pages it shared with its parent before exec)
    result["max_rss_kb"] = max(result["sampled_max_rss_kb"], result["self_max_rss_kb"])
    return result


def _child_main(raw: str) -> None:
    """Inside the child: windows as the engine runs them, with Snowflake left out."""
    import logging

    from cdc.reader import ReadBounds, WindowReader
    from cdc.settings import FIELDS
    from cdc.source.slot import PostgresSource
    from cdc.stage import LocalStage, build_manifest, window_prefix, write_manifest

    logging.disable(logging.WARNING)
    args = json.loads(raw)
    defaults = {f.name: f.default for f in FIELDS}
    params = psycopg2.extensions.parse_dsn(args["dsn"])
    from bench_workload import TABLES

    source = PostgresSource(
        params, args["slot"], TABLES, receive_process_min_bytes=defaults["receive_process_min_bytes"]
    )
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
                max_changes=args["window_changes"],
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

    sampler = RssSampler()
    cpu_before = time.process_time()
    thread_before = time.thread_time()
    started = time.monotonic()
    if args["profile"]:
        prof = cProfile.Profile()
        prof.runcall(work)
        prof.dump_stats(args["profile"])
    else:
        work()
    out["seconds"] = time.monotonic() - started
    out["cpu_s"] = time.process_time() - cpu_before
    out["reading_thread_cpu_s"] = time.thread_time() - thread_before  # stream, parse, rows
    children = os.times()
    out["receiver_cpu_s"] = children.children_user + children.children_system  # the slot's receivers
    out["rss_before_kb"] = rss_before
    sampler.stop()
    out["self_max_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out["sampled_max_rss_kb"] = sampler.peak_kb
    out["sampled_self_max_rss_kb"] = sampler.peak_self_kb
    source.close()
    print(json.dumps(out))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    _child_main(sys.argv[1])
