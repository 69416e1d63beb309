"""UFactory xArm through ``xarm-python-sdk`` (the ``xarm`` extra), imported on connect.

``connect`` clears errors, enables motion and puts the arm in servo mode (mode 1), where
``set_servo_angle_j`` streams joint targets; reads use ``get_joint_states``. Every SDK call
returns a code, and a non-zero code is a :class:`~hardware.driver.DriverError` naming the call.
The gripper (the xArm Gripper, positions in pulses, ``open_pulse`` open) is command 0 open ..
1 closed, written only when it changes.

The ``XArmAPI`` object is injectable (``api_factory``) so tests use a fake at the SDK boundary.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from hardware.clock import Clock
from hardware.driver import ArmState, Driver, DriverError, JointSpec, register_driver

XARM6_LIMITS = (
    (-2 * math.pi, 2 * math.pi),
    (-2.059488, 2.094395),
    (-3.92699, 0.191986),
    (-2 * math.pi, 2 * math.pi),
    (-1.692969, math.pi),
    (-2 * math.pi, 2 * math.pi),
)
"""xArm 6 joint ranges (rad), as the SDK's configuration lists them for the common models."""


def xarm6_spec(velocity: float = math.pi, gripper: bool = True) -> JointSpec:
    """xArm 6 joints with ``velocity`` rad/s (the xArm's joint speed limit is 180°/s)."""
    return JointSpec(
        names=tuple(f"joint{i}" for i in range(1, 7)),
        lower=tuple(lo for lo, _ in XARM6_LIMITS),
        upper=tuple(hi for _, hi in XARM6_LIMITS),
        velocity=(velocity,) * 6,
        gripper=(0.0, 1.0) if gripper else None,
    )


def _import_xarm() -> Any:
    try:
        from xarm.wrapper import XArmAPI
    except ImportError as exc:
        raise DriverError(
            "xarm-python-sdk is not installed: pip install 'robopolicy[xarm]'"
        ) from exc
    return XArmAPI


@register_driver("xarm")
class XArm(Driver):
    """An xArm streamed joint positions in servo mode.

    Args:
        host: the control box's IP address.
        gripper: whether an xArm Gripper is fitted (adds the gripper to the action).
        open_pulse, closed_pulse: gripper positions (pulses) for command 0 and 1.
        spec: joint limits (default :func:`xarm6_spec`).
        api_factory: builds the SDK object from ``host`` (default ``XArmAPI(host,
            is_radian=True)``).
    """

    def __init__(
        self,
        host: str,
        *,
        gripper: bool = True,
        open_pulse: float = 850.0,
        closed_pulse: float = 0.0,
        spec: JointSpec | None = None,
        clock: Clock | None = None,
        api_factory: Callable[[str], Any] | None = None,
    ) -> None:
        super().__init__(spec or xarm6_spec(gripper=gripper), clock)
        self.host = host
        self.open_pulse, self.closed_pulse = open_pulse, closed_pulse
        self._factory = api_factory
        self._api: Any = None
        self._last_gripper: float | None = None

    def _connect(self) -> None:
        factory = self._factory
        if factory is None:
            api_cls = _import_xarm()

            def factory(host: str) -> Any:
                return api_cls(host, is_radian=True)

        api = factory(self.host)
        try:
            if not getattr(api, "connected", False):
                raise DriverError(f"cannot connect to the xArm at {self.host}")
            _check("clean_error", api.clean_error())
            _check("motion_enable", api.motion_enable(enable=True))
            _check("set_mode", api.set_mode(1))
            _check("set_state", api.set_state(state=0))
            if self.spec.gripper is not None:
                _check("set_gripper_enable", api.set_gripper_enable(True))
        except BaseException:
            api.disconnect()
            raise
        self._api, self._last_gripper = api, None

    def _disconnect(self) -> None:
        api, self._api = self._api, None
        if api is not None:
            api.disconnect()

    def _read_state(self) -> ArmState:
        api, n = self._api, self.spec.dof
        code, (positions, velocities, _effort) = api.get_joint_states(is_radian=True)
        sensed_at = self.clock.monotonic()
        _check("get_joint_states", code)
        gripper = None
        if self.spec.gripper is not None:
            code, pulse = api.get_gripper_position()
            _check("get_gripper_position", code)
            span = self.closed_pulse - self.open_pulse
            gripper = float(np.clip((float(pulse) - self.open_pulse) / span, 0.0, 1.0))
        return ArmState(
            positions=np.asarray(positions[:n], dtype=np.float64),
            velocities=np.asarray(velocities[:n], dtype=np.float64),
            gripper=gripper,
            sensed_at=sensed_at,
            estopped=api.state == 4 or bool(api.error_code),
        )

    def _write(self, action: np.ndarray) -> np.ndarray:
        api, n = self._api, self.spec.dof
        joints = [float(x) for x in action[:n]]
        _check("set_servo_angle_j", api.set_servo_angle_j(joints, is_radian=True))
        if self.spec.gripper is not None:
            command = float(action[n])
            if self._last_gripper is None or abs(command - self._last_gripper) > 1e-3:
                pulse = self.open_pulse + command * (self.closed_pulse - self.open_pulse)
                _check("set_gripper_position", api.set_gripper_position(pulse, wait=False))
                self._last_gripper = command
            return np.append(action[:n], self._last_gripper)
        return action.copy()

    def release(self) -> bool:
        """Stop state (4): motion stops and further motion commands are refused."""
        if self._api is None:
            return False
        _check("set_state", self._api.set_state(state=4))
        return True


def _check(call: str, code: int) -> None:
    if code != 0:
        raise DriverError(f"xArm {call} failed with code {code}")
