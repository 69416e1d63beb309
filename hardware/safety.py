"""The safety filter: one pure function between every command and every write (R1).

``filter_command(command, state, limits, dt)`` returns ``(safe_command, report)``. The stages
run in this order, as ros2_control's joint limiters and libfranka do (finite first):

1. **finite** — a command of the wrong shape or with any NaN/inf is not clipped, it is replaced
   by a **hold**: the last safe command (else the measured position), so NaN never passes;
2. **position** — joint limits; the gripper to its range;
3. **step** — the largest change of a joint target in one tick, from the last safe command;
4. **velocity** — ``|Δq| / dt``; then **acceleration** — the change of that velocity over
   ``dt``, when acceleration limits are given. Acceleration yields to the position limits and
   to the step/velocity bounds (stopping at a limit is always allowed); a hold is a stop;
5. **workspace** — the end effector (``fk(q)``, passed in, so the filter stays pure) must stay
   in an axis-aligned box; a command that would leave it is a hold (an arm that is already
   outside may only move closer to the box).

The report says what was clipped, by which stage, for which joint. ``check_chunk`` runs the same
filter over a whole action chunk and **rejects** it at the first step it would have to change,
naming the step, the joint and the limit: a chunk is executed as planned or not at all.
Units are the driver's (rad, rad/s, rad/s²; the gripper 0 open .. 1 closed; metres for the box).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hardware.driver import ArmState
from hardware.limits import SafetyLimits

log = logging.getLogger(__name__)
ForwardKinematics = Callable[[np.ndarray], np.ndarray]
"""Joint positions (n,) -> end-effector position (3,) in the workspace box's frame (m)."""


@dataclasses.dataclass(frozen=True, eq=False)
class FilterState:
    """What the filter compares a command with: the arm now and the last safe command."""

    measured: np.ndarray
    """Measured positions, (Da,) with the gripper or (n,) without; NaN where unknown."""
    last_command: np.ndarray | None = None
    """The last safe command written (Da,), or None before the first."""
    last_velocity: np.ndarray | None = None
    """Velocity (n,) of the last safe command (``report.velocity``), or None (taken as 0)."""

    @classmethod
    def from_arm(cls, state: ArmState, **kwargs: Any) -> FilterState:
        return cls(measured=state.as_action(), **kwargs)

    def after(self, safe: np.ndarray, report: SafetyReport) -> FilterState:
        """The state for the next tick, once ``safe`` was written."""
        return FilterState(self.measured, np.array(safe), report.velocity)


@dataclasses.dataclass(frozen=True)
class Clip:
    """One change the filter made: which stage, which joint, what was asked, what is allowed."""

    stage: str
    """"shape", "nonfinite", "position", "step", "velocity", "acceleration", "gripper" or
    "workspace"."""
    joint: str
    """Joint name, "gripper", "ee" (workspace) or "*" (the whole command)."""
    value: float
    """The requested quantity in the stage's units (position, step, velocity, acceleration)."""
    bound: float
    """The limit it crossed (NaN where there is no number, e.g. non-finite input)."""

    def __str__(self) -> str:
        return f"{self.joint}: {self.stage} {self.value:.6g} beyond {self.bound:.6g}"


@dataclasses.dataclass(frozen=True, eq=False)
class SafetyReport:
    """What ``filter_command`` did to one command."""

    clips: tuple[Clip, ...]
    """Every change, in stage order; empty when the command passed unchanged."""
    held: bool
    """True when the whole arm was held at the reference (non-finite command or workspace)."""
    velocity: np.ndarray
    """Joint velocity (n,) of the safe command from the reference: next tick's ``last_velocity``."""
    reference_ok: bool
    """False when neither the last command nor the measurement was finite for some joint: that
    joint's hold is the middle of its range, and the caller should not write at all."""
    reference: np.ndarray
    """The hold target (Da,) the stages measured from: the last safe command, else measured."""

    @property
    def modified(self) -> bool:
        return bool(self.clips)

    def __str__(self) -> str:
        return "; ".join(map(str, self.clips)) or "unchanged"


@dataclasses.dataclass(frozen=True)
class ChunkVerdict:
    """A whole chunk accepted, or rejected with the first reason (step, joint, limit)."""

    accepted: bool
    step: int | None = None
    """Index of the first offending action in the chunk."""
    joint: str | None = None
    limit: str | None = None
    """The stage that would have changed it ("velocity", "workspace", ...)."""
    value: float | None = None
    bound: float | None = None
    reason: str = ""

    def __bool__(self) -> bool:
        return self.accepted


def filter_command(
    command: Any,
    state: FilterState | ArmState,
    limits: SafetyLimits,
    dt: float,
    *,
    fk: ForwardKinematics | None = None,
) -> tuple[np.ndarray, SafetyReport]:
    """The safe version of ``command`` (Da,) for a tick of ``dt`` seconds, and what changed."""
    if not (np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive number of seconds, got {dt}")
    if limits.has_workspace and fk is None:
        raise ValueError("limits have a workspace box: pass fk (joint positions -> ee position)")
    if isinstance(state, ArmState):
        state = FilterState.from_arm(state)
    n, names = limits.dof, limits.joint_names
    ref, reference_ok = _reference(state, limits)
    cmd = _as_vector(command, limits.action_size)
    clips: list[Clip] = []
    if cmd is None:
        clips.append(Clip("shape", "*", _size(command), float(limits.action_size)))
        return ref.copy(), SafetyReport(tuple(clips), True, np.zeros(n), reference_ok, ref)
    if not np.isfinite(cmd).all():
        for i in np.flatnonzero(~np.isfinite(cmd)):
            clips.append(Clip("nonfinite", limits.action_names[i], float(cmd[i]), float("nan")))
        return ref.copy(), SafetyReport(tuple(clips), True, np.zeros(n), reference_ok, ref)

    out = cmd.copy()
    q, r = out[:n], ref[:n]  # views: the stages write into ``out``
    arrays = limits.arrays
    lo, hi, step, vmax = (arrays[k] for k in ("lower", "upper", "max_step", "max_velocity"))
    with np.errstate(over="ignore", invalid="ignore"):
        _window(q, lo, hi, "position", q, lo, hi, names, clips)
        _window(q, r - step, r + step, "step", q - r, -step, step, names, clips)
        reach = vmax * dt
        _window(q, r - reach, r + reach, "velocity", (q - r) / dt, -vmax, vmax, names, clips)
        if limits.max_acceleration is not None:
            amax = arrays["max_acceleration"]
            v0 = _previous_velocity(state, n, np.minimum(vmax, step / dt))
            low, high = r + (v0 - amax * dt) * dt, r + (v0 + amax * dt) * dt
            accel = ((q - r) / dt - v0) / dt
            _window(q, low, high, "acceleration", accel, -amax, amax, names, clips)
            s = np.minimum(step, reach)  # acceleration yields to position, step and velocity
            low, high = np.maximum(lo, r - s), np.minimum(hi, r + s)
            _window(q, low, high, "position", q, low, high, names, clips)
        if limits.gripper is not None:
            g = out[n : n + 1]
            glo, ghi = (np.array([b]) for b in limits.gripper)
            _window(g, glo, ghi, "gripper", g, glo, ghi, ("gripper",), clips)
            if limits.gripper_max_step is not None:
                gs = np.array([limits.gripper_max_step])
                gr = ref[n : n + 1]
                _window(g, gr - gs, gr + gs, "gripper", g - gr, -gs, gs, ("gripper",), clips)
    held = False
    if limits.has_workspace and fk is not None:
        wlo, whi = arrays["workspace_lower"], arrays["workspace_upper"]
        ee = _ee(fk, q)
        outside = _outside(ee, wlo, whi)
        # leaving the box is a hold; an arm already outside may only move closer to it
        if outside > 0 and not outside < _outside(_ee(fk, r), wlo, whi):
            axis = _worst_axis(ee, wlo, whi)
            value = float(ee[axis]) if ee.shape == (3,) else float("nan")
            bound = float(wlo[axis] if value < wlo[axis] else whi[axis])
            clips.append(Clip("workspace", "ee" + "xyz"[axis], value, bound))
            q[:] = r
            held = True
    return out, SafetyReport(tuple(clips), held, (q - r) / dt, reference_ok, ref)


def check_chunk(
    chunk: Any,
    state: FilterState | ArmState,
    limits: SafetyLimits,
    dt: float,
    *,
    fk: ForwardKinematics | None = None,
) -> ChunkVerdict:
    """Accept ``chunk`` (T, Da), actions ``dt`` apart, only if the filter would pass every one
    unchanged from ``state``; else reject it at the first step, naming joint and limit."""
    try:
        actions = np.asarray(chunk, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        return _reject(ChunkVerdict(False, limit="shape", reason=f"chunk is not numeric: {exc}"))
    if actions.ndim != 2 or actions.shape[0] == 0 or actions.shape[1] != limits.action_size:
        reason = f"chunk must have shape (T>=1, {limits.action_size}), got {actions.shape}"
        return _reject(ChunkVerdict(False, limit="shape", reason=reason))
    current = FilterState.from_arm(state) if isinstance(state, ArmState) else state
    for t, action in enumerate(actions):
        safe, report = filter_command(action, current, limits, dt, fk=fk)
        if report.modified:
            c = report.clips[0]
            more = len(report.clips) - 1
            reason = f"step {t}, {c}" + (f" (+{more} more)" if more else "")
            return _reject(ChunkVerdict(False, t, c.joint, c.stage, c.value, c.bound, reason))
        current = current.after(safe, report)
    return ChunkVerdict(True)


# -- helpers ------------------------------------------------------------------------------------


def _reject(verdict: ChunkVerdict) -> ChunkVerdict:
    log.warning("action chunk rejected: %s", verdict.reason)
    return verdict


def _as_vector(command: Any, size: int) -> np.ndarray | None:
    """``command`` as a float64 (size,) copy, or None when it is not one."""
    try:
        cmd = np.array(command, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return None
    return cmd if cmd.shape == (size,) else None


def _reference(state: FilterState, limits: SafetyLimits) -> tuple[np.ndarray, bool]:
    """The hold target (Da,): last safe command, else measured, else mid-range; within limits."""
    size, n = limits.action_size, limits.dof
    low, high = limits.arrays["action_lower"], limits.arrays["action_upper"]
    ref = (low + high) / 2
    filled = np.zeros(size, dtype=bool)
    for candidate in (state.last_command, state.measured):
        c = _as_vector(candidate, size)
        if c is None and size == n + 1:  # a reading without the gripper
            joints = _as_vector(candidate, n)
            c = None if joints is None else np.append(joints, np.nan)
        if c is None:
            continue
        take = ~filled & np.isfinite(c)
        ref[take] = c[take]
        filled |= take
    return np.clip(ref, low, high), bool(filled.all())


def _previous_velocity(state: FilterState, n: int, cap: np.ndarray) -> np.ndarray:
    v = _as_vector(state.last_velocity, n) if state.last_command is not None else None
    if v is None:
        return np.zeros(n)
    return np.clip(np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0), -cap, cap)


def _window(
    x: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    stage: str,
    value: np.ndarray,
    vlow: np.ndarray,
    vhigh: np.ndarray,
    names: Sequence[str],
    clips: list[Clip],
) -> None:
    """Clip ``x`` in place into ``[low, high]``; record a Clip (in ``value`` units) per change."""
    below, above = x < low, x > high
    if not (below.any() or above.any()):
        return
    for i in np.flatnonzero(below | above):
        bound = vlow[i] if below[i] else vhigh[i]
        clips.append(Clip(stage, names[i], float(value[i]), float(bound)))
    np.copyto(x, low, where=below)
    np.copyto(x, high, where=above)


def _size(command: Any) -> float:
    try:
        return float(np.size(command))
    except (TypeError, ValueError):
        return float("nan")


def _ee(fk: ForwardKinematics, q: np.ndarray) -> np.ndarray:
    return np.asarray(fk(q.copy()), dtype=np.float64).reshape(-1)


def _outside(ee: np.ndarray, low: np.ndarray, high: np.ndarray) -> float:
    """How far (m) ``ee`` is outside the box: 0 inside, inf when it is not a finite point."""
    if ee.shape != (3,) or not np.isfinite(ee).all():
        return float("inf")
    return float(np.linalg.norm(np.maximum(np.maximum(low - ee, ee - high), 0.0)))


def _worst_axis(ee: np.ndarray, low: np.ndarray, high: np.ndarray) -> int:
    if ee.shape != (3,) or not np.isfinite(ee).all():
        return 0
    return int(np.argmax(np.maximum(low - ee, ee - high)))
