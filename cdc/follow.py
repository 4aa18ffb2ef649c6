"""Follow mode: windows back to back, for changes visible in seconds rather than on a schedule.

``follow`` runs one window after another in this process. After a window that caught up with the
slot it waits ``idle_wait_s`` (new changes gather meanwhile); after one that stopped on a bound
(more changes are waiting) the next starts at once. A stop request (``stop`` set, e.g. by SIGINT
or SIGTERM) never cuts a window: the current one finishes, with its checkpoint, and the loop ends.
A window that fails for good (a permanent error: configuration, authentication, data) ends the
loop too, since the next one would fail the same way, and so does a snapshot that did not finish
(outside Lambda only a snapshot with a time limit stops early). A transient failure or a lease held
by another run is waited out: at least the idle wait, and longer while they go on (``SETBACK_FIRST_S``
doubling up to ``SETBACK_MAX_S``), so an outage or a long run elsewhere is not polled at full speed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from cdc.model import WindowResult

# stop reasons after which the slot still holds changes the window did not read
MORE_WAITING = frozenset({"max_changes", "time_budget", "schema_change"})
SETBACKS = frozenset({"failed", "lease_held"})  # windows that moved nothing (when not permanent)
SETBACK_FIRST_S = 1.0
SETBACK_MAX_S = 60.0


def pause_after(result: WindowResult, idle_wait_s: float, setbacks: int = 0) -> float:
    """Seconds to wait before the next window; ``setbacks``: how many windows in a row, this one
    included, failed or found the lease held."""
    if result.status in ("applied", "empty") and not result.caught_up and result.stop_reason in MORE_WAITING:
        return 0.0
    if result.status in SETBACKS:
        backoff = min(SETBACK_MAX_S, SETBACK_FIRST_S * 2 ** max(setbacks - 1, 0))
        return max(idle_wait_s, backoff)
    return idle_wait_s


def ends_following(result: WindowResult) -> bool:
    """True after a window the next one would repeat: a permanent error, an unfinished snapshot."""
    permanent = result.status == "failed" and (result.error or {}).get("kind") == "permanent"
    return permanent or result.status == "snapshot_incomplete"


def follow(
    run_window: Callable[[], WindowResult],
    on_result: Callable[[WindowResult], None],
    stop: threading.Event,
    idle_wait_s: float,
) -> WindowResult | None:
    """Run windows until ``stop`` is set or a window fails for good; return the last result."""
    if idle_wait_s < 0:
        raise ValueError(f"idle wait must be 0 seconds or more, got {idle_wait_s}")
    last: WindowResult | None = None
    setbacks = 0
    while not stop.is_set():
        last = run_window()
        on_result(last)
        if ends_following(last):
            break
        setbacks = setbacks + 1 if last.status in SETBACKS else 0
        pause = pause_after(last, idle_wait_s, setbacks)
        if pause and not stop.is_set():
            stop.wait(pause)
    return last
