"""robosuite 1.5 manipulation tasks as gymnasium envs with robomimic's settings and keys.

One env per robosuite task (``Lift``, ``PickPlaceCan``, ``NutAssemblySquare``), made the way
robomimic's datasets were: Panda arm, 20 Hz, the ``OSC_POSE`` controller with delta actions
(robosuite 1.5 spells it as a ``BASIC`` composite controller whose ``right`` arm part is
``OSC_POSE``), sparse reward, episodes of fixed length (the registry's TimeLimit, 400 steps as for
robomimic's proficient-human data).

Observation (``docs/DESIGN.md``, one env, no batch or history axis):

- ``"state"`` ``(Ds,)`` float32: robomimic's low-dim keys ``object``, ``robot0_eef_pos``,
  ``robot0_eef_quat``, ``robot0_gripper_qpos`` concatenated in that order; ``TaskMeta.state_names``
  names every dimension (quaternions are robosuite's ``x, y, z, w``);
- the same four keys under their own names, float64 as robosuite gives them and as robomimic's
  HDF5 stores them, so data imported from robomimic (``robopolicy.data.formats.robomimic``) lines
  up one-to-one;
- ``"image.<camera>"`` ``(H, W, 3)`` uint8 for each camera asked for (robomimic: ``agentview``
  and ``robot0_eye_in_hand`` at 84x84), row 0 at the top: robosuite renders in the OpenGL
  convention (bottom row first) and robomimic flips every image when it writes a dataset, so we
  flip too;
- ``"timestamp"`` ``()`` float64: simulated seconds since reset.

Action ``(7,)`` in [-1, 1]: eef position delta (x 0.05 m), eef axis-angle rotation delta
(x 0.5 rad), both in the robot base frame (which robosuite places unrotated in the world), then
the gripper (-1 open, +1 closed).

``reset(seed=s)`` reseeds, in place, the one ``numpy.random.Generator`` robosuite draws every
random quantity of an episode from (object sizes and placements, the arm's initial joint noise),
so the episode is a pure function of ``s``.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from sim.gl import RenderingUnavailable, rendering_problem
from sim.registry import TaskMeta

ROBOMIMIC_LOW_DIM_KEYS = ("object", "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos")
"""robomimic's low-dim observation keys for the single-arm tasks, in ``"state"`` order."""
ROBOMIMIC_CAMERAS = ("agentview", "robot0_eye_in_hand")
"""The cameras of robomimic's image datasets."""
STATE_UNITS = (
    "m (positions, the object's position relative to the eef, gripper finger joints); "
    "unit quaternions x, y, z, w (orientations)"
)
ACTION_NAMES = ("dx", "dy", "dz", "drx", "dry", "drz", "gripper")
ACTION_UNITS = (
    "OSC_POSE delta in [-1, 1]: eef position x 0.05 m, eef axis-angle rotation x 0.5 rad "
    "(robot base frame); gripper -1 open, +1 closed"
)
OSC_POSE = {
    "type": "OSC_POSE",
    "input_max": 1,
    "input_min": -1,
    "output_max": [0.05, 0.05, 0.05, 0.5, 0.5, 0.5],
    "output_min": [-0.05, -0.05, -0.05, -0.5, -0.5, -0.5],
    "kp": 150,
    "damping_ratio": 1,
    "impedance_mode": "fixed",
    "kp_limits": [0, 300],
    "damping_ratio_limits": [0, 10],
    "position_limits": None,
    "orientation_limits": None,
    "uncouple_pos_ori": True,
    "input_type": "delta",
    "input_ref_frame": "base",
    "interpolation": None,
    "ramp_ratio": 0.2,
    "gripper": {"type": "GRIP"},
}
"""robomimic's controller (its datasets' ``env_kwargs.controller_configs``) in robosuite 1.5 terms:
``control_delta: true`` became ``input_type: "delta"``, ``damping`` became ``damping_ratio``."""


@dataclasses.dataclass(frozen=True)
class RobosuiteConfig:
    """How to build one robosuite task."""

    env_name: str
    """robosuite environment class, e.g. ``Lift``, ``PickPlaceCan``, ``NutAssemblySquare``."""
    robot: str = "Panda"
    """robosuite robot; robomimic's single-arm datasets use ``Panda``."""
    control_freq: float = 20.0
    """Actions per second of simulated time (robomimic: 20)."""
    cameras: tuple[str, ...] = ()
    """Cameras to observe as ``image.<camera>``; empty for low-dim mode."""
    image_size: tuple[int, int] = (84, 84)
    """Height and width of camera observations in pixels (robomimic: 84x84)."""
    hard_reset: bool = True
    """Rebuild the model at every reset, as robosuite does by default (resamples Lift's cube
    size); False resets faster and keeps the object sizes drawn at construction (the same in
    every env)."""
    terminate_on_success: bool = False
    """End the episode (``terminated``) at the first successful step; robomimic never does."""
    render_mode: str | None = None
    """``"rgb_array"`` to make :meth:`RobosuiteEnv.render` return frames, else None."""
    render_camera: str = "agentview"
    """Camera of :meth:`RobosuiteEnv.render`."""
    render_size: tuple[int, int] = (256, 256)
    """Height and width of :meth:`RobosuiteEnv.render` frames."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "cameras", tuple(self.cameras))
        object.__setattr__(self, "image_size", tuple(self.image_size))
        object.__setattr__(self, "render_size", tuple(self.render_size))
        if not self.control_freq > 0:
            raise ValueError(f"control_freq must be positive, got {self.control_freq}")
        for name, size in (("image_size", self.image_size), ("render_size", self.render_size)):
            if len(size) != 2 or min(size) < 1:
                raise ValueError(f"{name} must be (height, width) >= 1, got {size}")
        if len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"cameras repeat a name: {self.cameras}")
        if self.render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {self.render_mode!r}")

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> RobosuiteConfig:
        """The config from keyword arguments; an unknown key is a TypeError with a "did you
        mean"."""
        fields = {f.name for f in dataclasses.fields(cls)}
        for key in kwargs:
            if key not in fields:
                close = difflib.get_close_matches(key, fields, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise TypeError(f"unknown robosuite task option {key!r}{hint}")
        return cls(**kwargs)


def _component_names(key: str, size: int) -> list[str]:
    """Names of the dimensions of one robosuite observable: ``.x`` ``.y`` ``.z`` for positions,
    ``.qx`` ``.qy`` ``.qz`` ``.qw`` for quaternions, ``.0`` ``.1`` ... otherwise."""
    if size == 3 and key.endswith("_pos"):
        return [f"{key}.{axis}" for axis in "xyz"]
    if size == 4 and key.endswith("_quat"):
        return [f"{key}.q{axis}" for axis in "xyzw"]
    return [f"{key}.{i}" for i in range(size)]


class RobosuiteEnv(gym.Env):
    """A robosuite task behind the project's observation contract (see the module docstring)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"]}
    _low_dim = ROBOMIMIC_LOW_DIM_KEYS

    def __init__(self, config: RobosuiteConfig) -> None:
        offscreen = bool(config.cameras) or config.render_mode is not None
        problem = rendering_problem()  # robosuite reads MUJOCO_GL once, at its import
        if problem and offscreen:
            raise RenderingUnavailable(problem)
        import robosuite  # the 'robosuite' extra; make_task turns its absence into a clear error
        from robosuite import macros

        self.config = config
        self.render_mode = config.render_mode
        self._flip = macros.IMAGE_CONVENTION == "opengl"
        camera_kwargs: dict[str, Any] = {}
        if config.cameras:
            camera_kwargs = {
                "camera_names": list(config.cameras),
                "camera_heights": config.image_size[0],
                "camera_widths": config.image_size[1],
            }
        self._env = robosuite.make(
            config.env_name,
            robots=config.robot,
            controller_configs={"type": "BASIC", "body_parts": {"right": dict(OSC_POSE)}},
            control_freq=config.control_freq,
            has_renderer=False,
            has_offscreen_renderer=offscreen,
            use_camera_obs=bool(config.cameras),
            use_object_obs=True,
            reward_shaping=False,
            ignore_done=True,
            hard_reset=config.hard_reset,
            seed=0,  # the model built here (object sizes) is the same in every process
            **camera_kwargs,
        )
        self._steps = 0
        raw = self._env._get_observations(force_update=True)
        self._key_sizes = {key: int(np.size(raw[self._raw_key(key)])) for key in self._low_dim}
        self.task_meta = TaskMeta(
            state_names=tuple(self._state_names(raw)),
            action_names=ACTION_NAMES,
            action_units=ACTION_UNITS,
            fps=float(config.control_freq),
            cameras=config.cameras or ROBOMIMIC_CAMERAS,
        )
        self.state_units = STATE_UNITS
        low, high = self._env.action_spec
        self.action_space = gym.spaces.Box(
            np.asarray(low, np.float32), np.asarray(high, np.float32), dtype=np.float32
        )
        self.observation_space = gym.spaces.Dict(self._spaces())

    @staticmethod
    def _raw_key(key: str) -> str:
        """robosuite's name for robomimic's key (robomimic renames ``object-state``)."""
        return "object-state" if key == "object" else key

    def _state_names(self, raw: dict[str, Any]) -> list[str]:
        """Every dimension of ``"state"`` named after robosuite's observable it comes from
        (``object-state`` concatenates the enabled, active observables of modality ``object``)."""
        names: list[str] = []
        for key in self._low_dim:
            if key != "object":
                names += _component_names(key, self._key_sizes[key])
                continue
            parts: list[str] = []
            for name, observable in self._env._observables.items():
                used = observable.is_enabled() and observable.is_active()
                if observable.modality == "object" and used:
                    parts += _component_names(name, int(np.size(raw[name])))
            if len(parts) != self._key_sizes["object"]:
                raise RuntimeError(
                    f"{self.config.env_name}: object observables give {len(parts)} names for "
                    f"{self._key_sizes['object']} dims of object-state"
                )
            names += parts
        return names

    def _spaces(self) -> dict[str, gym.Space]:
        inf = np.inf
        spaces: dict[str, gym.Space] = {
            "state": gym.spaces.Box(-inf, inf, (len(self.task_meta.state_names),), np.float32),
            "timestamp": gym.spaces.Box(0.0, inf, (), np.float64),
        }
        for key, size in self._key_sizes.items():
            spaces[key] = gym.spaces.Box(-inf, inf, (size,), np.float64)
        height, width = self.config.image_size
        for camera in self.config.cameras:
            spaces[f"image.{camera}"] = gym.spaces.Box(0, 255, (height, width, 3), np.uint8)
        return spaces

    @property
    def sim(self) -> Any:
        """robosuite's ``MjSim`` (read-only use: experts and tests read poses from it)."""
        return self._env.sim

    @property
    def robosuite_env(self) -> Any:
        """The wrapped robosuite environment."""
        return self._env

    def _observe(self, raw: dict[str, Any]) -> dict[str, np.ndarray]:
        obs: dict[str, np.ndarray] = {}
        for key in self._low_dim:
            obs[key] = np.array(raw[self._raw_key(key)], dtype=np.float64)
        obs["state"] = np.concatenate([obs[key] for key in self._low_dim]).astype(np.float32)
        for camera in self.config.cameras:
            image = np.asarray(raw[f"{camera}_image"], dtype=np.uint8)
            obs[f"image.{camera}"] = np.ascontiguousarray(image[::-1] if self._flip else image)
        obs["timestamp"] = np.array(self._steps / self.config.control_freq, dtype=np.float64)
        return obs

    def _info(self) -> dict[str, Any]:
        success = bool(self._env._check_success())
        return {"is_success": success, "score": float(success)}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        # The episode's seed comes from gymnasium's np_random: reset(seed=s) fixes it, and the
        # resets after it follow a fixed sequence. robosuite shares one Generator among its
        # samplers, objects and robots, so it is reseeded in place rather than replaced.
        episode_seed = int(self.np_random.integers(2**63 - 1))
        self._env.rng.bit_generator.state = np.random.default_rng(episode_seed).bit_generator.state
        raw = self._env.reset()
        self._steps = 0
        return self._observe(raw), self._info()

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_space.shape:
            raise ValueError(f"action shape {action.shape}, expected {self.action_space.shape}")
        low, high = self.action_space.low, self.action_space.high
        raw, reward, _, _ = self._env.step(np.clip(action, low, high))
        self._steps += 1
        info = self._info()
        terminated = self.config.terminate_on_success and info["is_success"]
        return self._observe(raw), float(reward), terminated, False, info

    def render(self) -> np.ndarray | None:
        """An RGB frame ``(H, W, 3)`` uint8 from ``render_camera`` when ``render_mode`` is
        ``"rgb_array"``, row 0 at the top."""
        if self.render_mode != "rgb_array":
            return None
        height, width = self.config.render_size
        frame = self._env.sim.render(
            camera_name=self.config.render_camera, height=height, width=width
        )
        return np.ascontiguousarray(frame[::-1])  # MjSim.render is bottom row first, always

    def close(self) -> None:
        env = getattr(self, "_env", None)
        if env is not None:
            env.close()
            self._env = None
