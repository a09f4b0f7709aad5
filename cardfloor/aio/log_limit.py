"""Rate limits for repeated warnings: a peer that keeps misbehaving must not fill the disk.

A server logs the first lines of each kind as usual; past ``burst`` lines in ``interval``
seconds it drops them and counts them, and the next line it lets through carries the count
(``suppressed=N``), so nothing is lost from the story, only the repetition.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Window:
    start: float
    logged: int = 0
    suppressed: int = 0


class LogRateLimit:
    """Lets at most ``burst`` lines per event name through in each ``interval`` seconds."""

    def __init__(
        self,
        *,
        burst: int = 10,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self._burst = burst
        self._interval = interval
        self._clock = clock
        # One entry per event name the program logs through it: a handful, never per peer.
        self._windows: dict[str, _Window] = {}

    def allow(self, event: str) -> int | None:
        """None to drop this line (it is counted); else the count dropped before it, to log
        as ``suppressed=`` (0 when none were)."""
        now = self._clock()
        window = self._windows.get(event)
        if window is None or now - window.start >= self._interval:
            suppressed = 0 if window is None else window.suppressed
            self._windows[event] = _Window(now, 1)
            return suppressed
        if window.logged < self._burst:
            window.logged += 1
            suppressed, window.suppressed = window.suppressed, 0
            return suppressed
        window.suppressed += 1
        return None
