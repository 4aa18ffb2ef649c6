"""Follow mode: windows back to back, for changes visible in seconds rather than on a schedule.

``follow`` runs one window after another in this process. After a window that caught up with the
slot it waits ``idle_wait_s`` (new changes gather meanwhile); after one that stopped on a bound
(more changes are waiting) the next starts at once. A stop request (``stop`` set, e.g. by SIGINT
or SIGTERM) never cuts a window: the current one finishes, with its checkpoint, and the loop ends.
A window that fails for good (a permanent error: configuration, authentication, data) ends the
loop too, since the next one would fail the same way; a transient failure or a lease held by
another run is waited out like an idle slot.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from cdc.model import WindowResult

# stop reasons after which the slot still holds changes the window did not read
MORE_WAITING = frozenset({"max_changes", "time_budget", "schema_change"})


def pause_after(result: WindowResult, idle_wait_s: float) -> float:
    """Seconds to wait before the next window."""
    if result.status in ("applied", "empty") and not result.caught_up and result.stop_reason in MORE_WAITING:
        return 0.0
    return idle_wait_s


def ends_following(result: WindowResult) -> bool:
    """True after a window whose failure the next window would repeat (a permanent error)."""
    return result.status == "failed" and (result.error or {}).get("kind") == "permanent"


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
    while not stop.is_set():
        last = run_window()
        on_result(last)
        if ends_following(last):
            break
        pause = pause_after(last, idle_wait_s)
        if pause and not stop.is_set():
            stop.wait(pause)
    return last
