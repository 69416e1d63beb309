"""The fixed-rate control loop: read → check the sensor → pick the action due → filter → write.

Every tick, on the injected :class:`~hardware.clock.Clock` (virtual in tests):

1. **read** the arm; an e-stop it reports — or a latch set from outside — latches the e-stop
   (:mod:`hardware.daemon.estop`) and ends the run;
2. **follow the policy** (:class:`~hardware.daemon.follower.PlanFollower`): the sensor check
   (R4), the chunk delivered by the requester (overdue actions dropped, R3), the plan's target
   now or the hold, and the watchdog (R2). A stream the follower stops — a sensor bad, or no
   fresh chunk, for longer than ``stop_timeout_s`` (T2), or no first chunk in
   ``first_chunk_timeout_s`` — is a latched safe stop;
3. **safety filter** (R1, :func:`hardware.safety.filter_command`), then **write**. A write
   refused for an e-stop latches it; other write failures are counted, and failing writes for
   longer than T2 end in a latched safe stop. A tick still running when the next one is due is
   an overrun (counted); ticks missed entirely are skipped and counted, never bunched;
4. the next chunk is **wanted** once the plan reaches its ``replan_at``, and the tick is logged.

A latched stop ends :meth:`ControlLoop.run` with its reason; the daemon then runs the exit
behaviour and only a restart moves the arm again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from hardware.clock import Clock, Rate
from hardware.daemon.adapters import ObsHistory
from hardware.daemon.chunks import ChunkChecker, ChunkSource
from hardware.daemon.config import ControlConfig
from hardware.daemon.estop import EStopLatch, EStopWatch
from hardware.daemon.follower import PlanFollower
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
        self.latch = latch or EStopLatch(config.estop_latch_path)
        self.record, self.fk = record, fk
        self.stats = LoopStats()
        self.follower = PlanFollower(
            config,
            source,
            checker or ChunkChecker(limits, config.period, fk=fk),
            history=history,
            stats=self.stats,
        )
        self.mode = Mode.RUN
        self.filter_state: FilterState | None = None
        """The last safe command written (and its velocity); None before the first write."""
        self.start_pose: np.ndarray | None = None
        """The first valid reading as an action (the default park position)."""
        self.end_reason: str | None = None
        self._stop_request: str | None = None
        self._write_bad_since: float | None = None
        self._estop_watch = EStopWatch(self.latch, config.estop_poll_s)
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
        start = rate.start
        self.follower.start(start)
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
            chunk=self.follower.plan.seq,
            work=clock.monotonic() - begin,
        )
        if self.record is not None:
            self.record(**row)
        return reason

    def _control(
        self, reading: ArmState | None, measured: np.ndarray, now: float, flags: Flag, row: dict
    ) -> tuple[str | None, Flag]:
        last = None if self.filter_state is None else self.filter_state.last_command
        step = self.follower.step(reading, measured, now, last)
        flags |= step.flags
        if step.dropped is not None:
            row["dropped"] = step.dropped
        if step.sensor_ok and self.start_pose is None:
            self.start_pose = measured.copy()
        if step.stop is not None:
            return self._latched_stop(step.stop), flags
        self.mode = Mode.HOLD if step.holding else Mode.RUN
        reason = None
        if step.target is None:
            flags |= Flag.NOT_WRITTEN
            self.stats.not_written += 1
        else:
            reason, flags = self._write(step.target, measured, flags, row)
        if reason is None:
            self.follower.ask(now)
        return reason, flags

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
        reason = self._estop_watch.check(reading is not None and reading.estopped, now)
        return None if reason is None else self._estop(reason)

    def _estop(self, reason: str) -> str:
        self.mode = Mode.ESTOP
        self.latch.set(reason)
        return "estop"

    def _latched_stop(self, reason: str) -> str:
        self.mode = Mode.STOPPED
        log.error("latched safe stop: %s", reason)
        return reason
