"""Receiving the slot in a child process (``cdc.source.receiver``) against the real PostgreSQL 15 +
wal2json: the same messages, the same ending and the same errors as reading in line; the password
stays out of the child's command line and environment; stopping the child releases the slot.

``receive_process_min_bytes`` picks the way: -1 reads in line, 0 always starts the child.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest
from helpers import FreezingRelay, Pipeline

from cdc.app import build_engine, source_params
from cdc.demo import TABLES, compare_table, create_schema, replicate_until_caught_up, run_workload
from cdc.errors import AuthError, CdcError, SourceError, SourceUnavailable
from cdc.model import Begin, Commit, Lsn
from cdc.secrets import VaultSecrets
from cdc.source.receiver import POSITION, Receiver
from cdc.source.slot import PostgresSource, StreamPosition
from cdc.source.wal2json import RowChange, RowInsert

IN_LINE, CHILD = -1, 0
RELEASE_WAIT_S = 10.0  # a closed walsender leaves the slot within this (in practice, milliseconds)

DDL = """
CREATE TABLE {s}.t (
    id integer PRIMARY KEY, body text, amount numeric(20,6), ratio double precision, flag boolean,
    tags text[], doc jsonb)
"""
ODD_TEXT = 'line one\nline "two", it\'s\ttabbed \\ back — ünïcödé ✓ 𝄞'


class Env:
    """One test's schema and slots, on the pipeline's database."""

    def __init__(self, stack: Any) -> None:
        self.p = Pipeline(stack)
        self.params: dict[str, Any] = psycopg2.extensions.parse_dsn(stack.env["postgres_dsn"])
        self.password = str(self.params["password"])
        self.slots: list[str] = []
        self.sql(f"CREATE SCHEMA {self.p.schema}")

    def sql(self, *statements: str, args: tuple[Any, ...] = ()) -> None:
        """Run statements in one transaction."""
        with self.p.conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement.replace("{s}", self.p.schema), args or None)
        self.p.conn.commit()

    def create_slot(self, suffix: str) -> tuple[str, Lsn]:
        slot = f"{self.p.name}_{suffix}"
        with self.p.admin.cursor() as cur:
            cur.execute("SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'wal2json')", (slot,))
            lsn = Lsn.parse(cur.fetchone()[0])
        self.slots.append(slot)
        return slot, lsn

    def active_pid(self, slot: str) -> int | None:
        with self.p.admin.cursor() as cur:
            cur.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,))
            row = cur.fetchone()
        assert row is not None, f"slot {slot} is gone"
        return row[0]

    def wait_released(self, slot: str) -> None:
        """Wait (bounded) until no walsender holds ``slot``; fail when one still does."""
        deadline = time.monotonic() + RELEASE_WAIT_S
        while (pid := self.active_pid(slot)) is not None:
            if time.monotonic() > deadline:
                pytest.fail(
                    f"slot {slot} still held by walsender {pid} {RELEASE_WAIT_S} s after its reader stopped"
                )
            time.sleep(0.05)

    def current_wal_lsn(self) -> Lsn:
        with self.p.admin.cursor() as cur:
            cur.execute("SELECT pg_current_wal_lsn()::text")
            return Lsn.parse(cur.fetchone()[0])

    def close(self) -> None:
        for slot in self.slots:
            self.wait_released(slot)
            with self.p.admin.cursor() as cur:
                cur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        self.p.close()


@pytest.fixture
def env(stack: Any) -> Iterator[Env]:
    e = Env(stack)
    yield e
    e.close()
    assert receiver_children() == [], "a receiving process outlived its test"


def receiver_children() -> list[int]:
    """Pids of this process's children that run the slot's receiving process."""
    me = str(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # exited meanwhile
        ppid = next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:"))
        if ppid == me and b"cdc.source.receiver" in cmdline:
            found.append(int(entry.name))
    return found


Messages = list[tuple[Begin | Commit | RowChange, int]]


def read_all(env: Env, slot: str, threshold: int, until: Lsn) -> tuple[Messages, StreamPosition]:
    source = PostgresSource(env.params, slot, receive_process_min_bytes=threshold)
    try:
        info = source.slot_info()
        assert info is not None and info.confirmed_flush is not None
        position = StreamPosition(server_lsn=info.confirmed_flush)
        messages = list(source.stream_rows(info.confirmed_flush, until, time.monotonic() + 60, position))
        return messages, position
    finally:
        source.close()


def transactions_of(messages: Messages, schema: str) -> list[Messages]:
    """The transactions (Begin to Commit, sizes too) with a change of ``schema``: the stream also
    carries commits of other sessions (an autovacuum's ANALYZE), which a slot created a moment
    earlier or a read that stops a little later may see and another may not."""
    found: list[Messages] = []
    current: Messages = []
    for item in messages:
        current.append(item)
        if isinstance(item[0], Commit):
            if any(isinstance(m, RowChange) and m.schema == schema for m, _ in current):
                found.append(current)
            current = []
    return found


def first_change(messages: list[Any], schema: str) -> int:
    """Index of the first change of ``schema``: transactions of other sessions may come before."""
    return next(i for i, m in enumerate(messages) if isinstance(m, RowChange) and m.schema == schema)


def columns(change: RowChange) -> dict[str, Any]:
    return {f.name: f.value for f in change.columns or ()}


def workload(env: Env) -> None:
    """Several transactions: inserts (one row far larger than a frame), updates, a key change,
    deletes, a truncate and inserts after it."""
    env.sql(
        "INSERT INTO {s}.t SELECT g, %s || g, g * 1.000001, g / 7.0, g %% 2 = 0, ARRAY['a' || g, NULL, ''], "
        "jsonb_build_object('g', g, 'nested', jsonb_build_object('q', %s)) FROM generate_series(1, 1500) g",
        args=(ODD_TEXT, ODD_TEXT),
    )
    env.sql(
        "INSERT INTO {s}.t VALUES (9001, repeat('big ü ', 40000), -12345678901234.000001, '-0', NULL, "
        "'{}', '[]'), (9002, '', 0, 'NaN', true, ARRAY['x\"y', 'z,w'], '{\"k\": null}'), "
        "(9003, NULL, NULL, '-Infinity', false, NULL, 'null')"
    )
    env.sql(
        "UPDATE {s}.t SET ratio = '-0', body = body || E'\\n' WHERE id <= 40",
        "UPDATE {s}.t SET id = 20005 WHERE id = 5",  # a key change
        "UPDATE {s}.t SET flag = NOT flag WHERE id = 9002",
    )
    env.sql("DELETE FROM {s}.t WHERE id BETWEEN 100 AND 160", "DELETE FROM {s}.t WHERE id = 9001")
    env.sql("TRUNCATE {s}.t")
    env.sql("INSERT INTO {s}.t (id, body) VALUES (1, 'after the truncate')")


def test_both_ways_yield_the_same_messages_and_end_caught_up(env: Env) -> None:
    env.sql(DDL)
    in_line_slot, _ = env.create_slot("a")
    child_slot, _ = env.create_slot("b")
    workload(env)
    until = env.current_wal_lsn()
    in_line, in_line_pos = read_all(env, in_line_slot, IN_LINE, until)
    child, child_pos = read_all(env, child_slot, CHILD, until)
    assert transactions_of(child, env.p.schema) == transactions_of(in_line, env.p.schema)
    assert in_line_pos.caught_up is True and child_pos.caught_up is True
    assert in_line_pos.server_lsn >= until and child_pos.server_lsn >= until

    ours = [m for m, _ in child if not isinstance(m, RowChange) or m.schema == env.p.schema]
    changes = [m for m in ours if isinstance(m, RowChange)]
    ops = [m.op for m in changes]
    assert ops == ["I"] * 1503 + ["U"] * 42 + ["D"] * 62 + ["T", "I"]
    assert len(transactions_of(child, env.p.schema)) == 6  # one per statement group of the workload
    inserted = {row["id"]: row for row in (columns(m) for m in changes[:1503])}
    assert inserted[1]["body"] == ODD_TEXT + "1"
    assert inserted[1]["tags"] == '{a1,NULL,""}'
    assert inserted[9001]["body"] == "big ü " * 40000
    assert inserted[9001]["ratio"] == "-0" and inserted[9001]["amount"] == "-12345678901234.000001"
    assert inserted[9001]["doc"] == "[]" and inserted[9001]["tags"] == "{}"
    # wal2json sends a double's NaN and infinities as null (the writer reads them at the source)
    assert inserted[9002]["ratio"] is None and inserted[9003]["ratio"] is None
    assert inserted[9002]["tags"] == '{"x\\"y","z,w"}' and inserted[9002]["flag"] is True
    updated = [columns(m) for m in changes[1503:1543]]
    assert [row["ratio"] for row in updated] == ["-0"] * 40
    assert updated[0]["body"] == ODD_TEXT + "1\n"
    [key_change] = [m for m in changes if m.op == "U" and columns(m)["id"] == 20005]
    assert [(f.name, f.value) for f in key_change.identity or ()] == [("id", 5)]
    assert changes[-1].op == "I" and columns(changes[-1])["body"] == "after the truncate"
    sizes = {size for _, size in child}
    assert max(sizes) > 240_000  # the big row travelled as one message


def test_the_pipeline_receiving_in_a_child_replicates_every_table_across_windows(stack: Any) -> None:
    p = Pipeline(stack, receive_process_min_bytes=CHILD, window_max_changes=30)
    try:
        p.settings = p.settings.replace(source_tables=tuple(f"{p.schema}.{t}" for t in TABLES))
        p.engine.close()
        p.engine = build_engine(p.settings)
        assert p.engine.source.receive_process_min_bytes == CHILD  # type: ignore[attr-defined]
        create_schema(p.conn, p.schema)
        assert p.engine.run_window().status == "snapshot"
        run_workload(p.conn, p.schema, 30, seed=11)
        results = replicate_until_caught_up(p.engine)
        applied = [r for r in results if r["status"] == "applied"]
        assert len(applied) >= 3, [(r["status"], r["stop_reason"]) for r in results]
        assert any(r["stop_reason"] == "max_changes" for r in applied)  # the child stopped mid-stream
        for previous, current in zip(applied, applied[1:], strict=False):
            assert Lsn.parse(current["start_lsn"]) == Lsn.parse(previous["end_lsn"])
        checkpoint = p.store.load()
        assert checkpoint is not None and str(checkpoint.lsn) == results[-1]["end_lsn"]
        assert p.slot_confirmed() == checkpoint.lsn
        catalog = p.engine.source.catalog()
        for name in TABLES:
            diff = compare_table(p.conn, p.engine, catalog.tables[(p.schema, name)])
            assert diff.equal, (diff.table, diff.missing[:5], diff.extra[:5], diff.different[:5])
            assert diff.source_rows == diff.target_rows > 0
        assert receiver_children() == []
    finally:
        p.close()


def _error(env: Env, params: dict[str, Any], slot: str, threshold: int) -> CdcError:
    source = PostgresSource(params, slot, receive_process_min_bytes=threshold)
    start = env.current_wal_lsn()
    rows = source.stream_rows(start, Lsn(start.value + 1), time.monotonic() + 30, StreamPosition(start))
    try:
        with pytest.raises(CdcError) as caught:
            next(rows)
    finally:
        rows.close()
        source.close()
    return caught.value


def test_a_missing_slot_reads_the_same_in_both_ways(env: Env) -> None:
    slot = f"{env.p.name}_none"
    in_line, child = _error(env, env.params, slot, IN_LINE), _error(env, env.params, slot, CHILD)
    assert type(in_line) is SourceError and type(child) is SourceError
    assert str(child) == str(in_line)
    assert str(in_line) == (
        f'PostgreSQL error while starting replication from slot {slot}: replication slot "{slot}" does not exist'
    )


def test_a_wrong_password_reads_the_same_in_both_ways(env: Env) -> None:
    slot, _ = env.create_slot("pw")
    wrong = "not-" + env.password[::-1]
    params = {**env.params, "password": wrong}
    in_line, child = _error(env, params, slot, IN_LINE), _error(env, params, slot, CHILD)
    assert type(in_line) is AuthError and type(child) is AuthError
    assert str(child) == str(in_line)
    assert str(in_line).startswith("PostgreSQL refused the login while opening the replication connection: ")
    assert 'password authentication failed for user "cdc"' in str(in_line)
    assert wrong not in str(in_line) and env.password not in str(in_line)


def test_the_password_stays_out_of_the_childs_command_line_and_environment(env: Env) -> None:
    slot, start = env.create_slot("env")
    receiver = Receiver(env.params, slot, start.value)
    try:
        frames = receiver.frames(0.2)
        for _ in range(150):  # the child's first position (it writes one at least every 0.2 s idle)
            kind, lsn, _data = next(frames)
            if kind == POSITION and lsn:
                break
        else:
            pytest.fail("the receiving process sent no position in 30 s")
        assert lsn >= start.value
        assert env.active_pid(slot) is not None  # the child's walsender holds the slot
        cmdline = Path(f"/proc/{receiver.pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{receiver.pid}/environ").read_bytes()
        assert b"cdc.source.receiver" in cmdline
        assert b"PYTHONPATH=" in environ
        assert env.password.encode() not in cmdline and env.password.encode() not in environ
    finally:
        receiver.close()
    assert not Path(f"/proc/{receiver.pid}").exists()  # exited and reaped
    env.wait_released(slot)
    assert env.active_pid(slot) is None


def test_closing_the_stream_early_stops_the_child_and_releases_the_slot(env: Env) -> None:
    env.sql(DDL)
    slot, start = env.create_slot("early")
    for n in range(3):
        env.sql(
            f"INSERT INTO {{s}}.t (id, body) SELECT g, 'txn {n}' FROM generate_series({n * 100 + 1}, {n * 100 + 100}) g"
        )
    until = env.current_wal_lsn()
    source = PostgresSource(env.params, slot, receive_process_min_bytes=CHILD)
    try:
        first = source.stream_rows(start, until, time.monotonic() + 60, StreamPosition(start))
        head = [next(first) for _ in range(9)]
        children = receiver_children()
        assert len(children) == 1
        first.close()
        assert not Path(f"/proc/{children[0]}").exists()
        assert receiver_children() == []
        again = source.stream_rows(start, until, time.monotonic() + 60, StreamPosition(start))
        try:
            assert next(again) == head[0]
            assert [next(again) for _ in range(8)] == head[1:]
        finally:
            again.close()
    finally:
        source.close()
    at = first_change([m for m, _ in head], env.p.schema)
    assert isinstance(head[at - 1][0], Begin)
    assert [f.value for f in head[at][0].columns or ()][:2] == [1, "txn 0"]
    env.wait_released(slot)


def test_the_backlog_decides_whether_a_child_receives(env: Env) -> None:
    env.sql(DDL)
    slot, start = env.create_slot("size")
    env.sql("INSERT INTO {s}.t (id) SELECT g FROM generate_series(1, 50) g")
    until = env.current_wal_lsn()
    backlog = until.value - start.value
    source = PostgresSource(env.params, slot)
    try:
        seen = {}
        for threshold in (backlog + 1, backlog, -1, 0):
            source.receive_process_min_bytes = threshold
            rows = source.stream_rows(start, until, time.monotonic() + 60, StreamPosition(start))
            try:
                message, _ = next(rows)
                seen[threshold] = (len(receiver_children()), message)
            finally:
                rows.close()
            env.wait_released(slot)
    finally:
        source.close()
    assert {t: n for t, (n, _) in seen.items()} == {backlog + 1: 0, backlog: 1, -1: 0, 0: 1}
    assert len({m for _, m in seen.values()}) == 1  # the same first message every way


def test_the_child_runs_this_package_whatever_the_working_directory_holds(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cdc").mkdir()
    (tmp_path / "cdc" / "__init__.py").write_text('raise SystemExit("another cdc package was imported")\n')
    monkeypatch.chdir(tmp_path)
    env.sql(DDL)
    slot, start = env.create_slot("cwd")
    env.sql("INSERT INTO {s}.t (id, body) VALUES (7, 'seven')")
    source = PostgresSource(env.params, slot, receive_process_min_bytes=CHILD)
    rows = source.stream_rows(start, env.current_wal_lsn(), time.monotonic() + 60, StreamPosition(start))
    try:
        got = [message for message, _ in rows]
    finally:
        rows.close()
        source.close()
    # transactions of other sessions (an autovacuum's, another schema's) may come too
    changes = [i for i, m in enumerate(got) if isinstance(m, RowChange) and m.schema == env.p.schema]
    assert len(changes) == 1, got
    at = changes[0]
    assert [type(m) for m in got[at - 1 : at + 2]] == [Begin, RowInsert, Commit]
    change = got[at]
    assert isinstance(change, RowChange) and columns(change)["body"] == "seven"


@pytest.mark.parametrize("threshold", [IN_LINE, CHILD], ids=["in line", "child"])
def test_asking_the_server_where_it_stands_confirms_nothing(env: Env, threshold: int) -> None:
    slot, start = env.create_slot(f"ping{threshold + 1}")
    with env.p.admin.cursor() as cur:
        cur.execute("SELECT pg_switch_wal()")  # WAL past the slot that no message comes for
    env.p.admin.commit()
    source = PostgresSource(env.params, slot, receive_process_min_bytes=threshold)
    try:
        position = StreamPosition(server_lsn=start)
        never = Lsn(env.current_wal_lsn().value + (1 << 40))  # the stream waits, asking now and then
        # long enough for the child to start and connect on a busy machine, and to ask twice;
        # transactions of other sessions may come meanwhile, with no change of this test's schema
        messages = list(source.stream_rows(start, never, time.monotonic() + 6, position))
        assert not [m for m, _ in messages if isinstance(m, RowChange) and m.schema == env.p.schema]
        assert position.server_lsn > start and not position.caught_up
        info = source.slot_info()
        assert info is not None and info.confirmed_flush == start
    finally:
        source.close()


@pytest.mark.parametrize("threshold", [IN_LINE, CHILD], ids=["in line", "child"])
def test_a_connection_lost_inside_a_transaction_ends_the_read(env: Env, threshold: int) -> None:
    """A window waits for the end of an open transaction past a soft deadline; on a connection that
    went silent (no message, no answer to the reader's questions) it gives up instead of waiting
    forever, confirming nothing."""
    env.sql("CREATE TABLE {s}.t (id integer PRIMARY KEY, body text)")
    slot, start = env.create_slot(f"lost{threshold + 1}")
    env.sql("INSERT INTO {s}.t SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g")
    until = env.current_wal_lsn()
    relay = FreezingRelay(env.params["host"], int(env.params["port"]), freeze_after=256 * 1024)
    source = PostgresSource({**env.params, "port": relay.port}, slot, receive_process_min_bytes=threshold)
    source.silence_limit_s = 3
    got: list[Begin | Commit | RowChange] = []
    failed: list[Exception] = []

    def read() -> None:
        position = StreamPosition(server_lsn=start)
        try:
            for message, _size in source.stream_rows(
                start, until, time.monotonic() + 1, position, hard=False
            ):
                got.append(message)
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            failed.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(60)
    try:
        assert relay.frozen.is_set(), "the relay never froze: the transaction is smaller than expected"
        assert not reader.is_alive(), "the reader still waits on a connection that went silent a minute ago"
        assert len(failed) == 1 and isinstance(failed[0], SourceUnavailable), failed
        assert "the source sent nothing for 3 s" in str(failed[0])
        # it read part of the transaction, and not its end
        at = first_change(got, env.p.schema)
        assert isinstance(got[at - 1], Begin) and len(got) - at > 100
        assert not [m for m in got[at:] if isinstance(m, Commit)]
        info = source.slot_info()  # through the relay's fresh connection: only the frozen one is silent
        assert info is not None and info.confirmed_flush == start
    finally:
        relay.close()
        reader.join(30)
        source.close()


def test_the_sources_connections_probe_a_silent_peer(env: Env, stack: Any) -> None:
    """TCP keepalives on every connection to the source, so that a query or a COPY waiting on a
    peer gone without a word fails in about a minute (30 s idle, then 3 probes 10 s apart)."""
    slot, _start = env.create_slot("probe")
    source = PostgresSource(source_params(stack.settings, VaultSecrets.from_settings(stack.settings)), slot)
    replication = source.replication_connection()
    try:
        for conn in (source._sql(), replication):
            sock = socket.socket(fileno=os.dup(conn.fileno()))
            try:
                assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
            finally:
                sock.close()
    finally:
        replication.close()
        source.close()


def test_the_silence_limit_follows_the_servers_wal_sender_timeout(env: Env) -> None:
    """A walsender sends keepalives at its own pace only every half wal_sender_timeout: the reader
    waits at least twice that, and without limit where the server has none (0)."""
    user = env.params["user"]
    limits = {}
    try:
        for setting in ("45s", "10s", "0"):
            with env.p.admin.cursor() as cur:
                cur.execute(f'ALTER ROLE "{user}" SET wal_sender_timeout = %s', (setting,))
            source = PostgresSource(env.params, "unused")
            try:
                limits[setting] = source.silence_limit()
            finally:
                source.close()
    finally:
        with env.p.admin.cursor() as cur:
            cur.execute(f'ALTER ROLE "{user}" RESET wal_sender_timeout')
    assert limits == {"45s": 90.0, "10s": 60.0, "0": float("inf")}
