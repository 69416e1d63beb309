"""The keyboard as an end-effector device: each key press nudges the target by one step.

Keys come from a :class:`KeySource` (``poll() -> list of key names``): a :class:`KeyQueue` that
tests and other front ends push into, or :class:`~hardware.teleop.terminal_keys.TerminalKeys`,
which reads the terminal the command runs in (no window, no extra packages). A terminal reports
presses and the auto-repeat of a held key, not releases, so motion is per press: holding a key
moves the target at the auto-repeat rate. Default keys (every binding is configurable)::

    w / s   +x / -x        a / d   +y / -y        r / f   +z / -z        (metres per press)
    z / c   yaw + / -      space   toggle the gripper
    enter   keep           backspace  discard     b   re-record
    t       take over      g   hand back          escape  quit

Arrow keys arrive as ``"up"``, ``"down"``, ``"left"`` and ``"right"``; printable keys as
themselves; ``"enter"``, ``"backspace"``, ``"escape"``, ``"tab"`` and ``"space"`` by name.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Iterable
from types import MappingProxyType
from typing import Protocol

import numpy as np

from hardware.clock import SYSTEM_CLOCK, Clock
from hardware.teleop.device import (
    DeviceReading,
    EndEffectorCommand,
    OperatorEvent,
    TeleopDevice,
    register_device,
)
from hardware.teleop.terminal_keys import TerminalKeys

MOTIONS = {
    "+x": (0, 1.0),
    "-x": (0, -1.0),
    "+y": (1, 1.0),
    "-y": (1, -1.0),
    "+z": (2, 1.0),
    "-z": (2, -1.0),
    "+yaw": (5, 1.0),
    "-yaw": (5, -1.0),
}
"""Motion actions: index into (x, y, z, roll, pitch, yaw) and the sign."""
GRIPPER_TOGGLE = "gripper"
ACTIONS = frozenset(MOTIONS) | {GRIPPER_TOGGLE} | {e.value for e in OperatorEvent}
"""Everything a key can be bound to: a motion, the gripper toggle or an operator event."""

DEFAULT_KEYS = MappingProxyType(
    {
        "w": "+x",
        "s": "-x",
        "a": "+y",
        "d": "-y",
        "r": "+z",
        "f": "-z",
        "z": "+yaw",
        "c": "-yaw",
        "space": GRIPPER_TOGGLE,
        "enter": "keep",
        "backspace": "discard",
        "b": "rerecord",
        "t": "takeover",
        "g": "handback",
        "escape": "quit",
    }
)


class KeySource(Protocol):
    """Where key presses come from."""

    def poll(self) -> list[str]:
        """Key names pressed since the last poll, oldest first; never blocks."""
        ...


class KeyQueue:
    """A thread-safe queue of key presses: push from anywhere, poll from the control loop."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._keys: collections.deque[str] = collections.deque(keys)
        self._lock = threading.Lock()

    def push(self, *keys: str) -> None:
        with self._lock:
            self._keys.extend(keys)

    def poll(self) -> list[str]:
        with self._lock:
            keys = list(self._keys)
            self._keys.clear()
        return keys


@dataclasses.dataclass(frozen=True)
class KeyboardConfig:
    """Key bindings and step sizes of the keyboard device."""

    keys: dict[str, str] = dataclasses.field(default_factory=lambda: dict(DEFAULT_KEYS))
    """Key name -> action: a motion (``+x`` .. ``-yaw``), ``gripper`` (toggle) or an operator
    event (``keep``, ``discard``, ``rerecord``, ``takeover``, ``handback``, ``quit``)."""
    step: float = 0.005
    """Target translation per press (m)."""
    yaw_step: float = 0.05
    """Target rotation about the base z axis per press (rad)."""
    gripper_closed: bool = False
    """Whether the gripper starts closed."""

    def __post_init__(self) -> None:
        unknown = {k: a for k, a in self.keys.items() if a not in ACTIONS}
        if unknown:
            raise ValueError(f"unknown key actions {unknown}; choose from {sorted(ACTIONS)}")
        for name in ("step", "yaw_step"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive, got {value}")


@register_device("keyboard")
class KeyboardDevice(TeleopDevice):
    """End-effector teleop from key presses.

    Args:
        config: key bindings and step sizes.
        source: where keys come from; default: the terminal (:class:`TerminalKeys`), opened on
            connect.
        clock: stamps readings (default: the system clock).
    """

    def __init__(
        self,
        config: KeyboardConfig | None = None,
        *,
        source: KeySource | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config or KeyboardConfig()
        self.clock = clock or SYSTEM_CLOCK
        self._injected = source
        self._source = source
        self._terminal: TerminalKeys | None = None
        self.gripper = 1.0 if self.config.gripper_closed else 0.0
        """The gripper command the toggle key last set (0 open, 1 closed)."""

    def _connect(self) -> None:
        if self._injected is None:
            self._terminal = TerminalKeys().start()
            self._source = self._terminal

    def _disconnect(self) -> None:
        if self._terminal is not None:
            self._terminal.stop()
        self._terminal, self._source = None, self._injected

    def read(self) -> DeviceReading:
        twist = np.zeros(6)
        events: list[OperatorEvent] = []
        toggled = moved = False
        keys = self._source.poll() if self._source is not None else []
        for key in keys:
            action = self.config.keys.get(key)
            if action in MOTIONS:
                axis, sign = MOTIONS[action]
                twist[axis] += sign
                moved = True
            elif action == GRIPPER_TOGGLE:
                self.gripper = 1.0 - self.gripper
                toggled = True
            elif action is not None:
                events.append(OperatorEvent(action))
        motion = None
        if moved or toggled:
            motion = EndEffectorCommand(
                translation=twist[:3] * self.config.step,
                rotation=twist[3:] * self.config.yaw_step,
                gripper=self.gripper if toggled else None,
            )
        return DeviceReading(motion, tuple(events), self.clock.monotonic())
