"""Device readings to safe joint commands: the one path from a teleop device to an arm.

:class:`TeleopCommander` reads a device once per control tick and turns the reading into an
action ``(Da,)`` (joint targets in rad, then the gripper 0 open .. 1 closed):

- a :class:`~hardware.teleop.device.JointCommand` (leader arm) gives the joints directly;
- an :class:`~hardware.teleop.device.EndEffectorCommand` moves an
  :class:`~hardware.teleop.ee_target.EndEffectorTarget` solved by the arm's IK;
- no motion holds the last safe command.

Every action then passes :func:`hardware.safety.filter_command` (finite, limits, step,
velocity, acceleration, workspace) against the measured state and the last safe command; what
comes out is what the caller may send to the driver, and the filter's report says what it
changed. The commander never writes to the arm itself, so the recorder owns the loop::

    commander = TeleopCommander(device, limits, dt=1 / 30, kinematics=sim_arm.arm)
    step = commander.step(arm.read_state())
    arm.send_action(step.action)

In intervention mode a policy drives between the operator's turns: its actions go through
:meth:`TeleopCommander.apply`, the same filter from the same last command, and
:meth:`TeleopCommander.take_over` hands the arm back to the device without a jump.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hardware.driver import ArmState
from hardware.limits import SafetyLimits
from hardware.safety import FilterState, ForwardKinematics, SafetyReport, filter_command
from hardware.teleop.device import (
    DeviceError,
    DeviceReading,
    EndEffectorCommand,
    JointCommand,
    OperatorEvent,
    TeleopDevice,
)
from hardware.teleop.ee_target import EndEffectorConfig, EndEffectorTarget, Kinematics


@dataclasses.dataclass(frozen=True, eq=False)
class TeleopStep:
    """One tick of teleoperation."""

    action: np.ndarray
    """The safe action (Da,) to send: joints (rad), then the gripper."""
    report: SafetyReport
    """What the safety filter changed on the way."""
    events: tuple[OperatorEvent, ...]
    """The operator's buttons read this tick."""
    reading: DeviceReading
    """The device's raw reading."""


class TeleopCommander:
    """A device driving an arm's joints through its IK and the safety filter.

    Args:
        device: the teleop device (connected by the caller).
        limits: the safety filter's limits for the arm.
        dt: the control period (s): the filter's velocity and acceleration bounds use it.
        kinematics: the arm's FK/IK (``SimArm.arm`` for the built-in arm); needed by
            end-effector devices, unused by joint-space ones.
        fk: end-effector position for the filter's workspace box (``SimArm.ee_position``);
            needed when ``limits`` have a box.
        end_effector: how end-effector commands are solved.
    """

    def __init__(
        self,
        device: TeleopDevice,
        limits: SafetyLimits,
        dt: float,
        *,
        kinematics: Kinematics | None = None,
        fk: ForwardKinematics | None = None,
        end_effector: EndEffectorConfig | None = None,
    ) -> None:
        if not (np.isfinite(dt) and dt > 0):
            raise ValueError(f"dt must be a positive number of seconds, got {dt}")
        if limits.has_workspace and fk is None:
            raise ValueError("limits have a workspace box: pass fk (joints -> ee position)")
        self.device = device
        self.limits = limits
        self.dt = dt
        self.fk = fk
        self.target = None if kinematics is None else EndEffectorTarget(kinematics, end_effector)
        self._last: np.ndarray | None = None
        self._velocity: np.ndarray | None = None

    def reset(self, state: ArmState) -> None:
        """Start from the arm as it is: at the start of an episode and when the operator takes
        over, so nothing jumps to a stale target."""
        self._last, self._velocity = None, None
        if self.target is not None:
            self.target.reset(state.positions)

    @property
    def last_command(self) -> np.ndarray | None:
        """The last safe action (a copy), None before the first."""
        return None if self._last is None else self._last.copy()

    def step(self, state: ArmState) -> TeleopStep:
        """Read the device once; the safe action for the arm measured as ``state``."""
        return self.command(self.device.read(), state)

    def command(self, reading: DeviceReading, state: ArmState) -> TeleopStep:
        """The safe action for a device ``reading`` the caller took, the arm measured as
        ``state``."""
        if self._last is None:
            self.reset(state)
        safe, report = self.apply(self._propose(reading, state), state)
        if report.held and self.target is not None:
            self.target.reset(safe[: self.limits.dof])  # a held arm re-anchors the target
        return TeleopStep(safe, report, reading.events, reading)

    def apply(self, action: np.ndarray | None, state: ArmState) -> tuple[np.ndarray, SafetyReport]:
        """``action`` (Da,) through the safety filter from the last safe action, which it
        becomes; None holds (the last safe action, else the arm as measured). Whatever drives
        — the device or a policy — every action passes here, so the filter's step, velocity
        and acceleration bounds run across a change of driver. When ``report.reference_ok``
        is False nothing finite was known to hold at: the caller writes nothing, and the
        action does not become the last one."""
        proposed = action if action is not None else self._base(state)
        filter_state = FilterState(state.as_action(), self._last, self._velocity)
        safe, report = filter_command(proposed, filter_state, self.limits, self.dt, fk=self.fk)
        if report.reference_ok:
            self._last, self._velocity = safe.copy(), report.velocity
        return safe, report

    def take_over(self, state: ArmState) -> None:
        """The device takes the arm from another driver (a policy): its end-effector target
        starts where the arm was last commanded (else where it is measured), and the filter
        keeps its last action and velocity, so the device's first action is bounded by the
        filter from the last one written — no jump to a stale target."""
        if self.target is not None:
            start = self._last[: self.limits.dof] if self._last is not None else state.positions
            self.target.reset(start)

    def _base(self, state: ArmState) -> np.ndarray:
        """The hold: the last safe action, else the arm as measured."""
        return self._last if self._last is not None else _hold(state, self.limits)

    def _propose(self, reading: DeviceReading, state: ArmState) -> np.ndarray:
        n = self.limits.dof
        action = np.array(self._base(state), dtype=np.float64)
        motion = reading.motion
        if isinstance(motion, JointCommand):
            positions = np.asarray(motion.positions, dtype=np.float64)
            if positions.shape != (n,):
                raise DeviceError(
                    f"{self.device.name or type(self.device).__name__} gives {positions.shape} "
                    f"joint targets, the arm has {n} joints {self.limits.joint_names}"
                )
            action[:n] = positions
        elif isinstance(motion, EndEffectorCommand):
            if self.target is None:
                raise DeviceError(
                    f"{self.device.name or type(self.device).__name__} steers the end effector: "
                    "this arm has no kinematics to solve it (use a joint-space device)"
                )
            action[:n] = self.target.apply(motion, action[:n])
        if motion is not None and motion.gripper is not None and self.limits.gripper is not None:
            action[n] = motion.gripper
        return action


def _hold(state: ArmState, limits: SafetyLimits) -> np.ndarray:
    """The action holding the arm where it is measured (the gripper as read, else open)."""
    held = np.array(state.positions, dtype=np.float64)
    if limits.gripper is None:
        return held
    gripper = state.gripper if state.gripper is not None else limits.gripper[0]
    return np.append(held, gripper)
