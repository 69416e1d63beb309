"""The gamepad device through a fake joystick, and the real backend's errors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from hardware.clock import VirtualClock
from hardware.teleop.device import DeviceError, OperatorEvent, require_extra
from hardware.teleop.gamepad import GamepadConfig, GamepadDevice, GamepadState, PygameJoystick
from hardware.teleop.velocity import VelocityConfig
from tests.hardware.teleop_fakes import FakeJoystick, FakePygame

VELOCITY = VelocityConfig(linear_speed=0.2, angular_speed=1.0, deadzone=0.1, max_interval=0.1)


def make(clock: VirtualClock) -> tuple[GamepadDevice, FakeJoystick]:
    joystick = FakeJoystick()
    return GamepadDevice(GamepadConfig(velocity=VELOCITY), backend=joystick, clock=clock), joystick


def test_sticks_move_at_speed_over_the_clock() -> None:
    clock = VirtualClock()
    pad, joystick = make(clock)
    with pad:
        joystick.set({1: -1.0, 3: 0.55})  # left stick full forward, right stick half right
        first = pad.read()
        assert first.motion is not None and not first.motion.translation.any()  # no time yet
        clock.advance(0.05)
        motion = pad.read().motion
        assert np.allclose(motion.translation, [0.2 * 0.05, 0.0, 0.0])
        assert np.allclose(motion.rotation, [0.0, 0.0, -1.0 * 0.05 * 0.5])  # (0.55-0.1)/0.9
        clock.advance(5.0)  # a stalled loop integrates at most max_interval
        assert np.allclose(pad.read().motion.translation, [0.2 * 0.1, 0.0, 0.0])
        joystick.set({1: 0.05, 3: -0.08})  # inside the deadzone
        clock.advance(0.05)
        assert pad.read().motion is None
    assert joystick.opened == joystick.closed == 1


def test_buttons_act_on_the_press() -> None:
    clock = VirtualClock()
    pad, joystick = make(clock)
    with pad:
        joystick.set(pressed=(0,))
        reading = pad.read()
        assert reading.motion.gripper == 1.0 and reading.events == ()
        assert pad.read().motion is None  # still held: no second toggle
        joystick.set(pressed=(7, 4))
        assert pad.read().events == (OperatorEvent.KEEP, OperatorEvent.TAKEOVER)
        assert pad.read().events == ()
        joystick.set(pressed=())
        joystick.set(pressed=(0, 6))
        reading = pad.read()
        assert reading.motion.gripper == 0.0 and reading.events == (OperatorEvent.DISCARD,)


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="unknown motion axes"):
        GamepadConfig(axes={"w": 0})
    with pytest.raises(ValueError, match="button"):
        GamepadConfig(buttons={"jump": 0})
    with pytest.raises(ValueError, match="deadzone"):
        VelocityConfig(deadzone=1.0)


def test_a_missing_sdk_names_the_extra() -> None:
    with pytest.raises(DeviceError, match=r"robopolicy\[teleop\]"):
        require_extra("robopolicy_no_such_module", "gamepad")


@pytest.mark.skipif(importlib.util.find_spec("pygame") is None, reason="pygame (teleop extra)")
def test_pygame_backend_says_when_no_gamepad_is_there(monkeypatch) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    import pygame

    try:
        with pytest.raises(DeviceError, match="not found"):
            PygameJoystick(index=99).open()
    finally:
        pygame.quit()  # leave no SDL state behind for other tests


def test_pygame_backend_reads_the_joystick_and_reports_an_unplug(monkeypatch) -> None:
    fake = FakePygame(axes=[0.0, -0.5, 0.0], buttons=[False, True])
    monkeypatch.setattr("hardware.teleop.gamepad.require_extra", lambda module, device: fake)
    backend = PygameJoystick()
    backend.open()
    assert backend.poll() == GamepadState((0.0, -0.5, 0.0), (False, True))
    fake.plugged = False
    with pytest.raises(DeviceError, match="stopped answering"):
        backend.poll()
    backend.close()
