"""Crash tests: the real ``cdc sync`` process is killed with SIGKILL at each step boundary of a
window (and in a snapshot), then ``cdc sync`` runs again until caught up.

The kill comes from ``cdc.failpoints`` (``CDC_FAILPOINT=<name>`` in the child's environment): no
exception handler, ``finally`` or lease release runs, as with an OOM kill or a Lambda timeout.
Afterwards the target equals the source, no key is in the target twice, and the slot is never
confirmed past the checkpoint (and equals it once a window completes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import Pipeline

from cdc.app import build_engine
from cdc.demo import TABLES, compare_table, create_schema, run_workload
from cdc.model import Lsn

REPO = Path(__file__).resolve().parents[2]
# the killed run's lease outlives it: short, so the next run need not wait long for it to expire
KILLED_LEASE_TTL_S = 8
RECOVERY_TIMEOUT_S = 180

# failpoint -> where the killed window leaves checkpoint and slot ("old": as before the window)
WINDOW_FAILPOINTS = {
    "after_read": ("old", "old"),
    "after_stage": ("old", "old"),
    "between_merges": ("old", "old"),
    "during_merge": ("old", "old"),
    "after_merge": ("old", "old"),
    "after_checkpoint": ("new", "old"),
    "before_confirm": ("new", "old"),
    "after_confirm": ("new", "new"),
}


@pytest.fixture
def pipe(stack: Any) -> Iterator[Pipeline]:
    p = Pipeline(stack)
    create_schema(p.conn, p.schema)
    p.settings = p.settings.replace(source_tables=tuple(f"{p.schema}.{t}" for t in TABLES))
    p.engine.close()
    p.engine = build_engine(p.settings)
    yield p
    p.close()


def sync(stack: Any, p: Pipeline, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``cdc sync --json`` in a child process, configured by the stack's file and this pipeline."""
    child_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CDC_")},
        "CDC_PIPELINE": p.name,
        "CDC_SOURCE_TABLES": ",".join(p.settings.source_tables),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "cdc.cli", "sync", "--config", str(stack.env["config"]), "--json", *args],
        cwd=REPO,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=RECOVERY_TIMEOUT_S,
    )


def kill_at(stack: Any, p: Pipeline, failpoint: str) -> None:
    proc = sync(stack, p, CDC_FAILPOINT=failpoint, CDC_LEASE_TTL_S=str(KILLED_LEASE_TTL_S))
    assert proc.returncode == -9, (failpoint, proc.returncode, proc.stdout, proc.stderr[-3000:])
    assert proc.stdout == "", proc.stdout  # killed before it could report a result


def results(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def sync_until_caught_up(stack: Any, p: Pipeline) -> list[dict[str, Any]]:
    """Run ``cdc sync --until-caught-up`` until it gets the lease (the killed run's expires) and
    catches up; every window it ran."""
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    windows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        proc = sync(stack, p, "--until-caught-up")
        assert proc.returncode == 0, (proc.stdout, proc.stderr[-3000:])
        ran = results(proc.stdout)
        windows += ran
        assert all(r["status"] != "failed" for r in ran), ran
        if ran and ran[-1]["status"] in ("applied", "empty") and ran[-1]["caught_up"]:
            return windows
        time.sleep(1)
    raise AssertionError(f"not caught up within {RECOVERY_TIMEOUT_S}s: {windows}")


def slot_confirmed(p: Pipeline) -> Lsn | None:
    with p.admin.cursor() as cur:
        cur.execute(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
            (p.settings.source_slot,),
        )
        row = cur.fetchone()
    return Lsn.parse(row[0]) if row and row[0] else None


def assert_replicated(p: Pipeline) -> None:
    """Target equals source, no key twice, and checkpoint and slot agree after a completed window."""
    checkpoint = p.store.load()
    assert checkpoint is not None
    assert slot_confirmed(p) == checkpoint.lsn
    catalog = p.engine.source.catalog()
    for name in TABLES:
        table = catalog.tables[(p.schema, name)]
        diff = compare_table(p.conn, p.engine, table)
        assert diff.equal, (diff.table, diff.missing[:5], diff.extra[:5], diff.different[:5])
        target = p.engine.sink.fetch_table(table)  # type: ignore[attr-defined]
        keys = Counter(tuple(str(row[k]) for k in table.key) for row in target)
        duplicated = [k for k, n in keys.items() if n > 1]
        assert duplicated == [], (table.qualified, duplicated[:5])
        live = [row for row in target if not row.get("_CDC_DELETED")]
        assert len(live) == diff.source_rows, (table.qualified, len(live), diff.source_rows)


@pytest.mark.parametrize("failpoint", list(WINDOW_FAILPOINTS))
def test_a_window_killed_at_a_step_boundary_is_recovered_by_the_next_runs(
    stack: Any, pipe: Pipeline, failpoint: str
) -> None:
    p = pipe
    run_workload(p.conn, p.schema, 10, seed=1)
    assert p.engine.run_window().status == "snapshot"  # first run: slot and checkpoint
    p.engine.close()
    before = p.store.load()
    assert before is not None and slot_confirmed(p) == before.lsn

    run_workload(p.conn, p.schema, 40, seed=2)  # orders and order_items in the same transactions
    kill_at(stack, p, failpoint)

    after = p.store.load()
    confirmed = slot_confirmed(p)
    assert after is not None and confirmed is not None
    assert confirmed <= after.lsn, (failpoint, confirmed, after.lsn)
    checkpoint_state, slot_state = WINDOW_FAILPOINTS[failpoint]
    assert (after.lsn == before.lsn) == (checkpoint_state == "old"), (failpoint, before.lsn, after.lsn)
    assert (confirmed == before.lsn) == (slot_state == "old"), (failpoint, before.lsn, confirmed)

    run_workload(p.conn, p.schema, 20, seed=3)  # the source goes on while the pipeline is down
    sync_until_caught_up(stack, p)
    assert_replicated(p)


@pytest.mark.parametrize("failpoint", ["snapshot_copying", "snapshot_table_swapped"])
def test_a_snapshot_killed_while_copying_or_after_a_table_is_swapped_in_is_redone_by_the_next_run(
    stack: Any, pipe: Pipeline, failpoint: str
) -> None:
    p = pipe
    run_workload(p.conn, p.schema, 30, seed=4)
    kill_at(stack, p, failpoint)
    assert p.store.load() is None  # the snapshot never set the checkpoint
    assert slot_confirmed(p) is not None  # the killed run created the slot

    run_workload(p.conn, p.schema, 20, seed=5)
    windows = sync_until_caught_up(stack, p)
    assert "snapshot" in [w["status"] for w in windows], windows
    run_workload(p.conn, p.schema, 20, seed=6)
    sync_until_caught_up(stack, p)
    assert_replicated(p)


def run(p: Pipeline, *statements: str) -> None:
    """Statements in one transaction (``{s}``: the test's schema)."""
    with p.conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement.replace("{s}", p.schema))
    p.conn.commit()


def replicate_t(p: Pipeline, *statements: str) -> None:
    """The test's schema with a table ``t`` that ``statements`` make, replicated alone from a first
    snapshot."""
    run(p, "CREATE SCHEMA {s}", *statements)
    p.settings = p.settings.replace(source_tables=(f"{p.schema}.t",))
    p.engine.close()
    p.engine = build_engine(p.settings)
    assert p.engine.run_window().status == "snapshot"


def caught_up_t(stack: Any, p: Pipeline, *columns: str) -> dict[Any, Any]:
    """Catch up in child runs, check that ``t``'s target equals its source, and return its rows:
    id -> the value of one column, or a tuple of several."""
    sync_until_caught_up(stack, p)
    table = p.engine.source.catalog().tables[(p.schema, "t")]
    diff = compare_table(p.conn, p.engine, table)
    assert diff.equal, (diff.missing[:5], diff.extra[:5], diff.different[:5])
    rows = p.engine.sink.fetch_table(table)  # type: ignore[attr-defined]
    pick = (lambda r: r[columns[0]]) if len(columns) == 1 else (lambda r: tuple(r[c] for c in columns))
    return {r["id"]: pick(r) for r in rows}


@pytest.mark.parametrize("failpoint", ["after_add_column", "after_fill_column"])
def test_a_crash_while_a_column_is_added_still_fills_it(stack: Any, failpoint: str) -> None:
    p = Pipeline(stack)
    try:
        replicate_t(p, "CREATE TABLE {s}.t (id int PRIMARY KEY)", "INSERT INTO {s}.t VALUES (1), (2)")
        run(p, "ALTER TABLE {s}.t ADD COLUMN n int DEFAULT 7", "INSERT INTO {s}.t VALUES (3, 8), (4, NULL)")
        kill_at(stack, p, failpoint)  # the column exists in the target; the fill may not have run
        assert caught_up_t(stack, p, "n") == {1: 7, 2: 7, 3: 8, 4: None}
    finally:
        p.close()


TOASTED_T = (
    "CREATE TABLE {s}.t (id int PRIMARY KEY, note text, n int)",
    "ALTER TABLE {s}.t ALTER COLUMN note SET STORAGE EXTERNAL",
)


def test_a_key_change_merged_by_a_run_killed_before_its_checkpoint_keeps_its_toasted_value(
    stack: Any,
) -> None:
    p = Pipeline(stack)
    big = "x" * 5000
    try:
        replicate_t(p, *TOASTED_T, f"INSERT INTO {{s}}.t VALUES (1, '{big}', 0)")
        run(p, "UPDATE {s}.t SET id = 2 WHERE id = 1")  # the TOASTed note is not sent
        kill_at(stack, p, "after_merge")  # the target has the move; the checkpoint is before it
        run(
            p,
            "UPDATE {s}.t SET id = 3 WHERE id = 2",  # moved on, the note not sent
            "UPDATE {s}.t SET n = 5 WHERE id = 3",  # nor here
            "INSERT INTO {s}.t VALUES (1, 'w', 0)",  # the old key is used again
        )
        # reads the move again, with the changes after it
        assert caught_up_t(stack, p, "note", "n") == {1: ("w", 0), 3: (big, 5)}
    finally:
        p.close()


def test_moves_merged_by_a_killed_run_and_read_again_from_another_start_keep_their_toasted_values(
    stack: Any,
) -> None:
    p = Pipeline(stack)
    big1, big5 = "1" * 5000, "5" * 5000
    try:
        replicate_t(
            p, *TOASTED_T, f"INSERT INTO {{s}}.t VALUES (1, '{big1}', 0), (5, '{big5}', 0), (9, 'n', 0)"
        )
        run(p, "UPDATE {s}.t SET n = 1 WHERE id = 9")
        run(
            p, "UPDATE {s}.t SET id = 2 WHERE id = 1", "UPDATE {s}.t SET id = 6 WHERE id = 5"
        )  # one transaction
        kill_at(stack, p, "after_merge")  # both transactions merged; the checkpoint before them
        run(p, "UPDATE {s}.t SET id = 7 WHERE id = 6")
        # the next window reads only the first transaction, so the one after starts at the moves:
        # its changes are numbered otherwise than in the killed run's window
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        while not any(
            r["status"] == "applied" for r in results(sync(stack, p, CDC_WINDOW_MAX_CHANGES="1").stdout)
        ):
            assert time.monotonic() < deadline, "the killed run's lease never expired"
            time.sleep(1)
        assert caught_up_t(stack, p, "note", "n") == {2: (big1, 0), 7: (big5, 0), 9: ("n", 1)}
    finally:
        p.close()
