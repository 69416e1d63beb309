"""The daemon's acceptance of action chunks: whole-chunk safety checks and where chunks come from.

Chunks, their due times, the overdue rule and the plan the loop executes are
:mod:`robopolicy.serve.chunks` (shared with the client-side driver). A reply's executed part,
turned into joint targets, is a :class:`~robopolicy.serve.chunks.Chunk` with ``start`` 0: action
``j`` is due at ``due + j * period`` (``robopolicy/serve/protocol.md``).

A chunk is checked **whole** before it is accepted (:class:`ChunkChecker`): every action must
pass the safety filter unchanged — finite, inside the joint limits, steps and speeds between
consecutive actions within bounds — or the whole chunk is **rejected, not clipped**, and the
rejection is logged with the step, joint and limit. On acceptance the first action the plan
takes must also be reachable from the command being executed (the bridge check; after
real-time chunking's committed actions, from the plan's target at the last of them); the
:class:`~robopolicy.serve.chunks.Plan` then drops the overdue actions and counts them (R3, as
diffusion_policy's real-robot code keeps only actions stamped in the future).
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
from robopolicy.serve.chunks import Chunk

log = logging.getLogger(__name__)


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
        """The chunk on its own: every action to execute finite, in limits, and each step
        within bounds."""
        actions = chunk.actions[chunk.start :]
        first = actions[0]
        start = FilterState(
            measured=first, last_command=first if np.isfinite(first).all() else None
        )
        limits = self.limits_for(chunk.period)
        return check_chunk(actions, start, limits, chunk.period, fk=self.fk)

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
