"""Asking the walsender where it stands, without confirming anything.

A reader that waits for changes asks the server for its position now and then: the answer (a
keepalive) carries how far the walsender has read the WAL, which tells the reader when it has
caught up. psycopg2's ``send_feedback`` cannot ask this safely: it always sends the cursor's flush
position, and psycopg2 moves that position by itself. A keepalive that arrives before the
connection's first data message sets it to the server's WAL end, as if everything before were
applied. Sent then, for instance while the walsender is still decoding a large transaction that
committed after the checkpoint, it confirms the slot past the checkpoint: a window that then fails
leaves a slot the next run must take for ahead of its checkpoint.

So readers send a standby status update of their own, whose positions are all 0 (invalid: the
walsender moves nothing) and which asks for a reply, through the connection's libpq (found through
psycopg2's extension module, as in ``cdc.source.tls``). psycopg2's own periodic feedback is turned
off on reading connections (``STATUS_INTERVAL_S`` in ``start_replication``); it still answers a
keepalive that asks for a reply, which the walsender sends only after half its
``wal_sender_timeout`` without one of these pings, and by then data has arrived, so its flush
position is still 0.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import struct
import time
from typing import Any

log = logging.getLogger(__name__)

STATUS_INTERVAL_S = 365 * 24 * 3600.0  # psycopg2's periodic feedback: never, while a window reads
_UPDATE = struct.Struct(">cQQQqB")  # 'r', write, flush, apply, client clock (µs since 2000), reply
_EPOCH_2000_US = 946_684_800 * 1_000_000


@functools.cache
def _functions() -> tuple[Any, Any] | None:
    try:
        import psycopg2._psycopg as extension

        lib = ctypes.CDLL(extension.__file__)
        put = lib.PQputCopyData
        flush = lib.PQflush
    except (ImportError, OSError, AttributeError) as exc:
        log.warning("libpq's PQputCopyData is not reachable: readers cannot ask the server for its position")
        log.debug("libpq functions unavailable", extra={"reason": str(exc)})
        return None
    put.argtypes, put.restype = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int], ctypes.c_int
    flush.argtypes, flush.restype = [ctypes.c_void_p], ctypes.c_int
    return put, flush


def update_message(reply: bool = True) -> bytes:
    """A standby status update that confirms nothing (every position 0)."""
    now_us = time.time_ns() // 1000 - _EPOCH_2000_US
    return _UPDATE.pack(b"r", 0, 0, 0, now_us, 1 if reply else 0)


def ping(conn: Any, cur: Any, data_seen: bool) -> None:
    """Ask the walsender of a streaming psycopg2 replication connection (``cur`` its replication
    cursor) for a keepalive, confirming nothing. Where libpq's functions cannot be reached, psycopg2
    asks instead once a data message has arrived (its flush position no longer moves then), and
    nobody asks before. A failed send raises ``psycopg2.OperationalError``, as a failed read would."""
    functions = _functions()
    pgconn = getattr(conn, "pgconn_ptr", None)
    if functions is None or not pgconn:
        if data_seen:
            cur.send_feedback(reply=True)
        return
    put, flush = functions
    message = update_message()
    handle = ctypes.c_void_p(pgconn)
    if put(handle, message, len(message)) != 1 or flush(handle) == -1:
        import psycopg2

        raise psycopg2.OperationalError("could not send a status update to the walsender")
