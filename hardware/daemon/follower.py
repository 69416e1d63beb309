"""Following a policy's chunks: the target due now, and the watchdog over the command stream.

:class:`PlanFollower` is the policy's half of a control tick, shared by the daemon's
:class:`~hardware.daemon.loop.ControlLoop` and the teleop session's intervention mode
(:mod:`hardware.teleop.intervention`). Given the arm's reading and the last safe command
written, each :meth:`~PlanFollower.step`

1. **checks the sensor** (R4): a reading that is missing, non-finite or older than
   ``sensor_max_age_s`` means hold (the plan is dropped; a fresh chunk resumes); bad for longer
   than ``stop_timeout_s`` stops the stream (``sensor_timeout``). Valid readings go to the
   :class:`~hardware.daemon.adapters.ObsHistory` the requester observes;
2. **accepts a chunk** the source delivered if the first action it would take is reachable
   from the current command (the whole chunk was checked by the requester); actions already
   overdue are dropped and counted (R3) — a chunk with nothing left is late. A chunk with
   committed actions (real-time chunking) is taken from its first free action on, and
   reached from where the plan is at its last committed tick: until then the old chunk runs;
3. **samples the plan** now (interpolated between actions); once the plan has run out for
   ``command_timeout_s`` (T1) the arm holds, after ``stop_timeout_s`` (T2) the stream stops
   (``command_timeout``, R2). Before the first chunk the arm holds where it is, for at most
   ``first_chunk_timeout_s`` (``no_first_chunk``);
4. names the **target**: the plan's, or the hold (the last safe command, else the reading).

Once the caller has written, :meth:`~PlanFollower.ask` wants the next chunk when the plan
reaches its ``replan_at``. After every change of the plan the follower publishes a copy
(:attr:`~PlanFollower.published`) for the requester's thread, which takes a real-time chunking
prefix from it. What a stop means is the caller's: the daemon latches a safe stop,
the teleop session holds the arm and lets the operator take over.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np

from hardware.daemon.adapters import ObsHistory
from hardware.daemon.chunks import ChunkChecker, ChunkSource
from hardware.daemon.config import ControlConfig
from hardware.daemon.status import Flag, LoopStats
from hardware.driver import ArmState
from robopolicy.serve.chunks import Chunk, Plan, PlanConfig


def sensor_fresh(
    reading: ArmState | None, measured: np.ndarray, now: float, max_age: float
) -> bool:
    """Whether ``reading`` (``measured``: it as an action) is usable at ``now``: present,
    finite, and sensed at most ``max_age`` seconds ago (R4)."""
    return (
        reading is not None
        and bool(np.isfinite(measured).all())
        and bool(np.isfinite(reading.sensed_at))
        and now - reading.sensed_at <= max_age
    )


@dataclasses.dataclass(frozen=True, eq=False)
class FollowStep:
    """What the follower decided for one tick."""

    target: np.ndarray | None
    """The command (Da,) to filter and write now: the plan's target or the hold; None when
    nothing safe is known (no command written yet and no valid reading) or the stream stops."""
    holding: bool
    """True when ``target`` is a hold, not the plan's."""
    flags: Flag
    """HOLD_SENSOR, NO_PLAN, HOLD_COMMAND, STARTUP, CHUNK_ACCEPTED, CHUNK_REJECTED, DROPPED."""
    stop: str | None = None
    """Why the command stream stops: ``sensor_timeout``, ``command_timeout`` or
    ``no_first_chunk``; None while it goes on."""
    dropped: int | None = None
    """Overdue actions dropped on this tick (None: no chunk arrived, or it was refused)."""
    sensor_ok: bool = False
    """Whether the reading was usable (module docstring, step 1)."""


class PlanFollower:
    """Chunks from ``source`` into a per-tick target (module docstring).

    Args:
        config: timeouts, sensor age and interpolation (the other fields are the caller's).
        source: where chunks come from (the requester, or a test's script).
        checker: the bridge check on acceptance.
        history: where valid readings go for the policy's observation (None: nowhere).
        stats: the counters to update (the loop's own, so one object reports a run).
    """

    def __init__(
        self,
        config: ControlConfig,
        source: ChunkSource,
        checker: ChunkChecker,
        *,
        history: ObsHistory | None = None,
        stats: LoopStats | None = None,
    ) -> None:
        self.config, self.source, self.checker, self.history = config, source, checker, history
        self.stats = stats if stats is not None else LoopStats()
        self.plan = Plan(PlanConfig(config.interpolation, lead=config.chunk_lead_s))
        self.rejections: collections.deque[str] = collections.deque(maxlen=100)
        """Why the latest chunks failed the bridge check."""
        self.published = self.plan.copy()
        """A copy of the plan as of its latest change, for another thread to read."""
        self._started = 0.0
        self._accepted_any = False
        self._plan_end = float("-inf")
        self._sensor_bad_since: float | None = None

    def start(self, now: float) -> None:
        """Follow from ``now`` with nothing planned: the arm holds until the first chunk,
        which must come within ``first_chunk_timeout_s``."""
        self.plan.clear()
        self.published = self.plan.copy()
        self._started, self._accepted_any = now, False
        self._plan_end, self._sensor_bad_since = float("-inf"), None

    def step(
        self,
        reading: ArmState | None,
        measured: np.ndarray,
        now: float,
        last: np.ndarray | None,
    ) -> FollowStep:
        """This tick's target for the arm read as ``reading`` (None: unreadable; ``measured``
        it as an action) at ``now``; ``last``: the last safe command written, if any."""
        cfg, stats = self.config, self.stats
        flags = Flag(0)
        sensor_ok = sensor_fresh(reading, measured, now, cfg.sensor_max_age_s)
        if sensor_ok and reading is not None:
            self._sensor_bad_since = None
            if self.history is not None:
                self.history.push(reading)
        else:
            flags |= Flag.HOLD_SENSOR
            stats.sensor_hold_ticks += 1
            if self._sensor_bad_since is None:
                self._sensor_bad_since = now
                if not self.plan.empty:
                    self.plan.clear()  # resume only with a fresh, bridge-checked chunk
                    self.published = self.plan.copy()
                    self._plan_end = now
            if now - self._sensor_bad_since > cfg.stop_timeout_s:
                return FollowStep(None, True, flags, "sensor_timeout")
        dropped = None
        chunk = self.source.poll()
        if chunk is not None:
            accepted, dropped = self._accept(chunk, now, sensor_ok, measured, last)
            flags |= accepted
        target = self.plan.sample(now) if sensor_ok else None
        if target is None and sensor_ok:
            if not self._accepted_any:
                flags |= Flag.STARTUP
                if now - self._started > cfg.first_chunk_timeout_s:
                    return FollowStep(None, True, flags, "no_first_chunk", dropped, True)
            else:
                self._plan_end = max(self._plan_end, self.plan.last_due)
                age = now - self._plan_end
                flags |= Flag.NO_PLAN
                if age > cfg.command_timeout_s:
                    flags |= Flag.HOLD_COMMAND
                    stats.command_hold_ticks += 1
                if age > cfg.stop_timeout_s:
                    return FollowStep(None, True, flags, "command_timeout", dropped, True)
        holding = target is None
        if holding:
            target = last if last is not None else (measured if sensor_ok else None)
        return FollowStep(target, holding, flags, None, dropped, sensor_ok)

    def ask(self, now: float) -> None:
        """Want the next chunk once the plan reaches its ``replan_at`` (or has nothing)."""
        if self.plan.wants(now) and not self.source.pending():
            self.source.want()

    def _accept(
        self,
        chunk: Chunk,
        now: float,
        sensor_ok: bool,
        measured: np.ndarray,
        last: np.ndarray | None,
    ) -> tuple[Flag, int | None]:
        stats = self.stats
        if not sensor_ok:
            stats.chunks_discarded += 1
            return Flag(0), None
        live = self.plan.live(chunk, now)
        if not live.any():
            late = len(live) - chunk.start
            stats.late_chunks += 1
            stats.dropped_actions += late
            return Flag.DROPPED, late
        # where the running plan is now (a tick that restarted from ``last`` would repeat it)
        current = self.plan.sample(now)
        if current is None:
            current = last if last is not None else measured
        origin, since = current, now  # where the chunk's first action is reached from
        if chunk.committed:
            handover = chunk.time_of(chunk.committed - 1)
            planned = self.plan.sample(handover)
            if handover > now and planned is not None:
                origin, since = planned, handover
        first = int(np.argmax(live))
        verdict = self.checker.check_bridge(
            origin, chunk.actions[first], chunk.time_of(first) - since, chunk.period
        )
        if not verdict:
            stats.chunks_rejected += 1
            self.rejections.append(verdict.reason)
            return Flag.CHUNK_REJECTED, None
        dropped = self.plan.add(chunk, now, current)
        self.published = self.plan.copy()
        self._accepted_any = True
        stats.chunks_accepted += 1
        stats.dropped_actions += dropped
        return Flag.CHUNK_ACCEPTED | (Flag.DROPPED if dropped else Flag(0)), dropped
