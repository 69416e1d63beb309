"""``Daemon``: one run of the control daemon, composed from the parts in this package.

    daemon = Daemon(driver, config, client_factory=lambda: PolicyClient(host, port))
    result = daemon.run(duration=30.0)      # result.reason, result.stats, result.exit

``run`` refuses to start while the e-stop latch is set, fetches the policy's metadata, picks
the action adapter, connects the driver, starts the requester thread and runs the loop inside
an :class:`~hardware.daemon.exit.ExitGuard`. The requester takes real-time chunking's prefix
from the plan the loop's follower publishes. Whatever ends the loop — its duration, a latched
stop, an e-stop, SIGINT, SIGTERM or an exception — the exit behaviour runs, the tick log is
flushed with a summary, and the driver is disconnected.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from hardware.clock import Clock
from hardware.daemon.adapters import PolicyAdapter, make_adapter
from hardware.daemon.config import ControlConfig
from hardware.daemon.estop import EStopLatch
from hardware.daemon.exit import ExitGuard, run_exit_behaviour
from hardware.daemon.log import TickLog
from hardware.daemon.loop import ControlLoop
from hardware.daemon.requester import ClientLike, Requester, fetch_metadata
from hardware.daemon.status import Mode
from hardware.driver import Driver, find_attribute
from hardware.limits import SafetyLimits
from hardware.safety import ForwardKinematics
from robopolicy.config import to_dict
from robopolicy.errors import RobopolicyError

log = logging.getLogger(__name__)


@dataclasses.dataclass
class RunResult:
    """What one run did."""

    reason: str
    """Why the loop ended: ``duration``, ``SIGINT``, ``SIGTERM``, ``estop``, ``command_timeout``,
    ``sensor_timeout``, ``driver_error``, ``no_first_chunk``, ``exception: <type>``."""
    stats: dict[str, Any]
    """:class:`~hardware.daemon.loop.LoopStats` as a dict (ticks, holds, drops, jitter, ...)."""
    requests: dict[str, int]
    """The requester's counters (requests, chunks, rejected, timeouts, server_<code>, ...)."""
    rejections: list[str]
    """Why the latest chunks were rejected (requester and loop)."""
    exit: dict[str, Any]
    """The exit behaviour's report."""
    log_rows: int = 0

    @property
    def latched(self) -> bool:
        """Whether the run ended in a latched safe stop or an e-stop."""
        return self.reason in (
            "estop",
            "command_timeout",
            "sensor_timeout",
            "driver_error",
            "no_first_chunk",
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def limits_for(spec: Any, config: ControlConfig) -> SafetyLimits:
    """The safety filter's limits for a driver's ``spec`` under ``config``."""
    return SafetyLimits.from_spec(
        spec,
        max_step=config.max_step,
        velocity_scale=config.velocity_scale,
        max_acceleration=config.max_acceleration,
        workspace=config.workspace,
    )


def find_fk(driver: Driver) -> ForwardKinematics | None:
    """The driver's forward kinematics (``ee_position``), looking through wrappers."""
    return find_attribute(driver, "ee_position")


class Daemon:
    """Runs the control loop for ``driver`` against a policy server (module docstring)."""

    def __init__(
        self,
        driver: Driver,
        config: ControlConfig,
        client_factory: Callable[[], ClientLike],
        *,
        clock: Clock | None = None,
        metadata: dict[str, Any] | None = None,
        adapter: PolicyAdapter | None = None,
        on_start: Callable[[], None] | None = None,
    ) -> None:
        self.driver, self.config, self.client_factory = driver, config, client_factory
        self.clock = clock or driver.clock
        """The loop's clock: the driver's by default, so due times and sensing times compare."""
        self.metadata, self.adapter, self.on_start = metadata, adapter, on_start
        self.latch = EStopLatch(config.estop_latch_path)
        self.limits = limits_for(driver.spec, config)
        self.fk = find_fk(driver) if config.workspace is not None else None
        if config.workspace is not None and self.fk is None:
            raise RobopolicyError("a workspace box needs forward kinematics this driver lacks")
        if (
            config.park_position is not None
            and len(config.park_position) != driver.spec.action_size
        ):
            raise RobopolicyError(f"park_position needs {driver.spec.action_size} values")
        self.loop: ControlLoop | None = None
        self.requester: Requester | None = None

    def fetch_metadata(self) -> dict[str, Any]:
        """The policy's metadata, retried until ``first_chunk_timeout_s``."""
        return fetch_metadata(self.client_factory, self.config.first_chunk_timeout_s)

    def run(self, duration: float | None = None) -> RunResult:
        """One run (module docstring); raises :class:`~hardware.daemon.estop.EStopLatched`
        without touching the arm while the latch is set."""
        cfg = self.config
        self.latch.require_clear()
        metadata = self.metadata or self.fetch_metadata()
        adapter = self.adapter or make_adapter(metadata, self.driver.spec, cfg)
        ticklog = None
        if cfg.log_path is not None:
            ticklog = TickLog(
                cfg.log_path,
                rate_hz=cfg.rate_hz,
                action_names=self.driver.spec.action_names,
                joint_names=self.driver.spec.names,
                segment=round(cfg.log_segment_s * cfg.rate_hz),
                attrs={"config": to_dict(cfg), "policy": metadata, "adapter": adapter.name},
            )
        requester = Requester.for_policy(
            self.client_factory,
            metadata,
            adapter,
            cfg,
            self.limits,
            rate_hz=cfg.rate_hz,
            clock=self.clock,
            fk=self.fk,
        )
        loop = ControlLoop(
            self.driver,
            cfg,
            self.limits,
            requester,
            clock=self.clock,
            checker=requester.checker,
            history=requester.history,
            latch=self.latch,
            record=None if ticklog is None else ticklog.record,
            fk=self.fk,
        )
        requester.reference = loop.current_command
        requester.executing = lambda: loop.follower.published
        log.info("real-time chunking %s", "on" if requester.rtc else "off")
        self.loop, self.requester = loop, requester
        reason, exit_report = "exception", {}
        try:
            with ExitGuard(loop.request_stop) as guard:
                try:
                    self.driver.connect()
                    requester.start()
                    if self.on_start is not None:
                        self.on_start()
                    reason = loop.run(duration)
                except BaseException as exc:
                    reason = f"exception: {type(exc).__name__}"
                    raise
                finally:
                    requester.stop()
                    park = cfg.park_position if cfg.park_position is not None else loop.start_pose
                    exit_report = run_exit_behaviour(
                        self.driver,
                        cfg,
                        self.limits,
                        self.clock,
                        filter_state=loop.filter_state,
                        park_position=None if park is None else np.asarray(park, dtype=np.float64),
                        estopped=loop.mode is Mode.ESTOP or self.latch.is_set(),
                        path=reason,
                        abort=lambda: guard.abort,
                        record=None if ticklog is None else ticklog.record,
                        fk=self.fk,
                    )
        finally:
            result = RunResult(
                reason,
                loop.stats.to_dict(),
                dict(requester.stats),
                [*requester.rejections, *loop.follower.rejections][-20:],
                exit_report,
                0 if ticklog is None else ticklog.rows,
            )
            if ticklog is not None:
                ticklog.close(summary=result.to_dict())
            self.driver.disconnect()
        return result
