"""Failpoints for the crash tests: kill this process with SIGKILL at a named step boundary.

This module exists only for the integration crash tests (tests/integration/test_crash.py). It does
nothing unless the environment variable ``CDC_FAILPOINT`` is set to the name of a failpoint, and
must never be set in production: ``hit(name)`` then ends the process with SIGKILL, as a crash
(an OOM kill, a Lambda timeout) would, with no exception handler, ``finally`` or lease release.

The names the engine hits, in window order: ``after_read``, ``after_stage``, ``between_merges``
(after a table's MERGE when another table follows), ``after_merge``, ``after_checkpoint`` and
``before_confirm`` (the same point), ``after_confirm``; in a snapshot, ``snapshot_table_swapped``
(after each table is swapped in) and ``snapshot_copying`` (while a table is copied);
``during_merge`` kills a moment after a MERGE was sent. The sink hits ``after_<step>`` after each
statement of a schema evolution (``after_add_column``, ``after_fill_column``, ...).
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "CDC_FAILPOINT"


def hit(name: str) -> None:
    """SIGKILL this process when ``CDC_FAILPOINT`` equals ``name``; otherwise do nothing."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def hit_soon(name: str, delay_s: float) -> None:
    """SIGKILL this process ``delay_s`` from now when ``CDC_FAILPOINT`` equals ``name``: a kill while
    the next statement (a MERGE) is in flight."""
    if os.environ.get(ENV) == name:
        timer = threading.Timer(delay_s, os.kill, (os.getpid(), signal.SIGKILL))
        timer.daemon = True
        timer.start()
