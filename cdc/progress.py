"""Progress of long command-line work (snapshot, replay, rebuild).

On a terminal one line is redrawn in place (a bar with counts, rate and time left); anywhere else
(a pipe, a log file, CI) every update that is shown is a plain line of its own, so nothing depends
on cursor control. Updates are throttled: at most one per ``every_s`` unless forced.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

TTY_EVERY_S = 0.2
PLAIN_EVERY_S = 10.0


def bar(fraction: float, width: int = 24) -> str:
    """``[#########---------------]`` for a fraction in [0, 1] (clamped)."""
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def clock_text(seconds: float | None) -> str:
    """``0:07``, ``12:05``, ``3:02:09``; ``?`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:  # None, NaN, negative
        return "?"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def time_left(done: float, total: float, elapsed_s: float) -> float | None:
    """Seconds left at the rate so far; None before anything is done, 0 when all is."""
    if total <= 0 or done >= total:
        return 0.0
    if done <= 0 or elapsed_s <= 0:
        return None
    return elapsed_s * (total - done) / done


class ProgressLine:
    """Writes progress to ``stream``: redrawn in place when ``tty``, else one plain line per update."""

    def __init__(
        self,
        stream: Any,
        tty: bool,
        *,
        every_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.tty = tty
        self.every_s = (TTY_EVERY_S if tty else PLAIN_EVERY_S) if every_s is None else every_s
        self._clock = clock
        self._last: float | None = None
        self._drawn = False  # a line is on the terminal without its newline

    def show(self, text: str, *, force: bool = False) -> bool:
        """Show ``text`` unless the last update is younger than ``every_s`` (``force`` always shows)."""
        now = self._clock()
        if not force and self._last is not None and now - self._last < self.every_s:
            return False
        self._last = now
        if self.tty:
            self.stream.write("\r\033[K" + text)
            self._drawn = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        return True

    def message(self, text: str) -> None:
        """A line that stays (a note, a finished step); the next ``show`` draws below it."""
        if self._drawn:
            self.stream.write("\r\033[K")
            self._drawn = False
        self.stream.write(text.rstrip() + "\n")
        self.stream.flush()

    def end(self) -> None:
        """Leave the last drawn line on the terminal."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


class WorkProgress:
    """Progress through a known number of units (windows) holding a known number of rows.

    On a terminal: ``[####----] 12/40 windows  34,500/120,000 rows  2,300 rows/s  0:37 left  <label>``.
    Otherwise one plain line per unit: ``window 12/40 <detail>; 34,500/120,000 rows, 2,300 rows/s,
    0:37 left``.
    """

    def __init__(
        self, line: ProgressLine, unit: str = "window", clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.line = line
        self.unit = unit
        self._clock = clock
        self.units = 0
        self.rows = 0
        self.done_units = 0
        self.done_rows = 0
        self._started = clock()

    def start(self, units: int, rows: int) -> None:
        """Begin a run of ``units`` units holding ``rows`` rows (the clock starts now)."""
        self.units, self.rows = units, rows
        self.done_units = self.done_rows = 0
        self._started = self._clock()

    def advance(self, rows: int, detail: str, label: str = "") -> None:
        """One unit is done (it held ``rows`` rows); ``detail`` describes it in plain lines,
        ``label`` (default ``detail``) names it after the bar."""
        self.done_units += 1
        self.done_rows += rows
        elapsed = self._clock() - self._started
        rate = self.done_rows / elapsed if elapsed > 0 else 0.0
        if self.rows > 0:
            left = time_left(self.done_rows, self.rows, elapsed)
        else:
            left = time_left(self.done_units, self.units, elapsed)
        figures = f"{self.done_rows:,}/{self.rows:,} rows, {rate:,.0f} rows/s, {clock_text(left)} left"
        if self.line.tty:
            fraction = self.done_rows / self.rows if self.rows else self.done_units / max(self.units, 1)
            text = (
                f"{bar(fraction)} {self.done_units}/{self.units} {self.unit}s  "
                f"{figures.replace(', ', '  ')}  {label or detail}"
            )
            self.line.show(text, force=self.done_units >= self.units)
        else:
            self.line.show(f"{self.unit} {self.done_units}/{self.units} {detail}; {figures}", force=True)

    def note(self, text: str) -> None:
        self.line.message(text)

    def finish(self) -> None:
        self.line.end()
