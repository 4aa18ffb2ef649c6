"""Receiving the slot in a child process, so that parsing overlaps the network and TLS work.

The walsender sends one message per change. On the reading side, receiving a message (libpq,
TLS, psycopg2) costs about as much CPU as parsing it, and in one process both hold the GIL. For a
large backlog, ``PostgresSource.stream_rows`` hands the receiving to a child process (``main``
here): it opens the replication connection and writes what arrives into a pipe, in frames, while
the parent parses on another core. The child only receives: it never confirms a position and
never decides where a window ends (the parent does both, exactly as when it reads in line).

A frame is a 13-byte header (kind, length, LSN) and ``length`` bytes of data:

- ``M``: messages, joined by newlines (wal2json writes each as one line of JSON; a message with a
  newline in it travels alone, as ``O``); LSN: the highest start LSN among them;
- ``O``: one message;
- ``P``: nothing is waiting on the socket: LSN is where the server stands (every commit before it
  was sent); written at least every ``IDLE_POLL_S`` while idle;
- ``E``: the receiving failed: JSON ``{"error": class name, "message": text}``, already classified
  like an in-line failure (``classify_error``).

The parent writes one line of JSON (connection parameters, slot, start) to the child's stdin and
keeps it open: closing it, or the pipe, stops the child, which then closes its connection.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from cdc import errors
from cdc.logs import redact, register_secret
from cdc.source.ping import KEEPALIVE_EVERY_S

HEADER = struct.Struct("<cIQ")
MESSAGES, ONE, POSITION, ERROR = b"M", b"O", b"P", b"E"
BATCH_BYTES = 64 * 1024  # messages gathered before a frame goes out while data flows
PIPE_BYTES = 1 << 20  # the pipe may hold this much: the child reads ahead, then waits for the parent
READ_BYTES = 1 << 20
STOP_TIMEOUT_S = 10.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class Receiver:
    """The parent's end: a running child and the frames it writes (see the module docstring)."""

    def __init__(self, params: dict[str, Any], slot: str, start: int, silence_s: float | None = None) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self._proc = subprocess.Popen(  # noqa: S603 - this interpreter, this package's module
            # -P: the working directory is not put first on sys.path, so no other ``cdc`` there is
            # imported in place of this package (the child runs the same code as the parent)
            [sys.executable, "-P", "-c", "from cdc.source.receiver import main; main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._frames = FrameReader(self._proc.stdout.fileno())
        try:
            # the password travels through the pipe, never in the command line or the environment
            config = {"params": params, "slot": slot, "start": start, "silence_s": silence_s}
            self._proc.stdin.write(json.dumps(config).encode() + b"\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            pass  # the child is gone already: frames() says why

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._proc.pid

    def frames(self, idle_s: float) -> Iterator[tuple[bytes, int, bytes]]:
        """(kind, LSN, data) per frame; ``(POSITION, 0, b"")`` when none came for ``idle_s``
        seconds (the caller looks at its clock). An ``E`` frame, or the child's end, raises."""
        try:
            yield from self._frames.frames(idle_s)
        except EOFError:
            raise self._ended() from None

    def _ended(self) -> errors.CdcError:
        code = self._proc.wait()
        self._stderr.seek(0)
        lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        last = redact(lines[-1])[:300] if lines else "nothing on stderr"
        return errors.SourceUnavailable(
            f"the slot's receiving process ended unexpectedly (exit code {code}: {last}); "
            "the window is read again from the checkpoint"
        )

    def close(self) -> None:
        """Stop the child (it closes its connection) and wait for it."""
        proc = self._proc
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._stderr.close()


class FrameReader:
    """Frames from a pipe, read in large chunks."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buf = bytearray()
        self._pos = 0
        # reads land in one reused buffer: a fresh 1 MB bytes per read would cost page faults
        self._chunk = memoryview(bytearray(READ_BYTES))

    def frames(self, idle_s: float) -> Iterator[tuple[bytes, int, bytes]]:
        """See ``Receiver.frames``; the end of the pipe raises ``EOFError``."""
        header = HEADER.size
        while True:
            buf, pos = self._buf, self._pos
            if len(buf) - pos >= header:
                kind, length, lsn = HEADER.unpack_from(buf, pos)
                end = pos + header + length
                if len(buf) >= end:
                    with memoryview(buf) as view:
                        data = bytes(view[pos + header : end])
                    self._pos = end
                    if kind == ERROR:
                        raise _error(data)
                    yield kind, lsn, data
                    continue
            if pos:
                del buf[:pos]
                self._pos = 0
            if not select.select([self._fd], [], [], idle_s)[0]:
                yield POSITION, 0, b""
                continue
            got = os.readv(self._fd, (self._chunk,))
            if not got:
                if len(buf) > self._pos:
                    raise EOFError(f"the pipe ended inside a frame ({len(buf) - self._pos} bytes)")
                raise EOFError("the pipe ended")
            buf += self._chunk[:got]


def _error(data: bytes) -> errors.CdcError:
    try:
        info = json.loads(data)
        cls = getattr(errors, str(info["error"]), None)
        message = str(info["message"])
    except (ValueError, KeyError, TypeError):
        return errors.SourceError(f"the slot's receiving process sent an unreadable error: {data[:200]!r}")
    if not (isinstance(cls, type) and issubclass(cls, errors.CdcError)):
        cls = errors.SourceError
    return cls(message)


# --- the child ------------------------------------------------------------------------------


def main() -> None:
    """The child: receive from the slot and write frames to stdout until stdin closes."""
    in_fd, out_fd = sys.stdin.fileno(), sys.stdout.fileno()
    gc.disable()  # nothing here makes cycles; collections would only cost time
    try:
        import fcntl

        fcntl.fcntl(out_fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except (ImportError, OSError):
        pass  # a smaller pipe only means the child reads less far ahead
    try:
        config = json.loads(sys.stdin.buffer.readline() or b"null")
        if not isinstance(config, dict):
            return  # the parent went away before it said what to read
        password = config.get("params", {}).get("password")
        if password:
            register_secret(str(password))  # masked in any error this process sends
        _receive(config, in_fd, out_fd)
    except BrokenPipeError:
        pass  # the parent stopped reading: the window ended
    except errors.CdcError as exc:
        _write_error(out_fd, type(exc).__name__, str(exc))
    except Exception as exc:  # anything else still reaches the parent as a clear error
        failed = f"the slot's receiving process failed: {type(exc).__name__}: {exc}"
        _write_error(out_fd, "SourceError", failed)


def _write_error(out_fd: int, name: str, message: str) -> None:
    data = json.dumps({"error": name, "message": redact(message)}).encode()
    with contextlib.suppress(OSError):
        _Out(out_fd, lambda: None).write(HEADER.pack(ERROR, len(data), 0) + data)


class _Out:
    """The child's end of the pipe, written without blocking. ``ask`` (``cdc.source.ping.Asker``,
    which pings at most every ``KEEPALIVE_EVERY_S``) runs after each frame and, while the parent is
    slow to read, every ``KEEPALIVE_EVERY_S`` of waiting: the walsender keeps hearing from the
    reader, so it never asks psycopg2 for a reply. A frame is always written whole: an error
    ``ask`` raises meanwhile waits for its end, so the error frame that follows reads as one."""

    def __init__(self, fd: int, ask: Callable[[], None]) -> None:
        self.fd = fd
        self._ask = ask
        os.set_blocking(fd, False)

    def write(self, *parts: bytes) -> None:
        views = [memoryview(p) for p in parts if p]
        failed: Exception | None = None
        while views:
            try:
                sent = os.writev(self.fd, views)  # no copy of the data into one buffer first
            except BlockingIOError:
                sent = 0
            while views and sent >= len(views[0]):
                sent -= len(views.pop(0))
            if views:
                views[0] = views[0][sent:]
                if not select.select([], [self.fd], [], KEEPALIVE_EVERY_S)[1] and failed is None:
                    failed = self._call_ask()
        if failed is None:
            failed = self._call_ask()
        if failed is not None:
            raise failed

    def _call_ask(self) -> Exception | None:
        try:
            self._ask()
        except Exception as exc:  # raised once the frame is whole
            return exc
        return None


def _receive(config: dict[str, Any], in_fd: int, out_fd: int) -> None:
    import psycopg2

    from cdc.model import Lsn
    from cdc.source.ping import Asker, Silence
    from cdc.source.slot import BATCH_WAIT_S, IDLE_POLL_S, PostgresSource, classify_error
    from cdc.source.tls import enable_read_ahead

    source = PostgresSource(config["params"], config["slot"])
    conn = source.replication_connection()
    try:
        cur = source.start_replication(conn, Lsn(int(config["start"])))
        ahead = enable_read_ahead(conn)  # only now that the connection streams (see cdc.source.tls)
        read = cur.read_message
        ask = Asker(conn, classify_error)  # see cdc.source.ping
        out = _Out(out_fd, ask)
        limit = config.get("silence_s")  # None: from the server, as PostgresSource.silence_limit reads it
        silence = Silence(cur, source.silence_limit() if limit is None else float(limit), ask.able)
        server = int(config["start"])
        batch: list[bytes] = []
        size = 0
        flowing = False
        while True:
            try:
                msg = read()
            except psycopg2.Error as exc:
                raise classify_error(exc, "reading the replication stream") from exc
            if msg is not None:
                flowing = True
                payload = msg.payload
                if msg.data_start > server:
                    server = msg.data_start
                if b"\n" in payload:
                    if batch:
                        _flush(out, batch, server)
                        batch, size = [], 0
                    out.write(HEADER.pack(ONE, len(payload), server), payload)
                    continue
                batch.append(payload)
                size += len(payload) + 1
                if size >= BATCH_BYTES:
                    _flush(out, batch, server)
                    batch, size = [], 0
                continue
            if batch:  # the socket ran dry: hand over what came, then look again
                _flush(out, batch, server)
                batch, size = [], 0
                continue
            if flowing:
                flowing = False
                silence.heard()
                time.sleep(BATCH_WAIT_S)
                continue
            silence.check(time.monotonic())
            if ahead is not None and ahead.pending():
                # TLS records read ahead are waiting: not idle (one read in part waits for its rest)
                if in_fd in select.select([cur, in_fd], [], [], BATCH_WAIT_S)[0]:
                    return
                continue
            if cur.wal_end and cur.wal_end > server:
                server = cur.wal_end
            out.write(HEADER.pack(POSITION, 0, server))  # and asks the server, when it is time
            if in_fd in select.select([cur, in_fd], [], [], IDLE_POLL_S)[0]:
                return  # stdin closed (or written to): the parent is done
    finally:
        conn.close()
        source.close()  # its SQL connection, when it read the silence limit


def _flush(out: _Out, batch: list[bytes], server: int) -> None:
    data = b"\n".join(batch)
    out.write(HEADER.pack(MESSAGES, len(data), server), data)
