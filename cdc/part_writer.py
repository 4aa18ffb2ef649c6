"""A window's parts, written one after another on one background thread.

The reader hands over a full part and reads on; it waits only when ``depth`` parts are already
waiting to be written (that bounds the rows held in memory). Parts are written in the order they
were handed over, so each table's files stay in part order. The first error of a part is raised
to the reader at its next ``put`` or at ``close``, and the parts after it are not written.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from cdc.model import StagedFile

Done = Callable[[StagedFile], None]
_STOP = None


class PartWriter:
    def __init__(self, depth: int = 2) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self._queue: queue.Queue[tuple[Callable[[], StagedFile], Done] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def put(self, write: Callable[[], StagedFile], done: Done) -> None:
        """Queue ``write`` (it returns the written file, handed to ``done`` on the writer thread)."""
        self._raise()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="cdc-part-writer", daemon=True)
            self._thread.start()
        self._queue.put((write, done))

    def close(self) -> None:
        """Wait until every queued part is written; raise the first error of any."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            item: Any = self._queue.get()
            if item is _STOP:
                return
            if self._error is not None:
                continue  # after a failed part nothing more is written; the reader is told
            write, done = item
            try:
                done(write())
            except BaseException as exc:  # handed to the reading thread by put() or close()
                self._error = exc
