"""Serial-bus servo arms (SO-100/SO-101 on Feetech, Koch on Dynamixel) as drivers.

One servo per joint plus an optional gripper servo, all on one bus. The calibration
(:mod:`hardware.calibration`) gives joint names, servo ids, the tick <-> radian map and the
position limits, so the spec is known before connecting. Reads are one sync read of
Present_Position; writes are one sync write of Goal_Position; ``connect`` checks every servo's
model number and enables torque. The transport is injected (or opened from ``port``)::

    arm = FeetechArm("/dev/ttyACM0", calibration="so101.json")
    arm = FeetechArm(calibration=cal, transport=PosixTransport(emulator.path))   # tests
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from hardware.buses.base import ControlTable, ServoBus
from hardware.buses.dynamixel import MODELS as DYNAMIXEL_MODELS
from hardware.buses.dynamixel import DynamixelBus
from hardware.buses.feetech import MODELS as FEETECH_MODELS
from hardware.buses.feetech import FeetechBus
from hardware.calibration import ArmCalibration
from hardware.clock import Clock
from hardware.driver import ArmState, Driver, DriverError, JointSpec, register_driver
from hardware.transport import Transport, open_serial
from robopolicy.config import did_you_mean


class ServoArm(Driver):
    """An arm of serial-bus servos; subclasses pick the protocol and the servo models.

    Args:
        port: serial device (``/dev/ttyACM0``); unused when ``transport`` is given.
        calibration: an :class:`ArmCalibration` or the path of its JSON file.
        transport: an open transport to use instead of opening ``port`` (left open on
            disconnect: its owner closes it).
        model: servo model, e.g. ``"sts3215"`` or ``"xl330-m288"`` (default per protocol).
        baudrate: bus speed when opening ``port``.
        velocity_limit: joint speed limit(s) for the spec (rad/s), one or per joint; a
            conservative default, not a maker's figure — set it for your servos and load.
        timeout: seconds to wait for each servo's reply.
        release_on_disconnect: turn torque off when disconnecting (the arm goes limp).
    """

    bus_class: ClassVar[type[ServoBus]]
    models: ClassVar[dict[str, ControlTable]]
    default_model: ClassVar[str]

    def __init__(
        self,
        port: str | None = None,
        *,
        calibration: ArmCalibration | str | Path,
        transport: Transport | None = None,
        model: str | None = None,
        baudrate: int = 1_000_000,
        velocity_limit: float | Sequence[float] = 3.0,
        timeout: float = 0.05,
        release_on_disconnect: bool = False,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(calibration, ArmCalibration):
            calibration = ArmCalibration.load(calibration)
        model = model or self.default_model
        if model not in self.models:
            raise DriverError(f"unknown servo model {model!r}{did_you_mean(model, self.models)}")
        self.calibration = calibration
        self.table = self.models[model]
        if self.table.resolution != calibration.resolution:
            raise DriverError(
                f"calibration is for {calibration.resolution} ticks/turn, "
                f"{model} has {self.table.resolution}"
            )
        lower, upper = calibration.limits()
        n = len(calibration.joints)
        speeds = velocity_limit if isinstance(velocity_limit, Sequence) else [velocity_limit] * n
        spec = JointSpec(
            names=tuple(calibration.joints),
            lower=lower,
            upper=upper,
            velocity=tuple(float(v) for v in speeds),
            gripper=(0.0, 1.0) if calibration.gripper else None,
        )
        super().__init__(spec, clock)
        self.port = port
        self.baudrate = baudrate
        self.timeout = timeout
        self.release_on_disconnect = release_on_disconnect
        self._injected = transport
        self._transport: Transport | None = None
        self.bus: ServoBus | None = None
        self._joint_ids = [j.id for j in calibration.joints.values()]

    def _connect(self) -> None:
        if self._injected is None and self.port is None:
            raise DriverError(f"{self.name}: give a serial port or a transport")
        transport = self._injected or open_serial(str(self.port), self.baudrate)
        bus = self.bus_class(transport, self.table, timeout=self.timeout)
        try:
            for servo_id in self.calibration.ids:
                number = bus.read(servo_id, self.table.model_register)
                if number != self.table.model_number:
                    raise DriverError(
                        f"servo {servo_id} reports model number {number}, expected "
                        f"{self.table.model_number} ({self.table.model})"
                    )
            bus.set_torque(self.calibration.ids, True)
        except BaseException:
            if transport is not self._injected:
                transport.close()
            raise
        self._transport, self.bus = transport, bus

    def _disconnect(self) -> None:
        try:
            if self.release_on_disconnect:
                self.release()
        finally:
            if self._transport is not None and self._transport is not self._injected:
                self._transport.close()
            self._transport = self.bus = None

    def _read_state(self) -> ArmState:
        bus = self._bus()
        before = self.clock.monotonic()
        raw = bus.sync_read(self.calibration.ids, self.table.present_position)
        after = self.clock.monotonic()
        gripper = self.calibration.gripper
        return ArmState(
            positions=self.calibration.to_radians([raw[i] for i in self._joint_ids]),
            gripper=None if gripper is None else self.calibration.gripper_command(raw[gripper.id]),
            sensed_at=(before + after) / 2,
        )

    def _write(self, action: np.ndarray) -> np.ndarray:
        cal, n = self.calibration, self.spec.dof
        ticks = cal.to_ticks(action[:n])
        values = {i: int(t) for i, t in zip(self._joint_ids, ticks, strict=True)}
        sent = cal.to_radians(ticks)
        if cal.gripper is not None:
            values[cal.gripper.id] = cal.gripper_ticks(action[n])
            sent = np.append(sent, cal.gripper_command(values[cal.gripper.id]))
        self._bus().sync_write(self.table.goal_position, values)
        return sent

    def release(self) -> bool:
        """Torque off on every servo: the arm goes limp (the next connect re-enables it)."""
        self._bus().set_torque(self.calibration.ids, False)
        return True

    def _bus(self) -> ServoBus:
        if self.bus is None:
            raise DriverError(f"{self.name} is not connected")
        return self.bus


@register_driver("feetech")
class FeetechArm(ServoArm):
    """SO-100/SO-101-style arm of Feetech STS servos (protocol: SCS/STS)."""

    bus_class = FeetechBus
    models = FEETECH_MODELS
    default_model = "sts3215"


@register_driver("dynamixel")
class DynamixelArm(ServoArm):
    """Koch-style arm of Dynamixel X servos (Protocol 2.0)."""

    bus_class = DynamixelBus
    models = DYNAMIXEL_MODELS
    default_model = "xl330-m288"
