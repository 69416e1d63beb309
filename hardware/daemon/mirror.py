"""Dry run: the simulated arm standing in for a real one, behind the real driver's limits.

:class:`MirroredSim` has the real driver's :class:`~hardware.driver.JointSpec` (taken from the
driver object without connecting it) and moves :class:`~hardware.sim_arm.SimArm`. Each real
joint ``i`` (up to six) drives simulated joint ``i`` through the affine map that sends the real
joint's range onto the simulated joint's range, so a command at a real limit drives the
simulated joint to its own limit and every reading maps back inside the real limits (speeds
scale by the ratio of the ranges). Simulated joints the real arm lacks stay where they started;
real joints beyond six are ideal: they read back their last command. A real arm without a
gripper leaves the simulated gripper open.

Everything upstream — the safety filter, the chunk checks, the watchdog, the tick log — sees
the real arm's joints and limits, which is the point of a dry run before motors are powered.
"""

from __future__ import annotations

import numpy as np

from hardware.clock import Clock
from hardware.driver import ArmState, Driver, JointSpec
from hardware.sim_arm import SimArm


class MirroredSim(Driver):
    """``SimArm`` with the joints and limits of ``spec`` (see the module docstring)."""

    name = "dry-run"

    def __init__(
        self, spec: JointSpec, *, clock: Clock | None = None, sim: SimArm | None = None
    ) -> None:
        self.sim = sim or SimArm(clock=clock)
        super().__init__(spec, self.sim.clock)
        sim_spec = self.sim.spec
        self.shared = n = min(spec.dof, sim_spec.dof)
        self._real_lo = np.asarray(spec.lower[:n])
        self._sim_lo = np.asarray(sim_spec.lower[:n])
        real_span = np.asarray(spec.upper[:n]) - self._real_lo
        self._scale = (np.asarray(sim_spec.upper[:n]) - self._sim_lo) / real_span
        self._extra = (np.asarray(spec.lower[n:]) + np.asarray(spec.upper[n:])) / 2
        self._sim_rest: np.ndarray | None = None

    def to_sim(self, q: np.ndarray) -> np.ndarray:
        """Real joint positions of the shared joints -> simulated ones."""
        return self._sim_lo + (np.asarray(q)[: self.shared] - self._real_lo) * self._scale

    def to_real(self, q: np.ndarray) -> np.ndarray:
        """Simulated joint positions of the shared joints -> real ones."""
        return self._real_lo + (np.asarray(q)[: self.shared] - self._sim_lo) / self._scale

    def _connect(self) -> None:
        self.sim.connect()
        self._sim_rest = self.sim.read_state().as_action()

    def _disconnect(self) -> None:
        self.sim.disconnect()

    def _read_state(self) -> ArmState:
        s = self.sim.read_state()
        positions = np.concatenate([self.to_real(s.positions), self._extra])
        velocities = None
        if s.velocities is not None:
            shared = np.asarray(s.velocities)[: self.shared] / self._scale
            velocities = np.concatenate([shared, np.zeros(len(self._extra))])
        gripper = None
        if self.spec.gripper is not None and s.gripper is not None:
            lo, hi = self.spec.gripper
            gripper = lo + float(s.gripper) * (hi - lo)
        return ArmState(positions, s.sensed_at, velocities, gripper, s.estopped)

    def _write(self, action: np.ndarray) -> np.ndarray:
        rest = self._sim_rest if self._sim_rest is not None else self.sim.read_state().as_action()
        command = rest.copy()
        command[: self.shared] = self.to_sim(action[: self.spec.dof])
        if self.spec.gripper is not None:
            lo, hi = self.spec.gripper
            command[-1] = (action[self.spec.dof] - lo) / (hi - lo)
        else:
            command[-1] = 0.0
        self.sim.send_action(command)
        self._extra = np.array(action[self.shared : self.spec.dof], dtype=np.float64)
        return action.copy()

    def release(self) -> bool:
        return self.sim.release()
