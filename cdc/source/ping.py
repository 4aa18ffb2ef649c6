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
"""

from __future__ import annotations

import ctypes
import functools
import logging
import struct
import time
from collections.abc import Callable
from typing import Any

from cdc.source.tls import libpq

log = logging.getLogger(__name__)

KEEPALIVE_EVERY_S = 1.0  # ask the server where it stands this often
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
