"""Injected event sources for the teleop tests: scripted key presses, a scripted joystick and
HID reports."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

from hardware.teleop.gamepad import GamepadState

Script = dict[int, list[str] | Callable[[], list[str] | None]]


class ScriptedKeys:
    """Key presses by tick: poll ``i`` returns ``script[i]``; a callable there runs instead and
    its result (None: nothing) is the keys."""

    def __init__(self, script: Script) -> None:
        self.script, self.polls = script, 0

    def poll(self) -> list[str]:
        action = self.script.get(self.polls, [])
        self.polls += 1
        if callable(action):
            return list(action() or [])
        return list(action)


class FakeJoystick:
    """A joystick whose state the test sets; counts opens and closes."""

    def __init__(self, axes: int = 6, buttons: int = 11) -> None:
        self.state = GamepadState((0.0,) * axes, (False,) * buttons)
        self.opened = self.closed = 0

    def set(self, axes: dict[int, float] | None = None, pressed: tuple[int, ...] = ()) -> None:
        values = list(self.state.axes)
        for index, value in (axes or {}).items():
            values[index] = value
        held = tuple(i in pressed for i in range(len(self.state.buttons)))
        self.state = GamepadState(tuple(values), held)

    def open(self) -> None:
        self.opened += 1

    def close(self) -> None:
        self.closed += 1

    def poll(self) -> GamepadState:
        return self.state


class FakeHid:
    """HID reports queued by the test, handed out on the next ``reports()``."""

    def __init__(self) -> None:
        self.queued: list[bytes] = []
        self.opened = self.closed = 0

    def push(self, *reports: bytes) -> None:
        self.queued.extend(reports)

    def open(self) -> None:
        self.opened += 1

    def close(self) -> None:
        self.closed += 1

    def reports(self) -> list[bytes]:
        out, self.queued = self.queued, []
        return out


def translation_report(x: int, y: int, z: int) -> bytes:
    return bytes([1]) + struct.pack("<3h", x, y, z)


def rotation_report(rx: int, ry: int, rz: int) -> bytes:
    return bytes([2]) + struct.pack("<3h", rx, ry, rz)


def six_axis_report(*values: int) -> bytes:
    return bytes([1]) + struct.pack("<6h", *values)


def button_report(mask: int) -> bytes:
    return bytes([3]) + mask.to_bytes(2, "little")


def wait_for(condition, timeout: float = 5.0) -> None:
    """Poll ``condition`` until true (a background thread or the emulator must catch up)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


class FakePygame:
    """Just enough of pygame's joystick API for :class:`PygameJoystick`; ``unplug()`` makes
    every later call fail as SDL does."""

    class error(RuntimeError):  # pygame's name
        pass

    def __init__(self, axes: list[float], buttons: list[bool]) -> None:
        self.axes, self.buttons, self.plugged = axes, buttons, True
        self.joystick = self  # pygame.joystick.* and Joystick objects live on one fake
        self.event = self

    def init(self) -> None: ...

    def get_count(self) -> int:
        return 1

    def Joystick(self, index: int) -> FakePygame:  # pygame's name
        return self

    def quit(self) -> None: ...

    def pump(self) -> None:
        if not self.plugged:
            raise self.error("Joystick not initialized")

    def get_numaxes(self) -> int:
        return len(self.axes)

    def get_axis(self, i: int) -> float:
        return self.axes[i]

    def get_numbuttons(self) -> int:
        return len(self.buttons)

    def get_button(self, i: int) -> int:
        return int(self.buttons[i])


class FakeHidModule:
    """Just enough of hidapi's ``hid`` module for :class:`HidSpaceMouse`."""

    def __init__(self, devices: list[dict], reports: list[list[int]]) -> None:
        self.devices, self.reports, self.opened = devices, reports, []

    def enumerate(self) -> list[dict]:
        return self.devices

    def device(self) -> FakeHidModule:
        return self

    def open_path(self, path: bytes) -> None:
        self.opened.append(path)

    def set_nonblocking(self, flag: int) -> None: ...

    def read(self, size: int) -> list[int]:
        if self.reports is None:
            raise OSError("read error")
        return self.reports.pop(0) if self.reports else []

    def close(self) -> None: ...
