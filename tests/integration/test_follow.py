"""``cdc sync --follow``: windows back to back in one process, one JSON line per window, a clean
stop on SIGTERM that finishes the current window, and the target equal to the source."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from helpers import Pipeline

from cdc.demo import compare_table

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 120  # upper bound for a window to show up; the test never sleeps for a set time


@pytest.fixture
def p(stack: Any):
    pipeline = Pipeline(stack)
    with pipeline.conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {pipeline.schema}")
        cur.execute(f"CREATE TABLE {pipeline.schema}.t (id int PRIMARY KEY, v text)")
        cur.execute(f"INSERT INTO {pipeline.schema}.t VALUES (1, 'before')")
    pipeline.conn.commit()
    pipeline.settings = pipeline.settings.replace(source_tables=(f"{pipeline.schema}.t",))
    yield pipeline
    pipeline.close()


def start_follow(stack: Any, p: Pipeline) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CDC_")},
        "CDC_PIPELINE": p.name,
        "CDC_SOURCE_TABLES": f"{p.schema}.t",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdc.cli", "sync", "--config", str(stack.env["config"])]
        + ["--follow", "--idle-wait", "0.2", "--json"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return proc, lines


def next_window(lines: queue.Queue[str], until: Any) -> list[dict[str, Any]]:
    """Window results as they come, up to the first one for which ``until(result, seen)`` holds
    (``seen``: the results so far, this one last)."""
    seen: list[dict[str, Any]] = []
    while True:
        result = json.loads(lines.get(timeout=WAIT_S))
        seen.append(result)
        assert result["status"] in ("snapshot", "applied", "empty"), result
        if until(result, seen):
            return seen


def write(p: Pipeline, *statements: str) -> None:
    with p.conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement.replace("{s}", p.schema))
    p.conn.commit()


def test_follow_runs_windows_back_to_back_and_stops_cleanly_on_sigterm(stack: Any, p: Pipeline) -> None:
    proc, lines = start_follow(stack, p)
    try:
        first = next_window(lines, lambda r, _: r["status"] == "snapshot")
        assert first[-1]["mode"] == "snapshot"

        write(p, "INSERT INTO {s}.t VALUES (2, 'a'), (3, 'b')", "UPDATE {s}.t SET v = 'after' WHERE id = 1")
        applied = next_window(lines, lambda r, _: r["status"] == "applied")
        assert sum(r["changes"] for r in applied) == 3

        write(p, "DELETE FROM {s}.t WHERE id = 2")
        write(p, "INSERT INTO {s}.t VALUES (4, 'c')")
        # a window may start between the two commits: windows up to one caught up after both
        applied = next_window(lines, lambda r, seen: r["caught_up"] and sum(w["changes"] for w in seen) >= 2)
        assert sum(r["changes"] for r in applied) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 0, err[-3000:]
    assert "SIGTERM: stopping after the current window" in err
    while not lines.empty():  # a window that was running when the signal came finished
        assert json.loads(lines.get())["status"] in ("applied", "empty")

    table = p.engine.source.catalog().tables[(p.schema, "t")]
    diff = compare_table(p.conn, p.engine, table)
    assert diff.equal and diff.source_rows == diff.target_rows == 3
    checkpoint = p.store.load()
    assert checkpoint is not None and checkpoint.lsn == p.slot_confirmed()


def test_idle_wait_needs_follow(stack: Any) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cdc.cli", "sync", "--config", str(stack.env["config"]), "--idle-wait", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--idle-wait only applies with --follow" in proc.stderr
