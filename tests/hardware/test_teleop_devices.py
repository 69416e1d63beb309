"""Every registered teleop device: built with an injected event source, connected, read, and
closed (idempotently); plus the registry itself."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from hardware.clock import VirtualClock
from hardware.emulators import FeetechEmulator
from hardware.servo_arm import FeetechArm
from hardware.teleop.device import (
    DeviceError,
    DeviceReading,
    EndEffectorCommand,
    JointCommand,
    TeleopDevice,
    device_class,
    device_names,
    make_device,
    register_device,
)
from hardware.teleop.keyboard import KeyQueue
from hardware.transport import PosixTransport
from tests.hardware.teleop_fakes import FakeHid, FakeJoystick, translation_report


@contextlib.contextmanager
def keyboard(calibration):
    yield make_device("keyboard", source=KeyQueue(["w", "space"]), clock=VirtualClock())


@contextlib.contextmanager
def gamepad(calibration):
    joystick = FakeJoystick()
    joystick.set({0: 0.9}, pressed=(0,))
    yield make_device("gamepad", backend=joystick, clock=VirtualClock())


@contextlib.contextmanager
def spacemouse(calibration):
    hid = FakeHid()
    hid.push(translation_report(100, 0, 0))
    yield make_device("spacemouse", backend=hid, clock=VirtualClock())


@contextlib.contextmanager
def leader(calibration):
    with FeetechEmulator(ids=range(1, 7)) as emulator:
        transport = PosixTransport(emulator.path)
        try:
            arm = FeetechArm(calibration=calibration, transport=transport)
            yield make_device("leader", driver=arm)
        finally:
            transport.close()


FACTORIES = {"keyboard": keyboard, "gamepad": gamepad, "spacemouse": spacemouse, "leader": leader}


def test_every_device_has_a_test_factory() -> None:
    assert set(device_names()) == set(FACTORIES)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_device_connects_reads_and_disconnects(name, so101_calibration) -> None:
    with FACTORIES[name](so101_calibration) as device:
        assert isinstance(device, device_class(name)) and device.name == name
        device.connect()
        device.connect()  # idempotent
        readings = [device.read() for _ in range(3)]
        device.disconnect()
        device.disconnect()
    assert not device.is_connected
    for reading in readings:
        assert isinstance(reading, DeviceReading) and np.isfinite(reading.sensed_at)
        motion = reading.motion
        if isinstance(motion, JointCommand):
            assert np.isfinite(motion.positions).all()
        elif isinstance(motion, EndEffectorCommand):
            assert motion.translation.shape == motion.rotation.shape == (3,)
            assert np.isfinite(motion.translation).all() and np.isfinite(motion.rotation).all()
        if motion is not None and motion.gripper is not None:
            assert 0.0 <= motion.gripper <= 1.0
    assert any(r.motion is not None for r in readings)


def test_registry_names_and_refusals() -> None:
    with pytest.raises(DeviceError, match="did you mean 'gamepad'"):
        device_class("gamepd")

    @register_device("test-null")
    class Null(TeleopDevice):
        def read(self) -> DeviceReading:
            return DeviceReading(None, (), 0.0)

    try:
        assert "test-null" in device_names() and make_device("test-null").name == "test-null"
        with pytest.raises(ValueError, match="already registered"):
            register_device("test-null")(type("Other", (Null,), {}))
    finally:
        from hardware.teleop import device as registry

        registry.DEVICES.entries.pop("test-null")
