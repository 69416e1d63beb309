"""A 3Dconnexion SpaceMouse (hidapi) as a six-axis end-effector device.

The SpaceMouse sends HID input reports when its cap moves or a button changes:

- report 1: translation, three little-endian int16 (x, y, z); newer models send all six axes
  in report 1 (translation, then rotation, 13 bytes with the id);
- report 2: rotation, three int16 (rx, ry, rz);
- report 3: buttons, a little-endian bit mask (bit 0 the left button, bit 1 the right).

Values stay until the next report (the cap sends zeros when released). The device frame is x
right, y toward the operator, z down; the defaults map it to a base frame of x away from the
operator, y left, z up (``axes`` picks the device axis for each base axis, ``signs`` flips it).
:func:`parse_report` decodes one report; :class:`HidSpaceMouse` is the real backend (the
``hidapi`` package, imported as ``hid``, in the ``teleop`` extra); tests inject reports.
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

VENDORS = (0x256F, 0x046D)
"""3Dconnexion's USB vendor id, and Logitech's (older SpaceMouse models)."""
GRIPPER_TOGGLE = "gripper"
BUTTON_ACTIONS = frozenset({GRIPPER_TOGGLE} | {e.value for e in OperatorEvent})


class HidBackend(Protocol):
    """Where HID input reports come from."""

    def open(self) -> None: ...

    def close(self) -> None: ...

    def reports(self) -> list[bytes]:
        """The input reports received since the last call, oldest first; never blocks."""
        ...


@dataclasses.dataclass(frozen=True)
class SpaceMouseConfig:
    """Axis mapping, buttons and speeds of the SpaceMouse device."""

    axes: tuple[int, int, int, int, int, int] = (1, 0, 2, 4, 3, 5)
    """For each base axis (x, y, z, rx, ry, rz), the device axis (0..5: x, y, z, rx, ry, rz)."""
    signs: tuple[float, float, float, float, float, float] = (-1.0, -1.0, -1.0, -1.0, -1.0, -1.0)
    """Sign (or scale) applied to each mapped axis."""
    full_scale: float = 350.0
    """Raw reading of a fully deflected cap."""
    buttons: dict[str, int] = dataclasses.field(default_factory=lambda: {"gripper": 0, "keep": 1})
    """``gripper`` (toggle) or an operator event name -> the button bit that does it."""
    velocity: VelocityConfig = dataclasses.field(default_factory=VelocityConfig)
    """Speeds at full deflection, deadzone and the longest integrated interval."""
    gripper_closed: bool = False
    """Whether the gripper starts closed."""

    def __post_init__(self) -> None:
        if sorted(self.axes) != list(range(6)):
            raise ValueError(f"axes must be a permutation of 0..5, got {self.axes}")
        if len(self.signs) != 6 or not np.isfinite(self.signs).all():
            raise ValueError(f"signs must be 6 finite numbers, got {self.signs}")
        if not (np.isfinite(self.full_scale) and self.full_scale > 0):
            raise ValueError(f"full_scale must be positive, got {self.full_scale}")
        bad = {a: b for a, b in self.buttons.items() if a not in BUTTON_ACTIONS or b < 0}
        if bad:
            raise ValueError(f"bad button bindings {bad}; actions: {sorted(BUTTON_ACTIONS)}")


@dataclasses.dataclass(frozen=True)
class Report:
    """One decoded report: the values it updates (None: not in this report)."""

    translation: tuple[int, int, int] | None = None
    rotation: tuple[int, int, int] | None = None
    buttons: int | None = None


def parse_report(data: bytes) -> Report:
    """Decode one input report (with its id byte); an unknown or short report updates nothing."""
    if not data:
        return Report()
    kind, body = data[0], bytes(data[1:])
    values = [int.from_bytes(body[i : i + 2], "little", signed=True) for i in range(0, 12, 2)]
    if kind == 1 and len(body) >= 12:
        return Report(translation=_three(values[:3]), rotation=_three(values[3:6]))
    if kind == 1 and len(body) >= 6:
        return Report(translation=_three(values[:3]))
    if kind == 2 and len(body) >= 6:
        return Report(rotation=_three(values[:3]))
    if kind == 3 and body:
        return Report(buttons=int.from_bytes(body, "little"))
    return Report()


def _three(values: list[int]) -> tuple[int, int, int]:
    return values[0], values[1], values[2]


class HidSpaceMouse:
    """The real backend: the first SpaceMouse hidapi finds (or the HID device at ``path``)."""

    def __init__(self, path: bytes | None = None) -> None:
        self.path = path
        self._device: Any = None

    def open(self) -> None:
        hid = require_extra("hid", "spacemouse")
        path = self.path
        if path is None:
            found = [
                d
                for d in hid.enumerate()
                if d["vendor_id"] in VENDORS
                and (d["vendor_id"] == VENDORS[0] or "space" in (d["product_string"] or "").lower())
            ]
            if not found:
                raise DeviceError("no SpaceMouse found (is it plugged in, and readable by you?)")
            path = found[0]["path"]
        device = hid.device()
        try:
            device.open_path(path)
        except OSError as exc:
            raise DeviceError(f"cannot open the SpaceMouse at {path!r}: {exc}") from exc
        device.set_nonblocking(1)
        self._device = device

    def close(self) -> None:
        if self._device is not None:
            self._device.close()
        self._device = None

    def reports(self) -> list[bytes]:
        out = []
        try:
            while data := self._device.read(64):
                out.append(bytes(data))
        except (OSError, ValueError) as exc:  # hidapi's errors for an unplugged device
            raise DeviceError(f"the SpaceMouse stopped answering: {exc}") from exc
        return out


@register_device("spacemouse")
class SpaceMouseDevice(TeleopDevice):
    """Six-axis end-effector teleop from a SpaceMouse.

    Args:
        config: axis mapping, buttons and speeds.
        backend: the HID reports (default: :class:`HidSpaceMouse`).
        clock: the time the cap's velocity is integrated over (default: the system clock).
    """

    def __init__(
        self,
        config: SpaceMouseConfig | None = None,
        *,
        backend: HidBackend | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config or SpaceMouseConfig()
        self.backend = backend or HidSpaceMouse()
        self.velocity = VelocityInput(self.config.velocity, clock or SYSTEM_CLOCK)
        self.gripper = 1.0 if self.config.gripper_closed else 0.0
        """The gripper command the toggle button last set (0 open, 1 closed)."""
        self._raw = np.zeros(6)
        self._buttons = 0

    def _connect(self) -> None:
        self.backend.open()
        self.velocity.restart()
        self._raw[:] = 0.0
        self._buttons = 0

    def _disconnect(self) -> None:
        self.backend.close()

    def read(self) -> DeviceReading:
        events: list[OperatorEvent] = []
        toggled = False
        for data in self.backend.reports():
            report = parse_report(data)
            if report.translation is not None:
                self._raw[:3] = report.translation
            if report.rotation is not None:
                self._raw[3:] = report.rotation
            if report.buttons is not None:
                pressed = report.buttons & ~self._buttons
                self._buttons = report.buttons
                for action, bit in self.config.buttons.items():
                    if not pressed >> bit & 1:
                        continue
                    if action == GRIPPER_TOGGLE:
                        self.gripper, toggled = 1.0 - self.gripper, True
                    else:
                        events.append(OperatorEvent(action))
        cfg = self.config
        deflection = self._raw[list(cfg.axes)] * np.asarray(cfg.signs) / cfg.full_scale
        motion, now = self.velocity.command(deflection, self.gripper if toggled else None)
        return DeviceReading(motion, tuple(events), now)
