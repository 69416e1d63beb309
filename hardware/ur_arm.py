"""Universal Robots arms through ``ur_rtde`` (the ``ur`` extra), imported on connect.

Reads come from ``RTDEReceiveInterface`` (actual joint positions and velocities, e-stop and
protective-stop flags); writes are ``servoJ`` on ``RTDEControlInterface``, the streaming
joint-position command that the controller expects every control period. The UR controller
itself stops the arm when that stream is late, which the daemon's watchdog mirrors.

The SDK classes are injectable (``control_factory``, ``receive_factory``), so tests run the
real driver code against fakes at the SDK boundary.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from hardware.clock import Clock
from hardware.driver import ArmState, Driver, DriverError, JointSpec, register_driver

UR_JOINTS = ("base", "shoulder", "elbow", "wrist_1", "wrist_2", "wrist_3")


def ur_spec(velocity: float = math.pi) -> JointSpec:
    """Six joints of ±2π rad and ``velocity`` (rad/s, default 180°/s) for every joint: a
    default, not a model's datasheet — check your arm's manual (larger models are slower)."""
    return JointSpec(
        names=UR_JOINTS,
        lower=(-2 * math.pi,) * 6,
        upper=(2 * math.pi,) * 6,
        velocity=(velocity,) * 6,
        gripper=None,
    )


def _import_rtde() -> tuple[Any, Any]:
    try:
        import rtde_control
        import rtde_receive
    except ImportError as exc:
        raise DriverError("ur_rtde is not installed: pip install 'robopolicy[ur]'") from exc
    return rtde_control.RTDEControlInterface, rtde_receive.RTDEReceiveInterface


@register_driver("ur")
class URArm(Driver):
    """A UR arm (CB3 or e-Series) streamed joint positions with ``servoJ``.

    Args:
        host: the robot's IP address.
        period: the control period (s) each ``servoJ`` command covers (the daemon's tick).
        lookahead_time: servoJ smoothing horizon (0.03..0.2 s).
        gain: servoJ proportional gain (100..2000).
        frequency: RTDE frequency (Hz; -1 lets ur_rtde pick the robot's maximum).
        spec: joint limits (default :func:`ur_spec`).
        control_factory, receive_factory: build the RTDE interfaces from ``(host, frequency)``;
            default the ``ur_rtde`` classes.
    """

    def __init__(
        self,
        host: str,
        *,
        period: float = 0.002,
        lookahead_time: float = 0.1,
        gain: float = 300.0,
        frequency: float = -1.0,
        spec: JointSpec | None = None,
        clock: Clock | None = None,
        control_factory: Callable[[str, float], Any] | None = None,
        receive_factory: Callable[[str, float], Any] | None = None,
    ) -> None:
        super().__init__(spec or ur_spec(), clock)
        if not 0.03 <= lookahead_time <= 0.2 or not 100 <= gain <= 2000 or not period > 0:
            raise ValueError("need 0.03 <= lookahead_time <= 0.2, 100 <= gain <= 2000, period > 0")
        self.host = host
        self.period = period
        self.lookahead_time = lookahead_time
        self.gain = gain
        self.frequency = frequency
        self._factories = (control_factory, receive_factory)
        self._control: Any = None
        self._receive: Any = None

    def _connect(self) -> None:
        control_factory, receive_factory = self._factories
        if control_factory is None or receive_factory is None:
            control_cls, receive_cls = _import_rtde()
            control_factory = control_factory or control_cls
            receive_factory = receive_factory or receive_cls
        try:
            self._receive = receive_factory(self.host, self.frequency)
            self._control = control_factory(self.host, self.frequency)
        except RuntimeError as exc:  # ur_rtde raises RuntimeError when it cannot connect
            self._close()
            raise DriverError(f"cannot connect to the UR arm at {self.host}: {exc}") from exc

    def _disconnect(self) -> None:
        try:
            if self._control is not None:
                self._control.servoStop()
                self._control.stopScript()
        finally:
            self._close()

    def _read_state(self) -> ArmState:
        r = self._receive
        if not r.isConnected():
            raise DriverError(f"lost the RTDE connection to {self.host}")
        positions = np.asarray(r.getActualQ(), dtype=np.float64)
        sensed_at = self.clock.monotonic()
        if positions.shape != (self.spec.dof,):
            raise DriverError(f"UR reported {positions.shape} joint positions")
        return ArmState(
            positions=positions,
            velocities=np.asarray(r.getActualQd(), dtype=np.float64),
            sensed_at=sensed_at,
            estopped=bool(r.isEmergencyStopped() or r.isProtectiveStopped()),
        )

    def _write(self, action: np.ndarray) -> np.ndarray:
        q = [float(x) for x in action]
        # speed and acceleration are unused by servoJ; time is the period this target covers
        ok = self._control.servoJ(q, 0.0, 0.0, self.period, self.lookahead_time, self.gain)
        if not ok:
            raise DriverError("the UR controller refused servoJ (is the arm in remote control?)")
        return np.array(q)

    def release(self) -> bool:
        """Stop servoing and the control script; the arm holds on its brakes."""
        if self._control is None:
            return False
        self._control.servoStop()
        self._control.stopScript()
        return True

    def _close(self) -> None:
        for interface in (self._control, self._receive):
            if interface is not None:
                interface.disconnect()
        self._control = self._receive = None
