"""The driver interface every arm implements, and the registry that finds drivers by name.

A driver is a small object (``docs/STYLE.md`` habit 7):

- ``spec``: a :class:`JointSpec` — joint names, limits, units — known **without a connection**;
- ``connect()`` / ``disconnect()``: idempotent; a driver is also a context manager;
- ``read_state() -> ArmState``: joint positions (rad), velocities when the hardware reports
  them, the gripper, and the **monotonic time it was sensed** (on the driver's ``clock``);
- ``send_action(action) -> sent``: ``action`` is ``(Da,)`` = joint position targets (rad), then
  the gripper command (0 open .. 1 closed) when the arm has one. The driver refuses non-finite
  values (nothing is written), clamps to its own limits and returns what it actually wrote
  (after clamping and quantization). The safety filter (:mod:`hardware.safety`) runs before
  this; the driver's clamp is the last line, not the policy.

Behaviour is added by wrapping (:class:`DriverWrapper`): fault injection, invariant monitoring.
Drivers register by decorator and are imported on demand, so listing them needs no SDK.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import numpy as np

from hardware.clock import SYSTEM_CLOCK, Clock
from hardware.registry import LazyRegistry
from robopolicy.errors import RobopolicyError


class DriverError(RobopolicyError):
    """A driver that cannot do what was asked: not connected, hardware fault, bad reply."""


class UnsafeCommandError(DriverError):
    """A command a driver refuses to write at all (non-finite or of the wrong shape)."""


class EStopError(DriverError):
    """The arm is emergency-stopped: writes are refused until the operator recovers it."""


@dataclasses.dataclass(frozen=True)
class JointSpec:
    """What an arm is, without a connection: its joints, their limits and the units."""

    names: tuple[str, ...]
    """Joint names, in the order of positions and of the action."""
    lower: tuple[float, ...]
    """Position lower limits, one per joint (``units``)."""
    upper: tuple[float, ...]
    """Position upper limits, one per joint (``units``)."""
    velocity: tuple[float, ...]
    """Speed limits, one per joint (``units``/s)."""
    acceleration: tuple[float, ...] | None = None
    """Acceleration limits (``units``/s²) when the maker states them, else None."""
    gripper: tuple[float, float] | None = (0.0, 1.0)
    """Range of the gripper command, or None for an arm without a gripper."""
    units: str = "rad"
    """Units of joint positions."""
    gripper_units: str = "0 open .. 1 closed"
    """Meaning of the gripper command."""

    def __post_init__(self) -> None:
        n = len(self.names)
        if n == 0 or len(set(self.names)) != n:
            raise ValueError(f"joint names must be non-empty and unique, got {self.names}")
        for field in ("lower", "upper", "velocity", "acceleration"):
            values = getattr(self, field)
            if values is None:
                continue
            if len(values) != n or not np.all(np.isfinite(values)):
                raise ValueError(f"{field} must be {n} finite numbers, got {values}")
        if not np.all(np.asarray(self.lower) < np.asarray(self.upper)):
            raise ValueError(f"lower {self.lower} must be below upper {self.upper}")
        if not np.all(np.asarray(self.velocity) > 0):
            raise ValueError(f"velocity limits must be positive, got {self.velocity}")
        if self.acceleration is not None and not np.all(np.asarray(self.acceleration) > 0):
            raise ValueError(f"acceleration limits must be positive, got {self.acceleration}")
        if self.gripper is not None and not (
            len(self.gripper) == 2
            and np.isfinite(self.gripper).all()
            and self.gripper[0] < self.gripper[1]
        ):
            raise ValueError(f"gripper range must be (low, high), low < high, got {self.gripper}")

    @property
    def dof(self) -> int:
        """Number of joints."""
        return len(self.names)

    @property
    def action_size(self) -> int:
        """Da: the joints, plus one for the gripper when there is one."""
        return self.dof + (self.gripper is not None)

    @property
    def action_names(self) -> tuple[str, ...]:
        return self.names + (("gripper",) if self.gripper is not None else ())

    def clamp(self, action: np.ndarray) -> np.ndarray:
        """``action`` (Da,) clipped to the position limits and the gripper range."""
        out = np.clip(action[: self.dof], self.lower, self.upper)
        if self.gripper is None:
            return out
        return np.append(out, np.clip(action[self.dof], *self.gripper))


@dataclasses.dataclass(frozen=True, eq=False)
class ArmState:
    """One reading of the arm, in raw units, stamped with the time it was sensed."""

    positions: np.ndarray
    """Joint positions (n,), the spec's units."""
    sensed_at: float
    """Monotonic time (s, on the driver's clock) the positions were measured."""
    velocities: np.ndarray | None = None
    """Joint velocities (n,) when the hardware reports them, else None."""
    gripper: float | None = None
    """Gripper in command units (0 open .. 1 closed), or None without a gripper."""
    estopped: bool = False
    """True while the arm reports an emergency or protective stop."""

    def as_action(self) -> np.ndarray:
        """The action that would hold the arm where it is: positions, then the gripper."""
        if self.gripper is None:
            return np.array(self.positions, dtype=np.float64)
        return np.append(self.positions, self.gripper).astype(np.float64)


class Driver(abc.ABC):
    """Base class of every arm driver; subclasses implement the four ``_`` methods."""

    name: ClassVar[str] = ""
    """Registry name, set by :func:`register_driver`."""

    def __init__(self, spec: JointSpec, clock: Clock | None = None) -> None:
        self.spec = spec
        self.clock: Clock = clock or SYSTEM_CLOCK
        self._connected = False

    # -- the public interface (subclasses leave these alone) ---------------------------------

    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        """Open the connection; calling it again while connected does nothing."""
        if not self._connected:
            self._connect()
            self._connected = True

    def disconnect(self) -> None:
        """Close the connection; calling it again (or before connecting) does nothing."""
        if self._connected:
            try:
                self._disconnect()
            finally:
                self._connected = False

    def __enter__(self) -> Driver:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()

    def read_state(self) -> ArmState:
        self._require_connected()
        return self._read_state()

    def send_action(self, action: Any) -> np.ndarray:
        """Write ``action`` (Da,) after the driver's own clamp; returns what was written."""
        self._require_connected()
        return self._write(self.spec.clamp(self.check_action(action)))

    def release(self) -> bool:
        """Cut motor torque where the hardware allows (True), else do nothing (False)."""
        return False

    def check_action(self, action: Any) -> np.ndarray:
        """``action`` as a finite float64 (Da,) array, or :class:`UnsafeCommandError`."""
        try:
            a = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise UnsafeCommandError(f"{self.name or type(self).__name__}: {exc}") from exc
        if a.shape != (self.spec.action_size,):
            raise UnsafeCommandError(
                f"action must have shape ({self.spec.action_size},) "
                f"{self.spec.action_names}, got {a.shape}; nothing was sent"
            )
        if not np.isfinite(a).all():
            bad = [n for n, v in zip(self.spec.action_names, a, strict=True) if not np.isfinite(v)]
            raise UnsafeCommandError(f"non-finite target for {bad}; nothing was sent")
        return a

    def _require_connected(self) -> None:
        if not self._connected:
            raise DriverError(f"{self.name or type(self).__name__} is not connected")

    # -- what a driver implements -------------------------------------------------------------

    @abc.abstractmethod
    def _connect(self) -> None: ...

    @abc.abstractmethod
    def _disconnect(self) -> None: ...

    @abc.abstractmethod
    def _read_state(self) -> ArmState: ...

    @abc.abstractmethod
    def _write(self, action: np.ndarray) -> np.ndarray:
        """Write a finite, clamped ``action``; return what was written (the same or quantized)."""


class DriverWrapper(Driver):
    """A driver around another one, delegating everything; subclasses override what they change."""

    def __init__(self, inner: Driver) -> None:
        super().__init__(inner.spec, inner.clock)
        self.inner = inner

    @property
    def is_connected(self) -> bool:
        return self.inner.is_connected

    def connect(self) -> None:
        self.inner.connect()

    def disconnect(self) -> None:
        self.inner.disconnect()

    def read_state(self) -> ArmState:
        return self.inner.read_state()

    def send_action(self, action: Any) -> np.ndarray:
        return self.inner.send_action(action)

    def release(self) -> bool:
        return self.inner.release()

    # the base class's hooks, for completeness: the public methods above delegate directly
    def _connect(self) -> None:
        self.inner.connect()

    def _disconnect(self) -> None:
        self.inner.disconnect()

    def _read_state(self) -> ArmState:
        return self.inner.read_state()

    def _write(self, action: np.ndarray) -> np.ndarray:
        return self.inner.send_action(action)


def find_attribute(driver: Driver | None, name: str) -> Any:
    """``driver``'s attribute ``name``, else that of the driver it wraps (``inner``), and so
    on; None when none has it (``SimArm.ee_position`` behind a fault wrapper)."""
    while driver is not None:
        value = getattr(driver, name, None)
        if value is not None:
            return value
        driver = getattr(driver, "inner", None)
    return None


# -- registry ----------------------------------------------------------------------------------

DRIVERS: LazyRegistry[Driver] = LazyRegistry(
    "driver",
    {
        "sim": "hardware.sim_arm",
        "feetech": "hardware.servo_arm",
        "dynamixel": "hardware.servo_arm",
        "ur": "hardware.ur_arm",
        "xarm": "hardware.xarm_arm",
    },
    DriverError,
)
D = TypeVar("D", bound=type[Driver])


def register_driver(name: str) -> Callable[[D], D]:
    """Class decorator: make a driver available as ``make_driver(name, ...)``."""

    def decorate(cls: D) -> D:
        DRIVERS.add(name, cls)
        cls.name = name
        return cls

    return decorate


def driver_names() -> tuple[str, ...]:
    """Every known driver name (built-in and registered), without importing any SDK."""
    return DRIVERS.names()


def driver_class(name: str) -> type[Driver]:
    """The driver class registered as ``name``, importing its module on demand."""
    return DRIVERS.get(name)


def make_driver(name: str, **kwargs: Any) -> Driver:
    """A new, unconnected driver: ``make_driver("sim")``, ``make_driver("ur", host=...)``."""
    return driver_class(name)(**kwargs)
