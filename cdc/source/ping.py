"""Asking the walsender where it stands, without confirming anything.

A reader that waits for changes asks the server for its position now and then: the answer (a
keepalive) carries how far the walsender has read the WAL, which tells the reader when it has
caught up. psycopg2's ``send_feedback`` cannot ask this safely: it always sends the cursor's flush
position, and psycopg2 moves that position by itself. A keepalive that arrives before the
connection's first data message sets it to the server's WAL end, as if everything before were
applied, and psycopg2 never lowers it again. Sent then, or later, it confirms the slot past the
checkpoint (for instance while the walsender still decodes a large transaction that committed
after it), and a window that then fails leaves a slot the next run must take for ahead of its
checkpoint.

So readers send standby status updates of their own, whose positions are all 0 (invalid: the
walsender moves nothing), through the connection's libpq (``cdc.source.tls.libpq``), and psycopg2
sends none: its periodic feedback is off on reading connections (``STATUS_INTERVAL_S``), and it
answers only a keepalive that asks for a reply, which the walsender sends after half its
``wal_sender_timeout`` without hearing from the reader. ``Asker`` keeps that from happening: the
reader asks every ``KEEPALIVE_EVERY_S`` while idle and while data flows, and the receiving child also
while the parent is slow to read its pipe. A reader in line cannot ask while its consumer works
between two messages; that matters only if the consumer takes half a ``wal_sender_timeout``.

Since a live walsender answers every question, a connection on which nothing arrives at all for
``SILENCE_LIMIT_S`` while the reader waits is lost (a network failure, a failover, a connection
left half open): ``Silence`` ends the read with ``SourceUnavailable``, as PostgreSQL's own
``wal_receiver_timeout`` does for a standby. Without it, a reader waiting inside a transaction
(whose end a window always waits for, outside an invocation's hard deadline) would wait forever.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import struct
import time
from collections.abc import Callable
from typing import Any

from cdc.errors import SourceUnavailable
from cdc.source.tls import libpq

log = logging.getLogger(__name__)

KEEPALIVE_EVERY_S = 1.0  # ask the server where it stands this often
SILENCE_LIMIT_S = 60.0  # nothing received for this long while waiting: the connection is lost
STATUS_INTERVAL_S = 365 * 24 * 3600.0  # psycopg2's periodic feedback: never, while a window reads
_UPDATE = struct.Struct(">cQQQqB")  # 'r', write, flush, apply, client clock (µs since 2000), reply
_EPOCH_2000_US = 946_684_800 * 1_000_000


@functools.cache
def _functions() -> tuple[Any, Any] | None:
    try:
        lib = libpq()
        put = lib.PQputCopyData
        flush = lib.PQflush
    except (ImportError, OSError, AttributeError) as exc:
        log.warning(
            "libpq's PQputCopyData is not reachable: readers do not ask the server for its position",
            extra={"reason": str(exc)},
        )
        return None
    put.argtypes, put.restype = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int], ctypes.c_int
    flush.argtypes, flush.restype = [ctypes.c_void_p], ctypes.c_int
    return put, flush


def update_message(reply: bool = True) -> bytes:
    """A standby status update that confirms nothing (every position 0)."""
    now_us = time.time_ns() // 1000 - _EPOCH_2000_US
    return _UPDATE.pack(b"r", 0, 0, 0, now_us, 1 if reply else 0)


def ping(conn: Any) -> None:
    """Ask the walsender of a streaming psycopg2 replication connection for a keepalive, confirming
    nothing (nothing is sent where libpq's functions cannot be reached). A failed send raises
    ``psycopg2.OperationalError``, as a failed read would."""
    functions = _functions()
    pgconn = getattr(conn, "pgconn_ptr", None)
    if functions is None or not pgconn:
        return
    put, flush = functions
    message = update_message()
    handle = ctypes.c_void_p(pgconn)
    if put(handle, message, len(message)) != 1 or flush(handle) == -1:
        import psycopg2

        raise psycopg2.OperationalError("could not send a status update to the walsender")


class Asker:
    """Pings a connection's walsender at most every ``KEEPALIVE_EVERY_S``: call it as often as
    convenient (``classify`` turns a psycopg2 error into the pipeline's)."""

    def __init__(self, conn: Any, classify: Callable[[Any, str], Exception]) -> None:
        self._conn = conn
        self._classify = classify
        self._last = time.monotonic()

    @property
    def able(self) -> bool:
        """Whether questions reach the walsender (libpq's functions and the connection's handle)."""
        return _functions() is not None and bool(getattr(self._conn, "pgconn_ptr", None))

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._last < KEEPALIVE_EVERY_S:
            return
        self._last = now
        import psycopg2

        try:
            ping(self._conn)
        except psycopg2.Error as exc:
            raise self._classify(exc, "asking the server where it stands") from exc


class Silence:
    """Tells a lost connection from a quiet one while a reader waits (see the module docstring).

    psycopg2 moves a replication cursor's ``io_timestamp`` whenever it reads a message, data or
    keepalive; ``check`` raises ``SourceUnavailable`` once it has not moved for ``limit_s`` of
    waiting. ``heard`` restarts the count after the reader was busy with messages (time spent
    working is not silence). A reader whose questions cannot reach the walsender (``able`` false)
    hears from an idle server only at its own pace, so it never takes silence for a loss.
    """

    def __init__(self, cursor: Any, limit_s: float, able: bool = True) -> None:
        self._cursor = cursor
        self._limit = limit_s if able else float("inf")
        self._seen = cursor.io_timestamp
        self._since = time.monotonic()

    def heard(self) -> None:
        self._since = time.monotonic()

    def check(self, now: float) -> None:
        seen = self._cursor.io_timestamp
        if seen != self._seen:
            self._seen, self._since = seen, now
        elif now - self._since >= self._limit:
            raise SourceUnavailable(
                f"the source sent nothing for {now - self._since:.0f} s, not even an answer to the "
                "reader's status requests: the replication connection is taken for lost (a network "
                "failure or a failover); the window is read again from the checkpoint"
            )
