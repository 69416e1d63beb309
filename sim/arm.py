"""The built-in 6-joint arm (``sim/assets/arm6.xml``): names, limits, kinematics and IK.

:class:`Arm` wraps any MuJoCo model that contains arm6 (the arm alone, or a task scene that
includes it), so the tasks and the hardware layer's simulated arm share one description of it:

- joint order ``JOINTS`` (rad), then the gripper, commanded as one number in [0, 1]
  (0 open, 1 closed) that sets both fingers' opening in metres;
- position and velocity limits read from the model;
- forward kinematics of the ``ee`` site and damped-least-squares IK built on
  ``mujoco.mj_jacSite``, both on a private ``MjData`` so the simulation state is never touched.

Orientation targets are rotation matrices; ``tool_down(yaw)`` is the pose the tasks use (tool
axis pointing at the table, fingers opening along the rotated world y axis).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import mujoco
import numpy as np

ASSETS = Path(__file__).resolve().parent / "assets"
ARM_XML = ASSETS / "arm6.xml"
JOINTS = ("shoulder_pan", "shoulder_lift", "elbow", "wrist_roll", "wrist_pitch", "tool_roll")
FINGERS = ("finger_left", "finger_right")
EE_SITE = "ee"
VELOCITY_LIMITS = "arm6_velocity_limits"
HOME_EE = np.array([0.32, 0.0, 0.2])
"""Where the home configuration puts the ee site (m), tool down, yaw 0."""
_HOME_SEED = np.array([0.0, 0.2, 1.6, 0.0, -1.8, 0.0])


def tool_down(yaw: float = 0.0) -> np.ndarray:
    """Rotation of the ee site with the tool pointing down and the gripper turned by ``yaw``."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclasses.dataclass(frozen=True)
class IKConfig:
    """Damped least squares: ``dq = J^T (J J^T + damping^2 I)^-1 e`` per iteration."""

    iterations: int = 3
    """Jacobian iterations per solve (warm-started solves along a path need very few)."""
    damping: float = 0.02
    """Damping (m or rad): larger is steadier near singularities, slower to converge."""
    rotation_weight: float = 0.3
    """Weight of the orientation error (rad) against the position error (m)."""
    max_step: float = 0.5
    """Largest joint change (rad) of one iteration."""

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if not (self.damping > 0 and self.rotation_weight >= 0 and self.max_step > 0):
            raise ValueError("damping and max_step must be positive, rotation_weight >= 0")


class Arm:
    """arm6 inside ``model``: joint/actuator indices, limits, forward kinematics and IK."""

    def __init__(self, model: mujoco.MjModel, ik: IKConfig | None = None) -> None:
        self.model = model
        self.ik_config = ik or IKConfig()
        joints = [model.joint(name) for name in JOINTS]
        fingers = [model.joint(name) for name in FINGERS]
        self.qpos_index = np.array([j.qposadr[0] for j in joints])
        self.dof_index = np.array([j.dofadr[0] for j in joints])
        self.finger_qpos_index = np.array([j.qposadr[0] for j in fingers])
        self.actuator_index = np.array([model.actuator(name).id for name in JOINTS])
        self.finger_actuator_index = np.array([model.actuator(name).id for name in FINGERS])
        self.lower = np.array([j.range[0] for j in joints])
        self.upper = np.array([j.range[1] for j in joints])
        self.finger_range = np.array(fingers[0].range)
        limits = np.asarray(model.numeric(VELOCITY_LIMITS).data)
        self.velocity_limits = limits[: len(JOINTS)].copy()
        """Joint speed limits (rad/s)."""
        self.finger_velocity_limit = float(limits[len(JOINTS)])
        self.site_id = model.site(EE_SITE).id
        self._data = mujoco.MjData(model)
        # Cached views and buffers: the IK runs every control step and must be cheap.
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))
        self._jac = np.zeros((6, len(JOINTS)))
        self._error = np.zeros(6)
        self._gram = np.zeros((6, 6))
        self._solution = np.zeros(6)
        self._qpos = self._data.qpos
        self._site_pos = self._data.site_xpos[self.site_id]
        self._site_mat = self._data.site_xmat[self.site_id].reshape(3, 3)
        self._arm_qpos = _as_slice(self.qpos_index)
        self._arm_dofs = _as_slice(self.dof_index)
        self.home = self.ik(HOME_EE, tool_down(), _HOME_SEED, iterations=100)
        """A joint configuration (rad) with the tool down above the table, at ``HOME_EE``."""

    @classmethod
    def load(cls, ik: IKConfig | None = None) -> Arm:
        """The arm alone, from ``arm6.xml``."""
        return cls(mujoco.MjModel.from_xml_path(str(ARM_XML)), ik)

    @property
    def joint_names(self) -> tuple[str, ...]:
        return JOINTS

    # ------------------------------------------------------------------ state and commands

    def joint_positions(self, data: mujoco.MjData) -> np.ndarray:
        return data.qpos[self.qpos_index].copy()

    def gripper_opening(self, data: mujoco.MjData) -> float:
        """Distance between the finger pads (m)."""
        return float(data.qpos[self.finger_qpos_index].sum())

    def ee_position(self, data: mujoco.MjData) -> np.ndarray:
        return data.site_xpos[self.site_id].copy()

    def gripper_target(self, command: float) -> float:
        """Per-finger opening (m) for a gripper command in [0, 1] (0 open, 1 closed)."""
        lo, hi = self.finger_range
        return float(hi - np.clip(command, 0.0, 1.0) * (hi - lo))

    def command(self, data: mujoco.MjData, q: np.ndarray, gripper: float) -> None:
        """Write joint position targets ``q`` (clipped to the limits) and a gripper command."""
        data.ctrl[self.actuator_index] = np.clip(q, self.lower, self.upper)
        data.ctrl[self.finger_actuator_index] = self.gripper_target(gripper)

    def set_configuration(self, data: mujoco.MjData, q: np.ndarray, gripper: float) -> None:
        """Place the arm at ``q`` at rest, with matching targets (call ``mj_forward`` after)."""
        data.qpos[self.qpos_index] = q
        data.qvel[self.dof_index] = 0.0
        data.qpos[self.finger_qpos_index] = self.gripper_target(gripper)
        self.command(data, q, gripper)

    # ------------------------------------------------------------------ kinematics

    def fk(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Position (3,) and rotation (3, 3) of the ee site at joint positions ``q``."""
        data = self._data
        data.qpos[self.qpos_index] = q
        mujoco.mj_kinematics(self.model, data)
        return data.site_xpos[self.site_id].copy(), data.site_xmat[self.site_id].reshape(3, 3)

    def ik(
        self,
        position: np.ndarray,
        rotation: np.ndarray | None,
        q0: np.ndarray,
        *,
        iterations: int | None = None,
    ) -> np.ndarray:
        """Joint positions (rad, within limits) putting the ee site at ``position`` (m).

        Args:
            position: target (3,) in the world frame.
            rotation: target (3, 3) rotation, or None for position only.
            q0: starting joint positions; the solution stays on their branch.
            iterations: Jacobian iterations (default: the IK config's).
        """
        cfg, model, data = self.ik_config, self.model, self._data
        q = np.array(q0, dtype=np.float64)
        rows = 3 if rotation is None else 6
        jac = self._jac[:rows]
        error = self._error[:rows]
        gram = self._gram[:rows, :rows]
        damping = cfg.damping**2
        weight = cfg.rotation_weight
        for _ in range(iterations or cfg.iterations):
            self._qpos[self._arm_qpos] = q
            mujoco.mj_kinematics(model, data)
            mujoco.mj_comPos(model, data)
            error[:3] = position - self._site_pos
            mujoco.mj_jacSite(model, data, self._jacp, self._jacr, self.site_id)
            jac[:3] = self._jacp[:, self._arm_dofs]
            if rotation is not None:
                # e = vee(R* R^T) is the small rotation taking the current frame to the target.
                m = rotation @ self._site_mat.T
                error[3] = weight * 0.5 * (m[2, 1] - m[1, 2])
                error[4] = weight * 0.5 * (m[0, 2] - m[2, 0])
                error[5] = weight * 0.5 * (m[1, 0] - m[0, 1])
                jac[3:] = weight * self._jacr[:, self._arm_dofs]
            np.matmul(jac, jac.T, out=gram)
            gram.flat[:: rows + 1] += damping
            mujoco.mju_cholFactor(gram, 0.0)
            mujoco.mju_cholSolve(self._solution[:rows], gram, error)
            dq = jac.T @ self._solution[:rows]
            largest = np.abs(dq).max()
            if largest > cfg.max_step:
                dq *= cfg.max_step / largest
            q = np.clip(q + dq, self.lower, self.upper)
        return q


def _as_slice(index: np.ndarray) -> slice | np.ndarray:
    """A contiguous index as a slice (views, no copies); other indices unchanged."""
    if np.array_equal(index, np.arange(index[0], index[0] + len(index))):
        return slice(int(index[0]), int(index[0]) + len(index))
    return index
