"""OpenSSL read-ahead on a replication connection's TLS.

The walsender sends each change as a TLS record of its own (a few hundred bytes). Without
read-ahead, OpenSSL reads each record with two ``recv`` calls (its 5-byte header, then its body);
with it, one ``recv`` takes whatever has arrived, up to OpenSSL's buffer. On a backlog that is
about ten times fewer system calls, and about a quarter less CPU for the process that receives.

libpq has no setting for it, so it is set through ctypes on the connection's ``SSL`` object, with
the libssl that libpq itself uses: symbols are looked up through psycopg2's extension module,
whose dependencies are libpq and libpq's libssl (not some other libssl the process has loaded).
Anything that fails here leaves read-ahead off; reading works the same, only slower.

With read-ahead, records can wait in OpenSSL's buffer while the socket is empty. libpq does not see
them when it waits for a reply (it asks OpenSSL only for a record already decrypted), so a command
whose reply comes in several records could wait forever: read-ahead is turned on only once the
connection streams (after START_REPLICATION), where the reader polls without blocking. Such a
reader must ask ``pending()`` before it waits on the socket or takes the stream for idle.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from typing import Any

log = logging.getLogger(__name__)


class ReadAhead:
    """Read-ahead turned on for one open connection."""

    def __init__(self, has_pending: Any, ssl: int) -> None:
        self._has_pending = has_pending
        self._ssl = ctypes.c_void_p(ssl)

    def pending(self) -> bool:
        """Whether OpenSSL holds bytes it has read but not yet handed to libpq (call it only while
        the connection is open)."""
        return bool(self._has_pending(self._ssl))


def libpq() -> Any:
    """The libpq (and its libssl) that psycopg2 uses, for ctypes: symbols are looked up through
    psycopg2's extension module, whose dependencies they are. Raises ImportError or OSError."""
    import psycopg2._psycopg as extension

    return ctypes.CDLL(extension.__file__)


@functools.cache
def _functions() -> tuple[Any, Any, Any] | None:
    try:
        lib = libpq()
        ssl_struct = lib.PQsslStruct
        set_read_ahead = lib.SSL_set_read_ahead
        has_pending = lib.SSL_has_pending
    except (ImportError, OSError, AttributeError) as exc:
        log.debug("TLS read-ahead unavailable", extra={"reason": str(exc)})
        return None
    ssl_struct.argtypes, ssl_struct.restype = [ctypes.c_void_p, ctypes.c_char_p], ctypes.c_void_p
    set_read_ahead.argtypes, set_read_ahead.restype = [ctypes.c_void_p, ctypes.c_int], None
    has_pending.argtypes, has_pending.restype = [ctypes.c_void_p], ctypes.c_int
    return ssl_struct, set_read_ahead, has_pending


def enable_read_ahead(conn: Any) -> ReadAhead | None:
    """Turn on read-ahead for a psycopg2 connection that uses TLS and already streams (see the
    module docstring); None when it does not use TLS or the functions cannot be found (reading
    then goes on without it)."""
    functions = _functions()
    pgconn = getattr(conn, "pgconn_ptr", None)
    if functions is None or not pgconn:
        return None
    ssl_struct, set_read_ahead, has_pending = functions
    ssl = ssl_struct(ctypes.c_void_p(pgconn), b"OpenSSL")
    if not ssl:
        return None  # a connection without TLS
    set_read_ahead(ctypes.c_void_p(ssl), 1)
    return ReadAhead(has_pending, ssl)
