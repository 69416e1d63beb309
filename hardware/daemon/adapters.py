"""What the policy sees and what its actions mean: observation history and action adapters.

The daemon gives a policy the robot's proprioception only (cameras and object poses are not
part of the control daemon yet). A :class:`PolicyAdapter` turns readings into the policy's
``"state"`` and its actions into joint targets:

- :class:`JointAdapter` (``action_space="joint"``): ``state`` = joint positions and the gripper
  (Da values), actions = joint targets and the gripper — the ``action_mode="joint"`` tasks and
  every real arm;
- :class:`EEAdapter` (``action_space="ee"``, the built-in arm only): ``state`` = the
  end-effector position (x, y, z) by forward kinematics; actions = ee targets (x, y[, gripper])
  at ``ee_height``, tool down. As the ``arm-push`` env does, each target is clipped to the
  config's ``ee_workspace_lower``/``ee_workspace_upper`` (by default ``arm-push``'s
  workspace) and then moved at most ``ee_max_step`` (m, in 3-D) from the previous one
  (the first from where the commanded joints put the ee), then the arm's damped least-squares
  IK (warm-started along the chunk) gives the joints.

:class:`ObsHistory` keeps the latest valid readings; the requester picks ``To`` of them spaced
one policy period apart, newest last, and sends their sensing times as ``obs["timestamp"]``.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from hardware.daemon.config import ControlConfig
from hardware.driver import ArmState, JointSpec
from robopolicy.errors import RobopolicyError


class AdapterError(RobopolicyError):
    """The policy's inputs or outputs do not fit this robot."""


class PolicyAdapter(Protocol):
    """Maps readings to the policy's observation and its actions to joint targets."""

    name: str

    def observation(self, states: Sequence[ArmState]) -> dict[str, np.ndarray]:
        """Per-key arrays (To, ...) float32 for ``states`` (oldest first)."""
        ...

    def to_joint(self, actions: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """Joint-space actions (T, Da_robot) for policy actions (T, Da_policy); ``reference``
        is the joint command being executed (IK starts from it)."""
        ...


class JointAdapter:
    """The policy works in the robot's own joint space."""

    name = "joint"

    def __init__(self, spec: JointSpec) -> None:
        self.size = spec.action_size

    def observation(self, states: Sequence[ArmState]) -> dict[str, np.ndarray]:
        return {"state": np.stack([s.as_action() for s in states]).astype(np.float32)}

    def to_joint(self, actions: np.ndarray, reference: np.ndarray) -> np.ndarray:
        a = np.asarray(actions, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != self.size:
            raise AdapterError(f"joint actions must be (T, {self.size}), got {a.shape}")
        return a


class EEAdapter:
    """End-effector (x, y[, gripper]) policies on the built-in arm (module docstring)."""

    name = "ee"

    def __init__(self, config: ControlConfig, action_dim: int, arm: Any = None) -> None:
        from sim.arm import Arm, tool_down

        if action_dim not in (2, 3):
            raise AdapterError(f"ee actions must be (x, y) or (x, y, gripper), got {action_dim}")
        self.arm = arm or Arm.load()  # its own model: the IK never touches the simulation
        self.rotation = tool_down(0.0)
        self.low = np.asarray(config.ee_workspace_lower, dtype=np.float64)
        self.high = np.asarray(config.ee_workspace_upper, dtype=np.float64)
        self.action_dim = action_dim
        self.height, self.gripper = config.ee_height, config.ee_gripper
        self.max_step = config.ee_max_step

    def observation(self, states: Sequence[ArmState]) -> dict[str, np.ndarray]:
        ee = [self.arm.fk(np.asarray(s.positions, dtype=np.float64))[0] for s in states]
        return {"state": np.stack(ee).astype(np.float32)}

    def to_joint(self, actions: np.ndarray, reference: np.ndarray) -> np.ndarray:
        a = np.asarray(actions, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != self.action_dim:
            raise AdapterError(f"ee actions must be (T, {self.action_dim}), got {a.shape}")
        if not np.isfinite(a).all():  # IK of NaN is NaN: pass it on for the chunk check to reject
            return np.full((len(a), 7), np.nan)
        q = np.asarray(reference[:6], dtype=np.float64)
        previous = self.arm.fk(q)[0]
        out = np.empty((len(a), 7))
        for i, row in enumerate(a):
            xy = np.clip(row[:2], self.low, self.high)
            target = np.array([xy[0], xy[1], self.height])
            step = target - previous
            distance = float(np.linalg.norm(step))
            if distance > self.max_step:
                target = previous + step * (self.max_step / distance)
            q = self.arm.ik(target, self.rotation, q, iterations=5)
            gripper = float(np.clip(row[2], 0.0, 1.0)) if self.action_dim == 3 else self.gripper
            out[i, :6], out[i, 6] = q, gripper
            previous = target
        return out


def make_adapter(metadata: dict[str, Any], spec: JointSpec, config: ControlConfig) -> PolicyAdapter:
    """The adapter for a policy (its server's ``metadata``) on an arm (``spec``)."""
    obs = metadata.get("obs") or {}
    if set(obs) != {"state"}:
        raise AdapterError(
            f"the daemon gives policies a 'state' observation only; this one wants {sorted(obs)}"
        )
    shape = list(obs["state"].get("shape", []))
    action_dim = int(metadata.get("action_dim", -1))
    space = config.action_space
    if space == "auto":
        space = "joint" if action_dim == spec.action_size else "ee"
    if space == "joint":
        adapter: PolicyAdapter = JointAdapter(spec)
        want = [spec.action_size, spec.action_size]
    else:
        from sim.arm import JOINTS

        if spec.names != JOINTS or spec.action_size != 7:
            raise AdapterError(
                f"ee-space policies need the built-in arm's kinematics; this robot has joints "
                f"{spec.names} (use a joint-space policy, action_dim {spec.action_size})"
            )
        adapter = EEAdapter(config, action_dim)
        want = [3, action_dim]
    if len(shape) != 2 or shape[1] != want[0] or action_dim != want[1]:
        raise AdapterError(
            f"{space} adapter needs state (To, {want[0]}) and action_dim {want[1]}; "
            f"the policy has state {shape} and action_dim {action_dim}"
        )
    return adapter


class ObsHistory:
    """The latest valid readings, shared by the loop (push) and the requester (window)."""

    def __init__(self, maxlen: int) -> None:
        self._states: collections.deque[ArmState] = collections.deque(maxlen=max(2, maxlen))
        self._lock = threading.Lock()

    def push(self, state: ArmState) -> None:
        with self._lock:
            self._states.append(state)

    def window(
        self, steps: int, period: float, now: float, max_age: float
    ) -> list[ArmState] | None:
        """``steps`` readings, one ``period`` apart, the newest last; None when the newest is
        older than ``max_age`` at ``now`` (a silent sensor: ask nothing of the policy)."""
        with self._lock:
            states = list(self._states)
        if not states or now - states[-1].sensed_at > max_age:
            return None
        times = np.array([s.sensed_at for s in states])
        newest = times[-1]
        picked = []
        for k in range(steps - 1, -1, -1):
            j = int(np.searchsorted(times, newest - k * period + 1e-9, side="right")) - 1
            picked.append(states[max(j, 0)])
        return picked
