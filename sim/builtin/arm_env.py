"""The base of the built-in arm tasks: one MuJoCo scene with arm6, stepped at 10 Hz.

A task subclass names its scene, config class, state and action names and their sources, and
fills five hooks (``_ee_bounds``, ``_reset_task``, ``_task_state``, ``_evaluate``,
``_ee_command``); this class does the rest of the gymnasium API.

Actions (``action_mode``):

- ``"ee"``: the task's end-effector action (positions in metres, plus a gripper command in
  [0, 1] where the task has one). The target is clipped to the task's workspace and to
  ``max_ee_step`` from where the ee is now, then turned into joint targets by a warm-started
  damped-least-squares IK with the tool pointing down.
- ``"joint"``: 6 joint position targets (rad) and the gripper command (0 open, 1 closed); the
  state then also carries the 6 joint positions. This is the hardware layer's interface.

Either way the joint targets sent to the position actuators move by at most the joint velocity
limits times the control period per step.

Observation: ``state`` (raw units, float32), ``timestamp`` (sim seconds since reset) and, for each
camera asked for, ``image.<camera>`` (H, W, 3) uint8. ``info``: ``is_success`` and ``score`` in
[0, 1]. Reward: success (1.0 on success, else 0.0) or the score, by ``reward``.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np

from robopolicy.data.features import Source
from sim.arm import ASSETS, JOINTS, Arm, IKConfig, tool_down
from sim.gl import make_renderer, require_rendering
from sim.registry import TaskError, TaskMeta

CAMERAS = ("front", "wrist")
CONTROL_FPS = 10.0


@dataclasses.dataclass(frozen=True)
class ArmTaskConfig:
    """Options every built-in arm task shares (``make_task(name, **options)``)."""

    action_mode: str = "ee"
    """``"ee"`` (end-effector targets, the task's own action) or ``"joint"`` (6 joint targets in
    rad and a gripper command in [0, 1])."""
    cameras: tuple[str, ...] = ()
    """Cameras giving ``image.<camera>`` observations: any of ``"front"``, ``"wrist"``."""
    image_size: tuple[int, int] = (96, 96)
    """(height, width) of image observations."""
    render_size: tuple[int, int] = (240, 320)
    """(height, width) of ``render()`` frames (``render_mode="rgb_array"``)."""
    max_ee_step: float = 0.05
    """Largest ee target move (m) per control step from the current ee position."""
    ik_iterations: int = 2
    """Warm-started IK iterations per control step."""
    terminate_on_success: bool = True
    """End the episode (``terminated``) on the first successful step."""
    reward: str = "success"
    """``"success"``: 1.0 on success, else 0.0; ``"score"``: the dense score in [0, 1] (use it
    with ``terminate_on_success=False``, or ending early costs reward)."""

    def __post_init__(self) -> None:
        if self.action_mode not in ("ee", "joint"):
            raise ValueError(f"action_mode must be 'ee' or 'joint', got {self.action_mode!r}")
        cameras = (self.cameras,) if isinstance(self.cameras, str) else tuple(self.cameras)
        object.__setattr__(self, "cameras", cameras)
        for camera in cameras:
            if camera not in CAMERAS:
                raise ValueError(f"unknown camera {camera!r}; built-in cameras are {CAMERAS}")
        for name in ("image_size", "render_size"):
            size = tuple(int(s) for s in getattr(self, name))
            if len(size) != 2 or min(size) < 8 or max(size) > 480:
                raise ValueError(f"{name} must be (height, width) within 8..480, got {size}")
            object.__setattr__(self, name, size)
        if not self.max_ee_step > 0:
            raise ValueError(f"max_ee_step must be positive, got {self.max_ee_step}")
        if self.ik_iterations < 1:
            raise ValueError(f"ik_iterations must be >= 1, got {self.ik_iterations}")
        if self.reward not in ("success", "score"):
            raise ValueError(f"reward must be 'success' or 'score', got {self.reward!r}")


def make_config(config_class: type, options: dict[str, Any]) -> Any:
    """``config_class(**options)``; a TaskError (with a "did you mean" for unknown names) when
    an option is unknown or invalid."""
    known = [f.name for f in dataclasses.fields(config_class)]
    for name in options:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=2)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise TaskError(f"unknown option {name!r} for {config_class.__name__}{hint}")
    try:
        return config_class(**options)
    except (TypeError, ValueError) as exc:
        raise TaskError(f"{config_class.__name__}: {exc}") from exc


class ArmTaskEnv(gym.Env):
    """A built-in task on arm6. Subclasses set the class attributes and the hooks."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": CONTROL_FPS}
    scene: ClassVar[str]
    """The scene file in ``sim/assets``."""
    config_class: ClassVar[type[ArmTaskConfig]] = ArmTaskConfig
    task_state_names: ClassVar[tuple[str, ...]]
    """Names of the task's state dimensions (joint mode appends the joint positions)."""
    task_state_units: ClassVar[str]
    """Units of the task's state, in words."""
    ee_action_names: ClassVar[tuple[str, ...]]
    """Names of the ee-mode action dimensions."""
    ee_action_units: ClassVar[str]
    """Units of the ee-mode action, in words."""
    task_state_sources: ClassVar[tuple[Source, ...]]
    """What produces the task's state, in order: the end effector, the gripper, scene objects."""
    ee_action_sources: ClassVar[tuple[Source, ...]]
    """What the ee-mode action commands, in order."""

    def __init__(self, render_mode: str | None = None, **options: Any) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.config = make_config(self.config_class, options)
        if self.config.cameras:
            require_rendering()  # camera observations cannot do without: fail before any work
        self.model = mujoco.MjModel.from_xml_path(str(ASSETS / self.scene))
        self.data = mujoco.MjData(self.model)
        self.arm = Arm(self.model, IKConfig(iterations=self.config.ik_iterations))
        self.n_substeps = round(1.0 / CONTROL_FPS / self.model.opt.timestep)
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._q_cmd = self.arm.home.copy()
        self._max_dq = self.arm.velocity_limits / CONTROL_FPS
        self._tool = tool_down(0.0)
        self._build_spaces()

    # ------------------------------------------------------------------ spaces and meta

    def _ee_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Low and high of the ee action (the workspace, then the gripper's [0, 1])."""
        raise NotImplementedError

    def _build_spaces(self) -> None:
        cfg = self.config
        state_names, state_units = self.task_state_names, self.task_state_units
        state_sources = self.task_state_sources
        if cfg.action_mode == "ee":
            low, high = self._ee_bounds()
            action_names, units = self.ee_action_names, self.ee_action_units
            action_sources = self.ee_action_sources
        else:
            low = np.append(self.arm.lower, 0.0)
            high = np.append(self.arm.upper, 1.0)
            action_names = (*JOINTS, "gripper")
            units = "rad (joint position targets), gripper 0..1 (0 open, 1 closed)"
            action_sources = (Source("joint_target", size=6), Source("gripper", size=1))
            state_names = (*state_names, *JOINTS)
            state_units = f"{state_units}; joint positions in rad"
            state_sources = (*state_sources, Source("joint_state", size=len(JOINTS)))
        self.action_space = gym.spaces.Box(low.astype(np.float32), high.astype(np.float32))
        self._action_low, self._action_high = low, high
        spaces: dict[str, gym.spaces.Space] = {
            "state": gym.spaces.Box(-np.inf, np.inf, (len(state_names),), np.float32),
            "timestamp": gym.spaces.Box(0.0, np.inf, (), np.float64),
        }
        for camera in cfg.cameras:
            spaces[f"image.{camera}"] = gym.spaces.Box(0, 255, (*cfg.image_size, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)
        self.task_meta = TaskMeta(
            state_names,
            tuple(action_names),
            units,
            CONTROL_FPS,
            CAMERAS,
            state_sources=state_sources,
            action_sources=action_sources,
        )
        self.state_units = state_units
        """Units of ``obs["state"]``, for the episode store's feature attributes."""

    # ------------------------------------------------------------------ task hooks

    def _reset_task(self, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        """Place the task's objects; return the ee start position (3,) and gripper command."""
        raise NotImplementedError

    def _task_state(self) -> np.ndarray:
        """The task's state vector (``task_state_names``), raw units."""
        raise NotImplementedError

    def _evaluate(self) -> tuple[bool, float]:
        """(is_success, score in [0, 1]) of the current sim state."""
        raise NotImplementedError

    def _ee_command(self, action: np.ndarray) -> tuple[np.ndarray, float]:
        """The ee position target (3,) and gripper command of a clipped ee-mode action."""
        raise NotImplementedError

    # ------------------------------------------------------------------ gymnasium API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        start, gripper = self._reset_task(self.np_random)
        q = self.arm.ik(start, self._tool, self.arm.home, iterations=30)
        self.arm.set_configuration(self.data, q, gripper)
        self._q_cmd = q
        mujoco.mj_forward(self.model, self.data)
        success, score = self._evaluate()
        return self._observation(), {"is_success": success, "score": score}

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        action = np.asarray(action, dtype=np.float64).reshape(self.action_space.shape)
        if not np.isfinite(action).all():
            raise ValueError(f"non-finite action {action}")
        action = np.clip(action, self._action_low, self._action_high)
        if self.config.action_mode == "ee":
            target, gripper = self._ee_command(action)
            current = self.arm.ee_position(self.data)
            delta = target - current
            distance = float(np.sqrt(delta @ delta))
            if distance > self.config.max_ee_step:
                target = current + delta * (self.config.max_ee_step / distance)
            q = self.arm.ik(target, self._tool, self._q_cmd)
        else:
            q, gripper = action[:6], float(action[6])
        # Joint targets move at most at the joint velocity limits, as a real controller's do.
        self._q_cmd = self._q_cmd + np.clip(q - self._q_cmd, -self._max_dq, self._max_dq)
        self.arm.command(self.data, self._q_cmd, gripper)
        mujoco.mj_step(self.model, self.data, nstep=self.n_substeps)
        mujoco.mj_kinematics(self.model, self.data)  # positions of the new state, not the last
        success, score = self._evaluate()
        reward = float(success) if self.config.reward == "success" else score
        terminated = success and self.config.terminate_on_success
        info = {"is_success": success, "score": score}
        return self._observation(), reward, terminated, False, info

    def _observation(self) -> dict[str, np.ndarray]:
        state = self._task_state()
        if self.config.action_mode == "joint":
            state = np.concatenate([state, self.arm.joint_positions(self.data)])
        obs = {
            "state": state.astype(np.float32),
            "timestamp": np.array(self.data.time, dtype=np.float64),
        }
        for camera in self.config.cameras:
            obs[f"image.{camera}"] = self._render_camera(camera, self.config.image_size)
        return obs

    # ------------------------------------------------------------------ rendering

    def render(self) -> np.ndarray | None:
        """The front camera at ``render_size`` (``render_mode="rgb_array"``), else None."""
        if self.render_mode != "rgb_array":
            return None
        return self._render_camera("front", self.config.render_size)

    def _render_camera(self, camera: str, size: tuple[int, int]) -> np.ndarray:
        renderer = self._renderers.get(size)
        if renderer is None:
            renderer = self._renderers[size] = make_renderer(self.model, *size)
        renderer.update_scene(self.data, camera=camera)
        return renderer.render()

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
        super().close()
