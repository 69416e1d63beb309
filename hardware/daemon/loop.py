"""The fixed-rate control loop: read → check the sensor → pick the action due → filter → write.

Every tick, on the injected :class:`~hardware.clock.Clock` (virtual in tests):

1. **read** the arm; an e-stop it reports — or a latch set from outside — latches the e-stop
   (:mod:`hardware.daemon.estop`) and ends the run;
2. **sensor check** (R4): a reading that is missing, non-finite or older than
   ``sensor_max_age_s`` means hold (the plan is dropped; a fresh chunk resumes); bad for longer
   than ``stop_timeout_s`` is a latched safe stop;
3. **chunk**: a chunk delivered by the requester is accepted if the first action still to come
   is reachable from the current command (the whole chunk was checked by the requester);
   actions already overdue are dropped and counted (R3) — a chunk with nothing left is late;
4. **target**: the plan sampled now (interpolated between actions); once the plan has run out
   for ``command_timeout_s`` (T1) the arm holds, after ``stop_timeout_s`` (T2) it is a latched
   safe stop (R2). Before the first chunk the arm holds where it is;
5. **safety filter** (R1, :func:`hardware.safety.filter_command`), then **write**. A write
   refused for an e-stop latches it; other write failures are counted, and failing writes for
   longer than T2 end in a latched safe stop. A tick still running when the next one is due is
   an overrun (counted); ticks missed entirely are skipped and counted, never bunched;
6. the next chunk is **wanted** once the plan reaches its ``replan_at``, and the tick is logged.

A latched stop ends :meth:`ControlLoop.run` with its reason; the daemon then runs the exit
behaviour and only a restart moves the arm again.
"""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from hardware.clock import Clock, Rate
from hardware.daemon.adapters import ObsHistory
from hardware.daemon.chunks import Chunk, ChunkChecker, ChunkSource, Plan
from hardware.daemon.config import ControlConfig
from hardware.daemon.estop import EStopLatch
from hardware.daemon.process import realtime
from hardware.daemon.status import Flag, LoopStats, Mode
from hardware.driver import ArmState, Driver, DriverError, EStopError
from hardware.limits import SafetyLimits
from hardware.safety import FilterState, ForwardKinematics, filter_command

log = logging.getLogger(__name__)


class ControlLoop:
    """The loop for one run of the daemon (see the module docstring)."""

    def __init__(
        self,
        driver: Driver,
        config: ControlConfig,
        limits: SafetyLimits,
        source: ChunkSource,
        *,
        clock: Clock | None = None,
        checker: ChunkChecker | None = None,
        history: ObsHistory | None = None,
        latch: EStopLatch | None = None,
        record: Callable[..., None] | None = None,
        fk: ForwardKinematics | None = None,
    ) -> None:
        self.driver, self.config, self.limits, self.source = driver, config, limits, source
        self.clock = clock or driver.clock
        self.checker = checker or ChunkChecker(limits, config.period, fk=fk)
        self.history = history
        self.latch = latch or EStopLatch(config.estop_latch_path)
        self.record, self.fk = record, fk
        self.plan = Plan(config.interpolation)
        self.stats = LoopStats()
        self.mode = Mode.RUN
        self.filter_state: FilterState | None = None
        """The last safe command written (and its velocity); None before the first write."""
        self.start_pose: np.ndarray | None = None
        """The first valid reading as an action (the default park position)."""
        self.rejections: collections.deque[str] = collections.deque(maxlen=100)
        self.end_reason: str | None = None
        self._stop_request: str | None = None
        self._started = 0.0
        self._accepted_any = False
        self._plan_end = float("-inf")
        self._sensor_bad_since: float | None = None
        self._write_bad_since: float | None = None
        self._next_latch_poll = float("-inf")
        self._nan = np.full(limits.action_size, np.nan)

    # -- control from outside ----------------------------------------------------------------

    def request_stop(self, reason: str = "stop") -> None:
        """End the run after the current tick (safe from signal handlers and other threads)."""
        self._stop_request = self._stop_request or reason

    def current_command(self) -> np.ndarray | None:
        """The last safe command written (a copy), for the requester's IK."""
        state = self.filter_state
        return None if state is None or state.last_command is None else state.last_command.copy()

    # -- running -------------------------------------------------------------------------------

    def run(self, duration: float | None = None) -> str:
        """Tick at ``rate_hz`` until a latched stop, an e-stop, a stop request or ``duration``
        seconds; returns why it ended (``"duration"``, ``"SIGTERM"``, ``"estop"``, ...)."""
        clock, period = self.clock, self.config.period
        previous = realtime(self.config.realtime_priority)
        rate = Rate(clock, period)
        start = self._started = rate.start
        try:
            while True:
                reason = self.tick(rate.due) or self._stop_request
                if reason is None and duration is not None:
                    reason = "duration" if clock.monotonic() - start >= duration else None
                if reason is not None:
                    self.end_reason = reason
                    return reason
                self.stats.missed_ticks += rate.wait()  # overran ticks are skipped, never bunched
        finally:
            if previous is not None:
                os.sched_setscheduler(0, *previous)

    def tick(self, scheduled: float) -> str | None:
        """One tick due at ``scheduled``; returns a reason when the run must end."""
        cfg, clock, stats = self.config, self.clock, self.stats
        begin = clock.monotonic()
        row: dict[str, Any] = {"time": scheduled, "lateness": begin - scheduled}
        stats.ticks += 1
        stats.lateness.append(begin - scheduled)
        flags = Flag(0)
        reading: ArmState | None = None
        try:
            reading = self.driver.read_state()
        except DriverError as exc:
            flags |= Flag.READ_ERROR
            stats.read_errors += 1
            log.debug("read failed: %s", exc)
        now = clock.monotonic()
        measured = self._nan if reading is None else reading.as_action()
        if reading is not None:
            row.update(sensed_at=reading.sensed_at, measured=measured, velocity=reading.velocities)
        reason = self._check_estop(reading, now)
        if reason is None:
            reason, flags = self._control(reading, measured, now, flags, row)
        if reason is not None:
            flags |= Flag.ESTOP if self.mode is Mode.ESTOP else Flag.STOP
        if clock.monotonic() - scheduled > cfg.period:  # the next tick's time has come already
            flags |= Flag.OVERRUN
            stats.overruns += 1
        row.update(
            mode=int(self.mode),
            flags=int(flags),
            chunk=self.plan.seq,
            work=clock.monotonic() - begin,
        )
        if self.record is not None:
            self.record(**row)
        return reason

    def _control(
        self, reading: ArmState | None, measured: np.ndarray, now: float, flags: Flag, row: dict
    ) -> tuple[str | None, Flag]:
        cfg, stats = self.config, self.stats
        sensor_ok = (
            reading is not None
            and np.isfinite(measured).all()
            and np.isfinite(reading.sensed_at)
            and now - reading.sensed_at <= cfg.sensor_max_age_s
        )
        if sensor_ok and reading is not None:
            self._sensor_bad_since = None
            if self.history is not None:
                self.history.push(reading)
            if self.start_pose is None:
                self.start_pose = measured.copy()
        else:
            flags |= Flag.HOLD_SENSOR
            stats.sensor_hold_ticks += 1
            if self._sensor_bad_since is None:
                self._sensor_bad_since = now
                if not self.plan.empty:
                    self.plan.clear()  # resume only with a fresh, bridge-checked chunk
                    self._plan_end = now
            if now - self._sensor_bad_since > cfg.stop_timeout_s:
                return self._latched_stop("sensor_timeout"), flags
        chunk = self.source.poll()
        if chunk is not None:
            flags |= self._accept(chunk, now, sensor_ok, measured, row)
        target = self.plan.sample(now) if sensor_ok else None
        if target is None and sensor_ok:
            if not self._accepted_any:
                flags |= Flag.STARTUP
                if now - self._started > cfg.first_chunk_timeout_s:
                    return self._latched_stop("no_first_chunk"), flags
            else:
                self._plan_end = max(self._plan_end, self.plan.last_due)
                age = now - self._plan_end
                flags |= Flag.NO_PLAN
                if age > cfg.command_timeout_s:
                    flags |= Flag.HOLD_COMMAND
                    stats.command_hold_ticks += 1
                if age > cfg.stop_timeout_s:
                    return self._latched_stop("command_timeout"), flags
        holding = target is None
        self.mode = Mode.HOLD if holding else Mode.RUN
        last = None if self.filter_state is None else self.filter_state.last_command
        if holding:
            target = last if last is not None else (measured if sensor_ok else None)
        reason = None
        if target is None:
            flags |= Flag.NOT_WRITTEN
            stats.not_written += 1
        else:
            reason, flags = self._write(target, measured, flags, row)
        wanted = now >= self.plan.replan_at or self.plan.empty
        if reason is None and wanted and not self.source.pending():
            self.source.want()
        return reason, flags

    def _accept(
        self, chunk: Chunk, now: float, sensor_ok: bool, measured: np.ndarray, row: dict
    ) -> Flag:
        stats = self.stats
        if not sensor_ok:
            stats.chunks_discarded += 1
            return Flag(0)
        live = Plan.live(chunk, now)
        if not live.any():
            stats.late_chunks += 1
            stats.dropped_actions += len(live)
            row["dropped"] = len(live)
            return Flag.DROPPED
        last = None if self.filter_state is None else self.filter_state.last_command
        current = last if last is not None else measured
        first = int(np.argmax(live))
        verdict = self.checker.check_bridge(
            current, chunk.actions[first], float(chunk.due[first]) - now, chunk.period
        )
        if not verdict:
            stats.chunks_rejected += 1
            self.rejections.append(verdict.reason)
            return Flag.CHUNK_REJECTED
        dropped = self.plan.replace(chunk, now, current)
        self._accepted_any = True
        stats.chunks_accepted += 1
        stats.dropped_actions += dropped
        row["dropped"] = dropped
        return Flag.CHUNK_ACCEPTED | (Flag.DROPPED if dropped else Flag(0))

    def _write(
        self, target: np.ndarray, measured: np.ndarray, flags: Flag, row: dict
    ) -> tuple[str | None, Flag]:
        cfg, stats, clock = self.config, self.stats, self.clock
        previous = self.filter_state
        state = FilterState(
            measured,
            None if previous is None else previous.last_command,
            None if previous is None else previous.last_velocity,
        )
        safe, report = filter_command(target, state, self.limits, cfg.period, fk=self.fk)
        row.update(commanded=target, safe=safe)
        if report.modified:
            flags |= Flag.CLIPPED
            stats.clipped_ticks += 1
        if not report.reference_ok:
            stats.not_written += 1
            return None, flags | Flag.NOT_WRITTEN
        row["write_time"] = write_time = clock.monotonic()
        try:
            row["sent"] = self.driver.send_action(safe)
        except EStopError as exc:
            return self._estop(f"write refused: {exc}"), flags | Flag.WRITE_ERROR
        except DriverError as exc:
            stats.write_errors += 1
            log.debug("write failed: %s", exc)
            if self._write_bad_since is None:
                self._write_bad_since = write_time
            if write_time - self._write_bad_since > cfg.stop_timeout_s:
                return self._latched_stop("driver_error"), flags | Flag.WRITE_ERROR
            return None, flags | Flag.WRITE_ERROR  # the reference stays the last written command
        self._write_bad_since = None
        self.filter_state = state.after(safe, report)
        return None, flags

    # -- stops -------------------------------------------------------------------------------

    def _check_estop(self, reading: ArmState | None, now: float) -> str | None:
        if reading is not None and reading.estopped:
            return self._estop("the arm reports an emergency stop")
        if now >= self._next_latch_poll:
            self._next_latch_poll = now + self.config.estop_poll_s
            if self.latch.is_set():
                return self._estop("e-stop latch set from outside")
        return None

    def _estop(self, reason: str) -> str:
        self.mode = Mode.ESTOP
        self.latch.set(reason)
        return "estop"

    def _latched_stop(self, reason: str) -> str:
        self.mode = Mode.STOPPED
        log.error("latched safe stop: %s", reason)
        return reason
