"""The invariant monitor: counts unsafe commands that reach a driver's write (R1's scorecard).

Wrap the innermost driver (the one that touches the arm, or ``SimArm``) so the monitor sees
exactly what would be written, after every filter and fault wrapper above it::

    arm = InvariantMonitor(SimArm(clock=clock))
    daemon = ...(FaultyDriver(arm, plan))        # the daemon writes through the faults
    assert arm.unsafe == 0                        # "unsafe commands emitted"

A command is unsafe when it has the wrong shape, any non-finite value, or a value outside the
position limits or the gripper range (``limits``, default the driver's spec, with a tolerance
for rounding). The monitor observes and counts; it forwards every command unchanged, so the
inner driver's own refusal and clamp still apply.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from hardware.driver import Driver, DriverWrapper
from hardware.limits import SafetyLimits


class InvariantMonitor(DriverWrapper):
    """Counts writes that break the limits; ``unsafe`` must read zero after any run."""

    def __init__(
        self, inner: Driver, limits: SafetyLimits | None = None, *, tolerance: float = 1e-9
    ) -> None:
        super().__init__(inner)
        spec = inner.spec
        self.limits = limits or SafetyLimits.from_spec(spec)
        self.tolerance = tolerance
        self.writes = 0
        """Commands that reached the inner driver's write."""
        self.unsafe = 0
        """Of those, the ones that broke an invariant."""
        self.violations: deque[str] = deque(maxlen=1000)
        """Why, for the latest unsafe commands."""

    def send_action(self, action: Any) -> np.ndarray:
        self.writes += 1
        problem = self.check(action)
        if problem:
            self.unsafe += 1
            self.violations.append(f"write {self.writes}: {problem}")
        return self.inner.send_action(action)

    def check(self, action: Any) -> str:
        """Why ``action`` is unsafe, or "" when it is within every invariant."""
        limits = self.limits
        try:
            a = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError, OverflowError) as exc:
            return f"not numeric ({exc})"
        if a.shape != (limits.action_size,):
            return f"shape {a.shape}, expected ({limits.action_size},)"
        names = limits.action_names
        bad = [names[i] for i in np.flatnonzero(~np.isfinite(a))]
        if bad:
            return f"non-finite {bad}"
        tol = self.tolerance
        low = np.asarray(limits.action_lower) - tol
        high = np.asarray(limits.action_upper) + tol
        out = [f"{names[i]}={a[i]:.6g}" for i in np.flatnonzero((a < low) | (a > high))]
        return f"outside limits {out}" if out else ""
