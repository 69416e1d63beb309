"""The exit behaviour (R6), the same on every way out: normal end, exception, SIGINT, SIGTERM.

:class:`ExitGuard` turns SIGINT and SIGTERM into a stop request for the loop (the loop finishes
its tick and returns), so the daemon's ``finally`` runs :func:`run_exit_behaviour` whether the
run ended by itself, by a signal or by an exception. A second signal while the exit behaviour
runs cuts a park short (the arm is then released where it is); it never skips the behaviour.

The behaviours (``ControlConfig.exit_behaviour``):

- ``hold``: write the last safe target once more and leave torque on (servo buses keep their
  goal; UR's ``servoStop`` decelerates when the driver disconnects);
- ``park_then_release``: move to the park position through the safety filter at the control
  rate (at most ``park_timeout_s``), then cut torque. The park moves only on fresh, finite
  readings (``sensor_max_age_s``): a missing, stale or invalid one ends it where it is;
- ``release``: cut torque at once.

After an e-stop nothing moves: ``hold`` writes nothing and ``park_then_release`` only releases.
Failures during the exit behaviour are recorded in its report, never raised over the error that
ended the run.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import numpy as np

from hardware.clock import Clock
from hardware.daemon.config import ControlConfig
from hardware.driver import Driver
from hardware.limits import SafetyLimits
from hardware.safety import FilterState, ForwardKinematics, filter_command

log = logging.getLogger(__name__)
SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_MODE = 4
"""``mode`` of the tick-log rows written by the exit behaviour."""


class ExitGuard:
    """While entered (main thread only), SIGINT/SIGTERM call ``on_signal(name)`` once; later
    signals set :attr:`abort`. Elsewhere it does nothing (signals stay Python's defaults)."""

    def __init__(self, on_signal: Callable[[str], None]) -> None:
        self.on_signal = on_signal
        self.reason: str | None = None
        """``"SIGINT"`` or ``"SIGTERM"`` once one arrived."""
        self.abort = False
        """True once a second signal arrived: cut any park short."""
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> ExitGuard:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.reason is None:
            self.reason = name
            log.warning("%s: stopping the control loop", name)
            self.on_signal(name)
        else:
            self.abort = True
            log.warning("%s again: cutting the exit behaviour short", name)


def run_exit_behaviour(
    driver: Driver,
    config: ControlConfig,
    limits: SafetyLimits,
    clock: Clock,
    *,
    filter_state: FilterState | None,
    park_position: np.ndarray | None,
    estopped: bool,
    path: str,
    abort: Callable[[], bool] = lambda: False,
    record: Callable[..., None] | None = None,
    fk: ForwardKinematics | None = None,
) -> dict[str, Any]:
    """Run ``config.exit_behaviour``; returns a JSON-ready report of what was done."""
    behaviour = config.exit_behaviour
    report: dict[str, Any] = {
        "behaviour": behaviour,
        "path": path,
        "estopped": estopped,
        "held": False,
        "parked": None,
        "released": False,
        "errors": [],
    }
    started = time.monotonic()
    if not driver.is_connected:
        report["errors"].append("driver not connected")
        return report
    last = None if filter_state is None else filter_state.last_command
    if behaviour == "hold" and not estopped and last is not None:
        try:
            driver.send_action(last)
            report["held"] = True
        except Exception as exc:
            report["errors"].append(f"hold: {exc}")
    if behaviour == "park_then_release" and not estopped:
        report["parked"] = _park(
            driver, config, limits, clock, filter_state, park_position, abort, record, fk, report
        )
    if behaviour in ("park_then_release", "release"):
        try:
            report["released"] = bool(driver.release())
        except Exception as exc:
            report["errors"].append(f"release: {exc}")
    report["seconds"] = round(time.monotonic() - started, 3)
    log.info("exit behaviour %s after %s: %s", behaviour, path, report)
    return report


def _park(
    driver: Driver,
    config: ControlConfig,
    limits: SafetyLimits,
    clock: Clock,
    state: FilterState | None,
    park: np.ndarray | None,
    abort: Callable[[], bool],
    record: Callable[..., None] | None,
    fk: ForwardKinematics | None,
    report: dict[str, Any],
) -> bool:
    """Step towards ``park`` through the safety filter; True once every joint is there."""
    if park is None:
        report["errors"].append("park: no park position known")
        return False
    dt, n = config.period, limits.dof
    deadline = clock.monotonic() + config.park_timeout_s
    next_tick = clock.monotonic()
    while clock.monotonic() < deadline and not abort():
        try:
            reading = driver.read_state()
        except Exception as exc:  # a broken driver must not turn the exit into a crash
            report["errors"].append(f"park: read failed ({exc})")
            return False
        measured = reading.as_action()
        if reading.estopped or not np.isfinite(measured).all():
            report["errors"].append("park: e-stop or invalid reading; not moving")
            return False
        if clock.monotonic() - reading.sensed_at > config.sensor_max_age_s:
            report["errors"].append("park: the reading is too old (R4); not moving blind")
            return False
        if np.abs(measured[:n] - park[:n]).max() <= config.park_tolerance:
            return True
        current = (
            FilterState(measured)
            if state is None
            else FilterState(measured, state.last_command, state.last_velocity)
        )
        safe, filtered = filter_command(park, current, limits, dt, fk=fk)
        write_time = clock.monotonic()
        try:
            sent = driver.send_action(safe)
        except Exception as exc:
            report["errors"].append(f"park: write failed ({exc})")
            return False
        state = current.after(safe, filtered)
        if record is not None:
            record(
                time=next_tick,
                sensed_at=reading.sensed_at,
                measured=measured,
                commanded=park,
                safe=safe,
                sent=sent,
                write_time=write_time,
                mode=EXIT_MODE,
            )
        next_tick += dt
        clock.sleep(next_tick - clock.monotonic())
    return False
