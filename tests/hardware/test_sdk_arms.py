"""UR (ur_rtde) and xArm (xarm-python-sdk) drivers against fakes at the SDK boundary.

The fakes follow the SDKs' signatures: ``RTDEControlInterface(host, frequency)`` with
``servoJ(q, speed, acceleration, time, lookahead_time, gain) -> bool``; ``RTDEReceiveInterface``
with ``getActualQ()``; ``XArmAPI`` methods returning codes and ``(code, value)`` tuples. Tests
marked ``hardware`` talk to a real arm (``ROBOPOLICY_HARDWARE=1`` and the host variable).
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest

from hardware.clock import VirtualClock
from hardware.driver import DriverError, UnsafeCommandError
from hardware.ur_arm import URArm
from hardware.xarm_arm import XArm


class FakeRTDEControl:
    def __init__(self, host: str, frequency: float = -1.0) -> None:
        self.host, self.frequency = host, frequency
        self.calls: list[tuple] = []
        self.accept = True

    def servoJ(self, q, speed, acceleration, time, lookahead_time, gain) -> bool:
        self.calls.append(("servoJ", list(q), speed, acceleration, time, lookahead_time, gain))
        return self.accept

    def servoStop(self, a: float = 10.0) -> bool:
        self.calls.append(("servoStop",))
        return True

    def stopScript(self) -> None:
        self.calls.append(("stopScript",))

    def disconnect(self) -> None:
        self.calls.append(("disconnect",))


class FakeRTDEReceive:
    def __init__(self, host: str, frequency: float = -1.0) -> None:
        self.q = [0.0, -1.57, 1.57, -1.57, -1.57, 0.0]
        self.emergency = self.protective = False
        self.connected = True
        self.disconnected = False

    def getActualQ(self) -> list[float]:
        return list(self.q)

    def getActualQd(self) -> list[float]:
        return [0.0] * 6

    def isEmergencyStopped(self) -> bool:
        return self.emergency

    def isProtectiveStopped(self) -> bool:
        return self.protective

    def isConnected(self) -> bool:
        return self.connected

    def disconnect(self) -> None:
        self.disconnected = True


def ur_arm(**kwargs) -> tuple[URArm, dict]:
    made: dict = {}

    def control(host, frequency):
        made["control"] = FakeRTDEControl(host, frequency)
        return made["control"]

    def receive(host, frequency):
        made["receive"] = FakeRTDEReceive(host, frequency)
        return made["receive"]

    arm = URArm("192.0.2.10", control_factory=control, receive_factory=receive, **kwargs)
    return arm, made


def test_ur_reads_and_streams_servoj() -> None:
    clock = VirtualClock(start=3.0)
    arm, made = ur_arm(period=0.004, lookahead_time=0.05, gain=500, clock=clock)
    assert arm.spec.action_size == 6 and arm.spec.gripper is None
    with arm:
        state = arm.read_state()
        assert np.allclose(state.positions, made["receive"].q) and state.sensed_at == 3.0
        sent = arm.send_action([0.1, -1.5, 1.5, -1.5, -1.5, 9.0])
        assert sent[5] == 2 * math.pi  # clamped by the driver
        name, q, _, _, period, lookahead, gain = made["control"].calls[-1]
        assert (name, period, lookahead, gain) == ("servoJ", 0.004, 0.05, 500)
        assert q == list(sent)
        with pytest.raises(UnsafeCommandError):
            arm.send_action([np.nan] * 6)
        assert len(made["control"].calls) == 1  # nothing written
        made["control"].accept = False
        with pytest.raises(DriverError, match="refused servoJ"):
            arm.send_action(sent)
        made["receive"].protective = True
        assert arm.read_state().estopped
        made["receive"].connected = False
        with pytest.raises(DriverError, match="lost the RTDE connection"):
            arm.read_state()
    assert [c[0] for c in made["control"].calls[-3:]] == ["servoStop", "stopScript", "disconnect"]
    assert made["receive"].disconnected


def test_ur_without_the_sdk_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "rtde_control", None)
    with pytest.raises(DriverError, match=r"pip install 'robopolicy\[ur\]'"):
        URArm("192.0.2.10").connect()


class FakeXArmAPI:
    def __init__(self, host: str) -> None:
        self.host = host
        self.connected = True
        self.state, self.error_code = 0, 0
        self.angles = [0.0, -0.5, -1.0, 0.0, 1.0, 0.0]
        self.gripper_pulse = 850.0
        self.calls: list[tuple] = []
        self.fail: dict[str, int] = {}

    def _code(self, name: str, *args) -> int:
        self.calls.append((name, *args))
        return self.fail.get(name, 0)

    def clean_error(self) -> int:
        return self._code("clean_error")

    def motion_enable(self, enable=True, servo_id=None) -> int:
        return self._code("motion_enable", enable)

    def set_mode(self, mode=0) -> int:
        return self._code("set_mode", mode)

    def set_state(self, state=0) -> int:
        return self._code("set_state", state)

    def set_gripper_enable(self, enable) -> int:
        return self._code("set_gripper_enable", enable)

    def get_joint_states(self, is_radian=None, num=3):
        return self._code("get_joint_states"), [[*self.angles, 0.0], [0.0] * 7, [0.0] * 7]

    def get_gripper_position(self):
        return self._code("get_gripper_position"), self.gripper_pulse

    def set_servo_angle_j(self, angles, speed=None, mvacc=None, mvtime=None, is_radian=None):
        assert is_radian is True
        return self._code("set_servo_angle_j", list(angles))

    def set_gripper_position(self, pos, wait=False, speed=None, auto_enable=False, timeout=None):
        return self._code("set_gripper_position", pos)

    def disconnect(self) -> None:
        self.calls.append(("disconnect",))
        self.connected = False


def test_xarm_enables_servo_mode_reads_and_writes() -> None:
    api = FakeXArmAPI("192.0.2.20")
    arm = XArm("192.0.2.20", api_factory=lambda host: api)
    with arm:
        assert [c[0] for c in api.calls] == [
            "clean_error",
            "motion_enable",
            "set_mode",
            "set_state",
            "set_gripper_enable",
        ]
        assert ("set_mode", 1) in api.calls
        state = arm.read_state()
        assert np.allclose(state.positions, api.angles) and state.gripper == 0.0
        target = np.append(api.angles, 0.5)
        target[1] = -5.0  # below joint 2's limit
        sent = arm.send_action(target)
        assert sent[1] == arm.spec.lower[1] and api.calls[-2][0] == "set_servo_angle_j"
        assert api.calls[-1] == ("set_gripper_position", 425.0)
        arm.send_action(sent)  # same gripper command: not written again
        assert api.calls[-1][0] == "set_servo_angle_j"
        api.fail["set_servo_angle_j"] = 9
        with pytest.raises(DriverError, match="set_servo_angle_j failed with code 9"):
            arm.send_action(sent)
        api.state = 4
        assert arm.read_state().estopped
        assert arm.release() and api.calls[-1] == ("set_state", 4)
    assert api.calls[-1] == ("disconnect",)


def test_xarm_connect_failures_are_clear() -> None:
    api = FakeXArmAPI("x")
    api.fail["motion_enable"] = 1
    with pytest.raises(DriverError, match="motion_enable failed with code 1"):
        XArm("x", api_factory=lambda host: api).connect()
    assert not api.connected  # disconnected on the way out
    api = FakeXArmAPI("x")
    api.connected = False
    with pytest.raises(DriverError, match="cannot connect to the xArm"):
        XArm("x", api_factory=lambda host: api).connect()


def test_xarm_without_the_sdk_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "xarm", None)
    monkeypatch.setitem(sys.modules, "xarm.wrapper", None)
    with pytest.raises(DriverError, match=r"pip install 'robopolicy\[xarm\]'"):
        XArm("192.0.2.20").connect()


# -- real hardware (skipped unless ROBOPOLICY_HARDWARE=1) -------------------------------------


@pytest.mark.hardware
def test_real_ur_reads_its_state() -> None:
    host = os.environ.get("ROBOPOLICY_UR_HOST")
    if not host:
        pytest.skip("set ROBOPOLICY_UR_HOST to the arm's address")
    with URArm(host) as arm:
        state = arm.read_state()
        assert state.positions.shape == (6,) and np.isfinite(state.positions).all()


@pytest.mark.hardware
def test_real_xarm_reads_its_state() -> None:
    host = os.environ.get("ROBOPOLICY_XARM_HOST")
    if not host:
        pytest.skip("set ROBOPOLICY_XARM_HOST to the control box's address")
    with XArm(host) as arm:
        state = arm.read_state()
        assert state.positions.shape == (6,) and np.isfinite(state.positions).all()
