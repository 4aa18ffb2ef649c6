"""Progress lines on a terminal and elsewhere (no servers; a fake clock and an in-memory stream)."""

from __future__ import annotations

import io

from cdc.progress import ProgressLine, WorkProgress, bar, clock_text, time_left
from cdc.snapshot.run import SnapshotProgress
from cdc.snapshot_mode import ProgressPrinter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bar_clock_text_and_time_left() -> None:
    assert bar(0.0, 10) == "[----------]"
    assert bar(0.5, 10) == "[#####-----]"
    assert bar(1.7, 4) == "[####]"
    assert [clock_text(s) for s in (0, 7.4, 65, 3729, None, -1)] == [
        "0:00",
        "0:07",
        "1:05",
        "1:02:09",
        "?",
        "?",
    ]
    assert time_left(25, 100, 10.0) == 30.0
    assert time_left(0, 100, 10.0) is None
    assert time_left(100, 100, 10.0) == 0.0
    assert time_left(0, 0, 0.0) == 0.0


def test_plain_progress_is_one_line_per_window_with_rows_rate_and_time_left() -> None:
    out, clock = io.StringIO(), Clock()
    progress = WorkProgress(ProgressLine(out, tty=False, clock=clock), "window", clock=clock)
    progress.start(4, 1000)
    for rows in (100, 300, 0, 600):
        clock.now += 2.0
        progress.advance(rows, f"W{rows}: 1 tables, {rows} rows applied")
    progress.note("note: done")
    progress.finish()
    assert out.getvalue().splitlines() == [
        "window 1/4 W100: 1 tables, 100 rows applied; 100/1,000 rows, 50 rows/s, 0:18 left",
        "window 2/4 W300: 1 tables, 300 rows applied; 400/1,000 rows, 100 rows/s, 0:06 left",
        "window 3/4 W0: 1 tables, 0 rows applied; 400/1,000 rows, 67 rows/s, 0:09 left",
        "window 4/4 W600: 1 tables, 600 rows applied; 1,000/1,000 rows, 125 rows/s, 0:00 left",
        "note: done",
    ]
    assert "\r" not in out.getvalue() and "\033" not in out.getvalue()


def test_terminal_progress_redraws_one_line_throttled_and_ends_it() -> None:
    out, clock = io.StringIO(), Clock()
    progress = WorkProgress(ProgressLine(out, tty=True, clock=clock), "window", clock=clock)
    progress.start(3, 0)  # no rows staged: time left follows the windows
    clock.now += 1.0
    progress.advance(0, "detail", label="A")
    clock.now += 0.05  # within 0.2 s of the last draw: skipped
    progress.advance(0, "detail", label="B")
    clock.now += 0.05
    progress.advance(0, "detail", label="C")  # the last window always draws
    progress.finish()
    text = out.getvalue()
    assert text.count("\r\033[K") == 2 and text.endswith("\n") and text.count("\n") == 1
    first, last = text.split("\r\033[K")[1:]
    assert first == "[########----------------] 1/3 windows  0/0 rows  0 rows/s  0:02 left  A"
    assert last == "[########################] 3/3 windows  0/0 rows  0 rows/s  0:00 left  C\n"


def test_a_note_on_a_terminal_clears_the_bar_and_stays() -> None:
    out, clock = io.StringIO(), Clock()
    line = ProgressLine(out, tty=True, clock=clock)
    line.show("bar 1")
    line.message("note: kept")
    line.show("bar 2", force=True)
    line.end()
    assert out.getvalue() == "\r\033[Kbar 1\r\033[Knote: kept\n\r\033[Kbar 2\n"


def test_snapshot_printer_throttles_copy_steps_but_shows_load_and_done() -> None:
    out = io.StringIO()
    printer = ProgressPrinter(out, tty=False)
    printer(SnapshotProgress("copy", "s.t", 0, 2, 1000, 2_000_000, 1, 4.0))
    printer(SnapshotProgress("copy", "s.t", 0, 2, 2000, 2_000_000, 1, 4.0))  # within 10 s: not shown
    printer(SnapshotProgress("load", "s.t", 0, 2, 4000, 2_000_000, 1, 4.0))
    printer(SnapshotProgress("done", "s.t", 0, 2, 4000, 2_000_000, 1, 4.0))
    assert out.getvalue().splitlines() == [
        "[------------] table 1/2 s.t: copy 1,000 rows, 2.0 MB, 1 parts, 250 rows/s, 0:04",
        "[------------] table 1/2 s.t: load 4,000 rows, 2.0 MB, 1 parts, 1,000 rows/s, 0:04",
        "[######------] table 1/2 s.t: done 4,000 rows, 2.0 MB, 1 parts, 1,000 rows/s, 0:04",
    ]
