"""A teleop recording session: an operator drives the arm and records episodes, tick by tick.

:class:`TeleopSession` joins a driver, a teleop device, cameras, the
:class:`~hardware.teleop.commander.TeleopCommander` (the arm's IK, then the safety filter) and
the :class:`~hardware.recorder.Recorder`. At ``fps`` on the driver's clock every tick

1. reads the arm and every camera,
2. reads the device through the commander and writes the safe action to the arm,
3. while an episode is recorded, records the frame: ``state`` (Da,) f4 — joint positions and
   the gripper as measured —, ``action`` (Da,) f4 — what the driver wrote —, ``timestamp`` f8
   — when the state was sensed (clock s) —, ``intervention`` u1 — 1 when the operator drove
   this tick, 0 when the policy did —, ``velocity`` (n,) f4 when the driver reports joint
   velocities, and ``image.<camera>`` (H, W, 3) u1,
4. acts on the operator's buttons and shows the status on the injected
   :class:`~hardware.teleop.view.OperatorView`.

Given a policy server (:class:`~hardware.teleop.intervention.PolicySource`), the session runs
in **intervention mode** (:mod:`hardware.teleop.intervention`): the policy drives, through the
control daemon's requester and plan follower, and the device drives only between the
operator's ``takeover`` and ``handback``; every action, either's, passes the same safety
filter. Without one the operator drives every tick (``intervention`` is 1 throughout).

Between episodes the arm is still driven, not recorded, so the operator can reset the scene.
The operator's buttons (:class:`~hardware.teleop.device.OperatorEvent`):

- ``keep``: while recording, commit the episode; between episodes, start the next one (a
  next episode also starts by itself after ``reset_seconds``);
- ``discard``: throw the episode in flight away (its number is used again);
- ``rerecord``: throw it away and record it again at once;
- ``quit``: end the session; the episode in flight is discarded;
- ``takeover`` / ``handback``: intervention mode's change of driver (they persist across
  episodes: the policy drives by default, between episodes too).

An episode still running after ``episode_seconds`` is kept. The session ends once ``episodes``
were kept, on ``quit``, or on SIGINT / SIGTERM: every committed episode stays, the one in
flight is discarded (``docs/RELIABILITY.md`` R12). Recording into an existing store
continues its numbering; the recorder refuses one recorded with another robot, other cameras or
another fps (R13). A reading the arm, a camera or the device cannot give skips that tick's
frame (the arm holds its last command when the device fails, unless the policy drives) and
tells the operator once; so does a reading with nothing finite to hold at (nothing is written).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from typing import Any

import numpy as np

from hardware.cameras.camera import Camera, CameraError
from hardware.clock import Clock, Rate
from hardware.daemon.config import ControlConfig, default_latch_path
from hardware.daemon.daemon import find_fk
from hardware.daemon.estop import EStopLatch, EStopWatch
from hardware.daemon.exit import ExitGuard
from hardware.driver import ArmState, Driver, DriverError, JointSpec, find_attribute
from hardware.limits import SafetyLimits
from hardware.recorder import EpisodeOutcome, Recorder, RecorderConfig, RecordingSetup
from hardware.teleop.commander import TeleopCommander
from hardware.teleop.device import DeviceError, DeviceReading, OperatorEvent, TeleopDevice
from hardware.teleop.intervention import (
    POLICY_DEFAULTS,
    Intervention,
    PolicySource,
    check_policy_config,
)
from hardware.teleop.view import HeadlessView, OperatorView, Status
from robopolicy.errors import RobopolicyError


@dataclasses.dataclass(frozen=True)
class TeleopConfig:
    """How a teleop session runs (where it records is the :class:`RecorderConfig`)."""

    fps: float = 30.0
    """Ticks per second: each reads the device and the arm, writes one command and records one
    frame; also the store's fps."""
    episodes: int = 1
    """Episodes to keep in this run; the session ends once they are kept."""
    episode_seconds: float = 60.0
    """An episode still running after this long (``round(episode_seconds * fps)`` frames) is
    kept."""
    reset_seconds: float | None = None
    """Time between episodes (and before the first) for resetting the scene; ``keep`` starts
    the next episode sooner. None: wait for ``keep``."""
    max_step: float = 0.05
    """Safety filter: largest change of a joint target in one tick (rad)."""
    velocity_scale: float = 1.0
    """Safety filter: fraction of the arm's joint speed limits allowed, in (0, 1]."""
    gripper_max_step: float | None = None
    """Safety filter: largest change of the gripper command in one tick; None: not bounded."""
    workspace_lower: tuple[float, float, float] | None = None
    """Safety filter: lower corner of the end-effector box (m); needs forward kinematics."""
    workspace_upper: tuple[float, float, float] | None = None
    """Safety filter: upper corner of that box (m)."""
    estop_latch_path: str = dataclasses.field(default_factory=default_latch_path)
    """The e-stop latch file (R5), the daemon's: a session refuses to start while it is set and
    stops within ``estop_poll_s`` once it is (``robopolicy control --estop``)."""
    estop_poll_s: float = 0.1
    """How often the running session looks for the latch (s); the arm's own e-stop is seen at
    every tick and latches it."""
    policy: ControlConfig = POLICY_DEFAULTS
    """Intervention mode: how the policy is followed — request deadline, chunk lead, the
    watchdog's ``command_timeout_s`` (hold) and ``stop_timeout_s`` (the policy stops),
    ``first_chunk_timeout_s``, ``sensor_max_age_s``, interpolation, action space (the
    daemon's :class:`~hardware.daemon.config.ControlConfig`; its rate, safety-filter, exit,
    e-stop and log fields are refused: the session's fps and filter settings apply)."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.fps) and 0 < self.fps <= 1000):
            raise ValueError(f"fps must be in (0, 1000], got {self.fps}")
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if not (math.isfinite(self.episode_seconds) and self.episode_frames >= 1):
            raise ValueError(
                f"episode_seconds must last a tick or more, got {self.episode_seconds}"
            )
        if self.reset_seconds is not None and not (
            math.isfinite(self.reset_seconds) and self.reset_seconds >= 0
        ):
            raise ValueError(f"reset_seconds must be None or >= 0, got {self.reset_seconds}")
        if not (math.isfinite(self.max_step) and self.max_step > 0):
            raise ValueError(f"max_step must be a positive angle, got {self.max_step}")
        if (self.workspace_lower is None) != (self.workspace_upper is None):
            raise ValueError("set both workspace_lower and workspace_upper, or neither")
        if not self.estop_latch_path:
            raise ValueError("estop_latch_path must name a file")
        if not (math.isfinite(self.estop_poll_s) and self.estop_poll_s > 0):
            raise ValueError(f"estop_poll_s must be positive, got {self.estop_poll_s}")
        check_policy_config(self.policy)

    @property
    def episode_frames(self) -> int:
        """Frames after which an episode is kept."""
        return round(self.episode_seconds * self.fps)

    def limits(self, spec: JointSpec) -> SafetyLimits:
        """The safety filter's limits for an arm of ``spec``."""
        box = None
        if self.workspace_lower is not None and self.workspace_upper is not None:
            box = (self.workspace_lower, self.workspace_upper)
        return SafetyLimits.from_spec(
            spec,
            max_step=self.max_step,
            velocity_scale=self.velocity_scale,
            gripper_max_step=self.gripper_max_step,
            workspace=box,
        )


@dataclasses.dataclass
class SessionResult:
    """What a session did."""

    store: str
    """The episode store recorded into."""
    first_episode: int
    """Number the first episode of this run got (the store's episode count at the start)."""
    reason: str = ""
    """Why it ended: ``done`` (the episodes were kept), ``quit``, ``SIGINT`` or ``SIGTERM``."""
    kept: list[int] = dataclasses.field(default_factory=list)
    """Numbers of the episodes kept in this run."""
    frames: int = 0
    """Frames in those episodes."""
    discarded: int = 0
    """Episodes thrown away (discard, re-record, a write failure)."""
    ticks: int = 0
    """Control ticks run."""
    missed_ticks: int = 0
    """Ticks skipped because an earlier one overran its period."""
    dropped_frames: int = 0
    """Frames dropped because the writer was behind (in the kept episodes)."""
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)
    """Ticks without a frame, by cause: ``arm``, ``camera`` or ``device`` could not be read."""
    takeovers: int = 0
    """Intervention mode: times the operator took the arm from the policy."""
    policy: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Intervention mode: the policy's chunk, hold and request counters."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class TeleopSession:
    """Drives ``driver`` from ``device`` and records episodes (module docstring).

    Args:
        driver: the arm; connected and disconnected by :meth:`run`, like the device and cameras.
        device: the teleop device.
        cameras: cameras recorded as ``image.<name>``.
        config: the loop's settings.
        recorder: the store to record into.
        view: what the operator sees (default: JSON lines on stderr).
        clock: the loop's clock (default: the driver's, so ticks and sensing times compare).
        policy: the policy server of intervention mode; None: the operator drives alone.
    """

    def __init__(
        self,
        driver: Driver,
        device: TeleopDevice,
        cameras: list[Camera],
        config: TeleopConfig,
        recorder: RecorderConfig,
        *,
        view: OperatorView | None = None,
        clock: Clock | None = None,
        policy: PolicySource | None = None,
    ) -> None:
        self.driver, self.device, self.cameras = driver, device, list(cameras)
        self.policy = policy
        self.intervention: Intervention | None = None
        """Intervention mode's state once :meth:`run` has started (who drives, the policy's
        requester); None without a policy."""
        self.config, self.recorder_config = config, recorder
        self.view = view or HeadlessView()
        self.clock = clock or driver.clock
        self.limits = config.limits(driver.spec)
        self.fk = find_fk(driver) if self.limits.has_workspace else None
        if self.limits.has_workspace and self.fk is None:
            raise RobopolicyError("a workspace box needs forward kinematics this driver lacks")
        self.latch = EStopLatch(config.estop_latch_path)
        self._estop = EStopWatch(self.latch, config.estop_poll_s)
        self._stop: str | None = None
        self._recording = False
        self._failing: set[str] = set()

    def request_stop(self, reason: str = "stop") -> None:
        """End the session after the current tick (safe from signal handlers and threads)."""
        self._stop = self._stop or reason

    def run(self) -> SessionResult:
        """Record until the episodes are kept, the operator quits, a signal arrives or the
        e-stop latches (raises :class:`~hardware.daemon.estop.EStopLatched`, touching nothing,
        while the latch is set)."""
        cfg = self.config
        self.latch.require_clear()
        setup = RecordingSetup.of(self.driver, self.cameras, cfg.fps)
        kinematics = find_attribute(self.driver, "arm")  # SimArm's FK/IK (sim.arm.Arm)
        commander = TeleopCommander(
            self.device, self.limits, 1.0 / cfg.fps, kinematics=kinematics, fk=self.fk
        )
        if self.policy is not None:  # the server is asked before anything is connected
            self.intervention = Intervention.open(
                self.policy,
                commander,
                cfg.policy,
                self.driver.spec,
                self.clock,
                self.view,
                fk=self.fk,
            )
        with contextlib.ExitStack() as stack:
            stack.callback(self.view.close)
            stack.enter_context(ExitGuard(self.request_stop))
            for part in (self.driver, self.device, *self.cameras):
                stack.enter_context(part)  # connected now, disconnected on every way out
            # created (or checked for a resume) once the hardware answered, so a device that
            # fails to open leaves no empty store behind; closing discards an episode in flight
            recorder = Recorder(self.recorder_config, setup, notify=self._notice)
            stack.enter_context(recorder)
            if self.intervention is not None:
                stack.enter_context(self.intervention)  # the requester's thread runs from here on
            result = SessionResult(str(self.recorder_config.path), recorder.next_index)
            self.view.event(
                "running",
                pid=os.getpid(),
                store=result.store,
                next=recorder.next_index,
                control=self._control(),
            )
            result.reason = self._loop(recorder, commander, result)
            if self._recording:  # quit or a signal mid-episode: it is not kept
                self._end(recorder.discard(), result)
            if self.intervention is not None:
                result.takeovers = self.intervention.takeovers
                result.policy = self.intervention.summary()
            self.view.event("stopped", **result.to_dict())
        return result

    # -- the loop -----------------------------------------------------------------------------

    def _loop(self, recorder: Recorder, commander: TeleopCommander, result: SessionResult) -> str:
        cfg = self.config
        rate = Rate(self.clock, 1.0 / cfg.fps)
        reset_ticks = None if cfg.reset_seconds is None else round(cfg.reset_seconds * cfg.fps)
        ticks = 0  # since the episode, or the pause between episodes, began
        while self._stop is None:
            state, frame, events = self._tick(commander, result)
            ticks += 1
            if self._recording and frame is not None:
                recorder.record(frame)
            for event in events:
                if event is OperatorEvent.QUIT:
                    return "quit"
                if self._recording and event is OperatorEvent.KEEP:
                    ticks = self._end(recorder.keep(), result)
                elif self._recording and event is OperatorEvent.DISCARD:
                    ticks = self._end(recorder.discard(), result)
                elif self._recording and event is OperatorEvent.RERECORD:
                    self._end(recorder.rerecord(), result)
                    ticks = self._started(recorder.next_index)
                elif not self._recording and event is OperatorEvent.KEEP:
                    ticks = self._started(recorder.start_episode())
            if self._recording and recorder.problem:  # a write failed: it cannot be kept
                ticks = self._end(recorder.discard(), result)
            elif self._recording and ticks >= cfg.episode_frames:
                ticks = self._end(recorder.keep(), result)
            if len(result.kept) >= cfg.episodes:
                return "done"
            if not self._recording and reset_ticks is not None and ticks >= reset_ticks:
                ticks = self._started(recorder.start_episode())
            if state is not None:
                images = {c.config.key: frame[c.config.key] for c in self.cameras} if frame else {}
                self.view.show(self._status(state, ticks, recorder, result), images)
            result.missed_ticks += rate.wait()
        return self._stop

    def _tick(
        self, commander: TeleopCommander, result: SessionResult
    ) -> tuple[ArmState | None, dict[str, np.ndarray] | None, tuple[OperatorEvent, ...]]:
        """Read, command, and the frame to record (None when a reading failed)."""
        result.ticks += 1
        try:
            state = self.driver.read_state()
        except DriverError as exc:
            self._skip("arm", exc, result)
            return None, None, ()
        estop = self._estop.check(state.estopped, self.clock.monotonic())
        if estop is not None:  # nothing more is written: the session ends this tick
            self._notice(f"e-stop: {estop}; clear with `robopolicy control --clear-estop`")
            self.request_stop("estop")
            return state, None, ()
        images: dict[str, np.ndarray] | None = {}
        try:
            images = {camera.config.key: camera.read().image for camera in self.cameras}
            self._failing.discard("camera")
        except CameraError as exc:
            self._skip("camera", exc, result)
            images = None
        pilot = self.intervention
        try:
            reading = self.device.read()
            self._failing.discard("device")
        except DeviceError as exc:
            if pilot is None or pilot.human:  # nothing is written: the arm holds its command
                self._skip("device", exc, result)
                return state, None, ()
            self._tell("device", f"{exc} (the policy drives on; no take-over until it reads)")
            reading = DeviceReading(None, (), self.clock.monotonic())
        if pilot is not None:
            pilot.switch(reading.events, state)
        human = pilot is None or pilot.human
        if pilot is not None and not human:
            action, report = pilot.command(state)
        else:
            step = commander.command(reading, state)
            action, report = step.action, step.report
            if pilot is not None:
                pilot.observe(state)
        if not report.reference_ok:  # nothing finite to hold at: write nothing
            self._skip("arm", "the reading is not finite, nothing written", result)
            return state, None, reading.events
        self._failing.discard("arm")
        sent = self.driver.send_action(action)
        if pilot is not None:
            pilot.sent()
        if images is None:
            return state, None, reading.events
        frame = {
            "state": state.as_action().astype(np.float32),
            "action": np.asarray(sent, dtype=np.float32),
            "timestamp": np.float64(state.sensed_at),
            "intervention": np.uint8(human),
            **images,
        }
        if state.velocities is not None:
            frame["velocity"] = np.asarray(state.velocities, dtype=np.float32)
        return state, frame, reading.events

    # -- helpers ------------------------------------------------------------------------------

    def _started(self, episode: int) -> int:
        """Note that ``episode`` is being recorded; the tick count restarts."""
        self._recording = True
        self.view.event("episode_started", episode=episode)
        return 0

    def _end(self, outcome: EpisodeOutcome, result: SessionResult) -> int:
        """Account for an episode that ended; the tick count restarts."""
        self._recording = False
        if outcome.kept:
            result.kept.append(outcome.index)
            result.frames += outcome.frames
            result.dropped_frames += outcome.dropped
            self.view.event("episode_kept", episode=outcome.index, frames=outcome.frames)
        else:
            result.discarded += 1
            self.view.event(
                "episode_discarded",
                episode=outcome.index,
                frames=outcome.frames,
                reason=outcome.reason,
            )
        return 0

    def _status(
        self, state: ArmState, ticks: int, recorder: Recorder, result: SessionResult
    ) -> Status:
        return Status(
            time=self.clock.monotonic(),
            recording=self._recording,
            episode=recorder.next_index,
            kept=len(result.kept),
            episodes=self.config.episodes,
            elapsed=ticks / self.config.fps,
            positions=state.positions,
            gripper=state.gripper,
            dropped=recorder.dropped,
            control=self._control(),
        )

    def _control(self) -> str:
        """Who drives (:attr:`Intervention.control`; ``operator`` without a policy)."""
        return "operator" if self.intervention is None else self.intervention.control

    def _skip(self, cause: str, problem: object, result: SessionResult) -> None:
        result.skipped[cause] = result.skipped.get(cause, 0) + 1
        self._tell(cause, f"{problem} (ticks without its reading are not recorded)")

    def _tell(self, cause: str, message: str) -> None:
        """Tell the operator about ``cause`` once per run of failures."""
        if cause not in self._failing:
            self._failing.add(cause)
            self._notice(f"{cause}: {message}")

    def _notice(self, message: str) -> None:
        self.view.event("notice", message=message)
