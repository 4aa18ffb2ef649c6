"""How much time one run may spend: in Lambda, the invocation's remaining time less what it keeps
free; elsewhere ``window_max_seconds`` for a window's reading and no limit for a snapshot."""

from __future__ import annotations

import math
from collections.abc import Callable

from cdc.errors import ConfigError
from cdc.settings import Settings


class InvocationBudget:
    """The time budgets of an engine's runs. ``time_left`` (seconds, None outside Lambda) is the
    invocation's remaining time, read anew at each question."""

    def __init__(self, settings: Settings, time_left: Callable[[], float] | None) -> None:
        self.settings = settings
        self.time_left = time_left
        self._reserve_checked = False

    @property
    def reserved_s(self) -> int:
        """Invocation time kept free after reading: the safety margin and the time to apply."""
        return self.settings.window_safety_margin_s + self.settings.window_apply_margin_s

    def _left_s(self) -> float:
        """The invocation's remaining time minus ``reserved_s``; no limit outside Lambda."""
        return math.inf if self.time_left is None else self.time_left() - self.reserved_s

    def read_s(self) -> float:
        """Seconds a window may spend reading: ``window_max_seconds``, and in Lambda no more than
        the remaining time minus the safety margin and the time kept for staging and applying."""
        return max(min(float(self.settings.window_max_seconds), self._left_s()), 0.0)

    def snapshot_s(self, automatic: bool = False) -> float:
        """Seconds a snapshot may take: in Lambda, the invocation's remaining time minus the same
        margins as a window's; elsewhere no limit (``window_max_seconds`` bounds a window's reading,
        not a copy: ``cdc snapshot`` copies tables too large for an invocation), except for an
        ``automatic`` re-snapshot, which the other tables' changes wait for: ``window_max_seconds``."""
        if automatic and self.time_left is None:
            return float(self.settings.window_max_seconds)
        return max(self._left_s(), 0.0)

    def check_reserve(self) -> None:
        """An invocation shorter than the time kept free could never read a change: say so once,
        at its first window, instead of running empty windows."""
        if self.time_left is None or self._reserve_checked:
            return
        self._reserve_checked = True
        left, reserved = self.time_left(), self.reserved_s
        if left <= reserved:
            raise ConfigError(
                [
                    f"the invocation had {left:.0f} s left when its first window started, not more than "
                    f"window_safety_margin_s + window_apply_margin_s = {reserved} s, so no window could "
                    "read: raise the Lambda timeout or lower CDC_WINDOW_APPLY_MARGIN_S (time kept for "
                    "applying) or CDC_WINDOW_SAFETY_MARGIN_S"
                ]
            )
