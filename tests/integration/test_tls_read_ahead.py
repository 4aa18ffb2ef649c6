"""OpenSSL read-ahead on the replication connection (``cdc.source.tls``) against the local stack's
PostgreSQL 15 + wal2json, which takes TCP connections over TLS only: it is on for the slot's
connection, off where there is no TLS, and the stream reads the same messages as without it,
including a row that spans many TLS records as the last thing the server sends.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2._psycopg
import psycopg2.extensions
import psycopg2.extras
import pytest
from helpers import Pipeline

from cdc.errors import SourceError
from cdc.model import Begin, Commit, Lsn
from cdc.source.slot import SESSION_OPTIONS, PostgresSource, StreamPosition
from cdc.source.tls import enable_read_ahead
from cdc.source.wal2json import WAL2JSON_OPTIONS, RowChange, parse_row

BIG_ROW_BYTES = 300_000  # about twenty TLS records of 16 kB


def _openssl_read_ahead(conn: Any) -> int:
    """OpenSSL's own flag for the connection, read through libpq's libssl."""
    lib = ctypes.CDLL(psycopg2._psycopg.__file__)
    lib.PQsslStruct.argtypes, lib.PQsslStruct.restype = [ctypes.c_void_p, ctypes.c_char_p], ctypes.c_void_p
    lib.SSL_get_read_ahead.argtypes, lib.SSL_get_read_ahead.restype = [ctypes.c_void_p], ctypes.c_int
    ssl = lib.PQsslStruct(ctypes.c_void_p(conn.pgconn_ptr), b"OpenSSL")
    assert ssl, "the connection does not use TLS"
    return int(lib.SSL_get_read_ahead(ctypes.c_void_p(ssl)))


@pytest.fixture
def p(stack: Any) -> Iterator[Pipeline]:
    pipeline = Pipeline(stack)
    yield pipeline
    pipeline.close()


def test_read_ahead_is_on_for_the_replication_connection_over_tls(stack: Any) -> None:
    source = PostgresSource(psycopg2.extensions.parse_dsn(stack.env["postgres_dsn"]), "unused")
    conn = source.replication_connection()
    try:
        assert _openssl_read_ahead(conn) == 0  # libpq leaves it off
        ahead = enable_read_ahead(conn)
        assert ahead is not None
        assert _openssl_read_ahead(conn) == 1
        assert ahead.pending() is False  # nothing was sent yet
    finally:
        conn.close()


def test_a_failing_start_replication_reports_its_error_while_the_stream_would_read_ahead(stack: Any) -> None:
    # the reply to a failing START_REPLICATION comes in several TLS records: read-ahead is turned
    # on only once the connection streams, so the error arrives instead of a wait without end
    source = PostgresSource(psycopg2.extensions.parse_dsn(stack.env["postgres_dsn"]), "no_such_slot")
    start = Lsn(1)
    rows = source.stream_rows(start, Lsn(2), time.monotonic() + 30, StreamPosition(start))
    with pytest.raises(SourceError, match='replication slot "no_such_slot" does not exist'):
        next(rows)
    source.close()


def test_a_connection_without_tls_gets_no_read_ahead(stack: Any) -> None:
    # the superuser connects over the Unix socket, where there is no TLS
    conn = psycopg2.connect(stack.env["postgres_admin_dsn"])
    try:
        assert enable_read_ahead(conn) is None
    finally:
        conn.close()


def _read_without_read_ahead(dsn: str, slot: str, start: Lsn, count: int) -> list[Any]:
    conn = psycopg2.connect(
        dsn, options=SESSION_OPTIONS, connection_factory=psycopg2.extras.LogicalReplicationConnection
    )
    try:
        assert _openssl_read_ahead(conn) == 0
        cur = conn.cursor()
        cur.start_replication(slot_name=slot, decode=False, start_lsn=start.value, options=WAL2JSON_OPTIONS)
        got: list[Any] = []
        deadline = time.monotonic() + 60
        while len(got) < count:
            msg = cur.read_message()
            if msg is None:
                assert time.monotonic() < deadline, f"only {len(got)} of {count} messages in 60 s"
                time.sleep(0.01)
                continue
            parsed = parse_row(msg.payload)
            if parsed is not None:
                got.append((parsed, len(msg.payload)))
        return got
    finally:
        conn.close()


def test_the_stream_reads_the_same_messages_with_read_ahead_as_without(stack: Any, p: Pipeline) -> None:
    schema = p.schema
    with p.admin.cursor() as cur:
        cur.execute("SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'wal2json')", (p.name,))
        start = Lsn.parse(cur.fetchone()[0])
    try:
        with p.conn.cursor() as cur:
            cur.execute(f"CREATE SCHEMA {schema}")
            cur.execute(f"CREATE TABLE {schema}.t (id integer PRIMARY KEY, body text)")
            p.conn.commit()
            cur.execute(f"INSERT INTO {schema}.t SELECT g, 'row ' || g FROM generate_series(1, 3000) g")
            p.conn.commit()
            cur.execute(f"UPDATE {schema}.t SET body = body || '!' WHERE id % 3 = 0")
            p.conn.commit()
            # the last message the server sends spans many TLS records: the reader must not take
            # the empty socket for an idle stream while the rest waits in OpenSSL's buffer
            cur.execute(f"INSERT INTO {schema}.t VALUES (0, repeat('x', {BIG_ROW_BYTES}))")
            p.conn.commit()
            cur.execute("SELECT pg_current_wal_lsn()::text")
            until = Lsn.parse(cur.fetchone()[0])
        params = psycopg2.extensions.parse_dsn(stack.env["postgres_dsn"])
        source = PostgresSource(params, p.name, receive_process_min_bytes=-1)
        position = StreamPosition(server_lsn=start)
        try:
            ahead = list(source.stream_rows(start, until, time.monotonic() + 60, position))
        finally:
            source.close()
        assert position.caught_up is True
        plain = _read_without_read_ahead(stack.env["postgres_dsn"], p.name, start, len(ahead))
        assert ahead == plain
        ours = [m for m, _ in ahead if not isinstance(m, RowChange) or m.schema == schema]
        changes = [m for m in ours if isinstance(m, RowChange)]
        assert [m.op for m in changes] == ["I"] * 3000 + ["U"] * 1000 + ["I"]
        assert {f.name: f.value for f in changes[-1].columns or ()} == {"id": 0, "body": "x" * BIG_ROW_BYTES}
        assert sum(isinstance(m, Begin) for m in ours) == sum(isinstance(m, Commit) for m in ours) >= 3
    finally:
        with p.admin.cursor() as cur:
            cur.execute("SELECT pg_drop_replication_slot(%s)", (p.name,))
