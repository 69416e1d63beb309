"""Driver faults switched on and off from another thread while a daemon runs.

:class:`~hardware.faults.FaultyDriver` injects faults at planned times; a fault campaign whose
director waits for the daemon to recover before the next fault (so a slow machine stretches
the campaign instead of overlapping its faults) needs them on command instead:

    arm = FaultSwitch(SimArm())
    arm.switch(FaultKind.STALE)      # readings freeze
    arm.switch(None)                 # healthy again

The kinds and their effects are the planned ones': ``stale`` (``read_state`` keeps returning
the last reading), ``nan_state`` (every position and velocity reads NaN), ``write_error``
(``send_action`` raises :class:`~hardware.driver.DriverError`) and ``estop`` (readings report
``estopped``, writes raise :class:`~hardware.driver.EStopError`). ``injected`` counts each
switch-on.

A switch and a read never overlap (one lock), and :meth:`FaultSwitch.switch` returns the clock
time it took effect: every reading returned before that time was taken before it, every reading
after it shows the fault. So "the first tick that saw the e-stop" is exact, not a guess.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from typing import Any

import numpy as np

from hardware.driver import ArmState, Driver, DriverError, DriverWrapper, EStopError
from hardware.faults import FaultKind

SWITCHABLE = (FaultKind.STALE, FaultKind.NAN_STATE, FaultKind.WRITE_ERROR, FaultKind.ESTOP)


class FaultSwitch(DriverWrapper):
    """``inner`` with at most one fault of :data:`SWITCHABLE` active, switched from outside."""

    def __init__(self, inner: Driver) -> None:
        super().__init__(inner)
        self.active: FaultKind | None = None
        """The fault now in effect (None: healthy)."""
        self.injected: Counter[FaultKind] = Counter()
        """How many times each kind was switched on."""
        self._last: ArmState | None = None
        self._lock = threading.Lock()

    def switch(self, kind: FaultKind | str | None) -> float:
        """Put ``kind`` into effect from the next call on (None: clear the fault); returns the
        clock time it took effect."""
        kind = None if kind is None else FaultKind(kind)
        if kind is not None and kind not in SWITCHABLE:
            raise ValueError(f"{kind} cannot be switched; choose one of {SWITCHABLE}")
        with self._lock:
            if kind is not None and kind is not self.active:
                self.injected[kind] += 1
            self.active = kind
            return self.clock.monotonic()

    def read_state(self) -> ArmState:
        with self._lock:
            kind = self.active
            if kind is FaultKind.STALE and self._last is not None:
                return self._last
            state = self.inner.read_state()
            self._last = state
        if kind is FaultKind.ESTOP:
            return dataclasses.replace(state, estopped=True)
        if kind is FaultKind.NAN_STATE:
            nan = np.full_like(state.positions, np.nan)
            velocities = None if state.velocities is None else nan.copy()
            return dataclasses.replace(state, positions=nan, velocities=velocities)
        return state

    def send_action(self, action: Any) -> np.ndarray:
        kind = self.active
        if kind is FaultKind.ESTOP:
            raise EStopError("switched e-stop: the arm is emergency-stopped")
        if kind is FaultKind.WRITE_ERROR:
            raise DriverError("switched write failure")
        return self.inner.send_action(action)
