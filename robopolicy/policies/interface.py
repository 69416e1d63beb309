"""A policy's interface: what it observes, what its actions command, at what rate and window.

``docs/DESIGN.md`` ("Checkpoint"): every checkpoint describes its observation features (shape,
dtype, units, names and the sources that produce them: joint state, end-effector pose, a named
camera at H x W, an object pose), its action (joint or end-effector targets, gripper, units),
the control fps and To/Tp/Ta. It is written at training from the dataset's metadata
(:meth:`Interface.from_data`), travels on the policy object (``Policy.interface``) through RL
fine-tuning and distillation, is saved as the checkpoint's ``interface.json`` and published in
the server's metadata; the control daemon builds the observation from it and refuses a robot
that cannot provide it. An interface always agrees with its policy's config
(:meth:`Interface.check_fits`); what nobody recorded stays unknown (a source ``unknown``, units
and names None, fps None), never a guess.

    {"observation": {"state": {"shape": [6], "dtype": "float32", "units": "m ...",
                               "names": ["ee_x", ...],
                               "sources": [{"kind": "ee_pose", "name": null, "size": 2}, ...]}},
     "action": {"shape": [2], "dtype": "float32", ...,
                "sources": [{"kind": "ee_target", "name": null, "size": null}]},
     "fps": 10.0, "n_obs_steps": 2, "horizon": 16, "n_action_steps": 8}
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from robopolicy.data.features import (
    ACTION_SOURCES,
    OBSERVATION_SOURCES,
    FeatureInfo,
    Source,
    check_sources,
)

if TYPE_CHECKING:
    from robopolicy.policies.base import PolicyConfig

DTYPES = ("float32", "uint8")
"""What a policy takes: numbers in raw units as float32, camera frames as uint8."""
MAX_FEATURES = 64
"""Most observation features."""
MAX_DIMS = 4
"""Most axes of one feature's per-frame shape."""
MAX_SIDE = 1 << 16
"""Longest axis of a per-frame shape."""
MAX_VALUES = 1 << 26
"""Most values of one frame of a feature (a 4096 x 4096 RGB frame is 50M)."""
MAX_TEXT = 1024
"""Longest units text and value name."""
MAX_WINDOW = 4096
"""Largest To, Tp or Ta."""
MAX_FPS = 10_000.0
"""Highest control rate."""
UNKNOWN = (Source("unknown"),)
"""The sources of a feature nobody described."""
MAX_KEY = 255
"""Longest observation key (a store's keys are file names)."""


@dataclasses.dataclass(frozen=True)
class Feature:
    """One observation key, or the action: its values per frame and what produces them."""

    shape: tuple[int, ...]
    """Per-frame shape (the batch and To axes come on top): ``(Ds,)`` for a vector,
    ``(H, W, 3)`` for a camera."""
    dtype: str
    """``float32`` (raw units) or ``uint8`` (camera frames)."""
    units: str | None
    """Units in words (``"m (positions), sin/cos of 4*yaw"``); None: not recorded."""
    names: tuple[str, ...] | None
    """One name per value (flattened), e.g. ``("ee_x", "ee_y", ...)``; None: not recorded."""
    sources: tuple[Source, ...]
    """What produces the values, in order (:mod:`robopolicy.data.features`)."""

    def __post_init__(self) -> None:
        shape = tuple(self.shape)
        object.__setattr__(self, "shape", shape)
        if not 1 <= len(shape) <= MAX_DIMS or not all(
            isinstance(d, int) and 1 <= d <= MAX_SIDE for d in shape
        ):
            raise ValueError(f"shape: {list(shape)[:8]} is not 1-{MAX_DIMS} sides of 1-{MAX_SIDE}")
        if self.size > MAX_VALUES:
            raise ValueError(f"shape: {list(shape)} holds over {MAX_VALUES} values")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype: {self.dtype!r} is not one of {list(DTYPES)}")
        if self.units is not None and len(self.units) > MAX_TEXT:
            raise ValueError(f"units: over {MAX_TEXT} characters")
        if self.names is not None:
            object.__setattr__(self, "names", tuple(self.names))
            if len(self.names) != self.size:
                raise ValueError(f"names: {len(self.names)} names for {self.size} values")
            if not all(0 < len(n) <= MAX_TEXT for n in self.names):
                raise ValueError(f"names: each must be 1-{MAX_TEXT} characters")
        object.__setattr__(self, "sources", tuple(self.sources))
        check_sources(self.sources, self.size, OBSERVATION_SOURCES | ACTION_SOURCES)

    @property
    def size(self) -> int:
        """Values per frame."""
        return math.prod(self.shape)

    @classmethod
    def described(cls, shape: tuple[int, ...], dtype: str, info: FeatureInfo | None) -> Feature:
        """A feature of ``shape`` and ``dtype`` as ``info`` (a store's record) describes it."""
        if info is None:
            return cls(shape, dtype, None, None, UNKNOWN)
        return cls(shape, dtype, info.units, info.names, info.sources or UNKNOWN)


@dataclasses.dataclass(frozen=True)
class Interface:
    """What a policy observes and does (module docstring)."""

    observation: dict[str, Feature]
    """Observation key -> feature: the policy's low-dim keys, then its camera keys."""
    action: Feature
    """The action, ``(Da,)`` float32 per step: joint or end-effector targets, gripper."""
    fps: float | None
    """Control rate the data was recorded at: actions per second; None: not recorded."""
    n_obs_steps: int
    """To: observation steps the policy conditions on, ending at "now"."""
    horizon: int
    """Tp: actions predicted per sample (the chunk)."""
    n_action_steps: int
    """Ta: actions executed per chunk."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "observation", dict(self.observation))
        if not 1 <= len(self.observation) <= MAX_FEATURES:
            raise ValueError(f"observation: give 1 to {MAX_FEATURES} features")
        for key, feature in self.observation.items():
            if not _is_key(key):
                raise ValueError(f"observation: {key[:128]!r} cannot be a store's key")
            _check_side(f"observation.{key}", feature, OBSERVATION_SOURCES)
        _check_side("action", self.action, ACTION_SOURCES)
        if self.action.dtype != "float32" or len(self.action.shape) != 1:
            raise ValueError(f"action: must be (Da,) float32, got {list(self.action.shape)}")
        if self.fps is not None and not (0 < self.fps <= MAX_FPS and math.isfinite(self.fps)):
            raise ValueError(f"fps: must be in (0, {MAX_FPS:g}] or null, got {self.fps!r}")
        for name in ("n_obs_steps", "horizon", "n_action_steps"):
            if not 1 <= getattr(self, name) <= MAX_WINDOW:
                raise ValueError(f"{name}: must be in [1, {MAX_WINDOW}], got {getattr(self, name)}")
        if self.n_obs_steps > self.horizon:
            raise ValueError(f"n_obs_steps: {self.n_obs_steps} > horizon {self.horizon}")
        if self.n_action_steps > self.horizon - self.n_obs_steps + 1:
            raise ValueError(
                f"n_action_steps: {self.n_action_steps} > horizon - n_obs_steps + 1 "
                f"({self.horizon - self.n_obs_steps + 1})"
            )

    @classmethod
    def from_data(
        cls,
        config: PolicyConfig,
        *,
        fps: float | None,
        features: Mapping[str, FeatureInfo],
    ) -> Interface:
        """The interface of a policy of ``config`` trained on data recorded at ``fps`` whose
        keys (the config's observation keys and ``action``) ``features`` describes; a key it
        leaves out is unknown."""
        c = config
        if not c.shapes:
            raise ValueError("the policy config has no shapes yet (build the policy from data)")
        observation = {
            key: Feature.described(c.shapes[key], "float32", features.get(key))
            for key in c.obs_keys
        }
        for key in c.image_keys:
            observation[key] = Feature.described(c.shapes[key], "uint8", features.get(key))
        action = Feature.described((c.action_dim,), "float32", features.get("action"))
        return cls(observation, action, fps, c.n_obs_steps, c.horizon, c.n_action_steps)

    @classmethod
    def from_config(cls, config: PolicyConfig, *, fps: float | None = None) -> Interface:
        """What ``config`` alone tells (shapes, dtypes, the window): sources unknown, units and
        names not recorded."""
        return cls.from_data(config, fps=fps, features={})

    def check_fits(self, config: PolicyConfig) -> None:
        """ValueError naming the first field where this interface and the policy ``config``
        disagree (keys, shapes, dtypes, To/Tp/Ta)."""
        expected = Interface.from_config(config, fps=self.fps)
        for name in ("n_obs_steps", "horizon", "n_action_steps"):
            mine, theirs = getattr(self, name), getattr(expected, name)
            if mine != theirs:
                raise ValueError(f"{name}: the interface has {mine}, the policy config {theirs}")
        if set(self.observation) != set(expected.observation):
            raise ValueError(
                f"observation: the interface has {sorted(self.observation)}, the policy "
                f"observes {sorted(expected.observation)}"
            )
        pairs = [
            (f"observation.{k}", v, expected.observation[k]) for k, v in self.observation.items()
        ]
        for where, mine, theirs in [*pairs, ("action", self.action, expected.action)]:
            for name in ("shape", "dtype"):
                if getattr(mine, name) != getattr(theirs, name):
                    raise ValueError(
                        f"{where}.{name}: the interface has {getattr(mine, name)}, the policy "
                        f"config makes {getattr(theirs, name)}"
                    )


def _is_key(key: str) -> bool:
    """Whether ``key`` can be a store's key: a file name of printable characters."""
    return (
        0 < len(key) <= MAX_KEY
        and key.isprintable()
        and not key.startswith(".")
        and not any(c in key for c in "/\\")
    )


def _check_side(where: str, feature: Feature, kinds: Mapping[str, str]) -> None:
    """ValueError unless ``feature``'s sources are of ``kinds`` and a camera's frames are
    ``(H, W, 3)`` uint8."""
    try:
        check_sources(feature.sources, feature.size, kinds)
    except ValueError as exc:
        raise ValueError(f"{where}.{exc}") from None
    cameras = [s for s in feature.sources if s.kind == "camera"]
    if cameras and (len(feature.shape) != 3 or feature.shape[2] != 3 or feature.dtype != "uint8"):
        raise ValueError(f"{where}: a camera gives (H, W, 3) uint8 frames, not {feature.shape}")
