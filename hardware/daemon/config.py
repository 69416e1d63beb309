"""``ControlConfig``: every knob of the control daemon, typed, documented and validated.

Times are seconds on the daemon's clock; angles are the driver's units (rad). The watchdog has
two thresholds, as industrial arms do (a UR controller stops a ``servoj`` stream that is late by a
few tens of milliseconds; libfranka aborts the motion and latches the error until an explicit
recovery):

- ``command_timeout_s`` (T1): once the last planned action's due time is this far in the past
  and no fresh chunk has arrived, the arm **holds** (the last safe command is repeated);
- ``stop_timeout_s`` (T2): a command stream, a sensor or a driver that stays bad this long ends
  the run in a **latched safe stop**: the loop stops, the exit behaviour runs, and only a
  restart of the daemon moves the arm again.

``robopolicy control ... key=value`` overrides any field (``robopolicy.config`` syntax).
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

EXIT_BEHAVIOURS = ("hold", "park_then_release", "release")
INTERPOLATIONS = ("linear", "hold")
ACTION_SPACES = ("auto", "joint", "ee")
RTC_MODES = ("auto", "on", "off")
LATCH_ENV = "ROBOPOLICY_ESTOP_LATCH"
MIN_RATE_HZ, MAX_RATE_HZ = 50.0, 500.0


def default_latch_path() -> str:
    """``$ROBOPOLICY_ESTOP_LATCH``, else ``~/.robopolicy/estop.json`` (one latch per machine)."""
    return os.environ.get(LATCH_ENV) or str(Path.home() / ".robopolicy" / "estop.json")


@dataclasses.dataclass(frozen=True)
class ControlConfig:
    """How the control daemon runs one arm (see the module docstring for the watchdog)."""

    rate_hz: float = 100.0
    """Control rate (ticks per second), 50..500. Every tick reads, filters and writes once."""
    command_timeout_s: float = 0.1
    """T1: hold once the plan has run out for this long without a fresh chunk."""
    stop_timeout_s: float = 1.0
    """T2: latched safe stop once commands, sensor readings or driver writes stay bad this long."""
    first_chunk_timeout_s: float = 10.0
    """At start-up the arm holds while waiting for the first chunk; longer is a latched stop."""
    sensor_max_age_s: float = 0.05
    """A reading sensed longer ago than this (or non-finite, or unreadable) means hold (R4)."""
    chunk_lead_s: float = 0.25
    """Ask for the next chunk once the current plan has less than this left to run."""
    request_timeout_s: float = 0.5
    """Deadline of one inference request (sent to the server as ``timeout_ms``)."""
    retry_s: float = 0.05
    """Pause after a failed request (timeout, lost connection, error reply) before the next."""
    interpolation: str = "linear"
    """``"linear"``: targets move linearly between consecutive actions at the control rate;
    ``"hold"``: each action is held until the next one is due (zero-order hold)."""
    exit_behaviour: str = "hold"
    """On every exit path: ``"hold"`` (keep the last safe target, torque on),
    ``"park_then_release"`` (move to ``park_position`` through the safety filter, then cut
    torque) or ``"release"`` (cut torque at once). After an e-stop nothing moves: hold writes
    nothing and park skips the motion."""
    park_position: tuple[float, ...] | None = None
    """Where to park (the action: joints, then the gripper); None: where the arm was at start."""
    park_timeout_s: float = 5.0
    """Most time parking may take; the arm is released wherever it got to."""
    park_tolerance: float = 0.01
    """Parking is done when every joint is this close to the park position (rad)."""
    estop_latch_path: str = dataclasses.field(default_factory=default_latch_path)
    """The e-stop latch file (R5): while it exists the daemon refuses to move the arm."""
    estop_poll_s: float = 0.1
    """How often the running loop looks for a latch set from outside (``--estop``)."""
    log_path: str | None = None
    """Episode store receiving every tick; None: no tick log."""
    log_segment_s: float = 10.0
    """Ticks are committed to the store in episodes of this length (a crash loses at most one)."""
    max_step: float = 0.05
    """Safety filter: largest change of a joint target in one tick (rad)."""
    velocity_scale: float = 1.0
    """Safety filter: fraction of the driver's joint speed limits allowed, (0, 1]."""
    max_acceleration: float | None = None
    """Safety filter: joint acceleration bound (rad/s²); None: the driver's, if it states one."""
    workspace_lower: tuple[float, float, float] | None = None
    """Safety filter: lower corner of the end-effector box (m); needs forward kinematics."""
    workspace_upper: tuple[float, float, float] | None = None
    """Safety filter: upper corner of that box (m)."""
    action_space: str = "auto"
    """How the policy's actions become joint targets: ``"joint"`` (they are joint targets and
    the gripper, like the robot's action), ``"ee"`` (end-effector (x, y[, gripper]) targets,
    turned into joints by the built-in arm's IK) or ``"auto"`` (joint when the sizes match)."""
    ee_height: float = 0.028
    """``"ee"`` policies: the height (m) of the end-effector targets (arm-push's pushing height)."""
    ee_gripper: float = 1.0
    """``"ee"`` policies without a gripper output: the gripper command to send."""
    ee_max_step: float = 0.01
    """``"ee"`` policies: largest move (m) of the ee target between consecutive actions (0.01 m
    at 10 Hz keeps the built-in arm's joints within a tenth of their speed limits, so a chunk
    whose first actions went overdue still starts within reach)."""
    ee_workspace_lower: tuple[float, float] = (0.15, -0.28)
    """``"ee"`` policies: lower corner (x, y) of the table area (m, world frame) every ee target
    is clipped to; the default is ``arm-push``'s, as its env clips."""
    ee_workspace_upper: tuple[float, float] = (0.62, 0.28)
    """``"ee"`` policies: upper corner (x, y) of that area (m)."""
    rtc: str = "auto"
    """Real-time chunking (Black et al. 2025): ``"on"`` sends each request the plan's actions
    for the new chunk's ticks (``prefix``; the history and those due before the reply can take
    over are ``frozen``) and runs the old chunk until the new one's first free action is due;
    it needs a server that inpaints (metadata ``inpaint``: ``serve --backend auto|torch|onnx``)
    and a joint-space policy (the plan holds joint targets), and is refused before motion
    otherwise. ``"auto"``: on where both hold; ``"off"``: never (each chunk replaces the plan
    from its first action still to come)."""
    rtc_delay_quantile: float = 0.9
    """Real-time chunking: the quantile of the latest inference delays (observation to the
    chunk's hand-over) taken as the delay that decides how many actions are committed."""
    policy_fps: float | None = None
    """Actions per second of the policy, when the server's metadata does not say."""
    realtime_priority: int | None = None
    """Run the loop's thread under ``SCHED_FIFO`` at this priority, and the requester's one
    below it (1..99; needs ``CAP_SYS_NICE``), as ros2_control runs its update loop on a
    real-time kernel; None: normal scheduling."""

    def __post_init__(self) -> None:
        if not MIN_RATE_HZ <= self.rate_hz <= MAX_RATE_HZ:
            raise ValueError(
                f"rate_hz must be in [{MIN_RATE_HZ}, {MAX_RATE_HZ}], got {self.rate_hz}"
            )
        for name in (
            "command_timeout_s",
            "stop_timeout_s",
            "first_chunk_timeout_s",
            "sensor_max_age_s",
            "chunk_lead_s",
            "request_timeout_s",
            "retry_s",
            "park_timeout_s",
            "park_tolerance",
            "estop_poll_s",
            "log_segment_s",
            "max_step",
            "ee_max_step",
        ):
            _positive(name, getattr(self, name))
        if self.stop_timeout_s <= self.command_timeout_s:
            raise ValueError("stop_timeout_s (T2) must be longer than command_timeout_s (T1)")
        if self.sensor_max_age_s < self.period:
            raise ValueError(f"sensor_max_age_s must be at least one period ({self.period:.4f} s)")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}")
        if self.exit_behaviour not in EXIT_BEHAVIOURS:
            raise ValueError(f"exit_behaviour must be one of {EXIT_BEHAVIOURS}")
        if self.action_space not in ACTION_SPACES:
            raise ValueError(f"action_space must be one of {ACTION_SPACES}")
        if self.rtc not in RTC_MODES:
            raise ValueError(f"rtc must be one of {RTC_MODES}, got {self.rtc!r}")
        if not 0 <= self.rtc_delay_quantile <= 1:
            raise ValueError(f"rtc_delay_quantile must be in [0, 1], got {self.rtc_delay_quantile}")
        if not 0 < self.velocity_scale <= 1:
            raise ValueError(f"velocity_scale must be in (0, 1], got {self.velocity_scale}")
        if self.max_acceleration is not None:
            _positive("max_acceleration", self.max_acceleration)
        if self.policy_fps is not None:
            _positive("policy_fps", self.policy_fps)
        if (self.workspace_lower is None) != (self.workspace_upper is None):
            raise ValueError("set both workspace_lower and workspace_upper, or neither")
        if self.park_position is not None and not all(map(math.isfinite, self.park_position)):
            raise ValueError(f"park_position must be finite, got {self.park_position}")
        if not (math.isfinite(self.ee_height) and 0.0 <= self.ee_gripper <= 1.0):
            raise ValueError("ee_height must be finite and ee_gripper in [0, 1]")
        _check_ee_workspace(self.ee_workspace_lower, self.ee_workspace_upper)
        if self.realtime_priority is not None and not 1 <= self.realtime_priority <= 99:
            raise ValueError(f"realtime_priority must be in 1..99, got {self.realtime_priority}")
        if not self.estop_latch_path:
            raise ValueError("estop_latch_path must name a file")

    @property
    def period(self) -> float:
        """Seconds per tick."""
        return 1.0 / self.rate_hz

    @property
    def workspace(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        if self.workspace_lower is None or self.workspace_upper is None:
            return None
        return self.workspace_lower, self.workspace_upper


def _check_ee_workspace(lower: tuple[float, ...], upper: tuple[float, ...]) -> None:
    corners = (tuple(lower), tuple(upper))
    if not all(len(c) == 2 and all(map(math.isfinite, c)) for c in corners):
        raise ValueError(f"ee_workspace_lower/upper must be finite (x, y), got {corners}")
    if not all(lo < hi for lo, hi in zip(*corners, strict=True)):
        raise ValueError(f"ee_workspace_lower must be below ee_workspace_upper, got {corners}")


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
