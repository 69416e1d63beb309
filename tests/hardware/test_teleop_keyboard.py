"""The keyboard device: scripted key presses, and the terminal backend through a pty."""

from __future__ import annotations

import os
import pty
import termios

import numpy as np
import pytest

from hardware.clock import VirtualClock
from hardware.teleop.device import DeviceError, EndEffectorCommand, OperatorEvent
from hardware.teleop.keyboard import KeyboardConfig, KeyboardDevice, KeyQueue
from hardware.teleop.terminal_keys import TerminalKeys, key_names
from tests.hardware.teleop_fakes import wait_for


def test_presses_nudge_the_target_and_buttons_become_events() -> None:
    keys = KeyQueue()
    clock = VirtualClock(3.0)
    with KeyboardDevice(KeyboardConfig(step=0.01, yaw_step=0.1), source=keys, clock=clock) as kb:
        keys.push("w", "w", "d", "r", "z")
        reading = kb.read()
        assert isinstance(reading.motion, EndEffectorCommand)
        assert np.allclose(reading.motion.translation, [0.02, -0.01, 0.01])
        assert np.allclose(reading.motion.rotation, [0.0, 0.0, 0.1])
        assert reading.motion.gripper is None and reading.events == ()
        assert reading.sensed_at == 3.0

        assert kb.read().motion is None  # nothing pressed: hold

        keys.push("space", "enter", "t", "?", "g", "b", "backspace", "escape")
        reading = kb.read()
        assert reading.motion is not None and reading.motion.gripper == 1.0
        assert not reading.motion.translation.any()
        assert reading.events == (
            OperatorEvent.KEEP,
            OperatorEvent.TAKEOVER,
            OperatorEvent.HANDBACK,
            OperatorEvent.RERECORD,
            OperatorEvent.DISCARD,
            OperatorEvent.QUIT,
        )
        keys.push("space")
        assert kb.read().motion.gripper == 0.0  # the toggle opens it again


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="unknown key actions"):
        KeyboardConfig(keys={"w": "+w"})
    with pytest.raises(ValueError, match="step"):
        KeyboardConfig(step=0.0)
    custom = KeyboardConfig(keys={"up": "+z"})
    keys = KeyQueue(["up", "w"])
    reading = KeyboardDevice(custom, source=keys).read()
    assert np.allclose(reading.motion.translation, [0.0, 0.0, custom.step])


def test_terminal_sequences_become_key_names() -> None:
    text = "w\x1b[A\x1bOD \r\x7f\x1b\tq"
    assert key_names(text) == [
        "w",
        "up",
        "left",
        "space",
        "enter",
        "backspace",
        "escape",
        "tab",
        "q",
    ]


def test_terminal_backend_reads_a_pty_and_restores_it() -> None:
    master, slave = pty.openpty()
    try:
        before = termios.tcgetattr(slave)
        source = TerminalKeys(fd=slave).start()
        try:
            assert not termios.tcgetattr(slave)[3] & termios.ICANON  # cbreak: key by key
            device = KeyboardDevice(source=source)
            os.write(master, b"ww\x1b[B\n")
            seen: list[str] = []
            wait_for(lambda: bool(seen.extend(source.poll())) or len(seen) == 4)
            assert seen == ["w", "w", "down", "enter"]
            os.write(master, b"t")
            events: list[OperatorEvent] = []
            wait_for(lambda: bool(events.extend(device.read().events)) or bool(events))
            assert events == [OperatorEvent.TAKEOVER]
        finally:
            source.stop()
            source.stop()  # idempotent
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


def test_terminal_backend_refuses_what_is_not_a_terminal() -> None:
    read, write = os.pipe()
    try:
        with pytest.raises(DeviceError, match="not one"):
            TerminalKeys(fd=read).start()
    finally:
        os.close(read)
        os.close(write)
