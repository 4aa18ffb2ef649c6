"""The replication slot: create it, read a window of wal2json v2 output over the streaming
replication protocol, and confirm what the target has committed.
"""

from __future__ import annotations

import logging
import math
import select
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extras

from cdc.errors import AuthError, SourceError, SourceUnavailable
from cdc.model import Begin, Commit, Lsn, Message, TableSchema
from cdc.source.catalog import Catalog, load_catalog
from cdc.source.lookup import current_text
from cdc.source.ping import KEEPALIVE_EVERY_S, SILENCE_LIMIT_S, STATUS_INTERVAL_S, Asker, Silence
from cdc.source.receiver import MESSAGES, POSITION, Receiver
from cdc.source.tls import enable_read_ahead
from cdc.source.wal2json import WAL2JSON_OPTIONS, RowChange, parse_row

log = logging.getLogger(__name__)

# Values are rendered by the walsender in its session settings: fix them so text forms are stable
# (wal2json cuts the first two characters, the "\x" of the hex form, off a bytea's text: any other
# bytea_output would be misread).
SESSION_OPTIONS = (
    "-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=iso_8601 -c extra_float_digits=3 -c lc_monetary=C"
    " -c bytea_output=hex"
)

IDLE_POLL_S = 0.2  # wait on the socket this long when nothing is buffered
STALL_S = 3 * KEEPALIVE_EVERY_S  # past a soft deadline, an idle stream waits while the server moves
BATCH_WAIT_S = 0.002  # let messages gather in the socket once it runs dry mid-stream


@dataclass(frozen=True)
class SlotInfo:
    name: str
    plugin: str | None
    confirmed_flush: Lsn | None
    restart: Lsn | None
    wal_status: str | None
    active_pid: int | None
    retained_bytes: int | None
    # WAL that may still be written before the slot is at risk of invalidation
    # (max_slot_wal_keep_size); None when the server keeps WAL for slots without limit
    safe_wal_bytes: int | None = None


@dataclass
class StreamPosition:
    """Where the server stood at the last message or keepalive: all commits before it were sent."""

    server_lsn: Lsn
    caught_up: bool = False


# TLS set-up problems (libpq's messages) and what to change; retrying cannot fix any of them
_TLS_PROBLEMS = (
    (
        "certificate verify failed",
        "the server's certificate is not signed by a CA in the bundle source_sslrootcert "
        "(CDC_SOURCE_SSLROOTCERT) names: point it at the CA that signed the server certificate (for "
        "Aurora, the RDS global bundle https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem)",
    ),
    (
        "does not match host name",
        "the server's certificate does not hold the name in source_host (CDC_SOURCE_HOST): connect to "
        "a name the certificate holds (the cluster endpoint, not a CNAME or an IP address)",
    ),
    (
        "root certificate file",
        "source_sslrootcert (CDC_SOURCE_SSLROOTCERT) must name a readable PEM file of CA certificates",
    ),
    (
        "server does not support ssl",
        "the server does not offer TLS: turn on ssl in the server's configuration (Aurora always offers "
        "it), or check that source_host/source_port reach the intended server",
    ),
)


def _tls_problem(lowered: str) -> str | None:
    if "no pg_hba.conf entry" in lowered and "no encryption" in lowered:
        return (
            "the server accepts this user only over TLS: set source_sslmode (CDC_SOURCE_SSLMODE) to "
            "verify-full and source_sslrootcert (CDC_SOURCE_SSLROOTCERT) to the CA bundle"
        )
    return next((hint for phrase, hint in _TLS_PROBLEMS if phrase in lowered), None)


def classify_error(exc: psycopg2.Error, what: str) -> Exception:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, psycopg2.OperationalError):
        lowered = text.lower()
        tls_hint = _tls_problem(lowered)
        if tls_hint is not None:
            return SourceError(f"PostgreSQL TLS connection failed while {what}: {text}. {tls_hint}")
        if "password authentication failed" in lowered or "no pg_hba.conf entry" in lowered:
            return AuthError(
                f"PostgreSQL refused the login while {what}: {text}. Check the user and "
                "password in Vault and that the user has the REPLICATION attribute"
            )
        return SourceUnavailable(f"PostgreSQL unreachable while {what}: {text}")
    if isinstance(exc, psycopg2.errors.InsufficientPrivilege):
        return AuthError(
            f"PostgreSQL denied {what}: {text}. Grant the REPLICATION attribute "
            "(on Aurora: GRANT rds_replication) and SELECT on the replicated tables"
        )
    if isinstance(exc, psycopg2.errors.ObjectInUse):
        return SourceUnavailable(f"{what}: {text} (another reader holds the slot; retrying later helps)")
    return SourceError(f"PostgreSQL error while {what}: {text}")


_classify = classify_error


class _Deadline:
    """When a stream that waits for messages stops at its deadline.

    A hard deadline (an invocation's) stops it at once. Otherwise the window may go on past it to
    the next commit, so the stream waits on while a transaction is open, and while the server's
    position still moves (the walsender decoding a large transaction before its first message, or
    WAL that sends nothing): it stops once neither holds, after ``STALL_S`` without a move."""

    def __init__(self, deadline: float, hard: bool) -> None:
        self.deadline = deadline
        self.hard = hard
        self._server = -1
        self._moved_at = 0.0

    def ends(self, now: float, in_txn: bool, server: int) -> bool:
        if server != self._server:
            self._server, self._moved_at = server, now
        if now < self.deadline:
            return False
        return self.hard or (not in_txn and now - self._moved_at >= STALL_S)


class PostgresSource:
    """One pipeline's view of the source database and its slot."""

    def __init__(
        self,
        conn_params: dict[str, Any],
        slot: str,
        tables: tuple[str, ...] = (),
        keys: dict[tuple[str, str], tuple[str, ...]] | None = None,
        receive_process_min_bytes: int = -1,
    ) -> None:
        self._params = dict(conn_params)
        self.conn_params = self._params
        self.slot = slot
        self.tables = tables
        self.keys = dict(keys or {})
        # a window with at least this much WAL to read receives it in a child process (-1: never)
        self.receive_process_min_bytes = receive_process_min_bytes
        # a reading connection on which nothing arrives this long while waiting is lost
        # (ping.Silence); None: from the server's wal_sender_timeout (see silence_limit)
        self.silence_limit_s: float | None = None
        self._conn: Any = None

    # -- plain SQL connection -------------------------------------------------------------
    def _sql(self) -> Any:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg2.connect(**self._params, options=SESSION_OPTIONS)
            except psycopg2.Error as exc:
                raise classify_error(exc, "connecting") from exc
            self._conn.autocommit = True
        return self._conn

    def _query(self, sql: str, args: tuple[Any, ...] = (), what: str = "querying") -> list[tuple[Any, ...]]:
        try:
            with self._sql().cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchall() if cur.description else []
        except psycopg2.Error as exc:
            raise classify_error(exc, what) from exc

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None

    def catalog(self) -> Catalog:
        try:
            return load_catalog(self._sql(), self.tables, self.keys)
        except psycopg2.Error as exc:
            raise classify_error(exc, "reading the catalog") from exc

    def lookup_values(
        self, table: TableSchema, columns: list[str], keys: list[tuple[Any, ...]]
    ) -> dict[tuple[Any, ...], dict[str, str | None]]:
        """Current text values of some columns of some rows, by key (see cdc.source.lookup)."""
        try:
            return current_text(self._sql(), table, columns, keys)
        except psycopg2.Error as exc:
            raise classify_error(exc, f"looking up values of {table.qualified}") from exc

    def silence_limit(self) -> float:
        """How long a reading connection may stay silent while the reader waits (``ping.Silence``):
        ``SILENCE_LIMIT_S``, or twice the server's ``wal_sender_timeout`` where that is longer (a
        walsender busy with a transaction whose changes it skips sends a keepalive only that
        often); no limit where the server has none (``wal_sender_timeout = 0``), since such a
        walsender may then send nothing for as long as its work takes."""
        if self.silence_limit_s is None:
            rows = self._query(
                "SELECT setting::bigint FROM pg_settings WHERE name = 'wal_sender_timeout'",
                what="reading wal_sender_timeout",
            )
            timeout_ms = int(rows[0][0]) if rows else 0
            self.silence_limit_s = max(SILENCE_LIMIT_S, 2 * timeout_ms / 1000) if timeout_ms > 0 else math.inf
        return self.silence_limit_s

    def current_wal_lsn(self) -> Lsn:
        return Lsn.parse(self._query("SELECT pg_current_wal_lsn()::text")[0][0])

    def slot_info(self) -> SlotInfo | None:
        rows = self._query(
            "SELECT slot_name, plugin, confirmed_flush_lsn::text, restart_lsn::text, wal_status, "
            "active_pid, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, safe_wal_size "
            "FROM pg_replication_slots WHERE slot_name = %s",
            (self.slot,),
            "reading the slot state",
        )
        if not rows:
            return None
        name, plugin, confirmed, restart, wal_status, active_pid, retained, safe = rows[0]
        return SlotInfo(
            name,
            plugin,
            Lsn.parse(confirmed) if confirmed else None,
            Lsn.parse(restart) if restart else None,
            wal_status,
            active_pid,
            retained,
            safe,
        )

    def create_slot(self) -> SlotInfo:
        """Create the wal2json slot; its consistent point is where replication starts."""
        self._query(
            "SELECT pg_create_logical_replication_slot(%s, 'wal2json')", (self.slot,), "creating the slot"
        )
        info = self.slot_info()
        if info is None:
            raise SourceError(f"slot {self.slot} vanished right after it was created")
        log.info("created replication slot", extra={"slot": self.slot, "lsn": str(info.confirmed_flush)})
        return info

    # -- replication connection ------------------------------------------------------------
    def replication_connection(self) -> Any:
        try:
            return psycopg2.connect(
                **self._params,
                options=SESSION_OPTIONS,
                connection_factory=psycopg2.extras.LogicalReplicationConnection,
            )
        except psycopg2.Error as exc:
            raise classify_error(exc, "opening the replication connection") from exc

    def start_replication(self, conn: Any, start: Lsn) -> Any:
        """START_REPLICATION, waiting briefly while a previous walsender still holds the slot."""
        deadline = time.monotonic() + 10
        while True:
            cur = conn.cursor()
            try:
                cur.start_replication(
                    slot_name=self.slot,
                    decode=False,
                    start_lsn=start.value,
                    options=WAL2JSON_OPTIONS,
                    status_interval=STATUS_INTERVAL_S,  # see cdc.source.ping
                )
                return cur
            except psycopg2.errors.ObjectInUse as exc:
                if time.monotonic() > deadline:
                    raise classify_error(exc, f"starting replication from slot {self.slot}") from exc
                time.sleep(0.1)
            except psycopg2.Error as exc:
                raise classify_error(exc, f"starting replication from slot {self.slot}") from exc

    def stream(
        self, start: Lsn, until: Lsn, deadline: float, position: StreamPosition
    ) -> Generator[tuple[Message, int], None, None]:
        """Yield decoded messages (with their payload size) from ``start``: ``stream_rows`` with
        each change as a ``Change``."""
        rows = self.stream_rows(start, until, deadline, position)
        try:
            for message, size in rows:
                yield (message.to_change() if isinstance(message, RowChange) else message), size
        finally:
            rows.close()

    def stream_rows(
        self, start: Lsn, until: Lsn, deadline: float, position: StreamPosition, hard: bool = True
    ) -> Generator[tuple[Begin | Commit | RowChange, int], None, None]:
        """Yield decoded messages (with their payload size) from ``start``, changes as ``RowChange``.

        The stream ends when the server has sent everything before ``until`` and no transaction
        is open (``position.caught_up``), or, while nothing arrives, once ``deadline``
        (time.monotonic) has passed (``_Deadline``: a deadline that is not ``hard`` waits for an
        open transaction, and while the walsender still moves). The caller stops earlier by closing
        the generator; it decides where a window ends (always on a commit).
        ``position`` is brought up to date at each commit, while idle and when the stream ends.

        The walsender sends one message per change and flushes each: a reader that woke for each
        would double the walsender's work. So once the socket runs dry while data is flowing, the
        reader sleeps ``BATCH_WAIT_S`` and then takes what arrived meanwhile in one go. Once the
        connection streams, OpenSSL reads TLS records ahead (``cdc.source.tls``).

        With a backlog of at least ``receive_process_min_bytes`` (WAL from ``start`` to ``until``),
        a child process receives the messages (``cdc.source.receiver``) and this process parses
        them, so both run at once on different cores; what is yielded is the same.
        """
        threshold = self.receive_process_min_bytes
        rule = _Deadline(deadline, hard)
        if threshold >= 0 and until.value - start.value >= threshold:
            return self._stream_received(start, until, rule, position)
        return self._stream_in_line(start, until, rule, position)

    def _stream_in_line(
        self, start: Lsn, until: Lsn, rule: _Deadline, position: StreamPosition
    ) -> Generator[tuple[Begin | Commit | RowChange, int], None, None]:
        deadline = rule.deadline
        conn = self.replication_connection()
        server = position.server_lsn.value
        try:
            cur = self.start_replication(conn, start)
            ahead = enable_read_ahead(conn)  # only now that the connection streams (see cdc.source.tls)
            in_txn = False
            flowing = False
            ask = Asker(conn, classify_error)  # see cdc.source.ping
            silence = Silence(cur, self.silence_limit(), ask.able)
            received = 0
            while True:
                try:
                    msg = cur.read_message()
                except psycopg2.Error as exc:
                    raise classify_error(exc, "reading the replication stream") from exc
                if msg is not None:
                    flowing = True
                    received += 1
                    if not received & 1023:
                        ask()
                    if msg.data_start > server:
                        server = msg.data_start
                    parsed = parse_row(msg.payload)
                    if parsed is None:
                        continue
                    kind = parsed.__class__
                    if kind is Begin:
                        in_txn = True
                    elif kind is Commit:
                        in_txn = False
                        position.server_lsn = Lsn(server)
                    yield parsed, len(msg.payload)
                    continue
                if flowing:
                    flowing = False
                    silence.heard()
                    time.sleep(BATCH_WAIT_S)
                    continue
                now = time.monotonic()
                silence.check(now)
                if ahead is not None and now < deadline and ahead.pending():
                    # TLS records read ahead are waiting: not idle (one read in part waits for its rest)
                    select.select([cur], [], [], BATCH_WAIT_S)
                    continue
                if cur.wal_end and cur.wal_end > server:
                    server = cur.wal_end
                position.server_lsn = Lsn(server)
                if not in_txn and server >= until.value:
                    position.caught_up = True
                    return
                if rule.ends(now, in_txn, server):
                    return
                ask()
                wait = IDLE_POLL_S if now >= deadline else min(IDLE_POLL_S, deadline - now)
                select.select([cur], [], [], wait)
        finally:
            if server > position.server_lsn.value:
                position.server_lsn = Lsn(server)
            conn.close()

    def _stream_received(
        self, start: Lsn, until: Lsn, rule: _Deadline, position: StreamPosition
    ) -> Generator[tuple[Begin | Commit | RowChange, int], None, None]:
        """``stream_rows`` with the messages received by a child process (same ending rules)."""
        try:
            # the child reads the limit itself once its connection streams, unless it is set here
            receiver = Receiver(self._params, self.slot, start.value, self.silence_limit_s)
        except OSError as exc:
            raise SourceUnavailable(
                f"could not start the process that receives slot {self.slot}: {exc}"
            ) from exc
        log.debug(
            "receiving the slot in a child process",
            extra={"slot": self.slot, "backlog_bytes": until.value - start.value},
        )
        server = position.server_lsn.value
        in_txn = False
        try:
            for kind, lsn, data in receiver.frames(IDLE_POLL_S):
                if kind != POSITION:
                    for payload in data.split(b"\n") if kind == MESSAGES else (data,):
                        parsed = parse_row(payload)
                        if parsed is None:
                            continue
                        cls = parsed.__class__
                        if cls is Begin:
                            in_txn = True
                        elif cls is Commit:
                            in_txn = False
                            position.server_lsn = Lsn(server)
                        yield parsed, len(payload)
                    if lsn > server:
                        server = lsn  # after the frame: a commit above never claims what follows it
                    continue
                if lsn > server:
                    server = lsn
                position.server_lsn = Lsn(server)
                if not in_txn and server >= until.value:
                    position.caught_up = True
                    return
                if rule.ends(time.monotonic(), in_txn, server):
                    return
        finally:
            if server > position.server_lsn.value:
                position.server_lsn = Lsn(server)
            receiver.close()

    def confirm(self, lsn: Lsn) -> None:
        """Tell the slot that everything before ``lsn`` is applied, so its WAL can be recycled."""
        conn = self.replication_connection()
        try:
            cur = self.start_replication(conn, lsn)
            cur.send_feedback(
                write_lsn=lsn.value, flush_lsn=lsn.value, apply_lsn=lsn.value, reply=True, force=True
            )
            # The walsender processes feedback in its loop; wait until the slot shows it.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                cur.read_message()
                info = self.slot_info()
                if info is not None and info.confirmed_flush is not None and info.confirmed_flush >= lsn:
                    return
                select.select([cur], [], [], 0.05)
            raise SourceUnavailable(f"slot {self.slot} did not confirm LSN {lsn} within 5 s")
        except psycopg2.Error as exc:
            raise classify_error(exc, f"confirming LSN {lsn} on slot {self.slot}") from exc
        finally:
            conn.close()
