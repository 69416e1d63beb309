"""A leader arm: a second, unpowered arm the operator moves by hand, mirrored in joint space.

The leader is read through the same servo-bus drivers as a follower
(:class:`~hardware.servo_arm.FeetechArm`, :class:`~hardware.servo_arm.DynamixelArm`), so its
own calibration turns encoder ticks into joint angles (rad) and the gripper handle into a
command (0 open .. 1 closed). On connect the leader's torque is turned off, so it moves freely.
Each read gives a :class:`~hardware.teleop.device.JointCommand`::

    follower joint i = scale[i] * leader joint i + offset[i]
    follower gripper = (leader gripper - gripper_range[0]) / (gripper_range[1] - gripper_range[0])

``scale`` and ``offset`` absorb differences between leader and follower (a joint mounted the
other way round, another zero); the identity fits a leader built like its follower. A leader has
no buttons: pair it with a keyboard for keep/discard
(:class:`~hardware.teleop.with_events.WithEvents`). A read error of the bus is raised, not
hidden, so the loop holds the follower and tells the operator.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from hardware.calibration import ArmCalibration
from hardware.driver import Driver, make_driver
from hardware.teleop.device import DeviceReading, JointCommand, TeleopDevice, register_device


@dataclasses.dataclass(frozen=True)
class LeaderArmConfig:
    """How a leader arm's joints map onto the follower's."""

    scale: tuple[float, ...] | None = None
    """Per-joint factor from leader angle to follower angle; None: 1 for every joint."""
    offset: tuple[float, ...] | None = None
    """Per-joint angle (rad) added after the scale; None: 0 for every joint."""
    gripper_range: tuple[float, float] = (0.0, 1.0)
    """Leader gripper readings that mean follower open (0) and closed (1); kept in [0, 1]."""
    release_torque: bool = True
    """Turn the leader's torque off on connect, so the operator can move it by hand."""

    def __post_init__(self) -> None:
        for name in ("scale", "offset"):
            values = getattr(self, name)
            if values is not None and not (len(values) > 0 and np.isfinite(values).all()):
                raise ValueError(f"{name} must be finite numbers, one per joint, got {values}")
        lo, hi = self.gripper_range
        if not (np.isfinite([lo, hi]).all() and lo != hi):
            raise ValueError(f"gripper_range must be two different numbers, got {(lo, hi)}")


@register_device("leader")
class LeaderArm(TeleopDevice):
    """Joint-space teleop from a leader arm on a servo bus.

    Args:
        config: the joint map and whether to release torque.
        driver: the leader's driver (tests inject one on a bus emulator); else built from
            ``robot``, ``port`` and ``calibration``.
        robot: the leader's driver name (``"feetech"`` or ``"dynamixel"``).
        port: the leader's serial device.
        calibration: the leader's calibration (object or JSON path).
        driver_options: further keyword arguments for the driver (``model``, ``baudrate``).
    """

    def __init__(
        self,
        config: LeaderArmConfig | None = None,
        *,
        driver: Driver | None = None,
        robot: str = "feetech",
        port: str | None = None,
        calibration: ArmCalibration | str | Path | None = None,
        driver_options: dict[str, Any] | None = None,
    ) -> None:
        self.config = config or LeaderArmConfig()
        if driver is None:
            options = driver_options or {}
            driver = make_driver(robot, port=port, calibration=calibration, **options)
        self.driver = driver
        n = driver.spec.dof
        for name in ("scale", "offset"):
            values = getattr(self.config, name)
            if values is not None and len(values) != n:
                raise ValueError(f"{name} has {len(values)} values, the leader has {n} joints")
        self._scale = np.ones(n) if self.config.scale is None else np.asarray(self.config.scale)
        self._offset = np.zeros(n) if self.config.offset is None else np.asarray(self.config.offset)

    def _connect(self) -> None:
        self.driver.connect()
        if self.config.release_torque:
            self.driver.release()

    def _disconnect(self) -> None:
        self.driver.disconnect()

    def read(self) -> DeviceReading:
        state = self.driver.read_state()
        positions = self._scale * np.asarray(state.positions, dtype=np.float64) + self._offset
        gripper = None
        if state.gripper is not None:
            lo, hi = self.config.gripper_range
            gripper = float(np.clip((state.gripper - lo) / (hi - lo), 0.0, 1.0))
        return DeviceReading(JointCommand(positions, gripper), (), state.sensed_at)
