"""Follow mode's loop: when it pauses, when it goes on at once, when it stops."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from cdc.follow import follow, pause_after
from cdc.model import WindowResult


def result(status: str, caught_up: bool = True, stop_reason: str = "wal_end", kind: str = "") -> WindowResult:
    error = {"class": "X", "message": "m", "kind": kind} if status == "failed" else None
    return WindowResult("p", "w", status, caught_up=caught_up, stop_reason=stop_reason, error=error)  # type: ignore[arg-type]


class Recorder(threading.Event):
    """A stop event that records each wait and can set itself after some windows."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        return self.is_set()


def run(results: list[WindowResult], stop_after: int | None = None, idle: float = 2.0) -> tuple[Any, ...]:
    stop = Recorder()
    seen: list[str] = []
    queue = list(results)

    def run_window() -> WindowResult:
        r = queue.pop(0)
        if stop_after is not None and len(seen) + 1 >= stop_after:
            stop.set()  # a signal while this window runs
        return r

    def on_result(r: WindowResult) -> None:
        seen.append(r.status)

    last = follow(run_window, on_result, stop, idle)
    return last, seen, stop.waits


def test_waits_after_caught_up_and_goes_on_at_once_when_more_is_waiting() -> None:
    windows = [
        result("applied", caught_up=False, stop_reason="max_changes"),
        result("applied", caught_up=False, stop_reason="time_budget"),
        result("applied"),
        result("empty"),
        result("lease_held", caught_up=False, stop_reason=""),
        result("failed", caught_up=False, stop_reason="", kind="transient"),
        result("applied"),
    ]
    last, seen, waits = run(windows, stop_after=7)
    assert seen == ["applied", "applied", "applied", "empty", "lease_held", "failed", "applied"]
    assert waits == [2.0, 2.0, 2.0, 2.0]  # none after the two bounded windows; none after the stop
    assert last is windows[-1]


def test_a_stop_during_a_window_lets_it_finish_and_runs_no_other() -> None:
    last, seen, waits = run([result("applied"), result("applied")], stop_after=1)
    assert (seen, waits, last.status) == (["applied"], [], "applied")


def test_a_permanent_failure_ends_following() -> None:
    windows = [
        result("applied"),
        result("failed", caught_up=False, stop_reason="", kind="permanent"),
        result("applied"),
    ]
    last, seen, waits = run(windows)
    assert (seen, waits, last.status) == (["applied", "failed"], [2.0], "failed")


def test_pause_rules() -> None:
    assert pause_after(result("applied", caught_up=False, stop_reason="schema_change"), 1.5) == 0.0
    assert pause_after(result("empty", caught_up=True, stop_reason="caught_up"), 1.5) == 1.5
    assert pause_after(result("snapshot", caught_up=False, stop_reason=""), 1.5) == 1.5


def test_a_negative_idle_wait_is_refused() -> None:
    with pytest.raises(ValueError, match="idle wait must be 0 seconds or more, got -1"):
        follow(lambda: result("empty"), lambda r: None, threading.Event(), -1)


def test_failures_and_a_held_lease_in_a_row_are_waited_out_longer_and_longer() -> None:
    held = result("lease_held", caught_up=False, stop_reason="")
    transient = result("failed", caught_up=False, stop_reason="", kind="transient")
    windows = [held, held, transient, held] + [held] * 6 + [result("applied"), held, result("applied")]
    last, seen, waits = run(windows, stop_after=len(windows), idle=0.0)
    # 1, 2, 4, ... s while nothing moves (the idle wait of 0 s would poll at full speed), at most
    # a minute; a window that moves starts the count again
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0, 60.0, 1.0]
    assert pause_after(held, 90.0, setbacks=1) == 90.0  # never shorter than the idle wait


def test_an_unfinished_snapshot_ends_following() -> None:
    windows = [result("snapshot_incomplete", caught_up=False, stop_reason=""), result("applied")]
    last, seen, waits = run(windows)
    assert (seen, waits, last.status) == (["snapshot_incomplete"], [], "snapshot_incomplete")
