"""Intervention mode: a policy drives the arm, the operator takes over at any moment and hands back.

With a policy server (``robopolicy teleop --server HOST:PORT``) the teleop session's arm is
driven by the policy, through the control daemon's own parts: the
:class:`~hardware.daemon.requester.Requester` fetches checked chunks ahead of time in its
thread, and the :class:`~hardware.daemon.follower.PlanFollower` accepts them (overdue actions
dropped, the bridge checked), samples the plan each tick and runs the watchdog. The operator's
device is read every tick all the same, for its buttons:

- ``takeover`` (``t`` on the keyboard, LB on the gamepad): the device drives from this tick on.
  :meth:`~hardware.teleop.commander.TeleopCommander.take_over` starts its target where the arm
  was last commanded, and the filter keeps its last action, so nothing jumps;
- ``handback`` (``g``, RB): the policy drives again from this tick, from a fresh start. Chunks
  asked for before — waiting, or still in flight — are flushed, never executed; the arm holds
  until a fresh chunk, asked for with the current readings, arrives.

Every action, the policy's or the device's, passes the same safety filter from the same last
command (:meth:`~hardware.teleop.commander.TeleopCommander.apply`). A server that is late or
gone while the policy drives means what it means to the daemon: the plan runs out, the arm
holds, and the operator is told once the hold lasts ``command_timeout_s``; after
``stop_timeout_s`` (or a sensor bad that long, or no first chunk in ``first_chunk_timeout_s``)
the policy is stopped — the arm keeps holding, nothing more is asked of the server — until the
operator takes over and hands back, which starts it afresh. The readings keep going to the
policy's observation history whoever drives, so a hand-back observes the recent past.

The session records who drove each frame (``intervention``: 1 the operator, 0 the policy) and
counts the takeovers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from hardware.clock import Clock
from hardware.daemon.adapters import make_adapter
from hardware.daemon.config import ControlConfig
from hardware.daemon.follower import PlanFollower, sensor_fresh
from hardware.daemon.requester import ClientLike, Requester, fetch_metadata
from hardware.daemon.status import Flag
from hardware.driver import ArmState, JointSpec
from hardware.safety import ForwardKinematics, SafetyReport
from hardware.teleop.commander import TeleopCommander
from hardware.teleop.device import OperatorEvent
from hardware.teleop.view import OperatorView
from robopolicy.errors import RobopolicyError

DAEMON_ONLY = (
    "rate_hz",
    "exit_behaviour",
    "park_position",
    "park_timeout_s",
    "park_tolerance",
    "estop_poll_s",
    "log_path",
    "log_segment_s",
    "max_step",
    "velocity_scale",
    "max_acceleration",
    "workspace_lower",
    "workspace_upper",
    "realtime_priority",
)
""":class:`ControlConfig` fields that belong to the daemon's own loop: a teleop session runs at
its ``fps`` and filters every action with its own safety settings."""
POLICY_DEFAULTS = ControlConfig(sensor_max_age_s=0.1)
"""The policy settings of a teleop session: the daemon's, with a sensor age of 0.1 s (a teleop
tick also reads the cameras, at 20-30 fps)."""


def check_policy_config(config: ControlConfig) -> None:
    """Refuse daemon-only fields (:data:`DAEMON_ONLY`) set away from their defaults."""
    daemon = ControlConfig()
    changed = [f for f in DAEMON_ONLY if getattr(config, f) != getattr(daemon, f)]
    if changed:
        raise ValueError(
            f"policy.{changed[0]} is the control daemon's own; a teleop session runs at its fps "
            "and filters every action with its max_step, velocity_scale and workspace"
        )


@dataclasses.dataclass(frozen=True)
class PolicySource:
    """Where intervention mode's policy comes from."""

    client_factory: Callable[[], ClientLike]
    """A new client of the policy server (one lives in the requester's thread)."""
    metadata: dict[str, Any] | None = None
    """The policy's metadata; None: asked of the server when the session starts."""
    requester: type[Requester] = Requester
    """The requester class (tests use one that answers at once, for runs on virtual time)."""


class Intervention:
    """Who drives the arm, the policy or the operator (module docstring).

    Args:
        requester: fetches the policy's chunks (:meth:`Requester.for_policy`).
        commander: the operator's device behind the safety filter, which every action passes.
        config: the policy's timeouts, sensor age and interpolation.
        clock: the session's clock.
        view: where the operator is told (``takeover``, ``handback`` and ``notice`` events).
    """

    def __init__(
        self,
        requester: Requester,
        commander: TeleopCommander,
        config: ControlConfig,
        clock: Clock,
        view: OperatorView,
    ) -> None:
        self.requester, self.commander, self.config = requester, commander, config
        self.clock, self.view = clock, view
        self.follower = PlanFollower(
            config, requester, requester.checker, history=requester.history
        )
        requester.reference = lambda: commander.last_command  # the ee adapter's IK starts there
        self.human = False
        """True while the operator drives."""
        self.takeovers = 0
        """Times the operator took the arm from the policy."""
        self.stopped: str | None = None
        """Why the policy was stopped (``command_timeout``, ...); None while it may drive."""
        self._holding_since: float | None = None
        self._told = False

    @classmethod
    def open(
        cls,
        source: PolicySource,
        commander: TeleopCommander,
        config: ControlConfig,
        spec: JointSpec,
        clock: Clock,
        view: OperatorView,
        *,
        fk: ForwardKinematics | None = None,
    ) -> Intervention:
        """Ask the server for the policy's metadata (unless given) and set up its requester
        for ``commander``'s arm of ``spec``, at the commander's rate, under its limits."""
        if config.sensor_max_age_s < commander.dt:
            raise RobopolicyError(
                f"policy.sensor_max_age_s must be at least one tick ({commander.dt:.4f} s)"
            )
        metadata = source.metadata or fetch_metadata(
            source.client_factory, config.first_chunk_timeout_s
        )
        adapter = make_adapter(metadata, spec, config)
        requester = source.requester.for_policy(
            source.client_factory,
            metadata,
            adapter,
            config,
            commander.limits,
            rate_hz=1.0 / commander.dt,
            clock=clock,
            fk=fk,
        )
        return cls(requester, commander, config, clock, view)

    def __enter__(self) -> Intervention:
        self.requester.start()
        self.follower.start(self.clock.monotonic())
        return self

    def __exit__(self, *exc: object) -> None:
        self.requester.stop()

    @property
    def control(self) -> str:
        """``operator``, ``policy``, ``holding`` (the policy's plan ran out or has not come) or
        ``stopped``."""
        if self.human:
            return "operator"
        if self.stopped is not None:
            return "stopped"
        return "policy" if self._holding_since is None else "holding"

    def switch(self, events: Iterable[OperatorEvent], state: ArmState) -> None:
        """Act on this tick's ``takeover`` and ``handback`` presses, before anyone drives."""
        for event in events:
            if event is OperatorEvent.TAKEOVER and not self.human:
                self.human = True
                self.takeovers += 1
                self.requester.flush()  # nothing asked for so far is executed later
                self.commander.take_over(state)
                self.view.event("takeover", takeovers=self.takeovers)
            elif event is OperatorEvent.HANDBACK and self.human:
                self.human = False
                self.stopped, self._holding_since, self._told = None, None, False
                self.requester.flush()
                self.follower.start(self.clock.monotonic())
                self.view.event("handback")

    def command(self, state: ArmState) -> tuple[np.ndarray, SafetyReport]:
        """The policy's safe action for the arm read as ``state`` (the hold while it is late or
        stopped); call :meth:`sent` once it is written."""
        now = self.clock.monotonic()
        if self.stopped is not None:
            self.observe(state)
            return self.commander.apply(None, state)
        measured = state.as_action()
        step = self.follower.step(state, measured, now, self.commander.last_command)
        if step.stop is not None:
            self._stop(step.stop)
        else:
            self._watch(step.holding, bool(step.flags & Flag.HOLD_SENSOR), now)
        return self.commander.apply(step.target, state)

    def sent(self) -> None:
        """The policy's action was written: ask for the next chunk when the plan wants it."""
        if not self.human and self.stopped is None:
            self.follower.ask(self.clock.monotonic())

    def observe(self, state: ArmState) -> None:
        """Keep a reading the policy did not act on (the operator drives, or the policy is
        stopped) for its observation history."""
        now = self.clock.monotonic()
        if sensor_fresh(state, state.as_action(), now, self.config.sensor_max_age_s):
            self.requester.history.push(state)

    def summary(self) -> dict[str, Any]:
        """The policy's counters: chunks, holds and requests."""
        stats = self.follower.stats
        names = (
            "chunks_accepted",
            "chunks_rejected",
            "chunks_discarded",
            "late_chunks",
            "dropped_actions",
            "command_hold_ticks",
            "sensor_hold_ticks",
        )
        return {
            **{name: getattr(stats, name) for name in names},
            "requests": dict(self.requester.stats),
        }

    def _watch(self, holding: bool, blind: bool, now: float) -> None:
        """Tell the operator once the arm has held for ``command_timeout_s`` waiting for the
        policy (or, ``blind``, for a usable reading), and once it moves again."""
        if not holding:
            if self._told:
                self.view.event("notice", message="policy: chunks again, the policy drives")
            self._holding_since, self._told = None, False
            return
        if self._holding_since is None:
            self._holding_since = now
        if not self._told and now - self._holding_since > self.config.command_timeout_s:
            self._told = True
            why = "no usable reading" if blind else f"policy late ({self._last_outcome()})"
            self.view.event("notice", message=f"{why}: the arm holds; take over to drive it")

    def _stop(self, reason: str) -> None:
        self.stopped = reason
        self.requester.flush()  # ask nothing more until the operator hands back
        self.view.event(
            "notice",
            message=f"policy stopped ({reason}, {self._last_outcome()}): the arm holds; "
            "take over, then hand back to start it again",
        )

    def _last_outcome(self) -> str:
        outcomes = self.requester.outcomes
        return f"last request: {outcomes[-1][1]}" if outcomes else "no request answered"
