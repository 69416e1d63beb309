"""The teleop device interface: what an operator's device says, and the registry of devices.

A device is small (``docs/STYLE.md`` habit 5): ``connect()`` / ``disconnect()``
(idempotent; also a context manager) and ``read() -> DeviceReading``. A reading carries

- ``motion``: one of
  - :class:`JointCommand` — absolute joint targets (n,) in rad and the gripper (leader arm);
  - :class:`EndEffectorCommand` — the **change** of the end-effector target since the last
    read: a translation (3,) in metres and a rotation vector (3,) in rad, both in the arm's base
    frame, plus the gripper (keyboard, gamepad, SpaceMouse);
  - ``None`` — no motion input this read (hold);
- ``events``: the operator's buttons since the last read, as :class:`OperatorEvent` values, in
  the order they were pressed;
- ``sensed_at``: the time of the read on the device's clock (monotonic seconds).

The gripper is absolute, 0 open .. 1 closed, or ``None`` to leave it where it is. Devices never
write to an arm: :class:`~hardware.teleop.commander.TeleopCommander` turns a reading into a
joint command through the arm's IK and the safety filter. Every device takes its event source
injected (a key queue, a fake joystick, recorded HID reports, a bus emulator), so each is tested
without the hardware; the real backends import their SDK on first use.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import importlib
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import numpy as np

from hardware.registry import LazyRegistry
from robopolicy.errors import RobopolicyError


class DeviceError(RobopolicyError):
    """A teleop device that cannot be opened or read (missing SDK, unplugged, bad data)."""


class OperatorEvent(enum.Enum):
    """An operator's button press; the recorder and the intervention mode act on them."""

    KEEP = "keep"
    """End the episode and commit it."""
    DISCARD = "discard"
    """End the episode and throw it away."""
    RERECORD = "rerecord"
    """Throw the episode in flight away and record it again from the start."""
    TAKEOVER = "takeover"
    """The operator takes control from the policy."""
    HANDBACK = "handback"
    """The operator gives control back to the policy."""
    QUIT = "quit"
    """End the recording session."""


@dataclasses.dataclass(frozen=True, eq=False)
class JointCommand:
    """Absolute joint targets, as a leader arm gives them."""

    positions: np.ndarray
    """Joint position targets (n,) in rad, in the follower's joint order."""
    gripper: float | None = None
    """Gripper command, 0 open .. 1 closed; None leaves it where it is."""


@dataclasses.dataclass(frozen=True, eq=False)
class EndEffectorCommand:
    """A change of the end-effector target since the last read, in the arm's base frame."""

    translation: np.ndarray
    """Change of the target position (3,), metres."""
    rotation: np.ndarray
    """Change of the target orientation as a rotation vector (3,), rad (axis * angle)."""
    gripper: float | None = None
    """Gripper command, 0 open .. 1 closed; None leaves it where it is."""


Motion = JointCommand | EndEffectorCommand


@dataclasses.dataclass(frozen=True, eq=False)
class DeviceReading:
    """Everything a device said in one read."""

    motion: Motion | None
    """The motion input, or None when the operator gave none (hold)."""
    events: tuple[OperatorEvent, ...]
    """Buttons pressed since the last read, oldest first."""
    sensed_at: float
    """Monotonic time (s, on the device's clock) of the read."""


class TeleopDevice(abc.ABC):
    """Base class of every teleop device; subclasses implement ``read`` (and, when they hold
    a resource, ``_connect`` / ``_disconnect``)."""

    name: ClassVar[str] = ""
    """Registry name, set by :func:`register_device`."""

    _connected: bool = False

    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        """Open the device; calling it again while connected does nothing."""
        if not self._connected:
            self._connect()
            self._connected = True

    def disconnect(self) -> None:
        """Close the device; calling it again (or before connecting) does nothing."""
        if self._connected:
            try:
                self._disconnect()
            finally:
                self._connected = False

    def __enter__(self) -> TeleopDevice:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()

    @abc.abstractmethod
    def read(self) -> DeviceReading:
        """What the operator did since the last read; never blocks."""

    # optional hooks, deliberately empty: a device with nothing to open overrides neither
    def _connect(self) -> None:  # noqa: B027
        """Open what the device holds (nothing by default)."""

    def _disconnect(self) -> None:  # noqa: B027
        """Release what ``_connect`` opened (nothing by default)."""


# -- registry ----------------------------------------------------------------------------------

DEVICES: LazyRegistry[TeleopDevice] = LazyRegistry(
    "teleop device",
    {
        "keyboard": "hardware.teleop.keyboard",
        "gamepad": "hardware.teleop.gamepad",
        "spacemouse": "hardware.teleop.spacemouse",
        "leader": "hardware.teleop.leader",
    },
    DeviceError,
)
T = TypeVar("T", bound=type[TeleopDevice])


def register_device(name: str) -> Callable[[T], T]:
    """Class decorator: make a device available as ``make_device(name, ...)``."""

    def decorate(cls: T) -> T:
        DEVICES.add(name, cls)
        cls.name = name
        return cls

    return decorate


def device_names() -> tuple[str, ...]:
    """Every known device name (built-in and registered), without importing any SDK."""
    return DEVICES.names()


def device_class(name: str) -> type[TeleopDevice]:
    """The device class registered as ``name``, importing its module on demand."""
    return DEVICES.get(name)


def make_device(name: str, **kwargs: Any) -> TeleopDevice:
    """A new, unconnected device: ``make_device("keyboard")``, ``make_device("gamepad")``."""
    return device_class(name)(**kwargs)


def require_extra(module: str, device: str) -> Any:
    """Import ``module`` for ``device``, or a :class:`DeviceError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DeviceError(
            f"the {device} device needs the {module!r} module: "
            f"pip install 'robopolicy[teleop]' ({exc})"
        ) from exc
