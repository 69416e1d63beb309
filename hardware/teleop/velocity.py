"""Stick deflections to end-effector deltas: a deadzone, a speed, and the time between reads.

Gamepads and the SpaceMouse report how far each axis is deflected, not where to go.
:class:`VelocityInput` reads that deflection ``(6,)`` in ``[-1, 1]`` — (x, y, z) then rotations
about (x, y, z), in the arm's base frame — as a velocity: full deflection is ``linear_speed``
m/s and ``angular_speed`` rad/s, applied over the time since the previous read on the injected
clock (capped at ``max_interval``, so a stalled loop never turns into a jump).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hardware.clock import Clock
from hardware.teleop.device import EndEffectorCommand


@dataclasses.dataclass(frozen=True)
class VelocityConfig:
    """How far a deflected stick moves the end-effector target."""

    linear_speed: float = 0.1
    """Target speed (m/s) at full deflection."""
    angular_speed: float = 0.5
    """Target turn rate (rad/s) at full deflection."""
    deadzone: float = 0.1
    """Deflection (fraction of full) read as zero: sticks do not rest exactly at the centre."""
    max_interval: float = 0.1
    """Longest time (s) one read integrates."""

    def __post_init__(self) -> None:
        for name in ("linear_speed", "angular_speed", "max_interval"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive, got {value}")
        if not 0 <= self.deadzone < 1:
            raise ValueError(f"deadzone must be in [0, 1), got {self.deadzone}")


class VelocityInput:
    """Turns deflections into :class:`EndEffectorCommand` deltas on a clock."""

    def __init__(self, config: VelocityConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self._last: float | None = None

    def restart(self) -> None:
        """Forget the previous read: the next one integrates nothing (after a pause)."""
        self._last = None

    def command(
        self, deflection: np.ndarray, gripper: float | None
    ) -> tuple[EndEffectorCommand | None, float]:
        """The delta for ``deflection`` (6,) held since the last call, and the time now."""
        now = self.clock.monotonic()
        interval = 0.0 if self._last is None else min(now - self._last, self.config.max_interval)
        self._last = now
        d = np.clip(np.nan_to_num(np.asarray(deflection, dtype=np.float64)), -1.0, 1.0)
        dz = self.config.deadzone
        d = np.sign(d) * np.maximum(np.abs(d) - dz, 0.0) / (1.0 - dz)
        if not d.any() and gripper is None:
            return None, now
        return (
            EndEffectorCommand(
                translation=d[:3] * self.config.linear_speed * interval,
                rotation=d[3:] * self.config.angular_speed * interval,
                gripper=gripper,
            ),
            now,
        )
