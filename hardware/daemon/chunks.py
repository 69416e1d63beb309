"""Action chunks on the daemon's clock: due times, acceptance checks and the executed plan.

A policy reply carries actions ``(Tp, Da)``, the index ``start`` of the first one to execute,
the time ``due`` that action is due (the sensing time of the newest observation, on the
daemon's clock) and the ``period`` between actions. Action ``start + j`` is due at
``due + j * period`` (``robopolicy/serve/protocol.md``).

A chunk is checked **whole** before it is accepted (:class:`ChunkChecker`): every action must
pass the safety filter unchanged — finite, inside the joint limits, steps and speeds between
consecutive actions within bounds — or the whole chunk is **rejected, not clipped**, and the
rejection is logged with the step, joint and limit. On acceptance the first action still to
come must also be reachable from the command being executed (the bridge check).

:class:`Plan` is what the loop executes: on acceptance, actions whose due time has passed are
dropped and counted (R3, as diffusion_policy's real-robot code keeps only actions stamped in
the future), the current command becomes the first knot, and the loop samples the plan every
tick, interpolating between knots or holding each action until the next is due.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Protocol

import numpy as np

from hardware.limits import SafetyLimits
from hardware.safety import (
    ChunkVerdict,
    FilterState,
    ForwardKinematics,
    check_chunk,
    filter_command,
)

log = logging.getLogger(__name__)
TIME_EPS = 1e-6
"""Times closer than this (s) are the same time: float noise never decides whether an action
is due or overdue."""


@dataclasses.dataclass(frozen=True, eq=False)
class Chunk:
    """Joint-space actions with their due times, ready for the loop."""

    actions: np.ndarray
    """(T, Da) joint targets and gripper, the driver's units."""
    due: np.ndarray
    """(T,) time each action is due, on the daemon's clock."""
    period: float
    """Seconds between consecutive actions."""
    seq: int
    """Sequence number of the chunk (1, 2, ...) within the run."""
    replan_at: float = float("inf")
    """When to ask for the next chunk: ``chunk_lead_s`` before the policy's ``Ta`` actions are
    done, but not before the first action's period is over (the rest of the chunk is a
    reserve while the next one is late)."""

    def __post_init__(self) -> None:
        if self.actions.ndim != 2 or self.due.shape != (len(self.actions),) or not len(self.due):
            raise ValueError("chunk needs (T, Da) actions and (T,) due times, T >= 1")

    @classmethod
    def from_reply(
        cls,
        actions: np.ndarray,
        due: float,
        period: float,
        seq: int,
        *,
        execute: int | None = None,
        lead: float = 0.0,
    ) -> Chunk:
        """``actions`` (T, Da) from the executed part of a reply, the first due at ``due``;
        the next chunk is wanted ``lead`` s before ``execute`` (Ta) periods have passed."""
        a = np.array(actions, dtype=np.float64)
        times = float(due) + period * np.arange(len(a), dtype=np.float64)
        executed = min(execute or len(a), len(a))
        # never sooner than one period after the first action: at most one request a period
        replan_at = float(times[0]) + max(executed * period - lead, period)
        return cls(a, times, float(period), seq, replan_at)


class ChunkSource(Protocol):
    """Where the loop gets chunks (:class:`~hardware.daemon.requester.Requester`, or a test):
    ``poll`` never blocks, ``want`` asks for the next chunk, ``pending`` says one is waiting."""

    def poll(self) -> Chunk | None: ...
    def want(self) -> None: ...
    def pending(self) -> bool: ...


class ChunkChecker:
    """Accepts or rejects chunks against the limits, scaled to the time between actions.

    The per-tick step bound of ``limits`` is stretched by the number of ticks between two
    actions (the loop interpolates between them); position, velocity and acceleration bounds
    are physical and stay as they are.
    """

    def __init__(
        self, limits: SafetyLimits, tick: float, *, fk: ForwardKinematics | None = None
    ) -> None:
        self.limits, self.tick, self.fk = limits, tick, fk
        self._scaled: dict[float, SafetyLimits] = {}

    def limits_for(self, period: float) -> SafetyLimits:
        """``limits`` with the per-tick step scaled to ``period`` seconds between actions."""
        if period not in self._scaled:
            ticks = max(1.0, period / self.tick)
            step = tuple(s * ticks for s in self.limits.max_step)
            gripper = self.limits.gripper_max_step
            self._scaled[period] = dataclasses.replace(
                self.limits,
                max_step=step,
                gripper_max_step=None if gripper is None else gripper * ticks,
            )
        return self._scaled[period]

    def check(self, chunk: Chunk) -> ChunkVerdict:
        """The chunk on its own: every action finite, in limits, and each step within bounds."""
        first = chunk.actions[0]
        start = FilterState(
            measured=first, last_command=first if np.isfinite(first).all() else None
        )
        limits = self.limits_for(chunk.period)
        return check_chunk(chunk.actions, start, limits, chunk.period, fk=self.fk)

    def check_bridge(
        self, current: np.ndarray, target: np.ndarray, seconds: float, period: float
    ) -> ChunkVerdict:
        """Whether moving from ``current`` to ``target`` within ``max(seconds, period)`` passes
        the filter unchanged (one filter call: cheap enough for the control loop)."""
        dt = max(seconds, period)
        state = FilterState(measured=current, last_command=current)
        _, report = filter_command(target, state, self.limits_for(period), dt, fk=self.fk)
        if not report.modified:
            return ChunkVerdict(True)
        c = report.clips[0]
        reason = f"bridge to the first action, {c}"
        log.warning("action chunk rejected: %s", reason)
        return ChunkVerdict(False, 0, c.joint, c.stage, c.value, c.bound, reason)


class Plan:
    """The trajectory being executed: knots ``(time, action)`` sampled every tick."""

    def __init__(self, interpolation: str = "linear") -> None:
        if interpolation not in ("linear", "hold"):
            raise ValueError(f"interpolation must be 'linear' or 'hold', got {interpolation!r}")
        self.interpolation = interpolation
        self.times = np.zeros(0)
        self.actions = np.zeros((0, 0))
        self.seq = -1
        """Sequence number of the chunk being executed (-1: none)."""
        self.replan_at = float("-inf")
        """When the next chunk is wanted (the executed chunk's ``replan_at``)."""

    @property
    def empty(self) -> bool:
        return not len(self.times)

    @property
    def last_due(self) -> float:
        """Due time of the last planned action (-inf when there is none)."""
        return float(self.times[-1]) if len(self.times) else float("-inf")

    @staticmethod
    def live(chunk: Chunk, now: float) -> np.ndarray:
        """Mask of the chunk's actions still to come (due at ``now`` or later)."""
        return chunk.due >= now - TIME_EPS

    def replace(self, chunk: Chunk, now: float, current: np.ndarray | None) -> int:
        """Execute ``chunk`` from ``now``; returns how many overdue actions were dropped.

        A chunk with nothing left to come leaves the plan unchanged (all its actions are
        dropped). ``current`` — the command being executed — is the first knot, so the targets
        move smoothly from it to the first action still to come.
        """
        live = self.live(chunk, now)
        dropped = int(len(live) - live.sum())
        if not live.any():
            return dropped
        times, actions = chunk.due[live], chunk.actions[live]
        if current is not None and times[0] > now + TIME_EPS:
            times = np.concatenate([[now], times])
            actions = np.concatenate([np.asarray(current, dtype=np.float64)[None], actions])
        self.times, self.actions, self.seq = times, actions, chunk.seq
        self.replan_at = chunk.replan_at
        return dropped

    def clear(self) -> None:
        self.times, self.actions, self.seq = np.zeros(0), np.zeros((0, 0)), -1
        self.replan_at = float("-inf")

    def sample(self, t: float) -> np.ndarray | None:
        """The target at time ``t``, or None before the first knot or after the last one."""
        times = self.times
        if not len(times) or t < times[0] - TIME_EPS or t > times[-1] + TIME_EPS:
            return None
        j = max(int(np.searchsorted(times, t + TIME_EPS, side="right")) - 1, 0)
        if self.interpolation == "hold" or j >= len(times) - 1:
            return self.actions[j].copy()
        w = min(max((t - times[j]) / (times[j + 1] - times[j]), 0.0), 1.0)
        return (1.0 - w) * self.actions[j] + w * self.actions[j + 1]
