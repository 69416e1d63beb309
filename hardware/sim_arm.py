"""``SimArm``: the built-in MuJoCo arm (``sim/assets/arm6.xml``) behind the driver interface.

Physics follows the driver's clock: before every read or write (and, with ``realtime=True``,
continuously in a background thread) the simulation steps until its time catches up with the
clock's time since ``connect()``. With a :class:`~hardware.clock.VirtualClock` nothing moves
until the test advances the clock, so runs are deterministic:

    clock = VirtualClock()
    with SimArm(clock=clock) as arm:
        arm.send_action(target)     # joints (rad) + gripper (0 open .. 1 closed)
        clock.sleep(0.5)
        state = arm.read_state()    # sensed_at == 0.5 on the virtual clock

``sensed_at`` is the clock time the returned physics state belongs to. The arm's joint names,
position and velocity limits come from the model (``sim.arm.Arm``); acceleration is not stated.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

# isort: off
import sim  # noqa: F401  (first: it defers MuJoCo's GL before mujoco loads)

# isort: on
import mujoco
import numpy as np

from hardware.clock import Clock
from hardware.driver import ArmState, Driver, JointSpec, register_driver
from sim.arm import Arm

log = logging.getLogger(__name__)


def arm6_spec(arm: Arm | None = None) -> JointSpec:
    """The built-in arm's joints and limits, read from its model."""
    arm = arm or Arm.load()
    return JointSpec(
        names=arm.joint_names,
        lower=tuple(float(x) for x in arm.lower),
        upper=tuple(float(x) for x in arm.upper),
        velocity=tuple(float(v) for v in arm.velocity_limits),
        gripper=(0.0, 1.0),
    )


@register_driver("sim")
class SimArm(Driver):
    """The simulated 6-joint arm with its parallel gripper (position-controlled).

    Args:
        clock: time source; physics follows it (default: the system clock).
        realtime: step in a background thread so the arm moves even when nobody reads.
        initial: starting joint positions (rad); default the home pose, tool down.
        gripper: starting gripper command (0 open .. 1 closed).
        max_catch_up: most simulated seconds one catch-up may step; a larger lag (a jump of a
            virtual clock, a stalled process) is skipped over and logged.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        realtime: bool = False,
        initial: np.ndarray | None = None,
        gripper: float = 0.0,
        max_catch_up: float = 1.0,
    ) -> None:
        self.arm = Arm.load()
        super().__init__(arm6_spec(self.arm), clock)
        self.model = self.arm.model
        self.data = mujoco.MjData(self.model)
        self.realtime = realtime
        self.max_catch_up = max_catch_up
        self._initial = np.array(self.arm.home if initial is None else initial, dtype=np.float64)
        self._initial_gripper = float(gripper)
        self._gains = (self.model.actuator_gainprm.copy(), self.model.actuator_biasprm.copy())
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self.steps = 0
        """Physics steps taken since connect."""

    def ee_position(self, q: np.ndarray) -> np.ndarray:
        """Forward kinematics of the end-effector site (m): the safety filter's ``fk``."""
        with self._lock:
            return self.arm.fk(np.asarray(q, dtype=np.float64))[0]

    # -- driver interface ---------------------------------------------------------------------

    def _connect(self) -> None:
        with self._lock:
            self._restore_gains()
            mujoco.mj_resetData(self.model, self.data)
            self.arm.set_configuration(self.data, self._initial, self._initial_gripper)
            mujoco.mj_forward(self.model, self.data)
            self._t0 = self.clock.monotonic()
            self.steps = 0
        if self.realtime:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="SimArm", daemon=True)
            self._thread.start()

    def _disconnect(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def _read_state(self) -> ArmState:
        with self._lock:
            self.sync()
            d = self.data
            lo, hi = self.arm.finger_range
            finger = float(d.qpos[self.arm.finger_qpos_index].mean())
            return ArmState(
                positions=d.qpos[self.arm.qpos_index].copy(),
                velocities=d.qvel[self.arm.dof_index].copy(),
                gripper=float(np.clip((hi - finger) / (hi - lo), 0.0, 1.0)),
                sensed_at=self._t0 + d.time,
            )

    def _write(self, action: np.ndarray) -> np.ndarray:
        with self._lock:
            self.sync()
            self._restore_gains()
            self.arm.command(self.data, action[:6], float(action[6]))
        return action.copy()

    def release(self) -> bool:
        """Torque off: the joint actuators stop pushing (gravity compensation stays, like a
        backdrivable arm resting in its brakes-off state). The next write re-enables them."""
        with self._lock:
            self.sync()
            idx = np.append(self.arm.actuator_index, self.arm.finger_actuator_index)
            self.model.actuator_gainprm[idx] = 0.0
            self.model.actuator_biasprm[idx] = 0.0
        return True

    # -- physics ------------------------------------------------------------------------------

    def sync(self) -> None:
        """Step the physics until it has caught up with the clock (called by read and write)."""
        with self._lock:
            lag = self.clock.monotonic() - self._t0 - self.data.time
            if lag > self.max_catch_up:
                log.warning("SimArm fell %.3f s behind its clock; skipping ahead", lag)
                self._t0 += lag - self.max_catch_up
                lag = self.max_catch_up
            dt = self.model.opt.timestep
            for _ in range(int(lag / dt + 1e-9)):
                mujoco.mj_step(self.model, self.data)
                self.steps += 1

    @contextlib.contextmanager
    def physics(self) -> Iterator[tuple[mujoco.MjData, float]]:
        """The physics caught up with the clock and held still while in use: yields the data
        and the clock time it belongs to (for renderers such as ``hardware.cameras.sim``)."""
        with self._lock:
            self.sync()
            yield self.data, self._t0 + self.data.time

    def _run(self) -> None:
        while not self._stop.wait(0.001):
            self.sync()

    def _restore_gains(self) -> None:
        self.model.actuator_gainprm[:] = self._gains[0]
        self.model.actuator_biasprm[:] = self._gains[1]
