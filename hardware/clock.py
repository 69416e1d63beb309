"""Injectable time: a ``Clock`` is ``monotonic()`` and ``sleep()``, real or virtual.

Every driver, wrapper and (later) the control daemon takes a clock instead of calling
:mod:`time`, so the watchdog, latency and overrun logic can run on virtual time in tests:

    clock = VirtualClock()
    arm = SimArm(clock=clock)        # physics follows the clock
    clock.sleep(0.02)                # 20 ms pass at once, deterministically

Timestamps (``ArmState.sensed_at``, a chunk's due time) are seconds on the clock that made them;
compare times only from the same clock. :class:`Rate` paces a fixed-rate loop on any clock.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """A monotonic time source that can also wait."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (the origin is arbitrary)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a negative or zero wait returns at once)."""
        ...


class SystemClock:
    """The machine's monotonic clock: ``time.monotonic`` and ``time.sleep``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


class VirtualClock:
    """Time that moves only when told: ``sleep`` and ``advance`` move it forward at once.

    Thread-safe. Tests drive watchdogs and fault plans with it; nothing ever really waits.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (negative or NaN values are ignored)."""
        if seconds > 0:
            with self._lock:
                self._now += float(seconds)

    def __repr__(self) -> str:
        return f"VirtualClock(now={self.monotonic():.6f})"


class Rate:
    """A fixed-rate loop's ticks on ``clock``, every ``period`` seconds from now.

    ``due`` is when the current tick was due; :meth:`wait` sleeps until the next one is. A tick
    that ran past whole periods skips the ticks it missed instead of running them in a burst.
    """

    def __init__(self, clock: Clock, period: float) -> None:
        if not (math.isfinite(period) and period > 0):
            raise ValueError(f"period must be a positive number of seconds, got {period}")
        self.clock = clock
        self.period = period
        self.start = clock.monotonic()
        """When the first tick was due."""
        self._k = 0

    @property
    def due(self) -> float:
        """When the current tick was due (clock seconds)."""
        return self.start + self._k * self.period

    def wait(self) -> int:
        """Sleep until the next tick is due; returns how many ticks were skipped (0 on time)."""
        self._k += 1
        now = self.clock.monotonic()
        missed = max(0, int((now - self.due) / self.period))
        self._k += missed
        self.clock.sleep(self.due - now)
        return missed


SYSTEM_CLOCK = SystemClock()
"""The shared real clock, the default everywhere a clock is optional."""
