"""The SpaceMouse device through injected HID reports, and the real backend's errors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from hardware.clock import VirtualClock
from hardware.teleop.device import DeviceError, OperatorEvent
from hardware.teleop.spacemouse import (
    HidSpaceMouse,
    Report,
    SpaceMouseConfig,
    SpaceMouseDevice,
    parse_report,
)
from hardware.teleop.velocity import VelocityConfig
from tests.hardware.teleop_fakes import (
    FakeHid,
    FakeHidModule,
    button_report,
    rotation_report,
    six_axis_report,
    translation_report,
)

VELOCITY = VelocityConfig(linear_speed=0.1, angular_speed=1.0, deadzone=0.0)


def test_reports_decode() -> None:
    assert parse_report(translation_report(1, -2, 300)) == Report(translation=(1, -2, 300))
    assert parse_report(rotation_report(-350, 0, 7)) == Report(rotation=(-350, 0, 7))
    assert parse_report(six_axis_report(1, 2, 3, 4, 5, 6)) == Report((1, 2, 3), (4, 5, 6))
    assert parse_report(button_report(0b10)) == Report(buttons=2)
    assert parse_report(b"") == Report()
    assert parse_report(b"\x01\x00") == Report()  # too short
    assert parse_report(b"\x17abcdef") == Report()  # unknown report id


def test_cap_moves_the_target_in_the_base_frame() -> None:
    clock, hid = VirtualClock(), FakeHid()
    mouse = SpaceMouseDevice(SpaceMouseConfig(velocity=VELOCITY), backend=hid, clock=clock)
    with mouse:
        mouse.read()  # start the clock
        hid.push(translation_report(0, -350, 175))  # pushed away from the operator, half down
        clock.advance(0.1)
        motion = mouse.read().motion
        assert np.allclose(motion.translation, [0.01, 0.0, -0.005])
        assert not motion.rotation.any()
        hid.push(rotation_report(0, 0, -350))  # twisted: yaw, the translation stays
        clock.advance(0.1)
        motion = mouse.read().motion
        assert np.allclose(motion.translation, [0.01, 0.0, -0.005])
        assert np.allclose(motion.rotation, [0.0, 0.0, 0.1])
        hid.push(six_axis_report(0, 0, 0, 0, 0, 0))  # released
        clock.advance(0.1)
        assert mouse.read().motion is None
    assert hid.opened == hid.closed == 1


def test_buttons_act_on_the_press() -> None:
    hid = FakeHid()
    mouse = SpaceMouseDevice(backend=hid, clock=VirtualClock())
    with mouse:
        hid.push(button_report(0b01))
        reading = mouse.read()
        assert reading.motion.gripper == 1.0 and reading.events == ()
        hid.push(button_report(0b11), button_report(0b11))  # left still held, right pressed
        reading = mouse.read()
        assert reading.motion is None and reading.events == (OperatorEvent.KEEP,)
        hid.push(button_report(0), button_report(0b01))
        assert mouse.read().motion.gripper == 0.0


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="permutation"):
        SpaceMouseConfig(axes=(0, 0, 1, 2, 3, 4))
    with pytest.raises(ValueError, match="full_scale"):
        SpaceMouseConfig(full_scale=0.0)
    with pytest.raises(ValueError, match="button"):
        SpaceMouseConfig(buttons={"fire": 0})


@pytest.mark.skipif(importlib.util.find_spec("hid") is not None, reason="hidapi is installed")
def test_without_hidapi_the_error_names_the_extra() -> None:
    with pytest.raises(DeviceError, match=r"robopolicy\[teleop\]"):
        HidSpaceMouse().open()


def test_hid_backend_finds_the_spacemouse_and_reads_every_report(monkeypatch) -> None:
    devices = [
        {"vendor_id": 0x046D, "product_id": 0xC52B, "product_string": "USB Receiver", "path": b"a"},
        {
            "vendor_id": 0x046D,
            "product_id": 0xC626,
            "product_string": "SpaceNavigator",
            "path": b"b",
        },
    ]
    fake = FakeHidModule(devices, [[1, 0, 0, 0, 0, 0, 0], [3, 1, 0]])
    monkeypatch.setattr("hardware.teleop.spacemouse.require_extra", lambda module, device: fake)
    backend = HidSpaceMouse()
    backend.open()
    assert fake.opened == [b"b"]  # the Logitech receiver is not a SpaceMouse
    assert backend.reports() == [bytes([1, 0, 0, 0, 0, 0, 0]), bytes([3, 1, 0])]
    assert backend.reports() == []
    fake.reports = None  # unplugged
    with pytest.raises(DeviceError, match="stopped answering"):
        backend.reports()
    backend.close()
    fake.devices = devices[:1]
    with pytest.raises(DeviceError, match="no SpaceMouse found"):
        HidSpaceMouse().open()
