"""``SafetyLimits``: the typed, validated limits the safety filter enforces.

A plain dataclass of tuples, so it round-trips through :mod:`robopolicy.config` as JSON. Build
one from a driver's :class:`~hardware.driver.JointSpec` with :meth:`SafetyLimits.from_spec`,
tightening as needed (a per-tick step, a fraction of the maker's speed, a workspace box).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import numpy as np

from hardware.driver import JointSpec


@dataclasses.dataclass(frozen=True)
class SafetyLimits:
    """Limits for one arm; joint quantities are per joint, in the driver's units (rad)."""

    lower: tuple[float, ...]
    """Joint position lower limits (rad)."""
    upper: tuple[float, ...]
    """Joint position upper limits (rad)."""
    max_step: tuple[float, ...]
    """Largest change of a joint target from the last safe command in one tick (rad)."""
    max_velocity: tuple[float, ...]
    """Largest joint speed implied by consecutive commands, ``|Δq| / dt`` (rad/s)."""
    max_acceleration: tuple[float, ...] | None = None
    """Largest change of that speed per second (rad/s²); None: not enforced."""
    gripper: tuple[float, float] | None = (0.0, 1.0)
    """Allowed gripper command range (0 open .. 1 closed); None for an arm without a gripper."""
    gripper_max_step: float | None = None
    """Largest change of the gripper command in one tick; None: not enforced."""
    workspace_lower: tuple[float, float, float] | None = None
    """Lower corner (x, y, z) of the box the end effector must stay in (m); None: no box."""
    workspace_upper: tuple[float, float, float] | None = None
    """Upper corner (x, y, z) of that box (m); set both corners or neither."""
    names: tuple[str, ...] = ()
    """Joint names, for reports (default ``j0``, ``j1``, ...)."""

    def __post_init__(self) -> None:
        n = len(self.lower)
        if n == 0:
            raise ValueError("limits need at least one joint")
        per_joint = {
            "lower": self.lower,
            "upper": self.upper,
            "max_step": self.max_step,
            "max_velocity": self.max_velocity,
            "max_acceleration": self.max_acceleration,
        }
        for name, values in per_joint.items():
            if values is not None and (len(values) != n or not np.isfinite(values).all()):
                raise ValueError(f"{name} must be {n} finite numbers, got {values}")
        if not (np.asarray(self.lower) < np.asarray(self.upper)).all():
            raise ValueError(f"lower {self.lower} must be below upper {self.upper}")
        for name in ("max_step", "max_velocity", "max_acceleration"):
            values = per_joint[name]
            if values is not None and not (np.asarray(values) > 0).all():
                raise ValueError(f"{name} must be positive, got {values}")
        if self.gripper is not None and not (
            len(self.gripper) == 2
            and np.isfinite(self.gripper).all()
            and self.gripper[0] < self.gripper[1]
        ):
            raise ValueError(f"gripper must be (low, high) with low < high, got {self.gripper}")
        if self.gripper_max_step is not None and not (
            np.isfinite(self.gripper_max_step) and self.gripper_max_step > 0
        ):
            raise ValueError(f"gripper_max_step must be positive, got {self.gripper_max_step}")
        box = (self.workspace_lower, self.workspace_upper)
        if (box[0] is None) != (box[1] is None):
            raise ValueError("set both workspace_lower and workspace_upper, or neither")
        if box[0] is not None and box[1] is not None:
            lo, hi = np.asarray(box[0], dtype=float), np.asarray(box[1], dtype=float)
            if lo.shape != (3,) or hi.shape != (3,) or not np.isfinite([lo, hi]).all():
                raise ValueError(f"workspace corners must be 3 finite numbers, got {box}")
            if not (lo < hi).all():
                raise ValueError(f"workspace_lower {box[0]} must be below workspace_upper {box[1]}")
        if self.names and (len(self.names) != n or len(set(self.names)) != n):
            raise ValueError(f"names must be {n} unique joint names, got {self.names}")

    @property
    def dof(self) -> int:
        return len(self.lower)

    @property
    def action_size(self) -> int:
        """Da: the joints, plus one for the gripper when there is one."""
        return self.dof + (self.gripper is not None)

    @property
    def joint_names(self) -> tuple[str, ...]:
        return self.names or tuple(f"j{i}" for i in range(self.dof))

    @property
    def action_names(self) -> tuple[str, ...]:
        return self.joint_names + (("gripper",) if self.gripper is not None else ())

    @property
    def action_lower(self) -> tuple[float, ...]:
        """Lower bound of every action entry: joints, then the gripper."""
        return self.lower + ((self.gripper[0],) if self.gripper is not None else ())

    @property
    def action_upper(self) -> tuple[float, ...]:
        return self.upper + ((self.gripper[1],) if self.gripper is not None else ())

    @property
    def has_workspace(self) -> bool:
        return self.workspace_lower is not None

    @functools.cached_property
    def arrays(self) -> dict[str, np.ndarray]:
        """Every limit as a read-only float64 array, built once (the filter runs every tick)."""
        fields = {
            "lower": self.lower,
            "upper": self.upper,
            "max_step": self.max_step,
            "max_velocity": self.max_velocity,
            "max_acceleration": self.max_acceleration,
            "action_lower": self.action_lower,
            "action_upper": self.action_upper,
            "workspace_lower": self.workspace_lower,
            "workspace_upper": self.workspace_upper,
        }
        out = {}
        for name, values in fields.items():
            if values is not None:
                out[name] = np.array(values, dtype=np.float64)
                out[name].setflags(write=False)
        return out

    @classmethod
    def from_spec(
        cls,
        spec: JointSpec,
        *,
        max_step: float | Sequence[float] = 0.05,
        velocity_scale: float = 1.0,
        max_acceleration: float | Sequence[float] | None = None,
        margin: float = 0.0,
        workspace: tuple[Sequence[float], Sequence[float]] | None = None,
        gripper_max_step: float | None = None,
    ) -> SafetyLimits:
        """Limits from a driver's spec.

        Args:
            max_step: per-tick step (rad), one number for all joints or one per joint.
            velocity_scale: fraction of the spec's speed limits to allow (0 < scale <= 1).
            max_acceleration: rad/s² (one or per joint); None uses the spec's, if it has them.
            margin: distance (rad) kept from each position limit.
            workspace: ``(lower_xyz, upper_xyz)`` box for the end effector (m), or None.
            gripper_max_step: per-tick change of the gripper command, or None.
        """
        if not 0 < velocity_scale <= 1:
            raise ValueError(f"velocity_scale must be in (0, 1], got {velocity_scale}")
        n = spec.dof
        accel = max_acceleration if max_acceleration is not None else spec.acceleration
        return cls(
            lower=tuple(float(x) + margin for x in spec.lower),
            upper=tuple(float(x) - margin for x in spec.upper),
            max_step=_per_joint(max_step, n),
            max_velocity=tuple(float(v) * velocity_scale for v in spec.velocity),
            max_acceleration=None if accel is None else _per_joint(accel, n),
            gripper=spec.gripper,
            gripper_max_step=gripper_max_step,
            workspace_lower=None if workspace is None else _xyz(workspace[0]),
            workspace_upper=None if workspace is None else _xyz(workspace[1]),
            names=spec.names,
        )


def _per_joint(value: float | Sequence[float], n: int) -> tuple[float, ...]:
    if isinstance(value, int | float):
        return (float(value),) * n
    return tuple(float(v) for v in value)


def _xyz(value: Sequence[float]) -> tuple[float, float, float]:
    x, y, z = (float(v) for v in value)
    return (x, y, z)
