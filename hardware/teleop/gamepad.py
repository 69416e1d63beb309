"""A gamepad (pygame joystick) as an end-effector device: sticks move, buttons act.

The default bindings follow the common Xbox-style layout as SDL reports it (pygame's joystick
API on Linux): left stick forward/back and left/right move in x and y, the right stick's
vertical moves in z and its horizontal turns the tool (yaw); A toggles the gripper, Start keeps
the episode, Back discards it, Y re-records, LB takes over, RB hands back, the guide button
quits. Pads differ, so every binding is configuration.

The joystick is a :class:`JoystickBackend` (``open``, ``close``, ``poll() -> GamepadState``);
:class:`PygameJoystick` is the real one, importing pygame on ``open`` (the ``teleop`` extra).
Tests inject a fake. Buttons act on the press (an edge), not while held.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import numpy as np

from hardware.clock import SYSTEM_CLOCK, Clock
from hardware.teleop.device import (
    DeviceError,
    DeviceReading,
    OperatorEvent,
    TeleopDevice,
    register_device,
    require_extra,
)
from hardware.teleop.velocity import VelocityConfig, VelocityInput

AXES = ("x", "y", "z", "roll", "pitch", "yaw")
GRIPPER_TOGGLE = "gripper"
BUTTON_ACTIONS = frozenset({GRIPPER_TOGGLE} | {e.value for e in OperatorEvent})


@dataclasses.dataclass(frozen=True)
class GamepadState:
    """One poll of a joystick."""

    axes: tuple[float, ...]
    """Axis values in [-1, 1], in the joystick's order."""
    buttons: tuple[bool, ...]
    """Whether each button is down, in the joystick's order."""


class JoystickBackend(Protocol):
    """Where gamepad states come from."""

    def open(self) -> None: ...

    def close(self) -> None: ...

    def poll(self) -> GamepadState:
        """The joystick now; never blocks."""
        ...


@dataclasses.dataclass(frozen=True)
class GamepadConfig:
    """Bindings and speeds of the gamepad device."""

    axes: dict[str, int] = dataclasses.field(
        default_factory=lambda: {"x": 1, "y": 0, "z": 4, "yaw": 3}
    )
    """Motion (``x``, ``y``, ``z``, ``roll``, ``pitch``, ``yaw``, base frame) -> joystick axis."""
    inverted: tuple[str, ...] = ("x", "y", "z", "yaw")
    """Motions whose axis reads the other way (stick up and stick left read negative in SDL)."""
    buttons: dict[str, int] = dataclasses.field(
        default_factory=lambda: {
            "gripper": 0,
            "keep": 7,
            "discard": 6,
            "rerecord": 3,
            "takeover": 4,
            "handback": 5,
            "quit": 8,
        }
    )
    """``gripper`` (toggle) or an operator event name -> the button index that does it."""
    velocity: VelocityConfig = dataclasses.field(default_factory=VelocityConfig)
    """Speeds at full deflection, deadzone and the longest integrated interval."""
    gripper_closed: bool = False
    """Whether the gripper starts closed."""

    def __post_init__(self) -> None:
        unknown = sorted((set(self.axes) | set(self.inverted)) - set(AXES))
        if unknown:
            raise ValueError(f"unknown motion axes {unknown}; choose from {AXES}")
        if any(index < 0 for index in self.axes.values()):
            raise ValueError(f"axis indices must be >= 0, got {self.axes}")
        bad = {a: b for a, b in self.buttons.items() if a not in BUTTON_ACTIONS or b < 0}
        if bad:
            raise ValueError(f"bad button bindings {bad}; actions: {sorted(BUTTON_ACTIONS)}")


class PygameJoystick:
    """The real backend: joystick ``index`` through pygame (SDL)."""

    def __init__(self, index: int = 0) -> None:
        self.index = index
        self._pygame: Any = None
        self._joystick: Any = None

    def open(self) -> None:
        pygame = require_extra("pygame", "gamepad")
        pygame.init()
        pygame.joystick.init()
        count = pygame.joystick.get_count()
        if self.index >= count:
            raise DeviceError(f"gamepad {self.index} not found: {count} joystick(s) connected")
        self._pygame, self._joystick = pygame, pygame.joystick.Joystick(self.index)
        self._joystick.init()

    def close(self) -> None:
        if self._joystick is not None:
            self._joystick.quit()
        self._pygame = self._joystick = None

    def poll(self) -> GamepadState:
        js = self._joystick
        try:
            self._pygame.event.pump()  # SDL updates joystick values while it handles events
            return GamepadState(
                axes=tuple(float(js.get_axis(i)) for i in range(js.get_numaxes())),
                buttons=tuple(bool(js.get_button(i)) for i in range(js.get_numbuttons())),
            )
        except self._pygame.error as exc:
            raise DeviceError(f"gamepad {self.index} stopped answering: {exc}") from exc


@register_device("gamepad")
class GamepadDevice(TeleopDevice):
    """End-effector teleop from a gamepad.

    Args:
        config: bindings and speeds.
        backend: the joystick (default: :class:`PygameJoystick` 0).
        clock: the time the sticks' velocity is integrated over (default: the system clock).
    """

    def __init__(
        self,
        config: GamepadConfig | None = None,
        *,
        backend: JoystickBackend | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config or GamepadConfig()
        self.backend = backend or PygameJoystick()
        self.velocity = VelocityInput(self.config.velocity, clock or SYSTEM_CLOCK)
        self.gripper = 1.0 if self.config.gripper_closed else 0.0
        """The gripper command the toggle button last set (0 open, 1 closed)."""
        self._pressed: tuple[bool, ...] = ()

    def _connect(self) -> None:
        self.backend.open()
        self.velocity.restart()
        self._pressed = ()

    def _disconnect(self) -> None:
        self.backend.close()

    def read(self) -> DeviceReading:
        state = self.backend.poll()
        deflection = np.zeros(len(AXES))
        for name, index in self.config.axes.items():
            if index < len(state.axes):
                sign = -1.0 if name in self.config.inverted else 1.0
                deflection[AXES.index(name)] = sign * state.axes[index]
        events: list[OperatorEvent] = []
        toggled = False
        for action, index in self.config.buttons.items():
            down = index < len(state.buttons) and state.buttons[index]
            was_down = index < len(self._pressed) and self._pressed[index]
            if not down or was_down:
                continue
            if action == GRIPPER_TOGGLE:
                self.gripper, toggled = 1.0 - self.gripper, True
            else:
                events.append(OperatorEvent(action))
        self._pressed = state.buttons
        motion, now = self.velocity.command(deflection, self.gripper if toggled else None)
        return DeviceReading(motion, tuple(events), now)
